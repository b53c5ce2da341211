"""`amari score`: each image's sim-score (mean face distance) against a group of images."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from amari.errors import UsageError
from amari.faces.embeddings import EmbeddingCache, FaceEncoder
from amari.faces.group import NO_FACE, FaceGroup, ImageScore
from amari.progress import progress_bar, warn
from amari.score.config import ScoreConfig
from amari.storage.files import atomic_open
from amari.storage.images import image_files


def label(result: ImageScore) -> str:
    if result.error:
        return f"error: {result.error}"
    return NO_FACE if result.score is None else f"{result.score:.4f}"


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


def load_group(encoder: FaceEncoder, folder: Path, cpus: int = 1) -> FaceGroup:
    """The group's faces; unreadable images and images without a face are warned about and skipped."""
    if not Path(folder).is_dir():
        raise UsageError(f"group folder not found: {folder}")
    paths = image_files(folder)
    with progress_bar(len(paths), "encoding group") as advance:
        group = FaceGroup.load(paths, encoder, cpus=cpus, on_progress=lambda _: advance())
    for path, why in group.skipped:
        warn(
            f"no face found in group image {path}. Skipped."
            if why == NO_FACE
            else f"cannot read group image {path}: {why}. Skipped."
        )
    if not group:
        raise UsageError(f"the group {folder} holds no image with a face")
    return group


def write_csv(results: list[ImageScore], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "sim_score", "faces", "face_found", "error"])
        for r in results:
            writer.writerow(
                [
                    str(r.path),
                    "" if r.score is None else repr(r.score),
                    r.faces,
                    int(r.score is not None),
                    r.error or "",
                ]
            )


def run(config: ScoreConfig, images: Iterable[str | Path]) -> list[ImageScore]:
    encoder = FaceEncoder(config.faces, EmbeddingCache() if config.use_cache else None)
    paths = expand_paths(images)
    if not paths:
        raise UsageError("no images to score")
    group = load_group(encoder, Path(config.group), config.cpus)
    with progress_bar(len(paths), "scoring") as advance:
        results = group.score_files(paths, encoder, config.cpus, on_progress=lambda _: advance())
    if config.csv:
        write_csv(results, Path(config.csv))
    return results
