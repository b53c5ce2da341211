"""amari's watermark on real photos: what it survives, what it does not claim, and the marks of earlier
versions (the version 1 tile and the DWT-DCT-SVD mark), which still read."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from amari.provenance.watermark import (
    MIN_TILE_SIDE,
    MIN_WATERMARK_SIDE,
    TILE_THRESHOLD,
    embed_watermark,
    method_for,
    read_watermark,
)
from amari.storage.images import load_rgb


def square(rgb: np.ndarray, side: int) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).resize((side, side), Image.Resampling.LANCZOS))


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def resize(rgb: np.ndarray, factor: float) -> np.ndarray:
    height, width = rgb.shape[:2]
    return np.asarray(
        Image.fromarray(rgb).resize((round(width * factor), round(height * factor)), Image.Resampling.LANCZOS)
    )


def off_centre_crop(rgb: np.ndarray) -> np.ndarray:
    """10 % off each side, unevenly: 7 % from the left, 3 % from the top."""
    height, width = rgb.shape[:2]
    top, left = round(0.03 * height), round(0.07 * width)
    return rgb[top : top + round(0.9 * height), left : left + round(0.9 * width)]


EDITS = {
    "jpeg75": lambda rgb: jpeg(rgb, 75),
    "jpeg50": lambda rgb: jpeg(rgb, 50),
    "crop10": off_centre_crop,
    "resize0.5": lambda rgb: resize(rgb, 0.5),
    "resize0.5+jpeg75": lambda rgb: jpeg(resize(rgb, 0.5), 75),
    "resize0.8+jpeg85": lambda rgb: jpeg(resize(rgb, 0.8), 85),
}


@pytest.fixture(scope="module")
def photos(data_dir) -> list[np.ndarray]:
    """Three real photos: the astronaut, one face of the group photo framed wide, and its centre."""
    group = load_rgb(data_dir / "t1.jpg")
    top, right, bottom, left = 367, 832, 474, 724  # conftest.T1_BOXES[2]
    face = group[max(0, top - 150) : bottom + 150, max(0, left - 150) : right + 150]
    return [load_rgb(data_dir / "astronaut.png"), face, group[:, 197:1083]]


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_survives_common_edits_at_512(photos, edit):
    for photo in photos:
        reading = read_watermark(EDITS[edit](embed_watermark(square(photo, 512))))
        assert reading.found and reading.method == "tile2", (edit, reading)
        assert reading.score >= TILE_THRESHOLD + 1.5 and reading.bit_accuracy >= 0.85, (edit, reading)


def test_survives_a_re_upload_of_a_1024_image(photos):
    marked = embed_watermark(square(photos[1], 1024))
    for edit in ("resize0.5+jpeg75", "crop10", "resize0.8+jpeg85"):
        reading = read_watermark(EDITS[edit](marked))
        assert reading.found and reading.bit_accuracy >= 0.85, (edit, reading)


def test_unmarked_photos_stay_below_the_threshold(photos):
    for photo in photos:
        for side in (512, 1024):
            for edit in (lambda rgb: rgb, *EDITS.values()):
                reading = read_watermark(edit(square(photo, side)))
                assert not reading.found and reading.score < TILE_THRESHOLD - 1, reading


def test_is_invisible_and_deterministic(photos):
    for side in (512, 1024):
        original = square(photos[0], side)
        marked = embed_watermark(original)
        mse = np.mean((marked.astype(float) - original.astype(float)) ** 2)
        assert 10 * np.log10(255**2 / mse) > 37
        assert np.abs(marked.astype(int) - original.astype(int)).max() <= 40
        assert np.array_equal(embed_watermark(original), marked)


def test_a_mirror_image_is_read_and_said_to_be_one(photos):
    marked = embed_watermark(square(photos[0], 512))
    assert not read_watermark(marked).mirrored
    mirrored = read_watermark(np.ascontiguousarray(marked[:, ::-1]))
    assert mirrored.found and mirrored.mirrored and mirrored.payload == b"amari"


def test_method_by_size(photos):
    assert method_for(MIN_TILE_SIDE, 900) == "tile2"
    assert method_for(MIN_TILE_SIDE - 1, 900) == "dwtDctSvd"
    assert method_for(MIN_WATERMARK_SIDE, MIN_WATERMARK_SIDE) == "dwtDctSvd"
    assert method_for(MIN_WATERMARK_SIDE - 1, 900) is None
    small = square(photos[0], 128)
    reading = read_watermark(embed_watermark(small))
    assert reading.found and reading.method == "dwtDctSvd" and reading.payload == b"amari"
    non_square = np.asarray(Image.fromarray(photos[2]).resize((768, 512)))
    assert read_watermark(jpeg(embed_watermark(non_square), 75)).found


def test_legacy_reader_agrees_with_invisible_watermark(photos):
    """The vectorised decoder reads exactly the bits of the package's own loop."""
    from imwatermark.dwtDctSvd import EmbedDwtDctSvd

    from amari.provenance.watermark import _embed_legacy, _read_legacy

    decoder = EmbedDwtDctSvd(watermarks=[], wmLen=40)
    for side in (96, 200, 512):
        original = square(photos[1], side)
        for rgb in (original, _embed_legacy(original), jpeg(_embed_legacy(original), 90)):
            expected = np.asarray(decoder.decode(np.ascontiguousarray(rgb[..., ::-1])), dtype=np.uint8)
            read = np.unpackbits(np.frombuffer(_read_legacy(rgb).payload, dtype=np.uint8))
            assert np.array_equal(read, expected)


def test_small_image_mark_is_the_packages_and_sharper(photos):
    """invisible-watermark's decoder reads amari's small-image mark, which distorts less than its encoder."""
    from imwatermark.dwtDctSvd import EmbedDwtDctSvd

    from amari.provenance.watermark import _embed_legacy, payload_bits

    original = square(photos[0], 128)
    ours = _embed_legacy(original)
    decoded = EmbedDwtDctSvd(watermarks=[], wmLen=40).decode(np.ascontiguousarray(ours[..., ::-1]))
    assert np.array_equal(np.asarray(decoded, dtype=np.uint8), payload_bits())
    theirs = EmbedDwtDctSvd(watermarks=[int(b) for b in payload_bits()], wmLen=40).encode(
        np.ascontiguousarray(original[..., ::-1])
    )[..., ::-1]

    def psnr(marked):
        return 10 * np.log10(255**2 / np.mean((marked.astype(float) - original.astype(float)) ** 2))

    assert psnr(ours) > 40 and psnr(ours) > psnr(theirs) + 3


def test_images_from_earlier_versions_still_verify(photos):
    """amari used to write the DWT-DCT-SVD mark (with the package's encoder) at every size."""
    from imwatermark.dwtDctSvd import EmbedDwtDctSvd

    from amari.provenance.watermark import payload_bits

    encoder = EmbedDwtDctSvd(watermarks=[int(b) for b in payload_bits()], wmLen=40)
    reading = read_watermark(encoder.encode(np.ascontiguousarray(square(photos[0], 512)[..., ::-1]))[..., ::-1])
    assert reading.found and reading.method == "dwtDctSvd"


def test_images_with_the_version_1_tile_still_verify(photos):
    """amari wrote a 64 px tile, the same in every image, before the keyed tile."""
    from amari.provenance import tilemark

    for photo in photos:
        reading = read_watermark(jpeg(tilemark.embed(square(photo, 512)), 75))
        assert reading.found and reading.method == "tile" and reading.payload == b"amari", reading
