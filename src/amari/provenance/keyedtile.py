"""amari's watermark since version 2 ("tile2"): a keyed tile, shifted per image, that leaves faces alone.

The pattern is a 128×128 tile repeated over the luma, laid out as if the image had a 512 px short
side (at its own size when it is smaller). It lives in the 1,002 frequencies of the tile between 8 and
28 cycles per tile (periods of 4.6 to 16 px at 512), off the axes and off JPEG's 8-pixel grid; their
phases come from a fixed key, and the 40-bit payload `amari` flips the sign of 25 of them per bit.

- **Per image**, the tile is shifted (one of 16,384 shifts) to where the photo already agrees with it
  best, so the mark costs least there and differs between images: an average of other images'
  residuals holds each of their shifts at a tenth of its strength and no single pattern to subtract
  or to add to another photo. A superposition of shifted patterns, which such an average is, is
  refused by the reader (`SECOND_LIMIT`).
- **Energy**: an activity mask (local contrast) puts more of it into texture than into flat skin or
  sky, nothing goes into face zones (`amari.provenance.facezones`), and the strength is set so that
  every image ends at `TARGET_PSNR` dB, never more than `MAX_STRENGTH` grey levels before the mask.
- **Reading** (`amari.provenance.marksearch`) normalises the luma's high frequencies by their local
  contrast, so that edges do not drown the pattern, and samples the image's spectrum where the key's
  frequencies land under a candidate geometry (scale, aspect, rotation, mirror); one inverse FFT of
  the tile then scores every shift at once. The score is a z-value.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

TILE = 128
FRAME_SIDE = 512
TARGET_PSNR = 39.0  # dB: every image at least 38 after rounding, whatever its content
MAX_STRENGTH = 3.0  # grey levels (std of the tile) before the activity mask
# Where faces leave less than this share of the image, the faces carry a faint mark too (pixels change
# by a level or two, about 51 dB there): their descriptors move by about 0.03, less than a JPEG 90's.
MIN_FREE_SHARE = 0.2
FACE_STRENGTH = 0.8
# z at the best geometry and shift. Over everything the reader tries (about 2 million shifts x
# geometries x orientations, some 10^5 of them independent) unmarked photos peak at 4.9 on average,
# 6.1 at most in 386 random crops, rescales and JPEGs of 60 photos and textures (6.3 once, for a brick
# wall pasted on a canvas); a Gaussian passes 7.5 with p ~ 3e-14 per test.
THRESHOLD = 7.5
# A second pattern at another shift this strong means several shifted copies were added together:
# what averaging other images' residuals makes, never what amari writes.
SECOND_LIMIT = 6.0
SECOND_SHARE = 0.5  # ... or this share of the best, whichever is higher
_BAND = (8.0, 28.0)  # cycles per tile
_GRID_CYCLES = TILE // 8  # JPEG's 8 px blocks at the frame's scale
_KEY_SEED = b"amari watermark v2"


@dataclass(frozen=True)
class Key:
    size: int  # the tile's side, pixels of the frame
    rows: np.ndarray  # rfft2 row of each keyed frequency in the tile
    cols: np.ndarray
    ky: np.ndarray  # signed frequencies, cycles per tile
    kx: np.ndarray
    phasors: np.ndarray  # unit complex per frequency, before the payload's sign
    bit: np.ndarray  # the payload bit each frequency carries
    signed: np.ndarray  # phasors with the payload applied: the pattern amari embeds

    @functools.cached_property
    def cycles(self) -> np.ndarray:
        """(n, 2) frequencies (y, x) in cycles per frame pixel."""
        return (np.stack([self.ky, self.kx], axis=-1) / self.size).astype(np.float32)


def tile_frequencies(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(ky, kx): the signed frequencies, in cycles per tile, of each bin of a size × size tile's rfft2."""
    return np.meshgrid(np.fft.fftfreq(size) * size, np.fft.rfftfreq(size) * size, indexing="ij")


def keyed(support: np.ndarray, size: int, seed: bytes) -> Key:
    """The key over the frequencies where `support` (a size × size tile's rfft2 mask) is set: phases and
    the payload bit of each from a hash of `seed`, rather than numpy's generators, whose streams may
    change."""
    from amari.provenance.watermark import PAYLOAD_BITS, payload_bits

    ky, kx = tile_frequencies(size)
    rows, cols = np.nonzero(support)
    stream = np.frombuffer(hashlib.shake_256(seed).digest(8 * len(rows)), dtype="<u4").astype(np.float64)
    phasors = np.exp(2j * np.pi * stream[: len(rows)] / 2**32)
    bit = np.argsort(stream[len(rows) :], kind="stable") % PAYLOAD_BITS
    signs = np.where(payload_bits()[bit] == 1, 1.0, -1.0)
    return Key(size, rows, cols, ky[rows, cols], kx[rows, cols], phasors, bit, phasors * signs)


@lru_cache(maxsize=1)
def key() -> Key:
    ky, kx = tile_frequencies(TILE)
    radius = np.hypot(kx, ky)
    support = (kx >= 1) & (ky != 0) & (radius >= _BAND[0]) & (radius <= _BAND[1])
    support &= (kx % _GRID_CYCLES != 0) & (ky % _GRID_CYCLES != 0)
    return keyed(support, TILE, _KEY_SEED)


def frame_scale(height: int, width: int) -> float:
    return max(1.0, min(height, width) / FRAME_SIDE)


def luma(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def resized(plane: np.ndarray, width: int, height: int) -> np.ndarray:
    if plane.shape == (height, width):
        return plane
    from PIL import Image

    shrinking = width < plane.shape[1]
    method = Image.Resampling.LANCZOS if shrinking else Image.Resampling.BICUBIC
    return np.asarray(Image.fromarray(plane.astype(np.float32), mode="F").resize((width, height), method))


def residual(plane: np.ndarray) -> np.ndarray:
    """The luma's detail divided by its local contrast: the mark follows the contrast (the activity
    mask), so this evens out the pattern's share everywhere and keeps strong edges from dominating."""
    detail = plane - box_mean(plane, 17)
    return detail / (np.sqrt(np.maximum(box_mean(detail * detail, 17), 0)) + 2.0)


def box_mean(plane: np.ndarray, size: int) -> np.ndarray:
    """The mean over a size × size window (edges mirrored), as scipy's uniform_filter but five times
    faster: the reader and the embedding run several on every image."""
    import cv2

    return cv2.blur(plane, (size, size), borderType=cv2.BORDER_REFLECT)


def surfaces(samples: np.ndarray, every: int = 1) -> np.ndarray:
    """z of the keyed pattern at every shift of the tile (or every `every`-th shift each way: a quarter
    of the work for every 2nd, a screen the best shift is at most a pixel from), for (..., n) spectrum
    samples at the key's frequencies; only their phases count (whitening)."""
    from scipy import fft

    found = key()
    size = TILE // every
    unit = samples / (np.abs(samples) + 1e-12)
    grid = np.zeros((*samples.shape[:-1], size, size // 2 + 1), dtype=np.complex64)
    # At every `every`-th shift, frequency k turns like k mod size: the key's rows fold (its columns
    # are all below size / 2, so nothing lands on another frequency).
    grid[..., found.rows % size, found.cols] = unit * np.conj(found.signed)
    # Each frequency adds Re(unit phasor) twice (with its conjugate): variance 2n/T^4 without a mark.
    return fft.irfft2(grid, s=(size, size), workers=1) * (size * size / np.sqrt(2 * len(found.rows)))


def payload(samples: np.ndarray, shift: tuple[int, int]) -> np.ndarray:
    """The 40 payload bits read at `shift` from (n,) spectrum samples."""
    from amari.provenance.watermark import PAYLOAD_BITS

    found = key()
    turn = np.exp(2j * np.pi * (found.ky * shift[0] + found.kx * shift[1]) / TILE)
    agreement = (samples / (np.abs(samples) + 1e-12) * np.conj(found.phasors) * turn).real
    votes = np.bincount(found.bit, weights=agreement, minlength=PAYLOAD_BITS)
    return (votes > 0).astype(np.uint8)


def _fold(plane: np.ndarray) -> np.ndarray:
    rows, cols = plane.shape[0] // TILE, plane.shape[1] // TILE
    return plane[: rows * TILE, : cols * TILE].reshape(rows, TILE, cols, TILE).mean(axis=(0, 2))


def activity(plane: np.ndarray) -> np.ndarray:
    # Local contrast hides the pattern; flat areas still get half strength so that every tile counts.
    import cv2

    mean = box_mean(plane, 7)
    variance = box_mean(plane * plane, 7) - mean * mean
    contrast = np.clip(np.sqrt(np.maximum(variance, 0)) / 8.0, 0.5, 3.0)
    return cv2.GaussianBlur(contrast, (0, 0), 2, borderType=cv2.BORDER_REFLECT)


def host_shift(frame_luma: np.ndarray) -> tuple[int, int]:
    """The shift at which the photo (at the frame's scale) already agrees best with the key."""
    found = key()
    spectrum = np.fft.rfft2(_fold(residual(frame_luma)))[found.rows, found.cols]
    surface = surfaces(spectrum)
    row, col = np.unravel_index(int(np.argmax(surface)), surface.shape)
    return int(row), int(col)


def tile(shift: tuple[int, int]) -> np.ndarray:
    """The keyed tile moved by `shift` (rows, columns), with unit standard deviation."""
    found = key()
    spectrum = np.zeros((TILE, TILE // 2 + 1), dtype=np.complex128)
    spectrum[found.rows, found.cols] = found.signed * np.exp(
        -2j * np.pi * (found.ky * shift[0] + found.kx * shift[1]) / TILE
    )
    pattern = np.fft.irfft2(spectrum, s=(TILE, TILE))
    return (pattern / pattern.std()).astype(np.float32)


def embed(rgb: np.ndarray, zones: np.ndarray) -> np.ndarray:
    """`rgb` with the mark, none of it where `zones` is True (`amari.provenance.facezones`)."""
    from amari.provenance import facezones

    height, width = rgb.shape[:2]
    scale = frame_scale(height, width)
    frame_h, frame_w = round(height / scale), round(width / scale)
    plane = luma(rgb)
    shift = host_shift(resized(plane, frame_w, frame_h))
    repeats = (frame_h // TILE + 1, frame_w // TILE + 1)
    pattern = resized(np.tile(tile(shift), repeats)[:frame_h, :frame_w], width, height) * activity(plane)
    outside = facezones.weight(zones)
    delta = pattern * outside
    energy = float(np.mean(delta.astype(np.float64) ** 2))
    target = 255.0**2 / 10 ** (TARGET_PSNR / 10)
    delta *= min(np.sqrt(target / energy), MAX_STRENGTH) if energy > 0 else 0.0
    if outside.mean() < MIN_FREE_SHARE:  # faces fill the frame: a faint mark over them too
        delta += pattern * (1 - outside) * FACE_STRENGTH
    marked = rgb.astype(np.float32) + delta[..., None]
    return np.clip(np.round(marked), 0, 255).astype(np.uint8)
