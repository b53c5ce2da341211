"""What happens to an image online, as functions of a uint8 RGB array: the edits the watermark's tests and
`bench/provenance.py` put marked and unmarked photos through."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def resize(rgb: np.ndarray, factor: float, factor_y: float | None = None) -> np.ndarray:
    """Scaled by `factor` (and `factor_y` vertically, when given: an aspect change), Lanczos."""
    height, width = rgb.shape[:2]
    size = (round(width * factor), round(height * (factor if factor_y is None else factor_y)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))


def crop(rgb: np.ndarray, left: float, top: float, right: float, bottom: float) -> np.ndarray:
    """Cut these shares of the width or height off each side."""
    height, width = rgb.shape[:2]
    return rgb[round(top * height) : round((1 - bottom) * height), round(left * width) : round((1 - right) * width)]


def centre_crop(rgb: np.ndarray, keep: float) -> np.ndarray:
    """The centre, keeping `keep` of each side."""
    cut = (1 - keep) / 2
    return crop(rgb, cut, cut, cut, cut)


def mirror(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb[:, ::-1])


def rotate(rgb: np.ndarray, degrees: float) -> np.ndarray:
    """Turned counter-clockwise about the centre, in the same frame (the corners turned out are lost,
    those turned in are black)."""
    return np.asarray(Image.fromarray(rgb).rotate(degrees, Image.Resampling.BICUBIC))


def screenshot(
    rgb: np.ndarray,
    scale: float = 0.6,
    canvas: tuple[int, int] = (1080, 1920),
    at: tuple[int, int] = (150, 620),
    colour: tuple[int, int, int] = (236, 236, 236),
) -> np.ndarray:
    """The image shown at `scale` on a flat page of `canvas` (height, width) pixels, its top-left corner `at`."""
    page = np.empty((*canvas, 3), dtype=np.uint8)
    page[:] = colour
    shown = resize(rgb, scale)
    page[at[0] : at[0] + shown.shape[0], at[1] : at[1] + shown.shape[1]] = shown
    return page


def residual(rgb: np.ndarray) -> np.ndarray:
    """The wide high-pass residual (the image minus a Gaussian blur of 4 px), float, per channel: what an
    attacker averages over marked images to estimate a watermark without its key."""
    from scipy import ndimage

    pixels = rgb.astype(np.float32)
    return pixels - ndimage.gaussian_filter(pixels, (4, 4, 0))


def averaged_residual(images: list[np.ndarray]) -> np.ndarray:
    return np.mean([residual(image) for image in images], axis=0)


def add(rgb: np.ndarray, pattern: np.ndarray, gain: float = 1.0) -> np.ndarray:
    """`rgb` plus `gain` times `pattern` (negative: subtracted), rounded back to uint8."""
    return np.clip(np.round(rgb.astype(np.float32) + gain * pattern), 0, 255).astype(np.uint8)
