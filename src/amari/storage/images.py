"""Image files in, RGB arrays out: the loader every stage uses.

Real folders hold phone photos with EXIF rotation, PNGs with alpha, palette GIF-likes, CMYK scans,
16-bit TIFFs, half-copied files and things that only look like images. `load_rgb` turns the good ones
into `uint8` H×W×3 arrays and every bad one into an `ImageError` that names the file and the reason.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from amari.errors import ImageError, UsageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})

# Pillow's own default; above it an image is treated as a decompression bomb rather than decoded.
DEFAULT_MAX_PIXELS = 89_478_485

_SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N", "F"})


def is_image_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def image_files(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Image files under `folder` by extension, sorted, hidden files and folders skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(folder, "not a folder")
    found = []
    walker = os.walk(folder) if recursive else [(str(folder), [], os.listdir(folder))]
    for root, dirs, files in walker:
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(root) / f for f in files if not f.startswith(".") and is_image_path(f))
    return sorted(found)


def images_in(folder: str | os.PathLike, what: str) -> list[Path]:
    """`image_files` of a folder the user named as `what` (a group, a gallery): a folder that is missing or
    holds no image is a usage error that says so."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{what} folder not found: {folder}")
    paths = image_files(folder)
    if not paths:
        raise UsageError(f"the {what} {folder} holds no images")
    return paths


def open_image(
    data: bytes | str | os.PathLike, path: str | os.PathLike | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Open and fully decode an image, EXIF orientation applied, as a Pillow image in its own mode."""
    label = path if path is not None else (data if not isinstance(data, bytes) else "<bytes>")
    if not isinstance(data, bytes):
        try:
            data = read_bytes(data)  # a pipe is refused, not waited on
        except ImageError as exc:
            raise ImageError(label, exc.reason) from None
    source = io.BytesIO(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(source)
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(
                    label,
                    f"image is {width}x{height} = {width * height} pixels, "
                    f"more than the limit of {max_pixels} (decompression bomb?)",
                )
            image.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(label, f"too many pixels (decompression bomb?): {exc}") from None
    except FileNotFoundError:
        raise ImageError(label, "no such file") from None
    except IsADirectoryError:
        raise ImageError(label, "is a folder, not an image") from None
    except Image.UnidentifiedImageError:
        raise ImageError(label, "not an image file (or a format amari cannot read)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = str(exc) or type(exc).__name__
        if "truncated" in reason:
            reason = f"truncated or incomplete file ({reason})"
        raise ImageError(label, f"cannot decode image: {reason}") from None
    with contextlib.suppress(Exception):  # a broken EXIF block must not lose a readable image
        image = ImageOps.exif_transpose(image)
    return image


def to_rgb(image: Image.Image) -> np.ndarray:
    """Any Pillow image as a contiguous uint8 H×W×3 array; transparency is composited on white."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.float64)
        if values.max(initial=0) > 255:
            values = values / 257.0
        grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.stack([grey] * 3, axis=-1))
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        alpha = np.asarray(rgba)[..., 3]
        if alpha.min() < 255:
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            rgba = Image.alpha_composite(background, rgba)
        return np.ascontiguousarray(np.asarray(rgba.convert("RGB")))
    if mode != "RGB":
        image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(image))


def load_rgb(
    path: str | os.PathLike | bytes, max_pixels: int = DEFAULT_MAX_PIXELS, label: str | os.PathLike | None = None
) -> np.ndarray:
    """Read an image file (or its bytes) as a uint8 H×W×3 RGB array, or raise `ImageError`."""
    return to_rgb(open_image(path, path=label, max_pixels=max_pixels))


def read_bytes(path: str | os.PathLike) -> bytes:
    """A file's bytes, or `ImageError`. Only a regular file is read: a pipe, socket or device would block
    or never end, so it is refused (opened without blocking, then checked, so nothing waits on it)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ImageError(path, "no such file") from None
    except IsADirectoryError:
        raise ImageError(path, "is a folder, not an image") from None
    except OSError as exc:
        raise ImageError(path, f"cannot read file: {exc.strerror or exc}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise ImageError(path, "is a folder, not an image")
        raise ImageError(path, "is not a regular file (a pipe, socket or device), so it is not read")
    with open(fd, "rb", closefd=True) as handle:
        try:
            return handle.read()
        except OSError as exc:
            raise ImageError(path, f"cannot read file: {exc.strerror or exc}") from None


def shrink_to(image: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale so the longest side is at most `max_side` (Lanczos), as face_recognition's CLI does."""
    if max(image.shape) <= max_side:
        return image
    pil = Image.fromarray(image)
    pil.thumbnail((max_side, max_side), Image.LANCZOS)
    return np.asarray(pil)


def iter_loaded(paths, max_pixels: int = DEFAULT_MAX_PIXELS) -> Iterator[tuple[Path, np.ndarray | ImageError]]:
    """(path, array) for each readable file and (path, ImageError) for each broken one; never raises."""
    for path in paths:
        try:
            yield Path(path), load_rgb(path, max_pixels=max_pixels)
        except ImageError as exc:
            yield Path(path), exc
