"""The galleries: each folder's images as they are on disk, with the numbers the miner judges by.

The files on disk are the truth of where an image is (the user may have moved it since the miner last
looked); the miner's database, read-only, gives each file its face descriptor, matched by folder and
name, or by name and size for a file moved since (a move keeps both). From the descriptors of the
images in the group folder now:

- an image's sim-score is its mean distance to every member, itself included for a member (as the
  miner's group analysis computes it: the member's own distance, 0, counts);
- its distance to the group's centroid (the mean descriptor);
- its nearest members (itself left out), with their distances.

The numbers are computed once per change of the database or of a folder, and kept.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np

from amari.faces.descriptors import distance_matrix
from amari.mine import WorkspaceView
from amari.storage.images import IMAGE_EXTENSIONS
from amari.storage.layout import SIM_GROUP, TRASH, WorkspaceLayout

NEAREST = 3  # members shown as an image's nearest


@dataclass(frozen=True)
class Tile:
    """One image of a gallery."""

    folder: str  # where it is, relative to the workspace ('/'-separated; trash/FOLDER in the trash)
    name: str
    score: float | None = None  # sim-score against the group as it is now (None: no face, or not judged)
    centroid: float | None = None  # distance to the group's mean descriptor
    nearest: tuple[tuple[str, float], ...] = ()  # the closest members, (name, distance)
    faces: int | None = None  # faces the miner found (None: not judged yet, or unreadable)
    judged: bool = False  # the miner has seen this file

    @property
    def path(self) -> str:
        return f"{self.folder}/{self.name}"

    def as_json(self) -> dict:
        return {
            "name": self.name,
            "folder": self.folder,
            "score": self.score,
            "centroid_distance": self.centroid,
            "nearest": [{"name": name, "distance": distance} for name, distance in self.nearest],
            "faces": self.faces,
            "judged": self.judged,
        }


@dataclass(frozen=True)
class Scored:
    """Every folder's tiles at one moment, best score first."""

    tiles: dict[str, list[Tile]]
    group_size: int  # images in the group folder now
    group_faces: int  # of which the miner found a face in


def image_names(folder: os.PathLike) -> dict[str, os.stat_result]:
    """The image files a person sees in a folder (regular files, not hidden, not links), with their stat."""
    found = {}
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return {}
    for entry in entries:
        if entry.name.startswith(".") or os.path.splitext(entry.name)[1].lower() not in IMAGE_EXTENSIONS:
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                found[entry.name] = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
    return found


def trash_folders(layout: WorkspaceLayout) -> list[str]:
    """trash/FOLDER for each folder the trash holds images of."""
    try:
        names = sorted(entry.name for entry in os.scandir(layout.trash) if entry.is_dir(follow_symlinks=False))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [f"{TRASH}/{name}" for name in names if not name.startswith(".")]


class Galleries:
    """The workspace's folders as galleries; `scored()` is recomputed only after something changed."""

    def __init__(self, layout: WorkspaceLayout, view: WorkspaceView):
        self.layout, self.view = layout, view
        self._lock = threading.Lock()
        self._kept: tuple[tuple, Scored] | None = None

    @property
    def folders(self) -> tuple[str, ...]:
        return self.layout.judged_folders()

    def version(self) -> tuple:
        """Changes when the database or any folder (the trash's included) changes."""
        times = []
        for folder in (*self.folders, TRASH, *trash_folders(self.layout)):
            try:
                times.append((folder, os.stat(self.layout.root / folder).st_mtime_ns))
            except OSError:
                times.append((folder, 0))
        return (self.view.version(), tuple(times))

    def scored(self) -> Scored:
        version = self.version()
        with self._lock:
            if self._kept is None or self._kept[0] != version:
                self._kept = (version, self._score())
            return self._kept[1]

    def tiles(self, folder: str) -> list[Tile]:
        return self.scored().tiles.get(folder, [])

    def _score(self) -> Scored:
        listed = {folder: image_names(self.layout.root / folder) for folder in (*self.folders, *self._trash())}
        rows = self.view.images()
        by_place = {(row.folder, row.name): row for row in rows}
        by_name = {(row.name, row.size): row for row in rows}
        placed: dict[str, list[tuple[str, object]]] = {}
        for folder, files in listed.items():
            found = []
            for name, info in files.items():
                row = by_place.get((folder, name))
                if row is None or row.size != info.st_size:
                    row = by_name.get((name, info.st_size))  # moved since the miner looked
                found.append((name, row))
            placed[folder] = found

        members = [(name, row.descriptor) for name, row in placed.get(SIM_GROUP, []) if _face(row)]
        group = np.array([d for _, d in members]) if members else None
        centroid = group.mean(axis=0) if members else None
        member_index = {name: j for j, (name, _) in enumerate(members)}
        tiles = {}
        for folder, found in placed.items():
            faced = [(name, row) for name, row in found if _face(row)]
            numbers = {}
            if faced and members:
                distances = distance_matrix(np.array([row.descriptor for _, row in faced]), group)
                for (name, row), row_distances in zip(faced, distances):
                    own = member_index.get(name) if folder == SIM_GROUP else None
                    order = [j for j in np.argsort(row_distances, kind="stable") if j != own][:NEAREST]
                    numbers[name] = (
                        float(row_distances.mean()),
                        float(np.linalg.norm(row.descriptor - centroid)),
                        tuple((members[j][0], float(row_distances[j])) for j in order),
                    )
            folder_tiles = []
            for name, row in found:
                score, to_centroid, nearest = numbers.get(name, (None, None, ()))
                faces = row.n_faces if row is not None else None
                folder_tiles.append(Tile(folder, name, score, to_centroid, nearest, faces, row is not None))
            folder_tiles.sort(key=lambda t: (t.score is None, t.score if t.score is not None else 0.0, t.name))
            tiles[folder] = folder_tiles
        return Scored(tiles, len(listed.get(SIM_GROUP, {})), len(members))

    def _trash(self) -> list[str]:
        return trash_folders(self.layout)


def _face(row) -> bool:
    return row is not None and row.descriptor is not None
