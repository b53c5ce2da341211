"""`amari verify IMAGE...` through the command line: each mark, the verdict, --registry and --json."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageFilter

from amari.cli import main
from amari.provenance.png import save_png
from amari.storage.images import load_rgb

PARAMS = {
    "prompt": "a photo of a woman",
    "seed": 335728730,
    "steps": 250,
    "sampler": "k_lms",
    "cfg_scale": 7.5,
    "width": 512,
    "height": 512,
    "model": "sd-v1-4",
}


def make_images(data_dir, folder):
    astronaut = load_rgb(data_dir / "astronaut.png")
    marked = save_png(astronaut, folder / "marked.png", PARAMS)
    Image.open(marked).convert("RGB").save(folder / "marked.jpg", quality=90)
    # What a re-upload does: 80 % size, JPEG 85, then someone crops the bottom tenth off.
    reupload = Image.open(marked).convert("RGB").resize((410, 410), Image.Resampling.LANCZOS).crop((0, 0, 410, 369))
    reupload.save(folder / "reupload.jpg", quality=85)
    Image.open(data_dir / "t1.jpg").crop((197, 0, 1083, 886)).save(folder / "plain.png")  # another photo, unmarked
    return folder


def block(lines, path) -> list[str]:
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{path}: "))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("  ")), len(lines))
    return lines[start:end]


def field(lines, name) -> str:
    return next(line for line in lines if line.startswith(f"  {name} ")).split(None, 1)[1]


def test_reports_each_mark_and_a_verdict(data_dir, tmp_path, capsys):
    folder = make_images(data_dir, tmp_path)
    paths = [folder / name for name in ("marked.png", "marked.jpg", "reupload.jpg", "plain.png")]
    assert main(["verify", *map(str, paths)]) == 0
    lines = capsys.readouterr().out.splitlines()

    marked = block(lines, paths[0])
    assert marked[0].endswith("synthetic, made by amari (watermark, fingerprint); also claimed by: metadata")
    assert field(marked, "watermark").startswith("amari watermark (40/40 bits, z ")
    # The registry names the image and itself without a local path (the cache's is `<cache>/...`).
    assert field(marked, "fingerprint").startswith("copy of marked.png (identical file; seed 335728730")
    assert field(marked, "fingerprint").endswith(" in <cache>/provenance.sqlite")
    assert field(marked, "metadata") == "amari metadata (synthetic: a claim anyone can write); A1111 parameters"
    made_with = field(marked, "made with")
    assert "seed 335728730" in made_with and "sampler k_lms" in made_with and "model sd-v1-4" in made_with

    jpeg = block(lines, paths[1])
    assert jpeg[0].endswith("synthetic, made by amari (watermark, fingerprint)")
    assert "perceptual" in field(jpeg, "fingerprint") and field(jpeg, "metadata") == "none"
    reupload = block(lines, paths[2])
    assert reupload[0].endswith("synthetic, made by amari (watermark, fingerprint)")

    plain = block(lines, paths[3])
    assert plain[0].endswith("no amari provenance found")
    assert field(plain, "watermark").startswith("no amari watermark (best match z ")
    assert field(plain, "fingerprint").startswith("no match (")
    assert field(plain, "c2pa").startswith(("none", "not checked"))


def test_registry_option_and_json(data_dir, tmp_path, capsys):
    astronaut = load_rgb(data_dir / "astronaut.png")
    elsewhere = tmp_path / "team" / "provenance.sqlite"
    marked = save_png(astronaut, tmp_path / "a.png", PARAMS, registries=[elsewhere])
    small = np.asarray(Image.open(marked).convert("RGB").resize((256, 256)))
    Image.fromarray(small).save(tmp_path / "small.jpg", quality=75)
    # Remove the watermark's help (a blur takes its frequencies): only the fingerprint can say this one is a copy.
    blurred = Image.fromarray(np.ascontiguousarray(small[:, ::-1])).filter(ImageFilter.GaussianBlur(2))
    blurred.save(tmp_path / "mirrored.jpg", quality=75)

    assert main(["verify", "--json", str(tmp_path / "mirrored.jpg")]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["fingerprint"] is None and record["verdict"] == "no amari provenance found"

    assert main(["verify", "--json", "--registry", str(elsewhere.parent), str(tmp_path)]) == 0
    records = {r["path"].rsplit("/", 1)[-1]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert set(records) == {"a.png", "small.jpg", "mirrored.jpg"}
    assert records["a.png"]["marks"] == ["watermark", "fingerprint"] and records["a.png"]["claims"] == ["metadata"]
    assert records["a.png"]["amari"]["seed"] == PARAMS["seed"]
    assert records["a.png"]["parameters"].startswith("a photo of a woman\nNegative prompt: \nSteps: 250, Sampler: LMS")
    assert records["small.jpg"]["watermark"]["found"] and records["small.jpg"]["watermark"]["bits_matched"] >= 36
    mirrored = records["mirrored.jpg"]
    assert mirrored["marks"] == ["fingerprint"] and mirrored["made_by_amari"] and mirrored["synthetic"]
    assert mirrored["fingerprint"]["mirrored"] and mirrored["fingerprint"]["info"]["seed"] == PARAMS["seed"]
    assert mirrored["fingerprint"]["registry"] == str(elsewhere)  # as the user named it
    assert mirrored["fingerprint"]["path"] == "a.png"  # outside the registry's folder: its name alone


def test_a_missing_registry_is_one_error(tmp_path, capsys):
    assert main(["verify", "--registry", str(tmp_path / "none"), str(tmp_path)]) == 2
    assert "no fingerprint registry at" in capsys.readouterr().err


def test_content_credentials_are_reported(data_dir, tmp_path, capsys):
    pytest.importorskip("c2pa", reason="the optional c2pa extra is not installed (pip install 'amari[c2pa]')")
    assert main(["keygen"]) == 0
    capsys.readouterr()
    signed = save_png(load_rgb(data_dir / "astronaut.png"), tmp_path / "signed.png", PARAMS)
    assert main(["verify", str(signed)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("(watermark, fingerprint, c2pa); also claimed by: metadata")
    assert field(lines, "c2pa").startswith("trusted: signed by amari local signer")
    assert "AI-generated (trainedAlgorithmicMedia)" in field(lines, "c2pa")


def test_unreadable_files_are_reported_and_others_still_checked(data_dir, tmp_path, capsys):
    folder = make_images(data_dir, tmp_path)
    broken = folder / "broken.png"
    broken.write_bytes(b"not an image")
    code = main(["verify", str(broken), str(folder / "marked.png"), str(folder / "missing.png")])
    captured = capsys.readouterr()
    assert code == 1
    assert "cannot read" in captured.err and "broken.png" in captured.err and "missing.png" in captured.err
    assert "synthetic, made by amari" in captured.out


def test_small_images_say_why_they_carry_no_watermark(tmp_path, capsys):
    small = save_png(np.full((40, 40, 3), 128, dtype=np.uint8), tmp_path / "small.png", PARAMS)
    assert main(["verify", str(small)]) == 0
    out = capsys.readouterr().out
    assert "smaller than the 64 px" in out and "synthetic, made by amari" in out


def test_a_cache_registry_on_a_read_only_disk_is_still_searched(data_dir, tmp_path):
    """The cache folder mounted read-only (as root, permissions are dropped to bind): verify reads the
    registry without writing beside it."""
    import os
    import subprocess
    import sys

    from amari.provenance.registries import default_registry_path
    from test_failures import without_dac_override

    marked = save_png(load_rgb(data_dir / "astronaut.png"), tmp_path / "marked.png", PARAMS)
    cache = default_registry_path().parent
    saved = {path: path.stat().st_mode for path in [cache, *cache.rglob("*")]}
    for path in saved:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        command = without_dac_override([sys.executable, "-m", "amari", "verify", str(marked)])
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=dict(os.environ))
    finally:
        for path, mode in saved.items():
            path.chmod(mode)
    assert done.returncode == 0, done.stderr
    assert "copy of marked.png (identical file" in done.stdout and done.stderr == ""


def test_a_registry_that_is_a_folder_is_one_line_naming_it(data_dir, tmp_path, capsys):
    from amari.provenance.registries import default_registry_path

    default_registry_path().mkdir(parents=True)
    save = tmp_path / "plain.png"
    Image.open(data_dir / "astronaut.png").save(save)
    assert main(["verify", str(save)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(default_registry_path()) in err[0] and "is a folder" in err[0]


def test_bare_metadata_is_a_claim_not_a_verdict(data_dir, tmp_path, capsys):
    """amari's JSON chunk can be typed into any PNG: alone it is reported as what it is."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("amari", json.dumps({"synthetic": True, "generator": "amari 0.1.0", "seed": 7}))
    Image.open(data_dir / "t1.jpg").crop((197, 0, 1083, 886)).save(tmp_path / "typed.png", pnginfo=info)
    assert main(["verify", "--json", str(tmp_path / "typed.png")]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["verdict"] == "claims to be made by amari, not verified"
    assert record["marks"] == [] and record["claims"] == ["metadata"] and not record["made_by_amari"]
    assert main(["verify", str(tmp_path / "typed.png")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("claims to be made by amari, not verified (metadata)")
    assert field(lines, "metadata").startswith("amari metadata (synthetic: a claim anyone can write)")


def test_credentials_count_only_from_a_signer_you_trust(data_dir, tmp_path, capsys):
    """Anyone's `amari keygen` key signs valid credentials under the same signer name: trust decides."""
    pytest.importorskip("c2pa", reason="the optional c2pa extra is not installed (pip install 'amari[c2pa]')")
    import io

    from amari.provenance.credentials import keygen, sign_png

    assert main(["keygen"]) == 0  # the user's own key, trusted
    capsys.readouterr()
    stranger = keygen(tmp_path / "stranger")  # same signer name, another root
    buffer = io.BytesIO()
    Image.open(data_dir / "t1.jpg").crop((197, 0, 1083, 886)).save(buffer, "PNG")  # no watermark, no registry
    (tmp_path / "theirs.png").write_bytes(sign_png(buffer.getvalue(), stranger, PARAMS, "theirs.png"))

    assert main(["verify", "--json", str(tmp_path / "theirs.png")]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["c2pa"]["valid"] and not record["c2pa"]["trusted"]
    assert record["c2pa"]["signer"] == "amari local signer"
    assert record["verdict"] == "claims to be made by amari, not verified" and record["claims"] == ["c2pa"]

    assert main(["verify", str(tmp_path / "theirs.png")]) == 0
    assert field(capsys.readouterr().out.splitlines(), "c2pa").startswith("valid but not a signer you trust")

    assert main(["verify", "--json", "--trust", str(stranger.root), str(tmp_path / "theirs.png")]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["c2pa"]["trusted"] and record["verdict"] == "synthetic, made by amari" and record["marks"] == ["c2pa"]

    assert main(["verify", "--trust", str(tmp_path / "missing.pem"), str(tmp_path / "theirs.png")]) == 2
    assert "missing.pem" in capsys.readouterr().err
