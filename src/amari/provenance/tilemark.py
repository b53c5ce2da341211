"""amari's watermark of version 1 ("tile"), read so that images written before the keyed tile verify.

A 64×64 tile repeated over the luma, laid out as if the image had a 512 px short side, in 80
frequencies between 2 and 8 cycles per tile; the phases come from a fixed key, the same in every
image, and the payload `amari` flips the sign of two frequencies per bit. The embedding cancelled
the photo's own content at those frequencies (folded over all tiles) and added a fixed amount along
the key, about 40 dB PSNR. The reader folds the image into one tile, whitens it and correlates with
the key at every shift, at a few scales the image's size suggests; unmarked photos peak near 4.5,
the threshold is 6.5.

It survives JPEG, resizing and cropping but not mirroring, rotation, an arbitrary rescale with a crop,
or averaging: the pattern is the same in every image, so the average of a few marked images' residuals
estimates it (which is why version 2 shifts it per image).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from amari.provenance.keyedtile import Key, keyed, luma, resized, tile_frequencies
from amari.provenance.watermark import PAYLOAD_BITS, WatermarkReading, payload_bits

TILE = 64
FRAME_SIDE = 512
WRITTEN_SIDES = (512, 768, 1024)
# z of the best shift and scale; unmarked photos reach about 4.5, a Gaussian exceeds 6.5 with p ~ 4e-11
# per shift, so ~1e-6 per image over at most 5 scales x 4,096 shifts.
THRESHOLD = 6.5
_BAND = (2.0, 7.9)  # cycles per tile: low enough to survive a half-size resize followed by JPEG 75
_STRENGTH = 1.0  # grey levels (std) of the part aligned with the key, before masking
_CANCEL_TAN = 0.5  # host content across the key is cancelled down to 0.5 x the aligned part
_KEY_SEED = b"amari watermark v1"


@lru_cache(maxsize=1)
def _key() -> Key:
    ky, kx = tile_frequencies(TILE)
    radius = np.hypot(kx, ky)
    # kx >= 1 keeps one of each conjugate pair; no axis frequencies (edges in photos), none at 8
    # cycles per 64 px (JPEG's block grid).
    support = (kx >= 1) & (ky != 0) & (np.abs(ky) < 8) & (kx < 8) & (radius >= _BAND[0]) & (radius <= _BAND[1])
    if support.sum() != 2 * PAYLOAD_BITS:
        raise AssertionError(f"watermark band holds {support.sum()} frequencies, expected {2 * PAYLOAD_BITS}")
    return keyed(support, TILE, _KEY_SEED)


def _fold(plane: np.ndarray) -> np.ndarray:
    """Mean of all whole tiles, counted from the top-left corner."""
    rows, cols = plane.shape[0] // TILE, plane.shape[1] // TILE
    return plane[: rows * TILE, : cols * TILE].reshape(rows, TILE, cols, TILE).mean(axis=(0, 2))


def _activity(plane: np.ndarray) -> np.ndarray:
    # Local contrast hides the pattern; flat areas still get half strength so that every tile counts.
    from scipy import ndimage

    mean = ndimage.uniform_filter(plane, 7)
    variance = ndimage.uniform_filter(plane * plane, 7) - mean * mean
    return ndimage.gaussian_filter(np.clip(np.sqrt(np.maximum(variance, 0)) / 8.0, 0.5, 3.0), 2)


def embed(rgb: np.ndarray) -> np.ndarray:
    """`rgb` with the version 1 mark, as amari wrote it before the keyed tile (tests and the benchmark
    make such images; amari no longer writes them)."""
    height, width = rgb.shape[:2]
    scale = min(height, width) / FRAME_SIDE
    frame_h, frame_w = round(height / scale), round(width / scale)
    plane = luma(rgb)
    mask = resized(_activity(plane), frame_w, frame_h)
    host = np.fft.rfft2(_fold(resized(plane, frame_w, frame_h)))
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
    delta = resized(delta.astype(np.float32), width, height)
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


def _tile_score(plane: np.ndarray) -> tuple[float, tuple[int, int], np.ndarray] | None:
    """z-score, shift and per-frequency agreement of the keyed pattern at its best shift."""
    if min(plane.shape) < TILE:
        return None
    key = _key()
    spectrum = np.fft.rfft2(_fold(plane))[key.rows, key.cols]
    spectrum = spectrum / (np.abs(spectrum) + 1e-9)
    product = np.zeros((TILE, TILE // 2 + 1), dtype=complex)
    product[key.rows, key.cols] = spectrum * np.conj(key.signed)
    # Each frequency adds Re(unit phasor) twice (with its conjugate): variance 2n/T^4 without a mark.
    surface = np.fft.irfft2(product, s=(TILE, TILE)) * TILE * TILE / np.sqrt(2 * len(key.rows))
    row, col = np.unravel_index(int(np.argmax(surface)), surface.shape)
    turn = np.exp(2j * np.pi * (key.ky * row + key.kx * col) / TILE)
    agreement = (spectrum * np.conj(key.phasors) * turn).real
    return float(surface[row, col]), (int(row), int(col)), agreement


def read(rgb: np.ndarray) -> WatermarkReading:
    height, width = rgb.shape[:2]
    plane = luma(rgb)
    best = None
    for factor in _scales(height, width):
        scored = _tile_score(resized(plane, round(width * factor), round(height * factor)))
        if scored is not None and (best is None or scored[0] > best[0][0]):
            best = (scored, factor)
    if best is None:
        return WatermarkReading(found=False, method="tile", bit_accuracy=0.0, payload=b"", score=None)
    (score, _shift, agreement), factor = best
    votes = np.bincount(_key().bit, weights=agreement, minlength=PAYLOAD_BITS)
    bits = (votes > 0).astype(np.uint8)
    return WatermarkReading(
        found=score >= THRESHOLD,
        method="tile",
        bit_accuracy=float(np.mean(bits == payload_bits())),
        payload=np.packbits(bits).tobytes(),
        score=score,
        scale=factor,
    )
