"""`amari prepare` on real photos: sizes, names, manifest, seeds, refusals, and the face-aware crop."""

from __future__ import annotations

import hashlib
import random
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from amari.cli import main
from amari.errors import UsageError
from amari.prepare import PrepareConfig
from amari.prepare.stage import (
    MANIFEST,
    MANIFEST_FIELDS,
    CropBox,
    crop_and_resize,
    crop_side_range,
    face_crop_box,
    face_keep_box,
    find_largest_face,
    random_crop_box,
    random_name,
    read_manifest,
    run,
)
from amari.storage.images import load_rgb
from amari.storage.layout import PrepareLayout

NAME = re.compile(r"^[a-z]{9}\.png$")


def prepare(src, dst, config=PrepareConfig()):
    return run(config, PrepareLayout(src, dst))


@pytest.fixture()
def src(tmp_path, data_dir) -> Path:
    """Real photos of several sizes, one in a sub-folder, one EXIF-rotated, one broken file."""
    folder = tmp_path / "src"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(data_dir / "astronaut.png", folder / "astronaut.png")
    shutil.copy(data_dir / "Tom_Hanks_54745.png", folder / "small_face.png")
    t1 = Image.open(data_dir / "t1.jpg")
    t1.save(folder / "sub" / "t1.jpg", quality=92)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: viewers rotate it to 886 wide, 1280 high
    t1.crop((0, 0, 1000, 700)).save(folder / "rotated.jpg", exif=exif, quality=92)
    (folder / "broken.png").write_bytes((data_dir / "astronaut.png").read_bytes()[:3000])
    return folder


def tree_hashes(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def outputs(dst: Path) -> list[Path]:
    return sorted(p for p in dst.iterdir() if p.suffix == ".png")


# -- pure pieces ------------------------------------------------------------------------------------


def test_side_range_follows_the_study():
    assert crop_side_range(1280, 886, 512) == (512, 886)
    assert crop_side_range(400, 900, 512) == (400, 400)
    assert crop_side_range(512, 700, 512) == (512, 512)


def test_random_boxes_stay_inside_and_cover_the_side_range():
    rng = random.Random(7)
    boxes = [random_crop_box(1000, 700, 512, rng) for _ in range(2000)]
    assert all(b.left >= 0 and b.right <= 1000 and b.top >= 0 and b.bottom <= 700 for b in boxes)
    sides = [b.side for b in boxes]
    assert min(sides) == 512 and max(sides) == 700
    assert min(b.left for b in boxes) == 0 and max(b.right for b in boxes) == 1000


def test_face_boxes_always_hold_the_face():
    rng = random.Random(11)
    keep = (600, 980, 780, 820)  # near the bottom-right corner of a 1000×800 image
    boxes = [face_crop_box(1000, 800, 512, keep, rng) for _ in range(500)]
    assert all(b.contains(keep) for b in boxes)
    assert all(b.left >= 0 and b.right <= 1000 and b.top >= 0 and b.bottom <= 800 for b in boxes)
    assert len({(b.left, b.top, b.side) for b in boxes}) > 50  # still random


def test_face_larger_than_the_image_gets_the_largest_square_around_it():
    box = face_crop_box(900, 600, 512, (0, 850, 600, 150), random.Random(0))
    assert box.side == 600
    assert box.left == 200  # centred on the 700-wide face
    assert face_keep_box((100, 300, 200, 200), 320, 400, 0.5) == (50, 320, 250, 150)


def test_names_are_nine_lower_case_letters_and_never_repeat():
    rng = random.Random(5)
    taken = {"abcdefghi"}
    names = [random_name(rng, taken) for _ in range(3000)]
    assert all(re.fullmatch(r"[a-z]{9}", n) for n in names)
    assert len(set(names)) == 3000 and "abcdefghi" not in names


def test_random_name_skips_a_name_already_taken():
    first = random_name(random.Random(3), set())
    again = random_name(random.Random(3), {first})
    assert again != first


# -- the stage on real photos -----------------------------------------------------------------------


def test_prepare_writes_512_pngs_with_a_true_manifest(src, tmp_path):
    before = tree_hashes(src)
    dst = tmp_path / "out"
    result = prepare(src, dst, PrepareConfig(seed=1))

    assert tree_hashes(src) == before  # SRC untouched
    assert [Path(e.path).name for e in result.skipped] == ["broken.png"]
    files = outputs(dst)
    assert len(files) == len(result.prepared) == 4
    assert all(NAME.match(f.name) for f in files)
    for f in files:
        with Image.open(f) as image:
            assert image.format == "PNG" and image.size == (512, 512) and image.mode == "RGB"

    rows = read_manifest(dst / MANIFEST)
    assert tuple(rows[0]) == MANIFEST_FIELDS
    assert sorted(r["file"] for r in rows) == [f.name for f in files]
    assert sorted(r["source"] for r in rows) == ["astronaut.png", "rotated.jpg", "small_face.png", "sub/t1.jpg"]
    for row in rows:
        source = load_rgb(src / row["source"])
        height, width = source.shape[:2]
        left, top, right, bottom, side = (int(row[k]) for k in ("left", "top", "right", "bottom", "side"))
        low, high = crop_side_range(width, height, 512)
        assert low <= side <= high and right - left == side == bottom - top
        assert left >= 0 and right <= width and top >= 0 and bottom <= height
        assert row["seed"] == "1" and row["crop"] == "random" and row["face_found"] == ""
        # The manifest's box is the crop that was really taken.
        expected = crop_and_resize(source, CropBox(left, top, side), 512)
        assert np.array_equal(load_rgb(dst / row["file"]), expected)
    rotated = next(r for r in rows if r["source"] == "rotated.jpg")
    assert int(rotated["bottom"]) <= 1000 and int(rotated["right"]) <= 700  # EXIF applied
    small = next(r for r in rows if r["source"] == "small_face.png")
    assert small["side"] == "112"


def test_same_seed_same_outputs_other_seed_other_outputs(src, tmp_path):
    first = prepare(src, tmp_path / "a", PrepareConfig(seed=42))
    second = prepare(src, tmp_path / "b", PrepareConfig(seed=42))
    third = prepare(src, tmp_path / "c", PrepareConfig(seed=43))
    assert tree_hashes(tmp_path / "a") == tree_hashes(tmp_path / "b")
    assert [p.file for p in first.prepared] == [p.file for p in second.prepared]
    assert {p.file for p in third.prepared}.isdisjoint(p.file for p in first.prepared)
    assert [p.box for p in third.prepared] != [p.box for p in first.prepared]


def test_no_seed_draws_one_and_records_it(src, tmp_path):
    result = prepare(src, tmp_path / "a", PrepareConfig())
    again = prepare(src, tmp_path / "b", PrepareConfig(seed=result.seed))
    assert {r["seed"] for r in read_manifest(tmp_path / "a" / MANIFEST)} == {str(result.seed)}
    assert tree_hashes(tmp_path / "a") == tree_hashes(tmp_path / "b")
    assert again.seed == result.seed


def test_other_size(src, tmp_path):
    prepare(src, tmp_path / "out", PrepareConfig(seed=2, size=200))
    for f in outputs(tmp_path / "out"):
        with Image.open(f) as image:
            assert image.size == (200, 200)
    sides = [int(r["side"]) for r in read_manifest(tmp_path / "out" / MANIFEST)]
    assert all(s >= 112 for s in sides) and max(sides) > 200


@pytest.mark.parametrize("inside", [".", "sub", "sub/deeper"])
def test_refuses_a_destination_inside_the_source(src, inside):
    before = tree_hashes(src)
    with pytest.raises(UsageError, match="inside the source"):
        prepare(src, src / inside, PrepareConfig(seed=1))
    assert tree_hashes(src) == before
    assert not (src / "sub" / "deeper").exists()


def test_refuses_a_non_empty_destination_without_force(src, tmp_path):
    dst = tmp_path / "out"
    dst.mkdir()
    (dst / "notes.txt").write_text("keep me")
    with pytest.raises(UsageError, match="not empty"):
        prepare(src, dst, PrepareConfig(seed=1))
    assert [p.name for p in dst.iterdir()] == ["notes.txt"]


def test_force_adds_without_touching_or_colliding_with_existing_files(src, tmp_path):
    plain = prepare(src, tmp_path / "plain", PrepareConfig(seed=9))
    dst = tmp_path / "out"
    dst.mkdir()
    # The names this seed would draw already exist, in upper case (one file system may see them as one).
    for item in plain.prepared:
        (dst / item.file.upper()).write_bytes(b"existing " + item.file.encode())
    existing = tree_hashes(dst)
    result = prepare(src, dst, PrepareConfig(seed=9, force=True))
    assert all(tree_hashes(dst)[name] == digest for name, digest in existing.items())
    new_names = {p.file for p in result.prepared}
    assert len(new_names) == 4
    assert {n.lower() for n in new_names}.isdisjoint(n.lower() for n in existing)
    # A second forced run appends to the same manifest.
    prepare(src, dst, PrepareConfig(seed=10, force=True))
    rows = read_manifest(dst / MANIFEST)
    assert len(rows) == 8 and len({r["file"].lower() for r in rows}) == 8


def test_refuses_to_append_to_a_foreign_manifest(src, tmp_path):
    dst = tmp_path / "out"
    dst.mkdir()
    (dst / MANIFEST).write_text("name,score\nx,1\n")
    with pytest.raises(UsageError, match="not a prepare manifest"):
        prepare(src, dst, PrepareConfig(seed=1, force=True))
    assert (dst / MANIFEST).read_text() == "name,score\nx,1\n"
    assert outputs(dst) == []


def test_source_without_images_is_a_usage_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no images"):
        prepare(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(UsageError, match="not found"):
        prepare(tmp_path / "missing", tmp_path / "out")


def test_bad_config_is_refused():
    with pytest.raises(UsageError):
        PrepareConfig(crop="centre")
    with pytest.raises(UsageError):
        PrepareConfig(size=0)
    with pytest.raises(UsageError):
        PrepareConfig(seed=-1)


# -- faces ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def off_centre_faces(tmp_path_factory, data_dir) -> Path:
    """Real faces placed near a corner of large canvases, where a random crop can miss them."""
    folder = tmp_path_factory.mktemp("faces")
    astronaut = Image.open(data_dir / "astronaut.png").convert("RGB").crop((80, 0, 380, 300))
    for index, (corner, size) in enumerate([((0, 0), (900, 700)), ((620, 420), (950, 760))]):
        canvas = Image.new("RGB", size, (128, 128, 128))
        canvas.paste(astronaut, corner)
        canvas.save(folder / f"corner{index}.png")
    return folder


def test_face_crop_keeps_the_face_that_a_random_crop_can_lose(off_centre_faces, tmp_path):
    face_found, random_found = [], []
    for seed in range(3):
        face = prepare(off_centre_faces, tmp_path / f"face{seed}", PrepareConfig(seed=seed, crop="face"))
        plain = prepare(off_centre_faces, tmp_path / f"random{seed}", PrepareConfig(seed=seed, check_faces=True))
        for item in face.prepared:
            source = load_rgb(off_centre_faces / item.source)
            box = find_largest_face(source, 1024)
            assert item.box.contains(box)
        face_found += [p.face_found for p in face.prepared]
        random_found += [p.face_found for p in plain.prepared]
    assert all(found is True for found in face_found)
    assert all(found in (True, False) for found in random_found)
    assert sum(random_found) < len(random_found)  # the study's crop does cut faces off here
    rows = read_manifest(tmp_path / "face0" / MANIFEST)
    assert {r["crop"] for r in rows} == {"face"} and {r["face_found"] for r in rows} == {"true"}


def test_face_crop_without_a_face_falls_back_to_a_random_crop(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    noise = np.random.default_rng(0).integers(0, 255, size=(700, 900, 3), dtype=np.uint8)
    Image.fromarray(noise).save(src / "noise.png")
    result = prepare(src, tmp_path / "out", PrepareConfig(seed=4, crop="face"))
    [item] = result.prepared
    assert 512 <= item.box.side <= 700 and item.face_found is False
    assert result.face_share == 0.0


# -- command line -----------------------------------------------------------------------------------


def test_cli_prepare_reports_and_refuses(src, tmp_path, capsys):
    dst = tmp_path / "out"
    assert main(["prepare", str(src), str(dst), "--seed", "3", "--size", "128"]) == 0
    out, err = capsys.readouterr()
    assert "prepared 4 images" in out and "seed 3" in out
    assert "broken.png" in err
    assert len(outputs(dst)) == 4

    assert main(["prepare", str(src), str(dst), "--seed", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("amari prepare: error:") and "--force" in err

    assert main(["prepare", str(src), str(src / "x")]) == 2
    assert "inside the source" in capsys.readouterr().err
    assert not (src / "x").exists()


def test_synthetic_sources_keep_their_provenance(data_dir, tmp_path):
    from amari.provenance.png import read_provenance, save_png

    src = tmp_path / "src"
    src.mkdir()
    generated = load_rgb(data_dir / "t1.jpg")[:700, :900]
    save_png(
        generated,
        src / "generated.png",
        {"prompt": "a photo of a person", "seed": 7, "steps": 250, "width": 900, "height": 700},
    )
    shutil.copy(data_dir / "astronaut.png", src / "photo.png")
    result = prepare(src, tmp_path / "out", PrepareConfig(seed=5))
    by_source = {p.source: tmp_path / "out" / p.file for p in result.prepared}
    marked = read_provenance(by_source["generated.png"])
    assert marked.synthetic and marked.watermarked
    assert marked.amari["prompt"] == "a photo of a person" and marked.amari["width"] == 512
    assert marked.amari["prepared"]["source"] == "generated.png"
    plain = read_provenance(by_source["photo.png"])
    assert not plain.synthetic and plain.amari is None
