"""A group of face images as one thing: each image's face, and how far another face is from them.

`FaceGroup.load` finds every image's face once (through the descriptor cache) and keeps the images
that have one; `score` is the study's sim-score, the mean distance of a face to every member. The
miner's sim-group, `amari score --group`, the reference group of training, the sim-group evaluation
scores against, `amari select` and the known people of `amari compare` are all a FaceGroup.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from amari.errors import ImageError, UsageError
from amari.faces import descriptors as face_lib
from amari.faces.descriptors import DESCRIPTOR_SIZE, Face
from amari.faces.embeddings import FaceEncoder
from amari.storage.images import images_in

NO_FACE = "no face found"


@dataclass(frozen=True)
class Member:
    path: Path
    face: Face  # the face that stands for the image (its largest, or its first for `compare`)
    faces: int  # how many faces the image holds


@dataclass(frozen=True)
class ImageScore:
    """One image against a group: its faces, the face scored, and the sim-score (None: no face)."""

    path: Path
    faces: int
    face: Face | None = None
    score: float | None = None
    error: str | None = None  # the image could not be read


def largest(found: list[Face]) -> Face | None:
    return face_lib.largest(found)


def first(found: list[Face]) -> Face | None:
    """face_recognition's choice for a known person's image: the first face the detector reports."""
    return found[0] if found else None


@dataclass
class FaceGroup:
    members: list[Member] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (image, why it is not a member)

    @classmethod
    def load(
        cls,
        paths: Iterable[str | Path],
        encoder: FaceEncoder,
        cpus: int = 1,
        pick: Callable[[list[Face]], Face | None] = largest,
        on_progress: Callable[[Path], None] | None = None,
    ) -> FaceGroup:
        group = cls()
        for path, found in encoder.faces_many(paths, cpus=cpus, on_progress=on_progress).items():
            if isinstance(found, ImageError):
                group.skipped.append((path, found.reason))
                continue
            face = pick(found)
            if face is None:
                group.skipped.append((path, NO_FACE))
            else:
                group.members.append(Member(path, face, len(found)))
        return group

    @classmethod
    def from_folder(
        cls,
        folder: str | Path,
        encoder: FaceEncoder,
        what: str = "group",
        cpus: int = 1,
        on_progress: Callable[[Path], None] | None = None,
    ) -> FaceGroup:
        """Every image under `folder`; a folder that is missing, empty or without a face is an error."""
        folder = Path(folder)
        paths = images_in(folder, what)
        group = cls.load(paths, encoder, cpus=cpus, on_progress=on_progress)
        if not group:
            raise UsageError(f"no face found in any image of the {what} {folder}")
        return group

    def __len__(self) -> int:
        return len(self.members)

    @property
    def paths(self) -> list[Path]:
        return [m.path for m in self.members]

    @property
    def descriptors(self) -> np.ndarray:
        return np.array([m.face.descriptor for m in self.members]).reshape(-1, DESCRIPTOR_SIZE)

    def score(self, descriptor: np.ndarray) -> float:
        """The sim-score: mean distance from one face to every member."""
        return face_lib.sim_score(descriptor, self.descriptors)

    def self_scores(self) -> np.ndarray:
        """Each member's mean distance to every member, itself included (the miner's group analysis)."""
        return face_lib.distance_matrix(self.descriptors).mean(axis=1)

    def score_found(self, path: Path, found: list[Face] | ImageError) -> ImageScore:
        if isinstance(found, ImageError):
            return ImageScore(Path(path), 0, error=found.reason)
        face = largest(found)
        score = None if face is None else self.score(face.descriptor)
        return ImageScore(Path(path), len(found), face, score)

    def score_file(self, path: str | Path, encoder: FaceEncoder) -> ImageScore:
        """The largest face of one image file against the group (raises ImageError)."""
        return self.score_found(Path(path), encoder.faces(path))

    def score_files(
        self,
        paths: Iterable[str | Path],
        encoder: FaceEncoder,
        cpus: int = 1,
        on_progress: Callable[[Path], None] | None = None,
    ) -> list[ImageScore]:
        """Every image's score; unreadable ones carry their error instead of raising."""
        found = encoder.faces_many(paths, cpus=cpus, on_progress=on_progress)
        return [self.score_found(path, result) for path, result in found.items()]
