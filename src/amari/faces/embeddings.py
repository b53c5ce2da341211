"""Faces of image files, cached in SQLite by file content and face settings.

Scoring a batch against a group of hundreds re-reads only what changed: a file's faces are keyed by
the SHA-256 of its bytes and `FaceSettings.key`, so renaming or moving a file costs one hash, and dlib
runs once per distinct image and settings, ever.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from amari.errors import ImageError, WorkspaceError
from amari.execution.workers import all_cores, worker_pool
from amari.faces import descriptors as face_lib
from amari.faces.descriptors import Face, FaceSettings
from amari.progress import warn
from amari.storage.images import DEFAULT_MAX_PIXELS, load_rgb, read_bytes, shrink_to
from amari.storage.layout import cache_root
from amari.storage.sqlite import connect, from_blob, migrate, to_blob

MIGRATIONS = [
    (
        "0001_face_cache",
        """
        CREATE TABLE face_images (
            content_hash TEXT NOT NULL,
            settings TEXT NOT NULL,
            n_faces INTEGER NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY (content_hash, settings)
        );
        CREATE TABLE face_rows (
            content_hash TEXT NOT NULL,
            settings TEXT NOT NULL,
            face_index INTEGER NOT NULL,
            top INTEGER NOT NULL, right INTEGER NOT NULL, bottom INTEGER NOT NULL, left INTEGER NOT NULL,
            landmarks BLOB NOT NULL,
            descriptor BLOB NOT NULL,
            PRIMARY KEY (content_hash, settings, face_index),
            FOREIGN KEY (content_hash, settings) REFERENCES face_images ON DELETE CASCADE
        )
    """,
    ),
    # The detector's score of each face (enhancement restores only faces that score well enough).
    ("0002_face_scores", "ALTER TABLE face_rows ADD COLUMN score REAL"),
]


def default_cache_path() -> Path:
    """The descriptor cache in amari's cache folder (`amari.storage.layout.cache_root`)."""
    return cache_root() / "embeddings.sqlite"


def open_cache(path: Path) -> sqlite3.Connection:
    """The cache database; a damaged one is set aside and started afresh (it only saves time), an
    unwritable one is an error that says what to do."""
    try:
        conn = connect(path, MIGRATIONS)
        conn.execute("PRAGMA quick_check").fetchone()
        return conn
    except sqlite3.DatabaseError as exc:
        if not path.is_file() or "readonly" in str(exc) or "unable to open" in str(exc):
            raise WorkspaceError(_unwritable(path, exc)) from None
        aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{path}{suffix}").exists():
                os.replace(f"{path}{suffix}", f"{aside}{suffix}")
        warn(f"the descriptor cache {path} was damaged ({exc}); it was moved to {aside.name} and is rebuilt")
        return connect(path, MIGRATIONS)
    except OSError as exc:
        raise WorkspaceError(_unwritable(path, exc)) from None


def _unwritable(path: Path, exc: BaseException) -> str:
    return (
        f"cannot use the descriptor cache {path} ({exc}): set AMARI_CACHE_DIR to a writable folder, "
        "or pass --no-cache where the command has it"
    )


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class EmbeddingCache:
    """Faces per (content hash, settings key). Give it a path, or a connection of a bigger database."""

    def __init__(self, path: str | Path | None = None, connection: sqlite3.Connection | None = None):
        self.path = None if connection is not None else Path(path or default_cache_path())
        if connection is not None:
            self.conn = connection
            migrate(self.conn, MIGRATIONS)
        else:
            self.conn = open_cache(self.path)

    def get(self, digest: str, settings_key: str) -> list[Face] | None:
        row = self.conn.execute(
            "SELECT n_faces FROM face_images WHERE content_hash=? AND settings=?", (digest, settings_key)
        ).fetchone()
        if row is None:
            return None
        rows = self.conn.execute(
            "SELECT top, right, bottom, left, landmarks, descriptor, score FROM face_rows "
            "WHERE content_hash=? AND settings=? ORDER BY face_index",
            (digest, settings_key),
        ).fetchall()
        return [
            Face(
                box=(r[0], r[1], r[2], r[3]), landmarks=from_blob(r[4], (-1, 2)), descriptor=from_blob(r[5]), score=r[6]
            )
            for r in rows
        ]

    def put(self, digest: str, settings_key: str, faces: list[Face], size: tuple[int, int]) -> None:
        try:
            self._put(digest, settings_key, faces, size)
        except sqlite3.OperationalError as exc:
            if self.path is None:
                raise
            raise WorkspaceError(_unwritable(self.path, exc)) from None

    def _put(self, digest: str, settings_key: str, faces: list[Face], size: tuple[int, int]) -> None:
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute("DELETE FROM face_images WHERE content_hash=? AND settings=?", (digest, settings_key))
            self.conn.execute(
                "INSERT INTO face_images VALUES (?, ?, ?, ?, ?, ?)",
                (digest, settings_key, len(faces), size[0], size[1], time.time()),
            )
            self.conn.executemany(
                "INSERT INTO face_rows VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (digest, settings_key, i, *map(int, f.box), to_blob(f.landmarks), to_blob(f.descriptor), f.score)
                    for i, f in enumerate(faces)
                ],
            )

    def close(self) -> None:
        self.conn.close()

    @classmethod
    def read_only(cls, path: str | Path) -> EmbeddingCache | None:
        """The faces cached inside another process's database (a miner's workspace), opened read-only:
        never migrated, never written. None when it cannot be opened."""
        try:
            conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, timeout=5)
        except sqlite3.Error:
            return None
        cache = cls.__new__(cls)
        cache.path, cache.conn = None, conn
        return cache


class LayeredCache:
    """Faces looked up in read-only caches first (a miner's workspace, which found them while mining),
    then in a cache of one's own, the only one written to."""

    def __init__(self, own: EmbeddingCache, *read_only: EmbeddingCache):
        self.own, self.read_only = own, read_only

    def get(self, digest: str, settings_key: str) -> list[Face] | None:
        for cache in self.read_only:
            try:
                found = cache.get(digest, settings_key)
            except sqlite3.Error:  # not a workspace a miner has written faces into yet
                found = None
            if found is not None:
                return found
        return self.own.get(digest, settings_key)

    def put(self, digest: str, settings_key: str, faces: list[Face], size: tuple[int, int]) -> None:
        self.own.put(digest, settings_key, faces, size)

    def close(self) -> None:
        for cache in (self.own, *self.read_only):
            cache.close()


def encode_bytes(
    data: bytes, settings: FaceSettings, label: str | Path = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[list[Face], tuple[int, int]]:
    """Decode image bytes and find their faces; returns (faces, (width, height) as decoded)."""
    image = load_rgb(data, max_pixels=max_pixels, label=label)
    height, width = image.shape[:2]
    if settings.max_side:
        image = shrink_to(image, settings.max_side)
    return face_lib.encode(image, settings, label), (width, height)


def _encode_path(path: str, settings: FaceSettings, max_pixels: int):
    """Worker entry point: never raises for a bad image, returns the error instead."""
    try:
        data = read_bytes(path)
        faces, size = encode_bytes(data, settings, path, max_pixels)
        return content_hash(data), faces, size
    except ImageError as exc:
        return exc


def encode_paths(paths: list[str], settings: FaceSettings, max_pixels: int = DEFAULT_MAX_PIXELS) -> list:
    """Worker entry point for many files: each file's (content hash, faces, size), or its ImageError."""
    return [_encode_path(path, settings, max_pixels) for path in paths]


class FaceEncoder:
    """The faces of image files under one `FaceSettings`, computed once and kept in an `EmbeddingCache`."""

    def __init__(
        self,
        settings: FaceSettings = FaceSettings(),
        cache: EmbeddingCache | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ):
        self.settings = settings
        self.cache = cache
        self.max_pixels = max_pixels
        self.encoded = 0  # images that needed dlib in this encoder's lifetime
        self.cache_hits = 0

    def faces(self, path: str | Path) -> list[Face]:
        """Faces of one file (raises `ImageError`)."""
        data = read_bytes(path)
        digest = content_hash(data)
        cached = self.cache.get(digest, self.settings.key) if self.cache else None
        if cached is not None:
            self.cache_hits += 1
            return cached
        found, size = encode_bytes(data, self.settings, path, self.max_pixels)
        self.encoded += 1
        if self.cache:
            self.cache.put(digest, self.settings.key, found, size)
        return found

    def faces_many(
        self, paths: Iterable[str | Path], cpus: int = 1, on_progress: Callable[[Path], None] | None = None
    ) -> dict[Path, list[Face] | ImageError]:
        """Faces of many files, in parallel on `cpus` processes (-1: all); errors are returned, not raised."""
        paths = [Path(p) for p in paths]
        results: dict[Path, list[Face] | ImageError] = {}
        pending: list[Path] = []
        for path in paths:
            try:
                data = read_bytes(path)
            except ImageError as exc:
                results[path] = exc
                if on_progress:
                    on_progress(path)
                continue
            cached = self.cache.get(content_hash(data), self.settings.key) if self.cache else None
            if cached is not None:
                self.cache_hits += 1
                results[path] = cached
                if on_progress:
                    on_progress(path)
            else:
                pending.append(path)
        workers = all_cores(cpus)
        if workers == 1 or len(pending) < 2:
            outcomes = (_encode_path(str(p), self.settings, self.max_pixels) for p in pending)
            self._collect(pending, outcomes, results, on_progress)
        else:
            with worker_pool(min(workers, len(pending))) as pool:
                outcomes = pool.map(
                    _encode_path,
                    [str(p) for p in pending],
                    [self.settings] * len(pending),
                    [self.max_pixels] * len(pending),
                )
                self._collect(pending, outcomes, results, on_progress)
        return {path: results[path] for path in paths}

    def remember(self, paths, outcomes) -> dict[Path, list[Face] | ImageError]:
        """`encode_paths`' outcomes for `paths`, computed elsewhere (a worker process), as `faces_many`
        gives them; found faces go into the cache."""
        results: dict[Path, list[Face] | ImageError] = {}
        paths = [Path(p) for p in paths]
        self._collect(paths, outcomes, results, None)
        return results

    def _collect(self, pending, outcomes, results, on_progress) -> None:
        for path, outcome in zip(pending, outcomes):
            if isinstance(outcome, ImageError):
                results[path] = outcome
            else:
                digest, found, size = outcome
                self.encoded += 1
                if self.cache:
                    self.cache.put(digest, self.settings.key, found, size)
                results[path] = found
            if on_progress:
                on_progress(path)
