"""Which fingerprint registries an image belongs to, and recording images in them.

Registries are SQLite files (`provenance.sqlite`, `amari.provenance.fingerprint.Registry`): one in the cache folder
that records everything this user's amari wrote, and one in the workspace or study an image was written
into, found by walking up from the image's folder (a folder with `provenance.sqlite`, or a miner
workspace, i.e. one with `mine.sqlite`). A writer opens the registries once (`Registries`) and records
each image's fingerprint before the image's file is renamed into place, so every file that appears is
registered.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np

from amari.provenance.fingerprint import Fingerprint, Registry
from amari.storage.layout import MINE_DATABASE, PROVENANCE_REGISTRY, cache_root

REGISTRY_FILE = PROVENANCE_REGISTRY
DEFAULT_REGISTRY_NAME = f"<cache>/{REGISTRY_FILE}"  # how outputs name the cache's registry: no local path
_SEARCH_DEPTH = 6  # folders above an image where its workspace or study registry may be


def default_registry_path() -> Path:
    return cache_root() / REGISTRY_FILE


def local_registry_path(image_path: str | os.PathLike) -> Path | None:
    """The workspace's or study's registry for an image written at `image_path`, if it is in one."""
    return _local_registry(Path(image_path).absolute().parent)


def _local_registry(folder: Path) -> Path | None:
    candidates = [folder, *folder.parents][:_SEARCH_DEPTH]
    for candidate in candidates:
        if (candidate / REGISTRY_FILE).is_file():
            return candidate / REGISTRY_FILE
    for candidate in candidates:
        if (candidate / MINE_DATABASE).is_file():
            return candidate / REGISTRY_FILE
    return None


def create_registry(folder: str | os.PathLike) -> Path:
    """Give `folder` (a study) its own registry: images written anywhere below it are recorded there."""
    path = Path(folder) / REGISTRY_FILE
    Registry(path).close()
    return path


def resolve_registry(path: str | os.PathLike) -> Path:
    """A registry named on the command line: the file itself, or a folder holding REGISTRY_FILE."""
    from amari.errors import UsageError

    path = Path(path)
    if path.is_dir():
        path = path / REGISTRY_FILE
    if not path.is_file():
        raise UsageError(f"no fingerprint registry at {path}")
    return path


def registry_paths_for(image_path: str | os.PathLike) -> list[Path]:
    """Where an image written at `image_path` is registered: the cache, and its workspace or study."""
    return registry_paths_in(Path(image_path).absolute().parent)


def registry_paths_in(folder: str | os.PathLike) -> list[Path]:
    """Where images written into `folder` are registered: the cache, and its workspace or study."""
    paths = [default_registry_path()]
    local = _local_registry(Path(folder).absolute())
    if local is not None and local.absolute() != paths[0].absolute():
        paths.append(local)
    return paths


class OpenRegistries:
    """Registries held open together (`self.registries`), closed together."""

    registries: list[Registry]

    def close(self) -> None:
        for registry in self.registries:
            registry.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Registries(OpenRegistries):
    """The registries a writer records images in, each opened once (the miner opens them once a run)."""

    def __init__(self, paths: list[Path]):
        from amari.errors import AmariError, describe_failure

        self.registries: list[Registry] = []
        for path in paths:
            try:
                self.registries.append(Registry(path))
            except (OSError, sqlite3.Error) as exc:
                self.close()
                raise AmariError(f"cannot open the fingerprint registry {path}: {describe_failure(exc)}") from exc

    @property
    def paths(self) -> list[Path]:
        return [registry.path for registry in self.registries]

    def record(self, fingerprint: Fingerprint, path: str | os.PathLike) -> None:
        from amari.errors import AmariError, describe_failure

        folders = [registry.path.parent for registry in self.registries]
        for registry in self.registries:
            try:
                registry.record(fingerprint, path, folders)
            except (OSError, sqlite3.Error) as exc:
                raise AmariError(
                    f"cannot record the fingerprint of {path} in {registry.path}: {describe_failure(exc)}"
                ) from exc

    def write(self, path: str | os.PathLike, data: bytes, fingerprint: Fingerprint) -> Path:
        """Write `data` at `path` whole or not at all, its fingerprint recorded before the rename: every
        file that appears is registered (a registration without its file only names a file never seen)."""
        from amari.storage.files import atomic_path

        path = Path(path)
        with atomic_path(path) as temporary:
            with open(temporary, "xb") as handle:
                handle.write(data)
            self.record(fingerprint, path)
        return path


def register(
    rgb: np.ndarray,
    path: str | os.PathLike,
    data: bytes | None = None,
    info: dict | None = None,
    registries: list[Path] | None = None,
) -> list[Path]:
    """Record an image in every registry it belongs to; returns the registry files written."""
    with Registries(registries if registries is not None else registry_paths_for(path)) as opened:
        opened.record(Fingerprint.of(rgb, data, info), path)
        return opened.paths
