"""Where a file lands in the workspace: its name in a folder (almost-sim names carry the bound they
failed), never clashing with a file or a row already there, and copies made whole or not at all."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np

from amari.storage.files import NAME_BYTES, fit_name
from amari.storage.layout import is_almost_folder

_BOUND_TAG = re.compile(r"_hi\d\.\d{4}$")


class NamePlanner:
    """File names for files arriving in a folder: the source's name, a tag on almost-sim, no clashes.

    A name is free when no file holds it and no image of the database does (its file may not be there
    yet; names given out earlier in the transaction are rows already): two look-ups, however full the folder.
    """

    def __init__(self, workspace):
        self.workspace = workspace

    def reserve(self, folder: str, name: str, bound: float | None) -> str:
        stem, suffix = os.path.splitext(tagged_name(name, folder, bound))
        candidate, i = stem + suffix, 1
        while os.path.lexists(self.workspace.root / folder / candidate) or self.workspace.name_taken(folder, candidate):
            candidate, i = f"{stem}-{i}{suffix}", i + 1
        return candidate


def tagged_name(name: str, folder: str, bound: float | None) -> str:
    """almost-sim names end in the bound the image failed (photo_hi0.4123.png); elsewhere the tag goes.
    A name too long for the tag (or for a file system) is cut short first (`fit_name`)."""
    stem, suffix = os.path.splitext(name)
    stem = _BOUND_TAG.sub("", stem)
    tag = ""
    if is_almost_folder(folder) and bound is not None and np.isfinite(bound):
        tag = f"_hi{min(bound, 9.9999):.4f}"
    stem, suffix = os.path.splitext(fit_name(stem + suffix, NAME_BYTES - len(tag)))
    return stem + tag + suffix


def copy_once(src: Path, dst: Path) -> bool:
    """Copy src to dst; False when it did not go as the journal planned."""
    if not src.exists():
        return False  # the original went away before the copy: the next reconcile records the loss
    if dst.exists() and dst.stat().st_size == src.stat().st_size:
        return True
    partial = dst.with_name(f".{dst.name}.part")
    shutil.copy2(src, partial)
    os.replace(partial, dst)
    return True
