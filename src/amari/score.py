"""`amari score`: each image's sim-score (mean face distance) against a group of images."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from amari.embeddings import EmbeddingCache, FaceEncoder
from amari.errors import ImageError, UsageError
from amari.faces import FaceSettings, face_distance, largest
from amari.images import image_files
from amari.progress import progress_bar, warn

NO_FACE = "no face found"


@dataclass(frozen=True)
class ScoreResult:
    path: Path
    sim_score: float | None  # None: no face, or unreadable
    faces: int
    error: str | None = None

    @property
    def label(self) -> str:
        if self.error:
            return f"error: {self.error}"
        return NO_FACE if self.sim_score is None else f"{self.sim_score:.4f}"


def expand_paths(items: Iterable[str | Path]) -> list[Path]:
    paths = []
    for item in items:
        item = Path(item)
        if item.is_dir():
            paths.extend(image_files(item))
        elif item.exists():
            paths.append(item)
        else:
            raise UsageError(f"no such file or folder: {item}")
    return paths


def group_matrix(encoder: FaceEncoder, group_dir: Path, cpus: int = 1,
                 warn: Callable[[str], None] = warn) -> np.ndarray:
    """Descriptors of the largest face of every readable group image that has one."""
    if not Path(group_dir).is_dir():
        raise UsageError(f"group folder not found: {group_dir}")
    paths = image_files(group_dir)
    descriptors = []
    with progress_bar(len(paths), "encoding group") as advance:
        found_by_path = encoder.faces_many(paths, cpus=cpus, on_progress=lambda _: advance())
    for path, found in found_by_path.items():
        if isinstance(found, ImageError):
            warn(f"cannot read group image {found.path}: {found.reason}. Skipped.")
        elif not found:
            warn(f"no face found in group image {path}. Skipped.")
        else:
            descriptors.append(largest(found).descriptor)
    if not descriptors:
        raise UsageError(f"the group {group_dir} holds no image with a face")
    return np.array(descriptors)


def score_paths(paths: list[Path], group: np.ndarray, encoder: FaceEncoder, cpus: int = 1) -> list[ScoreResult]:
    results = []
    with progress_bar(len(paths), "scoring") as advance:
        found_by_path = encoder.faces_many(paths, cpus=cpus, on_progress=lambda _: advance())
    for path, found in found_by_path.items():
        if isinstance(found, ImageError):
            results.append(ScoreResult(path, None, 0, found.reason))
        elif not found:
            results.append(ScoreResult(path, None, 0))
        else:
            score = float(face_distance(group, largest(found).descriptor).mean())
            results.append(ScoreResult(path, score, len(found)))
    return results


def write_csv(results: list[ScoreResult], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "sim_score", "faces", "face_found", "error"])
        for r in results:
            writer.writerow([str(r.path), "" if r.sim_score is None else repr(r.sim_score), r.faces,
                             int(r.sim_score is not None), r.error or ""])
    tmp.replace(out)


def run(images: Iterable[str | Path], group_dir: str | Path, settings: FaceSettings = FaceSettings(),
        csv_out: str | Path | None = None, cpus: int = 1, use_cache: bool = True) -> list[ScoreResult]:
    encoder = FaceEncoder(settings, EmbeddingCache() if use_cache else None)
    paths = expand_paths(images)
    if not paths:
        raise UsageError("no images to score")
    group = group_matrix(encoder, Path(group_dir), cpus)
    results = score_paths(paths, group, encoder, cpus)
    if csv_out:
        write_csv(results, Path(csv_out))
    return results
