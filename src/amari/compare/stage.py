"""`amari compare`: the face_recognition command-line tool's comparison, with amari's cache.

Output is line-for-line what `face_recognition KNOWN UNKNOWN` prints: `path,name[,distance]` for each
known person within tolerance, `path,unknown_person` when a face matches nobody, `path,no_persons_found`
when an image has no face, the path spelled as face_recognition spells it (the folder as given joined
with the file's name, so `./unknown/` gives `./unknown/x.png`). Known people are named by file stem;
only the first face of a known image counts (as in face_recognition). Unknown images larger than
1600 px are shrunk first, as there. Broken files are reported on stderr and skipped instead of ending
the run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amari.compare.config import CompareConfig
from amari.errors import ImageError, UsageError
from amari.faces.descriptors import face_distance
from amari.faces.embeddings import EmbeddingCache, FaceEncoder
from amari.faces.group import NO_FACE, FaceGroup, first
from amari.progress import warn
from amari.storage.images import image_files

UNKNOWN_MAX_SIDE = 1600


@dataclass(frozen=True)
class KnownPeople:
    names: list[str]
    descriptors: np.ndarray


def _encoders(config: CompareConfig) -> tuple[FaceEncoder, FaceEncoder]:
    cache = EmbeddingCache() if config.use_cache else None
    return (FaceEncoder(config.faces, cache), FaceEncoder(config.faces.replace(max_side=UNKNOWN_MAX_SIDE), cache))


def as_given(path: Path, folder: str | os.PathLike) -> str:
    """A file found under `folder`, spelled as face_recognition spells it: the folder exactly as the user
    gave it (`./unknown/`, which pathlib would shorten to `unknown`) joined with the file's own path."""
    return os.path.join(os.fspath(folder), path.relative_to(Path(folder)).as_posix())


def scan_known(
    folder: str | os.PathLike, encoder: FaceEncoder, cpus: int = 1, warn: Callable[[str], None] = warn
) -> KnownPeople:
    """One person per image, named by its file stem: the image's first face, as face_recognition does."""
    group = FaceGroup.load(image_files(folder), encoder, cpus=cpus, pick=first)
    for path, why in group.skipped:
        shown = as_given(Path(path), folder)
        warn(
            f"No faces found in {shown}. Ignoring file."
            if why == NO_FACE
            else f"cannot read {shown}: {why}. Ignoring file."
        )
    for member in group.members:
        if member.faces > 1:
            warn(f"More than one face found in {as_given(member.path, folder)}. Only considering the first face.")
    return KnownPeople([m.path.stem for m in group.members], group.descriptors)


def csv_field(value) -> str:
    """A value as CSV writes it: quoted only when it holds a comma, a quote or a line break, so lines for
    ordinary file names are byte for byte what face_recognition prints."""
    text = str(value)
    if any(char in text for char in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _line(path, name, distance, show_distance: bool) -> str:
    fields = [csv_field(path), csv_field(name)] + ([str(distance)] if show_distance else [])
    return ",".join(fields)


def result_lines(path: str | Path, faces, known: KnownPeople, config: CompareConfig) -> Iterator[str]:
    for face in faces:
        distances = face_distance(known.descriptors, face.descriptor)
        matches = [(n, d) for n, d in zip(known.names, distances) if d <= config.tolerance]
        if matches:
            for name, distance in matches:
                yield _line(path, name, distance, config.show_distance)
        else:
            yield _line(path, "unknown_person", None, config.show_distance)
    if not faces:
        yield _line(path, "no_persons_found", None, config.show_distance)


def run(
    config: CompareConfig,
    known_dir: str | Path,
    unknown: str | Path,
    emit: Callable[[str], None] = print,
    warn: Callable[[str], None] = warn,
) -> int:
    """Compare every face in `unknown` (a file or folder) with the people in `known_dir`.

    Returns the number of unknown files that could not be read.
    """
    if not Path(known_dir).is_dir():
        raise UsageError(f"known people folder not found: {known_dir}")
    if not Path(unknown).exists():
        raise UsageError(f"no such file or folder: {unknown}")
    known_encoder, unknown_encoder = _encoders(config)
    known = scan_known(known_dir, known_encoder, config.cpus, warn)
    folder = Path(unknown).is_dir()
    targets = image_files(unknown) if folder else [Path(unknown)]
    unreadable = 0
    for path, found in unknown_encoder.faces_many(targets, cpus=config.cpus).items():
        shown = as_given(path, unknown) if folder else os.fspath(unknown)
        if isinstance(found, ImageError):
            if not folder:
                raise found
            warn(f"cannot read {shown}: {found.reason}. Skipped.")
            unreadable += 1
            continue
        for line in result_lines(shown, found, known, config):
            emit(line)
    return unreadable
