"""amari's invisible watermark: which mark an image gets, and reading every mark amari has written.

Three marks, by the version of amari that wrote them; all are read on every image:

- **tile2** (`amari.provenance.keyedtile`, found by `amari.provenance.marksearch`), written on images
  from 256 px a side: a keyed 128×128 tile in the luma, shifted per image, none of it on faces
  (`amari.provenance.facezones`), every image at 39 dB PSNR. It survives JPEG, resizing, crops down
  to half of each side, mirroring, rotation within ±10°, aspect changes, screenshots (the image
  scaled onto a flat canvas), and averaging other marked images' residuals to remove or forge it.
- **tile** (`amari.provenance.tilemark`): the same tile idea at 64×64, identical in every image and
  over faces, found only at the scales the image's size suggests. Written by earlier versions.
- **dwtDctSvd** (below): `invisible-watermark`'s dwtDctSvd on the U channel, re-implemented without the
  package's detail-band swap (41 dB instead of 34); written on images of 64-255 px a side (too small for
  the tiles) and, by the first versions of amari, on every image. It survives lossless saving from 64 px
  and JPEG quality 90 from 128 px.

None of them survives regenerating the image (img2img, an upscaler that redraws detail), heavy
filtering, or someone who reads this code and removes the frequencies it uses; the fingerprint
registry (`amari.provenance.fingerprint`) and C2PA credentials are the other marks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from amari.provenance.keyedtile import THRESHOLD as TILE_THRESHOLD  # noqa: F401 - the z a tile2 reading needs

PAYLOAD = b"amari"
PAYLOAD_BITS = len(PAYLOAD) * 8
MIN_TILE_SIDE = 256
MIN_WATERMARK_SIDE = 64
# Share of the 40 legacy payload bits that must match: unmarked images read 0.4-0.66.
LEGACY_THRESHOLD = 0.9
_LEGACY_SCALE = 36  # invisible-watermark's dwtDctSvd quantisation step on the U channel


@dataclass(frozen=True)
class WatermarkReading:
    """What the decoder read: which mark, how many payload bits matched, and a tile mark's z-score."""

    found: bool
    method: str  # "tile2", "tile" or "dwtDctSvd"
    bit_accuracy: float
    payload: bytes
    score: float | None = None  # tile marks: correlation z at the best geometry and shift
    scale: float | None = None  # tile: the resize factor that brought it back; tile2: the mark's size
    # tile2: the geometry it was found in, and the best score at another shift (a superposition of
    # shifted patterns, as averaging other images makes, is not accepted)
    mirrored: bool | None = None
    rotation: float | None = None  # degrees
    aspect: float | None = None  # width over height of the mark's square tile
    second: float | None = None

    @property
    def bits_matched(self) -> int:
        return round(self.bit_accuracy * PAYLOAD_BITS)


def can_carry_watermark(width: int, height: int) -> bool:
    return min(width, height) >= MIN_WATERMARK_SIDE


def method_for(width: int, height: int) -> str | None:
    """The mark an image of this size gets: "tile2", "dwtDctSvd" (small images) or None (too small)."""
    side = min(width, height)
    return "tile2" if side >= MIN_TILE_SIDE else "dwtDctSvd" if side >= MIN_WATERMARK_SIDE else None


def payload_bits() -> np.ndarray:
    return np.unpackbits(np.frombuffer(PAYLOAD, dtype=np.uint8))


def embed_watermark(rgb, faces=None, face_scale: float = 1.0) -> np.ndarray:
    """`rgb` (uint8 H×W×3) with amari's watermark; unchanged when smaller than MIN_WATERMARK_SIDE.

    The tile mark leaves `faces` alone (`amari.faces.descriptors.Face`s or (top, right, bottom, left)
    boxes, found in a copy `face_scale` times smaller); without them it finds the faces itself.
    """
    rgb = check_rgb(rgb)
    method = method_for(rgb.shape[1], rgb.shape[0])
    if method == "tile2":
        from amari.provenance import facezones, keyedtile

        if faces is None:
            zones = facezones.find_zones(rgb)
        else:
            zones = facezones.zones_for(faces, rgb.shape[:2], face_scale)
        return keyedtile.embed(rgb, zones)
    if method == "dwtDctSvd":
        return _embed_legacy(rgb)
    return rgb


def read_watermark(rgb) -> WatermarkReading | None:
    """Look for every mark amari has written in `rgb`; None when the image is too small to carry one."""
    from amari.provenance import tilemark

    rgb = check_rgb(rgb)
    if min(rgb.shape[:2]) < MIN_WATERMARK_SIDE:
        return None
    keyed = _read_keyed(rgb)
    if keyed is not None and keyed.found:
        return keyed
    tile = tilemark.read(rgb) if min(rgb.shape[:2]) >= MIN_TILE_SIDE // 2 else None
    if tile is not None and tile.found:
        return tile
    legacy = _read_legacy(rgb)
    if legacy.found:
        return legacy
    return keyed or tile or legacy


def _read_keyed(rgb: np.ndarray) -> WatermarkReading | None:
    from amari.provenance import marksearch

    found = marksearch.read(rgb)
    if found is None:
        return None
    return WatermarkReading(
        found=marksearch.accepted(found),
        method="tile2",
        bit_accuracy=float(np.mean(found.bits == payload_bits())),
        payload=np.packbits(found.bits).tobytes(),
        score=found.score,
        scale=found.scale,
        mirrored=found.mirrored,
        rotation=found.rotation,
        aspect=found.aspect,
        second=found.second,
    )


def check_rgb(rgb) -> np.ndarray:
    if isinstance(rgb, Image.Image):
        rgb = np.asarray(rgb.convert("RGB"))
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected a uint8 H×W×3 RGB image, got {rgb.dtype} {rgb.shape}")
    return rgb


# The DWT-DCT-SVD mark (small images, and images from earlier amari versions) ---------------------


def _embed_legacy(rgb: np.ndarray) -> np.ndarray:
    """invisible-watermark's dwtDctSvd embedding, vectorised: the largest singular value of each 4×4
    block of the U channel's half-size Haar band is quantised to carry one payload bit.

    Done here rather than by the package, whose import also loads torch (seconds per process) and whose
    inverse wavelet transform swaps the horizontal and vertical details, blurring what it rebuilds.
    """
    import cv2
    import pywt

    yuv = cv2.cvtColor(np.ascontiguousarray(rgb[..., ::-1]), cv2.COLOR_BGR2YUV)
    rows, cols = rgb.shape[0] // 4 * 4, rgb.shape[1] // 4 * 4
    band, details = pywt.dwt2(yuv[:rows, :cols, 1].astype(np.float64), "haar")
    block_rows, block_cols = band.shape[0] // 4, band.shape[1] // 4
    view = band[: block_rows * 4, : block_cols * 4].reshape(block_rows, 4, block_cols, 4).swapaxes(1, 2)
    left, values, right = np.linalg.svd(view.reshape(-1, 4, 4))
    bits = payload_bits()[np.arange(len(values)) % PAYLOAD_BITS]
    values[:, 0] = (values[:, 0] // _LEGACY_SCALE + 0.25 + 0.5 * bits) * _LEGACY_SCALE
    blocks = (left * values[:, None, :]) @ right
    band[: block_rows * 4, : block_cols * 4] = (
        blocks.reshape(block_rows, block_cols, 4, 4).swapaxes(1, 2).reshape(block_rows * 4, block_cols * 4)
    )
    rebuilt = pywt.idwt2((band, details), "haar")
    yuv[:rows, :cols, 1] = np.clip(np.round(rebuilt), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR)[..., ::-1])


def _read_legacy(rgb: np.ndarray) -> WatermarkReading:
    """invisible-watermark's dwtDctSvd decoder, vectorised: one batched SVD instead of a loop per block.

    The largest singular value of a block's orthonormal DCT is the block's own, so no DCT is needed.
    """
    import cv2
    import pywt

    yuv = cv2.cvtColor(np.ascontiguousarray(rgb[..., ::-1]), cv2.COLOR_BGR2YUV)
    rows, cols = rgb.shape[0] // 4 * 4, rgb.shape[1] // 4 * 4
    band, _ = pywt.dwt2(yuv[:rows, :cols, 1], "haar")
    block_rows, block_cols = band.shape[0] // 4, band.shape[1] // 4
    blocks = band[: block_rows * 4, : block_cols * 4].reshape(block_rows, 4, block_cols, 4).swapaxes(1, 2)
    largest = np.linalg.svd(blocks.reshape(-1, 4, 4), compute_uv=False)[:, 0]
    votes = (largest % _LEGACY_SCALE) > _LEGACY_SCALE * 0.5
    bit_index = np.arange(len(votes)) % PAYLOAD_BITS
    means = np.bincount(bit_index, weights=votes, minlength=PAYLOAD_BITS) / np.bincount(
        bit_index, minlength=PAYLOAD_BITS
    )
    bits = (means * 255 > 127).astype(np.uint8)
    accuracy = float(np.mean(bits == payload_bits()))
    return WatermarkReading(
        found=accuracy >= LEGACY_THRESHOLD,
        method="dwtDctSvd",
        bit_accuracy=accuracy,
        payload=np.packbits(bits).tobytes(),
    )
