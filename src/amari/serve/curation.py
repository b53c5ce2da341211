"""Curation from the browser: exactly what a person does with a file manager, and nothing more.

A move is one rename of the file within the workspace (name, size and time unchanged), as a file
manager's move is: the miner's next pass over the folders (`amari mine`'s curation) sees it and
records it as the user's decision, whether the miner runs now or later. The database is never written
here: it stays the miner's.

Deleting moves the file to WORKSPACE/trash/FOLDER/, outside the folders the miner looks at, so to the
miner it is a deletion (remembered, never mined again); restoring moves it back to FOLDER, which the
miner records as the user's restore. Emptying the trash deletes its files for good.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from amari.errors import UsageError
from amari.serve.gallery import image_names, trash_folders
from amari.serve.security import PathRefused, plain_name, regular_file_inside
from amari.storage.files import free_name
from amari.storage.images import IMAGE_EXTENSIONS
from amari.storage.layout import TRASH, WorkspaceLayout


class Refused(UsageError):
    """A curation request that cannot be done; `status` is the HTTP status that says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Moved:
    name: str  # the name it had
    source: str  # the folder it left
    to: str  # the folder it is in now (trash/FOLDER for a deletion)
    new_name: str  # its name there (a deletion into a trash that holds the name gets -1, -2, ...)

    def as_json(self) -> dict:
        return {"name": self.name, "from": self.source, "to": self.to, "new_name": self.new_name}


class Curator:
    def __init__(self, layout: WorkspaceLayout):
        self.layout = layout

    @property
    def folders(self) -> tuple[str, ...]:
        return self.layout.judged_folders()

    def _file(self, folder: str, name: str) -> Path:
        try:
            if os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
                raise PathRefused(name)
            return regular_file_inside(self.layout.root, [*folder.split("/"), plain_name(name)])
        except PathRefused:
            raise Refused(404, f"{folder}/{name} is not an image of the workspace") from None

    def locate(self, name: str, folder: str | None = None) -> str:
        """The folder that holds `name`: `folder` when given, else the one folder that has it."""
        plain = _plain(name)
        if folder is not None:
            if folder not in self.folders:
                raise Refused(400, f"unknown folder {folder!r}; folders: {', '.join(self.folders)}")
            return folder
        holding = [f for f in self.folders if plain in image_names(self.layout.root / f)]
        if not holding:
            raise Refused(404, f"no folder holds {name}")
        if len(holding) > 1:
            raise Refused(409, f'{name} is in {" and ".join(holding)}: say which with "from"')
        return holding[0]

    def move(self, name: str, to: str, source: str | None = None) -> Moved:
        """Move an image to another folder, or to the trash (`to` = "trash")."""
        source = self.locate(name, source)
        if to != TRASH and to not in self.folders:
            raise Refused(400, f"unknown folder {to!r}; folders: {', '.join(self.folders)} or {TRASH}")
        if to == source:
            raise Refused(400, f"{name} is already in {source}")
        src = self._file(source, name)
        if to == TRASH:
            bin_folder = self.layout.trash / source
            bin_folder.mkdir(parents=True, exist_ok=True)
            return self._rename(src, free_name(bin_folder, name), name, source, f"{TRASH}/{source}")
        return self._rename(src, self.layout.root / to / name, name, source, to)

    def restore(self, name: str, source: str) -> Moved:
        """Put an image from the trash (`source` = trash/FOLDER) back into FOLDER."""
        if source not in trash_folders(self.layout):
            raise Refused(404, f"the trash holds nothing from {source!r}")
        to = source.split("/", 1)[1]
        if to not in self.folders:
            raise Refused(400, f"{to!r} is not a folder of the workspace; move the file by hand")
        src = self._file(source, name)
        return self._rename(src, self.layout.root / to / name, name, source, to)

    def empty_trash(self) -> int:
        """Delete every image in the trash for good; returns how many."""
        removed = 0
        for folder in trash_folders(self.layout):
            for name in image_names(self.layout.root / folder):
                (self.layout.root / folder / name).unlink(missing_ok=True)
                removed += 1
            with contextlib.suppress(OSError):  # something else is in it: the user's, left alone
                (self.layout.root / folder).rmdir()
        return removed

    def _rename(self, src: Path, dst: Path, name: str, source: str, to: str) -> Moved:
        dst.parent.mkdir(exist_ok=True)
        if os.path.lexists(dst):
            raise Refused(409, f"{to}/{dst.name} exists; move or rename it first")
        try:
            os.rename(src, dst)  # one rename, as a file manager's move within one disk
        except FileNotFoundError:
            raise Refused(404, f"{source}/{name} is gone (moved by someone else?)") from None
        return Moved(name, source, to, dst.name)


def _plain(name: str) -> str:
    try:
        return plain_name(name)
    except PathRefused:
        raise Refused(400, f"not a file name: {name!r}") from None
