"""The keyed tile watermark on real photos at 512²: it leaves faces alone, it is found after geometric
edits and screenshots, and averaging other marked images neither removes it nor forges it.

The full table (every edit on dozens of photos, marked and clean) is `bench/provenance.py`; here each
rule is checked on a few real photos, with the required thresholds where a few photos can carry them."""

from __future__ import annotations

import numpy as np
import pytest

from amari.faces import descriptors
from amari.provenance.watermark import TILE_THRESHOLD, embed_watermark, read_watermark
from amari.testing import edits
from amari.testing.photos import face_photos

TARGETS = 3  # marked photos each edit is tried on; as many clean ones must stay clean


@pytest.fixture(scope="module")
def photos():
    """Real faces of the sample photo, cropped and resized as a generator's portraits would be: 11 marked
    (3 targets and 10 others for the averaging attacks) and 3 clean."""
    originals = face_photos(2 * TARGETS + 8, side=512, seed=21)
    marked = [embed_watermark(photo) for photo in originals[: TARGETS + 8]]
    return originals, marked, originals[TARGETS + 8 :]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a.astype(float) - b.astype(float)) ** 2)))


def test_leaves_every_face_alone(photos):
    originals, marked, _ = photos
    shifts = []
    for original, written in zip(originals[:TARGETS], marked[:TARGETS]):
        assert _psnr(original, written) >= 38.0  # on every image, not on average
        before, after = descriptors.encode(original), descriptors.encode(written)
        assert [face.box for face in before] == [face.box for face in after] and before
        for face, again in zip(before, after):
            top, right, bottom, left = face.box
            assert np.array_equal(original[top:bottom, left:right], written[top:bottom, left:right])
            shifts.append(float(np.linalg.norm(face.descriptor - again.descriptor)))
    # The bound is a mean of 0.05 and a maximum of 0.10; the faces' pixels are kept exactly, so
    # what is left is a landmark moving by a pixel now and then.
    assert np.mean(shifts) <= 0.05 and max(shifts) <= 0.10, shifts


GEOMETRY = {
    "mirror+jpeg75": lambda rgb: edits.jpeg(edits.mirror(rgb), 75),
    "rotate3": lambda rgb: edits.rotate(rgb, 3),
    "aspect0.9": lambda rgb: edits.resize(rgb, 0.9, 1.0),
    "crop60": lambda rgb: edits.centre_crop(rgb, 0.6),
    "screenshot0.6": edits.screenshot,
}


@pytest.mark.parametrize("edit", sorted(GEOMETRY))
def test_found_after_geometric_edits_and_never_in_clean_photos(photos, edit):
    _, marked, clean = photos
    for image in marked[:TARGETS]:
        reading = read_watermark(GEOMETRY[edit](image))
        assert reading.found and reading.method == "tile2" and reading.bit_accuracy >= 0.85, (edit, reading)
    for image in clean:
        reading = read_watermark(GEOMETRY[edit](image))
        assert not reading.found and reading.score < TILE_THRESHOLD - 1, (edit, reading)


def test_reports_the_geometry_it_found(photos):
    image = photos[1][0]
    turned = read_watermark(edits.rotate(image, 3))
    assert turned.rotation == pytest.approx(3.0, abs=0.3) and not turned.mirrored
    mirrored = read_watermark(edits.mirror(image))
    assert mirrored.mirrored and mirrored.rotation == pytest.approx(0.0, abs=0.3)
    squeezed = read_watermark(edits.resize(image, 0.9, 1.0))
    assert squeezed.aspect == pytest.approx(0.9, abs=0.01)
    shown = read_watermark(edits.screenshot(image))
    assert shown.scale == pytest.approx(0.6, abs=0.01)


def test_averaging_other_images_neither_removes_nor_forges_it(photos):
    """The average residual of 10 other marked images holds each of their shifted patterns at a tenth:
    subtracting it leaves the target's own; adding it (even scaled up to a mark's energy) gives a clean
    photo ten weak copies at ten shifts, which the reader refuses as a superposition."""
    originals, marked, clean = photos
    others = len(marked) - 1
    mark_rms = np.sqrt(np.mean([(m.astype(float) - o) ** 2 for m, o in zip(marked, originals)]))
    for index in range(TARGETS):
        estimate = edits.averaged_residual([marked[(index + 1 + k) % len(marked)] for k in range(others)])
        assert read_watermark(edits.add(marked[index], estimate, -1.0)).found
        matched = mark_rms / np.sqrt(np.mean(estimate**2))
        for gain in (1.0, matched):
            forged = read_watermark(edits.add(clean[index], estimate, gain))
            assert not forged.found, (gain, forged)


def test_a_face_that_fills_the_frame_carries_a_faint_mark(data_dir):
    """Tom Hanks' face, its zone covering the whole 512² image: the face carries a faint mark (pixels
    change by a level here and there), found, and the descriptor moves by about what JPEG 90 does."""
    from amari.storage.images import load_rgb

    photo = edits.resize(load_rgb(data_dir / "Tom_Hanks_54745.png"), 512 / 112)
    written = embed_watermark(photo)
    assert read_watermark(written).found and _psnr(photo, written) > 48
    before, after = descriptors.encode(photo), descriptors.encode(written)
    assert len(before) == len(after) == 1
    assert np.linalg.norm(before[0].descriptor - after[0].descriptor) <= 0.10
