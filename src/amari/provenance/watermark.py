"""amari's invisible watermark: a periodic pattern that survives JPEG, resizing and cropping.

The pattern is a 64×64 tile repeated over the luma of the image, laid out as if the image had a 512 px
short side (so a 1024 px image carries it at twice the size). It lives in 80 frequencies of the tile
between 2 and 8 cycles per tile, away from the axes and from JPEG's 8-pixel block grid; their phases
come from a fixed key and the 40-bit payload `amari` flips the sign of two frequencies per bit.

- Embedding is informed: the photo's own content at those frequencies is measured first and partly
  cancelled, so the mark needs little energy (about 40 dB PSNR) yet dominates where the detector
  looks. A local-activity mask puts more of it into texture than into flat skin or sky.
- Detection folds the image into one tile (summing all tiles), whitens it (phase only) and correlates
  it with the keyed pattern at every one of the 4,096 shifts at once by FFT, so a crop (which moves
  the tile grid) costs nothing. It tries a few scales: the image brought back to a 512 px short side
  (undoes any resize of a full frame) or long side (a square image cropped on one side or to another
  aspect ratio, then resized) and, for crops, the sizes amari writes (512, 768, 1024). The score is a
  z-value: unmarked photos peak near 4.5 over all shifts and scales; the threshold is 6.5
  (by chance about once in a million images), marked ones read 8–12 after the edits in
  `bench/provenance.py`.
- Images with a short side from 64 to 255 px are too small for the tiles; they carry the older
  DWT-DCT-SVD mark (`invisible-watermark`'s dwtDctSvd on the U channel, re-implemented without the
  package's detail-band swap: 41 dB instead of 34), which survives lossless saving from 64 px and
  JPEG quality 90 from 128 px. It is still read on every image, so files written by earlier amari
  versions verify too.

Neither mark survives rotation, mirroring, heavy filtering, or a resize to an arbitrary size combined
with an off-centre crop (the scale is then unknown); the fingerprint registry (`amari.provenance.fingerprint`)
covers some of those cases.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

PAYLOAD = b"amari"
PAYLOAD_BITS = len(PAYLOAD) * 8
TILE = 64
FRAME_SIDE = 512
WRITTEN_SIDES = (512, 768, 1024)
MIN_TILE_SIDE = 256
MIN_WATERMARK_SIDE = 64
# z of the best shift and scale; unmarked photos reach about 4.5, a Gaussian exceeds 6.5 with p ~ 4e-11
# per shift, so ~1e-6 per image over at most 5 scales x 4,096 shifts.
TILE_THRESHOLD = 6.5
# Share of the 40 legacy payload bits that must match: unmarked images read 0.4-0.66.
LEGACY_THRESHOLD = 0.9

_BAND = (2.0, 7.9)  # cycles per tile: low enough to survive a half-size resize followed by JPEG 75
_STRENGTH = 1.0  # grey levels (std) of the part aligned with the key, before masking
_CANCEL_TAN = 0.5  # host content across the key is cancelled down to 0.5 x the aligned part
_LEGACY_SCALE = 36  # invisible-watermark's dwtDctSvd quantisation step on the U channel
_KEY_SEED = b"amari watermark v1"


@dataclass(frozen=True)
class WatermarkReading:
    """What the decoder read: which mark, how many payload bits matched, and the tile mark's z-score."""

    found: bool
    method: str  # "tile" or "dwtDctSvd"
    bit_accuracy: float
    payload: bytes
    score: float | None = None  # tile mark: correlation z at the best shift and scale
    scale: float | None = None  # tile mark: the resize factor that brought it back

    @property
    def bits_matched(self) -> int:
        return round(self.bit_accuracy * PAYLOAD_BITS)


def can_carry_watermark(width: int, height: int) -> bool:
    return min(width, height) >= MIN_WATERMARK_SIDE


def method_for(width: int, height: int) -> str | None:
    """The mark an image of this size gets: "tile", "dwtDctSvd" (small images) or None (too small)."""
    side = min(width, height)
    return "tile" if side >= MIN_TILE_SIDE else "dwtDctSvd" if side >= MIN_WATERMARK_SIDE else None


def payload_bits() -> np.ndarray:
    return np.unpackbits(np.frombuffer(PAYLOAD, dtype=np.uint8))


def embed_watermark(rgb) -> np.ndarray:
    """`rgb` (uint8 H×W×3) with amari's watermark; unchanged when smaller than MIN_WATERMARK_SIDE."""
    rgb = check_rgb(rgb)
    method = method_for(rgb.shape[1], rgb.shape[0])
    if method == "tile":
        return _embed_tile(rgb)
    if method == "dwtDctSvd":
        return _embed_legacy(rgb)
    return rgb


def read_watermark(rgb) -> WatermarkReading | None:
    """Look for either mark in `rgb`; None when the image is too small to carry one."""
    rgb = check_rgb(rgb)
    if min(rgb.shape[:2]) < MIN_WATERMARK_SIDE:
        return None
    tile = _read_tile(rgb) if min(rgb.shape[:2]) >= MIN_TILE_SIDE // 2 else None
    if tile is not None and tile.found:
        return tile
    legacy = _read_legacy(rgb)
    return legacy if legacy.found or tile is None else tile


def check_rgb(rgb) -> np.ndarray:
    if isinstance(rgb, Image.Image):
        rgb = np.asarray(rgb.convert("RGB"))
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected a uint8 H×W×3 RGB image, got {rgb.dtype} {rgb.shape}")
    return rgb


# The tile mark -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Key:
    rows: np.ndarray  # rfft2 row index of each keyed frequency
    cols: np.ndarray
    ky: np.ndarray  # signed frequencies, cycles per tile
    kx: np.ndarray
    phasors: np.ndarray  # unit complex per frequency, before the payload's sign
    bit: np.ndarray  # payload bit index each frequency carries
    signed: np.ndarray  # phasors with the payload applied: the pattern amari embeds


@lru_cache(maxsize=1)
def _key() -> _Key:
    ky, kx = np.meshgrid(np.fft.fftfreq(TILE) * TILE, np.fft.rfftfreq(TILE) * TILE, indexing="ij")
    radius = np.hypot(kx, ky)
    # kx >= 1 keeps one of each conjugate pair; no axis frequencies (edges in photos), none at 8
    # cycles per 64 px (JPEG's block grid).
    support = (kx >= 1) & (ky != 0) & (np.abs(ky) < 8) & (kx < 8) & (radius >= _BAND[0]) & (radius <= _BAND[1])
    rows, cols = np.nonzero(support)
    if len(rows) != 2 * PAYLOAD_BITS:
        raise AssertionError(f"watermark band holds {len(rows)} frequencies, expected {2 * PAYLOAD_BITS}")
    # Phases and bit assignment from a hash rather than numpy's generators, whose streams may change.
    stream = np.frombuffer(hashlib.shake_256(_KEY_SEED).digest(8 * len(rows)), dtype="<u4").astype(np.float64)
    phasors = np.exp(2j * np.pi * stream[: len(rows)] / 2**32)
    bit = np.argsort(stream[len(rows) :], kind="stable") % PAYLOAD_BITS
    signs = np.where(payload_bits()[bit] == 1, 1.0, -1.0)
    return _Key(
        rows=rows, cols=cols, ky=ky[rows, cols], kx=kx[rows, cols], phasors=phasors, bit=bit, signed=phasors * signs
    )


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _resized(plane: np.ndarray, width: int, height: int) -> np.ndarray:
    if plane.shape == (height, width):
        return plane
    shrinking = width < plane.shape[1]
    method = Image.Resampling.LANCZOS if shrinking else Image.Resampling.BICUBIC
    return np.asarray(Image.fromarray(plane.astype(np.float32), mode="F").resize((width, height), method))


def _fold(plane: np.ndarray) -> np.ndarray:
    """Mean of all whole tiles, counted from the top-left corner."""
    rows, cols = plane.shape[0] // TILE, plane.shape[1] // TILE
    return plane[: rows * TILE, : cols * TILE].reshape(rows, TILE, cols, TILE).mean(axis=(0, 2))


def _activity(luma: np.ndarray) -> np.ndarray:
    # Local contrast hides the pattern; flat areas still get half strength so that every tile counts.
    from scipy import ndimage

    mean = ndimage.uniform_filter(luma, 7)
    variance = ndimage.uniform_filter(luma * luma, 7) - mean * mean
    return ndimage.gaussian_filter(np.clip(np.sqrt(np.maximum(variance, 0)) / 8.0, 0.5, 3.0), 2)


def _embed_tile(rgb: np.ndarray) -> np.ndarray:
    height, width = rgb.shape[:2]
    scale = min(height, width) / FRAME_SIDE
    frame_h, frame_w = round(height / scale), round(width / scale)
    luma = _luma(rgb)
    mask = _resized(_activity(luma), frame_w, frame_h)
    host = np.fft.rfft2(_fold(_resized(luma, frame_w, frame_h)))
    key = _key()
    # Each keyed frequency ends up along the key's phase with at least `aligned` amplitude, whatever
    # the photo had there: the photo's part along the key is kept when it helps, the part across it
    # is cut back to _CANCEL_TAN times the aligned amplitude.
    aligned = _STRENGTH * TILE * TILE / np.sqrt(2 * len(key.rows))
    host_at = host[key.rows, key.cols]
    along = (host_at * np.conj(key.signed)).real
    across = (host_at * np.conj(1j * key.signed)).real
    target_along = aligned + np.maximum(along, 0)
    target_across = np.clip(across, -_CANCEL_TAN * target_along, _CANCEL_TAN * target_along)
    spectrum = np.zeros_like(host)
    spectrum[key.rows, key.cols] = (target_along + 1j * target_across) * key.signed - host_at
    tile = np.fft.irfft2(spectrum, s=(TILE, TILE))
    # Dividing by the tile-folded mask keeps the fold of (mask x pattern) equal to the pattern.
    repeats = (frame_h // TILE + 1, frame_w // TILE + 1)
    folded_mask = np.tile(_fold(mask), repeats)[:frame_h, :frame_w]
    delta = np.tile(tile, repeats)[:frame_h, :frame_w] * mask / folded_mask
    delta = _resized(delta.astype(np.float32), width, height)
    marked = rgb.astype(np.float32) + delta[..., None]
    return np.clip(np.round(marked), 0, 255).astype(np.uint8)


def _scales(height: int, width: int) -> list[float]:
    """Resize factors to try: back to a 512 px short side; back to a 512 px long side (a square image
    cropped on one side, or to another aspect ratio, keeps its other side); and no resize but each
    written size a crop may come from."""
    side, long_side = min(height, width), max(height, width)
    factors = [FRAME_SIDE / side, FRAME_SIDE / long_side]
    factors += [FRAME_SIDE / written for written in WRITTEN_SIDES if 0.7 * written <= side <= written]
    unique: list[float] = []
    for factor in factors:
        if all(abs(factor / other - 1) > 0.01 for other in unique):
            unique.append(factor)
    return unique


def _tile_score(luma: np.ndarray) -> tuple[float, tuple[int, int], np.ndarray] | None:
    """z-score, shift and per-frequency agreement of the keyed pattern at its best shift."""
    if min(luma.shape) < TILE:
        return None
    key = _key()
    spectrum = np.fft.rfft2(_fold(luma))[key.rows, key.cols]
    spectrum = spectrum / (np.abs(spectrum) + 1e-9)
    product = np.zeros((TILE, TILE // 2 + 1), dtype=complex)
    product[key.rows, key.cols] = spectrum * np.conj(key.signed)
    # Each frequency adds Re(unit phasor) twice (with its conjugate): variance 2n/T^4 without a mark.
    surface = np.fft.irfft2(product, s=(TILE, TILE)) * TILE * TILE / np.sqrt(2 * len(key.rows))
    row, col = np.unravel_index(int(np.argmax(surface)), surface.shape)
    turn = np.exp(2j * np.pi * (key.ky * row + key.kx * col) / TILE)
    agreement = (spectrum * np.conj(key.phasors) * turn).real
    return float(surface[row, col]), (int(row), int(col)), agreement


def _read_tile(rgb: np.ndarray) -> WatermarkReading:
    height, width = rgb.shape[:2]
    luma = _luma(rgb)
    best = None
    for factor in _scales(height, width):
        scored = _tile_score(_resized(luma, round(width * factor), round(height * factor)))
        if scored is not None and (best is None or scored[0] > best[0][0]):
            best = (scored, factor)
    if best is None:
        return WatermarkReading(found=False, method="tile", bit_accuracy=0.0, payload=b"", score=None)
    (score, _shift, agreement), factor = best
    votes = np.bincount(_key().bit, weights=agreement, minlength=PAYLOAD_BITS)
    bits = (votes > 0).astype(np.uint8)
    return WatermarkReading(
        found=score >= TILE_THRESHOLD,
        method="tile",
        bit_accuracy=float(np.mean(bits == payload_bits())),
        payload=np.packbits(bits).tobytes(),
        score=score,
        scale=factor,
    )


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
