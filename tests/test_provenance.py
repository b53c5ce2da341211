"""Watermark, A1111 `parameters` chunk and amari's JSON chunk: written, re-saved, read back."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from amari.errors import ImageError
from amari.provenance.infotext import a1111_parameters, parse_a1111_parameters
from amari.provenance.png import (
    MIN_WATERMARK_SIDE,
    embed_watermark,
    read_provenance,
    read_watermark,
    save_png,
)
from amari.storage.images import load_rgb

PARAMS = {
    "prompt": "a photo of a woman, smiling: outdoors",
    "negative_prompt": "blurry, lowres",
    "seed": 2565311105,
    "steps": 25,
    "sampler": "dpmpp_2m",
    "cfg_scale": 8.2653,
    "width": 512,
    "height": 512,
    "model": "stable-diffusion-v1-4",
}


@pytest.fixture(scope="module")
def group_photo(data_dir):
    return load_rgb(data_dir / "t1.jpg")


def resized(rgb, side):
    return np.asarray(Image.fromarray(rgb).resize((side, side), Image.LANCZOS))


def as_jpeg(path, out, quality=90):
    Image.open(path).convert("RGB").save(out, "JPEG", quality=quality)
    return out


def test_saved_png_carries_watermark_and_both_chunks(astronaut, tmp_path):
    path = save_png(astronaut, tmp_path / "out.png", PARAMS)

    found = read_provenance(path)
    assert found.watermarked and found.watermark.bit_accuracy == 1.0
    assert found.watermark.payload == b"amari" and found.watermark.method == "tile2"
    assert found.synthetic
    assert found.amari["synthetic"] is True
    assert found.amari["seed"] == PARAMS["seed"] and found.amari["model"] == PARAMS["model"]
    assert found.amari["watermark"] == {"method": "tile2", "payload": "amari", "embedded": True}
    assert found.format == "PNG" and (found.width, found.height) == (512, 512)
    assert found.fields["Seed"] == str(PARAMS["seed"])
    assert found.fields["prompt"] == PARAMS["prompt"]


def test_watermark_is_invisible(astronaut, tmp_path):
    written = load_rgb(save_png(astronaut, tmp_path / "out.png", PARAMS))
    mse = np.mean((written.astype(float) - astronaut.astype(float)) ** 2)
    assert 10 * np.log10(255**2 / mse) > 37  # dB


@pytest.mark.parametrize("side", [512, 128])
def test_watermark_survives_jpeg_quality_90(astronaut, group_photo, tmp_path, side):
    for name, photo in (("astronaut", astronaut), ("people", group_photo[:880, 200:1080])):
        png = save_png(resized(photo, side), tmp_path / f"{name}.png", PARAMS)
        jpeg = as_jpeg(png, tmp_path / f"{name}.jpg")
        found = read_provenance(jpeg)
        assert found.watermarked, (name, side, found.watermark)
        assert found.watermark.method == ("tile2" if side >= 256 else "dwtDctSvd")
        assert found.amari is None  # the chunks are gone; the pixels still say it


def test_smallest_watermarked_size_reads_back_losslessly(astronaut, tmp_path):
    small = resized(astronaut, MIN_WATERMARK_SIDE)
    found = read_provenance(save_png(small, tmp_path / "small.png", PARAMS))
    assert found.watermarked and found.watermark.method == "dwtDctSvd"


def test_images_too_small_are_saved_without_watermark(astronaut, tmp_path):
    tiny = resized(astronaut, MIN_WATERMARK_SIDE - 16)
    assert np.array_equal(embed_watermark(tiny), tiny)
    found = read_provenance(save_png(tiny, tmp_path / "tiny.png", PARAMS))
    assert found.watermark is None
    assert found.amari["watermark"]["embedded"] is False
    assert found.synthetic  # the metadata still says so


def test_unmarked_photos_are_not_detected(astronaut, group_photo):
    for rgb in (astronaut, group_photo, resized(group_photo[:600, :600], 128), resized(astronaut, 64)):
        reading = read_watermark(rgb)
        assert not reading.found, reading


def test_a1111_layout_and_round_trip():
    text = a1111_parameters(
        {**PARAMS, "enhance": {"upscaler": "RealESRGAN_x4plus.pth", "face_restorer": "GFPGANv1.4.pth", "scale": 2.0}}
    )
    lines = text.split("\n")
    assert lines[0] == PARAMS["prompt"]
    assert lines[1] == "Negative prompt: blurry, lowres"
    assert lines[2].startswith(
        "Steps: 25, Sampler: DPM++ 2M Karras, CFG scale: 8.2653, Seed: 2565311105, "
        "Size: 512x512, Model: stable-diffusion-v1-4"
    )
    assert "Postprocess upscaler: R-ESRGAN 4x+" in lines[2]
    parsed = parse_a1111_parameters(text)
    assert parsed["prompt"] == PARAMS["prompt"] and parsed["negative_prompt"] == PARAMS["negative_prompt"]
    assert (parsed["width"], parsed["height"]) == (512, 512)
    assert parsed["Postprocess upscale by"] == "2.0"
    assert parsed["GFPGAN visibility"] == "1.0"


def test_values_with_commas_are_quoted_as_a1111_does():
    text = a1111_parameters({**PARAMS, "model": "my model, v2"})
    assert 'Model: "my model, v2"' in text
    assert parse_a1111_parameters(text)["Model"] == "my model, v2"


def test_parses_text_written_by_a1111():
    text = (
        "portrait of a woman, detailed\nsecond line of the prompt\n"
        "Negative prompt: ugly\n"
        "Steps: 20, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: 1234, "
        "Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, "
        'Lora hashes: "a: 1234, b: 5678", Version: v1.10.1'
    )
    parsed = parse_a1111_parameters(text)
    assert parsed["prompt"] == "portrait of a woman, detailed\nsecond line of the prompt"
    assert parsed["negative_prompt"] == "ugly"
    assert parsed["Sampler"] == "Euler a" and parsed["Seed"] == "1234"
    assert (parsed["width"], parsed["height"]) == (512, 768)
    assert parsed["Lora hashes"] == "a: 1234, b: 5678"
    assert parsed["Version"] == "v1.10.1"


def test_reads_a1111_parameters_from_jpeg_exif(astronaut, tmp_path):
    text = "a photo of a woman\nSteps: 20, Sampler: DDIM, CFG scale: 7, Seed: 5, Size: 512x512"
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + text.encode("utf-16-be")
    path = tmp_path / "a1111.jpg"
    Image.fromarray(astronaut).save(path, "JPEG", quality=95, exif=exif)
    found = read_provenance(path)
    assert found.parameters == text
    assert found.fields["Seed"] == "5"
    assert not found.synthetic  # A1111's text alone is not amari's mark


def test_save_is_atomic_and_replaces(astronaut, tmp_path):
    target = tmp_path / "img.png"
    save_png(astronaut, target, PARAMS)
    save_png(astronaut[:256, :256], target, {**PARAMS, "seed": 7})
    assert read_provenance(target).amari["seed"] == 7
    with pytest.raises(TypeError):
        save_png(astronaut, target, {**PARAMS, "seed": object()})  # not JSON: nothing written
    assert read_provenance(target).amari["seed"] == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.png"]


def test_save_refuses_other_formats_and_bad_arrays(astronaut, tmp_path):
    with pytest.raises(ValueError):
        save_png(astronaut, tmp_path / "x.jpg", PARAMS)
    with pytest.raises(ValueError):
        save_png(astronaut.astype(np.float32), tmp_path / "x.png", PARAMS)


def test_accepts_pil_images(astronaut, tmp_path):
    path = save_png(Image.fromarray(astronaut), tmp_path / "pil.png", PARAMS)
    assert read_provenance(path).watermarked


def test_unreadable_file_is_an_image_error(tmp_path):
    broken = tmp_path / "broken.png"
    buffer = io.BytesIO()
    Image.new("RGB", (80, 80)).save(buffer, "PNG")
    broken.write_bytes(buffer.getvalue()[:60])
    with pytest.raises(ImageError):
        read_provenance(broken)


def test_json_chunk_holds_everything(astronaut, tmp_path):
    extra = {**PARAMS, "enhance": {"upscaler": "x.pth", "face_restorer": None, "scale": 2.0}}
    path = save_png(astronaut, tmp_path / "e.png", extra)
    raw = Image.open(path).info["amari"]
    data = json.loads(raw)
    assert data["enhance"] == extra["enhance"] and data["generator"].startswith("amari ")


def test_saving_registers_the_fingerprint(astronaut, tmp_path):
    from amari.provenance.fingerprint import Registry
    from amari.provenance.registries import REGISTRY_FILE, default_registry_path

    workspace = tmp_path / "ws"
    (workspace / "incoming").mkdir(parents=True)
    (workspace / "mine.sqlite").write_bytes(b"")  # what makes a folder a miner workspace
    path = save_png(astronaut, workspace / "incoming" / "a.png", PARAMS)
    data = path.read_bytes()
    # Where the image is, never as a path of this machine: relative to the workspace, or led by its name.
    for registry_path, where in (
        (default_registry_path(), "ws/incoming/a.png"),
        (workspace / REGISTRY_FILE, "incoming/a.png"),
    ):
        with Registry(registry_path) as registry:
            match = registry.match(np.asarray(Image.open(path).convert("RGB")), data)
            assert match.kind == "file" and match.path == where
            assert match.info["seed"] == PARAMS["seed"] and match.info["prompt"] == PARAMS["prompt"]
            jpeg = as_jpeg(path, tmp_path / "copy.jpg", quality=75)
            assert registry.match(load_rgb(jpeg)).kind == "perceptual"


def test_nothing_is_written_when_the_fingerprint_cannot_be_recorded(astronaut, tmp_path):
    from amari.errors import AmariError

    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    with pytest.raises(AmariError, match="fingerprint"):
        save_png(astronaut, tmp_path / "out.png", PARAMS, registries=[blocked / "provenance.sqlite"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-folder"]


def test_content_credentials_when_a_key_is_configured(astronaut, tmp_path):
    pytest.importorskip("c2pa", reason="the optional c2pa extra is not installed (pip install 'amari[c2pa]')")
    from amari.provenance.credentials import keygen, read_credentials

    unsigned = save_png(astronaut, tmp_path / "before.png", PARAMS)
    assert read_credentials(unsigned.read_bytes()) is None
    keygen()
    signed = save_png(astronaut, tmp_path / "after.png", PARAMS)
    found = read_credentials(signed.read_bytes())
    assert found.state == "Trusted" and found.synthetic and found.parameters == PARAMS
    again = read_provenance(signed)  # the text chunks and the watermark are still there
    assert again.watermarked and again.amari["seed"] == PARAMS["seed"] and again.fields["Seed"] == str(PARAMS["seed"])
