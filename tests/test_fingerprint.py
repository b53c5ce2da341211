"""Fingerprint registry on real photos: copies are recognised, distinct photos are not."""

from __future__ import annotations

import io
import sqlite3

import numpy as np
import pytest
from PIL import Image

from amari.errors import AmariError, UsageError
from amari.provenance.fingerprint import MATCH_DISTANCE, WINDOWS, Registry, window_hashes
from amari.provenance.registries import (
    REGISTRY_FILE,
    default_registry_path,
    local_registry_path,
    register,
    registry_paths_for,
    resolve_registry,
)
from amari.storage.images import load_rgb
from amari.study.demo import SAMPLE_FACES
from test_watermark import jpeg, resize


def square(rgb: np.ndarray, side: int = 512) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).resize((side, side), Image.Resampling.LANCZOS))


@pytest.fixture(scope="module")
def photos(data_dir) -> list[np.ndarray]:
    """Eight distinct real photos at 512²: each face of the group photo framed wide, the astronaut, Tom Hanks."""
    group = load_rgb(data_dir / "t1.jpg")
    framed = []
    for top, right, bottom, left in SAMPLE_FACES:
        centre_y, centre_x, half = (top + bottom) // 2, (left + right) // 2, 130
        framed.append(group[max(0, centre_y - half) : centre_y + half, max(0, centre_x - half) : centre_x + half])
    return [
        square(rgb)
        for rgb in (*framed, load_rgb(data_dir / "astronaut.png"), load_rgb(data_dir / "Tom_Hanks_54745.png"))
    ]


@pytest.fixture
def registry(tmp_path, photos):
    with Registry(tmp_path / REGISTRY_FILE) as opened:
        for index, photo in enumerate(photos[:-1]):  # the last photo stays unregistered
            opened.add(photo, tmp_path / f"photo{index}.png", info={"seed": index})
        yield opened


COPIES = {
    "jpeg50": lambda rgb: jpeg(rgb, 50),
    "resize0.5+jpeg75": lambda rgb: jpeg(resize(rgb, 0.5), 75),
    "resize0.8+jpeg85": lambda rgb: jpeg(resize(rgb, 0.8), 85),
    "centre crop 10%": lambda rgb: rgb[26:486, 26:486],
    "corner crop 20%": lambda rgb: rgb[102:, :410],
    "bottom cut 10%": lambda rgb: rgb[:461],
    "to 4:5": lambda rgb: rgb[:, 51:461],
    "mirrored, darker": lambda rgb: (rgb[:, ::-1] * 0.85).astype(np.uint8),
}


@pytest.mark.parametrize("copy", sorted(COPIES))
def test_copies_are_recognised(registry, photos, copy):
    for index in (0, 4, 6):
        match = registry.match(COPIES[copy](photos[index]))
        assert match is not None and match.kind == "perceptual", (copy, index)
        assert match.info == {"seed": index} and match.path.endswith(f"photo{index}.png")
        assert match.distance <= MATCH_DISTANCE // 2
        assert match.mirrored == copy.startswith("mirrored")


def test_distinct_photos_do_not_match(registry, photos, tmp_path):
    assert registry.match(photos[-1]) is None
    assert registry.match(jpeg(resize(photos[-1], 0.5), 75)) is None
    with Registry(tmp_path / "one.sqlite") as alone:
        alone.add(photos[0], "zero.png")
        for photo in photos[1:]:
            assert alone.match(photo) is None
    # Each registered photo is far from every crop stored for the others.
    hashes = np.stack([window_hashes(photo) for photo in photos])
    from amari.provenance.fingerprint import distances, perceptual_hash

    for index, photo in enumerate(photos):
        others = np.delete(hashes, index, axis=0)
        assert distances(others, perceptual_hash(photo)).min() > MATCH_DISTANCE + 10


def test_exact_copies_match_by_content_hash(tmp_path, photos):
    png = io.BytesIO()
    Image.fromarray(photos[0]).save(png, "PNG")
    with Registry(tmp_path / REGISTRY_FILE) as opened:
        opened.add(photos[0], tmp_path / "a.png", data=png.getvalue())
        assert opened.match(photos[0], png.getvalue()).kind == "file"
        resaved = io.BytesIO()
        Image.fromarray(photos[0]).save(resaved, "PNG", compress_level=1)  # other bytes, same pixels
        assert opened.match(photos[0], resaved.getvalue()).kind == "pixels"
        assert opened.match(jpeg(photos[0], 95)).kind == "perceptual"
        assert len(opened) == 1


def test_registry_uses_named_migrations(tmp_path, photos):
    with Registry(tmp_path / REGISTRY_FILE) as opened:
        opened.add(photos[0], "a.png")
    with Registry(tmp_path / REGISTRY_FILE) as reopened:  # migrations run once, data kept
        assert len(reopened) == 1
    conn = sqlite3.connect(tmp_path / REGISTRY_FILE)
    assert [row[0] for row in conn.execute("SELECT name FROM _migrations")] == ["0001_fingerprints"]
    blob = conn.execute("SELECT hashes FROM fingerprints").fetchone()[0]
    assert len(blob) == 32 * len(WINDOWS)


def test_workspace_and_study_registries_are_found(tmp_path):
    workspace = tmp_path / "ws"
    (workspace / "incoming").mkdir(parents=True)
    (workspace / "mine.sqlite").write_bytes(b"")
    assert local_registry_path(workspace / "incoming" / "a.png") == (workspace / REGISTRY_FILE).absolute()
    study = tmp_path / "study"
    deep = study / "train" / "a_312" / "checkpoints" / "step-000004" / "samples"
    deep.mkdir(parents=True)
    assert local_registry_path(deep / "p0.png") is None
    (study / REGISTRY_FILE).write_bytes(b"")
    assert local_registry_path(deep / "p0.png") == (study / REGISTRY_FILE).absolute()
    assert registry_paths_for(deep / "p0.png") == [default_registry_path(), (study / REGISTRY_FILE).absolute()]
    assert resolve_registry(study) == study / REGISTRY_FILE
    with pytest.raises(UsageError):
        resolve_registry(tmp_path / "nowhere")


def test_register_writes_every_registry_or_fails_in_one_line(tmp_path, photos):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "mine.sqlite").write_bytes(b"")
    written = register(photos[0], workspace / "a.png", info={"seed": 1})
    assert written == [default_registry_path(), (workspace / REGISTRY_FILE).absolute()]
    for path in written:
        with Registry(path) as opened:
            assert opened.match(photos[0]).info == {"seed": 1}
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be")
    with pytest.raises(AmariError, match="cannot open the fingerprint registry"):
        register(photos[0], tmp_path / "b.png", registries=[blocked / REGISTRY_FILE])


def test_tiny_images_are_registered_too(tmp_path):
    tiny = np.zeros((6, 9, 3), dtype=np.uint8)
    tiny[2:4, 3:7] = 200
    with Registry(tmp_path / REGISTRY_FILE) as opened:
        opened.add(tiny, "tiny.png")
        assert opened.match(tiny).kind == "pixels"
