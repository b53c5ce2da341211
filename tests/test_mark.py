"""`amari mark`: other tools' images get every mark, and the originals stay byte for byte the same."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from amari.cli import main
from amari.provenance.png import read_provenance
from amari.storage.images import load_rgb

A1111_TEXT = (
    "portrait of a woman, detailed\nNegative prompt: ugly\n"
    "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1234, Size: 512x512, Model: v1-5-pruned-emaonly"
)


def write_sources(data_dir, folder):
    """An A1111 PNG, a ComfyUI PNG in a subfolder, and an A1111 JPEG with its text in EXIF."""
    (folder / "comfy").mkdir(parents=True)
    astronaut = load_rgb(data_dir / "astronaut.png")
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", A1111_TEXT)
    Image.fromarray(astronaut).save(folder / "a1111.png", pnginfo=info)
    group = Image.open(data_dir / "t1.jpg").convert("RGB").crop((197, 0, 1083, 886)).resize((768, 768))
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps({"3": {"class_type": "KSampler", "inputs": {"seed": 99}}}))
    info.add_text("workflow", json.dumps({"nodes": []}))
    group.save(folder / "comfy" / "ComfyUI_00001_.png", pnginfo=info)
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + A1111_TEXT.encode("utf-16-be")
    Image.fromarray(astronaut[:, ::-1]).save(folder / "a1111.jpg", quality=92, exif=exif)
    return folder


def digests(folder) -> dict:
    return {
        path.relative_to(folder): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_marks_every_image_and_never_changes_the_originals(data_dir, tmp_path, capsys):
    sources = write_sources(data_dir, tmp_path / "from-a1111")
    before = digests(sources)
    out = tmp_path / "marked"
    assert main(["mark", str(sources), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert digests(sources) == before  # byte-identical, nothing added
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        "a1111-jpg.png",
        "a1111.png",
        "comfy/ComfyUI_00001_.png",
    ]
    assert captured.out.count("watermark (tile2), fingerprint registered") == 3

    from_png = read_provenance(out / "a1111.png")
    assert from_png.watermarked and from_png.parameters == A1111_TEXT
    assert from_png.amari["synthetic"] and from_png.amari["marked_by"] == "amari mark"
    assert from_png.amari["source"] == {
        "file": "a1111.png",
        "format": "PNG",
        "sha256": before[next(k for k in before if k.name == "a1111.png")],
    }
    assert from_png.amari["seed"] == "1234" and from_png.amari["prompt"] == "portrait of a woman, detailed"
    comfy = Image.open(out / "comfy" / "ComfyUI_00001_.png")
    assert json.loads(comfy.info["prompt"])["3"]["inputs"]["seed"] == 99 and "workflow" in comfy.info
    from_jpeg = read_provenance(out / "a1111-jpg.png")
    assert from_jpeg.parameters == A1111_TEXT and from_jpeg.amari["source"]["format"] == "JPEG"

    # A re-encoded copy of a marked image is recognised by its watermark and by the registry.
    copy = tmp_path / "copy.jpg"
    Image.open(out / "comfy" / "ComfyUI_00001_.png").convert("RGB").resize((384, 384)).save(copy, quality=75)
    assert main(["verify", "--json", str(copy), str(sources / "a1111.png")]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert records[0]["marks"] == ["watermark", "fingerprint"]
    assert records[0]["fingerprint"]["info"]["agent"] == "amari mark"
    # The original carries no mark of its own, but it is the same picture as a registered one.
    assert records[1]["marks"] == ["fingerprint"] and not records[1]["watermark"]["found"]


def test_says_when_there_is_no_c2pa(data_dir, tmp_path, capsys):
    sources = write_sources(data_dir, tmp_path / "src")
    assert main(["mark", str(sources / "a1111.png"), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("C2PA: no content credentials (")


def test_signs_with_the_configured_key(data_dir, tmp_path, capsys):
    pytest.importorskip("c2pa", reason="the optional c2pa extra is not installed (pip install 'amari[c2pa]')")
    from amari.provenance.credentials import read_credentials

    sources = write_sources(data_dir, tmp_path / "src")
    assert main(["keygen", "--out", str(tmp_path / "keys")]) == 0
    assert (
        main(
            [
                "mark",
                str(sources / "a1111.png"),
                "--out",
                str(tmp_path / "out"),
                "--key",
                str(tmp_path / "keys" / "signer.key"),
            ]
        )
        == 0
    )
    assert "C2PA signed" in capsys.readouterr().out
    found = read_credentials((tmp_path / "out" / "a1111.png").read_bytes(), trust=tmp_path / "keys" / "root.pem")
    assert found.state == "Trusted" and found.synthetic
    assert found.parameters["source"]["file"] == "a1111.png" and found.parameters["seed"] == "1234"


def test_marking_an_image_with_credentials_continues_its_chain(data_dir, tmp_path, capsys):
    """The C2PA specification (Actions: `c2pa.opened`; Ingredients: `parentOf`): an asset made from one that
    has a manifest opens it, and that asset and its manifest become the new manifest's parentOf ingredient,
    referenced from the `c2pa.opened` action; a manifest's first action is `c2pa.created` or `c2pa.opened`."""
    c2pa = pytest.importorskip("c2pa", reason="the optional c2pa extra is not installed (pip install 'amari[c2pa]')")
    from amari.provenance.credentials import read_credentials

    sources = write_sources(data_dir, tmp_path / "src")
    assert main(["keygen", "--out", str(tmp_path / "keys")]) == 0
    key = ["--key", str(tmp_path / "keys" / "signer.key")]
    assert main(["mark", str(sources / "a1111.png"), "--out", str(tmp_path / "first"), *key]) == 0
    first = tmp_path / "first" / "a1111.png"
    assert main(["mark", str(first), "--out", str(tmp_path / "second"), *key]) == 0
    second = tmp_path / "second" / "a1111.png"
    capsys.readouterr()

    def manifests(path):
        store = json.loads(c2pa.Reader(str(path)).json())
        return store, store["manifests"][store["active_manifest"]]

    first_store, first_manifest = manifests(first)
    store, active = manifests(second)
    actions = next(a["data"]["actions"] for a in active["assertions"] if a["label"].startswith("c2pa.actions"))
    assert actions[0]["action"] == "c2pa.opened"
    [parent] = [item for item in active["ingredients"] if item["relationship"] == "parentOf"]
    assert parent["active_manifest"] == first_store["active_manifest"]
    assert store["manifests"][parent["active_manifest"]]["signature_info"] == first_manifest["signature_info"]
    [link] = actions[0]["parameters"]["ingredients"]
    assert link["url"].endswith(parent["label"])
    found = read_credentials(second.read_bytes(), trust=tmp_path / "keys" / "root.pem")
    assert found.state == "Trusted" and found.synthetic  # read down the chain to the first c2pa.created


def test_refuses_to_overwrite_originals(data_dir, tmp_path, capsys):
    sources = write_sources(data_dir, tmp_path / "src")
    before = digests(sources)
    assert main(["mark", str(sources / "a1111.png"), "--out", str(sources)]) == 2
    assert "would overwrite the original" in capsys.readouterr().err
    assert main(["mark", str(sources), "--out", str(sources / "marked")]) == 2
    assert "is inside" in capsys.readouterr().err
    assert digests(sources) == before


def test_unreadable_images_are_skipped_with_a_warning(data_dir, tmp_path, capsys):
    sources = tmp_path / "src"
    sources.mkdir()
    Image.open(data_dir / "Tom_Hanks_54745.png").save(sources / "hanks.png")
    (sources / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    assert main(["mark", str(sources), "--out", str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    assert "cannot read" in captured.err and "broken.png" in captured.err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["hanks.png"]
    assert "watermark (dwtDctSvd)" in captured.out  # 112 px: the small-image mark
    marked = np.asarray(Image.open(io.BytesIO((tmp_path / "out" / "hanks.png").read_bytes())))
    assert marked.shape == (112, 112, 3)


def test_re_marking_keeps_what_amaris_own_metadata_said(astronaut, tmp_path):
    from amari.provenance.mark import mark_images
    from amari.provenance.png import save_png

    made = save_png(astronaut, tmp_path / "made" / "a.png", {"prompt": "a woman", "seed": 7})
    [marked] = mark_images([made], tmp_path / "out")
    found = read_provenance(marked.output)
    assert found.amari["marked_by"] == "amari mark" and found.amari["source"]["amari"]["seed"] == 7
