"""A face and its surroundings cut from an image: what a face IP-Adapter is given as a picture of someone."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from amari.faces.descriptors import Face, largest
from amari.faces.settings import FaceSettings
from amari.storage.images import load_rgb, shrink_to

SQUARE_SIDE = 2.0  # a crop's side in face-box sides: the face, hair and neck, as face adapters were trained


def face_square(image: np.ndarray, box: tuple[int, int, int, int], side: float = SQUARE_SIDE) -> np.ndarray:
    """A square around the face, `side` times its box, cut to the image."""
    top, right, bottom, left = box
    half = max(bottom - top, right - left) * side / 2
    cy, cx = (top + bottom) / 2, (left + right) / 2
    y0, y1 = max(0, int(cy - half)), min(image.shape[0], int(cy + half))
    x0, x1 = max(0, int(cx - half)), min(image.shape[1], int(cx + half))
    return image[y0:y1, x0:x1]


def face_crop(path: str | Path, faces: list[Face], settings: FaceSettings) -> np.ndarray:
    """The largest of an image file's `faces` (found with `settings`) with its surroundings; the whole
    image when it has none. Raises ImageError for a file that cannot be read."""
    image = load_rgb(path)
    if settings.max_side:  # the boxes were found on the shrunk image
        image = shrink_to(image, settings.max_side)
    face = largest(faces)
    return face_square(image, face.box) if face is not None else image
