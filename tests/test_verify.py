"""`amari verify IMAGE...` through the command line."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from amari.cli import main
from amari.images import load_rgb
from amari.provenance import save_png

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
    Image.fromarray(astronaut).save(folder / "plain.png")
    return folder


def test_reports_marks_of_each_image(data_dir, tmp_path, capsys):
    folder = make_images(data_dir, tmp_path)
    code = main(["verify", str(folder / "marked.png"), str(folder / "marked.jpg"), str(folder / "plain.png")])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    marked_png = next(line for line in lines if line.startswith(str(folder / "marked.png")))
    assert "synthetic, made by amari" in marked_png and "40/40 bits" in marked_png
    assert "amari metadata (synthetic)" in marked_png and "A1111 parameters" in marked_png
    details = lines[lines.index(marked_png) + 1]
    assert "seed 335728730" in details and "sampler k_lms" in details and "model sd-v1-4" in details
    jpeg = next(line for line in lines if line.startswith(str(folder / "marked.jpg")))
    assert "synthetic, made by amari: amari watermark" in jpeg and "metadata" not in jpeg
    plain = next(line for line in lines if line.startswith(str(folder / "plain.png")))
    assert "no amari provenance found" in plain


def test_json_output_and_folders(data_dir, tmp_path, capsys):
    folder = make_images(data_dir, tmp_path)
    assert main(["verify", "--json", str(folder)]) == 0
    records = {
        record["path"].rsplit("/", 1)[-1]: record for record in map(json.loads, capsys.readouterr().out.splitlines())
    }
    assert set(records) == {"marked.png", "marked.jpg", "plain.png"}
    assert records["marked.png"]["synthetic"] and records["marked.png"]["amari"]["seed"] == PARAMS["seed"]
    assert records["marked.jpg"]["watermark"]["found"] and records["marked.jpg"]["amari"] is None
    assert not records["plain.png"]["synthetic"]
    parameters = records["marked.png"]["parameters"]
    assert parameters.startswith("a photo of a woman\nNegative prompt: \nSteps: 250, Sampler: LMS")


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
