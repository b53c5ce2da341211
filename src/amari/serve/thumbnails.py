"""Thumbnails made once per image and side, kept in the cache folder (never beside the images).

A thumbnail is named after the image's name, size and modification time: a move keeps all three (the
thumbnail follows the image from folder to folder), an edit changes them (a new one is made).
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

from amari.storage.files import write_atomic

QUALITY = 88


class Thumbnails:
    def __init__(self, folder: Path, side: int):
        self.folder, self.side = Path(folder), side

    def path_for(self, image: Path) -> Path:
        info = os.stat(image)
        key = hashlib.sha256(f"{image.name}\0{info.st_size}\0{info.st_mtime_ns}\0{self.side}".encode()).hexdigest()
        return self.folder / key[:2] / f"{key[2:34]}.jpg"

    def get(self, image: Path) -> Path | None:
        """The thumbnail of `image`, made now if it is not there yet; None when the image cannot be read."""
        path = self.path_for(image)
        if path.is_file():
            return path
        data = self._make(image)
        if data is None:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_atomic(path, data)

    def _make(self, image: Path) -> bytes | None:
        from PIL import Image, ImageOps, UnidentifiedImageError

        try:
            with Image.open(image) as opened:
                opened.draft("RGB", (self.side, self.side))  # JPEG decodes at a fraction of its size
                picture = ImageOps.exif_transpose(opened).convert("RGB")
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError):
            return None
        picture.thumbnail((self.side, self.side), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=QUALITY)
        return buffer.getvalue()
