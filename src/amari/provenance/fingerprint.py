"""Fingerprints of every image amari writes, and the registry that recognises copies of them.

A fingerprint is the SHA-256 of the file, the SHA-256 of its pixels, and a perceptual hash of the
image and of 25 crops of it (centre crops down to 80 %, corner crops, crops from one side, and the
centre of one dimension, which is what re-cropping to another aspect ratio does). A perceptual hash is
255 bits: the 16×16 lowest frequencies of the DCT of the luma scaled to 64×64, each compared with
their median. JPEG, resizing and small colour changes move few of those bits; another photo differs in
about half of them.

`amari verify` hashes the image it is given (and its mirror image) once and compares it with every
stored crop: a re-encoded, resized or cropped copy lands within MATCH_DISTANCE bits of the crop that
matches it. Crops other than those 25, rotations and images pasted into a larger canvas are not
recognised.

A registry (`Registry`, one SQLite file; `amari.provenance.registries` says which ones an image belongs to) holds
fingerprints with where the image was written and what made it (seed, model, prompt), so a match says
which image it was. The place is never a path of this machine, since `amari verify` prints it:
relative to the registry's folder when the image is inside it, else relative to the workspace's or
study's folder and led by that folder's name, else the file's name alone.

A `Fingerprint` is computed where the image is made (a miner's worker process, beside the PNG), and
recorded by the one process that writes the file (`amari.provenance.registries.Registries.write`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HASH_SCHEME = "dct255-w25-v1"
HASH_BYTES = 32  # 255 bits and one zero bit
HASH_BITS = 255
# Largest Hamming distance (of 255 bits) that counts as a copy. Copies after the bench's edits are
# within 10 of their crop; distinct real photos are 127 +- 8 apart, none of the bench's closer than 82
# (70 for two crops of one group photo that overlap by 85 %).
# A Gaussian tail puts 64 at p ~ 2e-14 per comparison (1e-8 per query against 10,000 images). Crops at
# an arbitrary position land between the stored ones: 95 % of those keeping 95 % of each side match,
# about 70 % of those keeping 90 %; the watermark, which ignores where a crop starts, covers the rest.
MATCH_DISTANCE = 64

# (left, top, right, bottom) as fractions of the width and height.
WINDOWS = (
    (0.0, 0.0, 1.0, 1.0),
    *((m, m, 1 - m, 1 - m) for m in (0.025, 0.05, 0.075, 0.1)),  # centre crops
    *((x, y, x + k, y + k) for k in (0.9, 0.8) for x in (0.0, 1 - k) for y in (0.0, 1 - k)),  # corners
    *((0.0, 0.0, 1.0, k) for k in (0.9, 0.8)),
    *((0.0, 1 - k, 1.0, 1.0) for k in (0.9, 0.8)),  # top, bottom
    *((0.0, 0.0, k, 1.0) for k in (0.9, 0.8)),
    *((1 - k, 0.0, 1.0, 1.0) for k in (0.9, 0.8)),  # left, right
    *((0.0, m, 1.0, 1 - m) for m in (0.05, 0.1)),
    *((m, 0.0, 1 - m, 1.0) for m in (0.05, 0.1)),  # aspect ratio
)

MIGRATIONS = [
    (
        "0001_fingerprints",
        """
        CREATE TABLE fingerprints (
            id INTEGER PRIMARY KEY,
            file_sha256 TEXT,
            pixel_sha256 TEXT NOT NULL,
            scheme TEXT NOT NULL,
            hashes BLOB NOT NULL,
            path TEXT NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            info TEXT NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE INDEX fingerprints_file ON fingerprints (file_sha256);
        CREATE INDEX fingerprints_pixels ON fingerprints (pixel_sha256);
    """,
    ),
]

_POPCOUNT = np.array([value.bit_count() for value in range(256)], dtype=np.uint16)


# Hashes -------------------------------------------------------------------------------------------


def perceptual_hash(rgb: np.ndarray) -> np.ndarray:
    """255-bit DCT hash of an RGB (or grey) array, as HASH_BYTES uint8."""
    return _hash_plane(_plane(rgb))


def window_hashes(rgb: np.ndarray) -> np.ndarray:
    """The perceptual hash of each crop in WINDOWS, shape (len(WINDOWS), HASH_BYTES)."""
    plane = _plane(rgb)
    height, width = plane.shape
    return np.stack(
        [
            _hash_plane(plane[round(top * height) : round(bottom * height), round(left * width) : round(right * width)])
            for left, top, right, bottom in WINDOWS
        ]
    )


def _plane(rgb: np.ndarray) -> np.ndarray:
    """The luma every crop is hashed from."""
    from PIL import Image

    plane = np.asarray(rgb, dtype=np.float32)
    if plane.ndim == 3:
        plane = plane[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    # Down to 256 px so every crop comes from the same pixels; tiny images up to 16 px so that their
    # smallest crops still have pixels (their hashes say little, their content hashes still match).
    factor = 256 / min(plane.shape) if min(plane.shape) > 256 else max(1.0, 16 / min(plane.shape))
    if factor != 1:
        size = (max(16, round(plane.shape[1] * factor)), max(16, round(plane.shape[0] * factor)))
        method = Image.Resampling.LANCZOS if factor < 1 else Image.Resampling.BICUBIC
        plane = np.asarray(Image.fromarray(plane, mode="F").resize(size, method))
    return plane


def _hash_plane(plane: np.ndarray) -> np.ndarray:
    from PIL import Image
    from scipy.fft import dctn

    small = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32), mode="F")
    small = np.asarray(small.resize((64, 64), Image.Resampling.LANCZOS), dtype=np.float64)
    low = dctn(small, norm="ortho")[:16, :16].ravel()[1:]  # without the DC term: brightness shifts it
    return np.packbits(np.append(low > np.median(low), False))


def pixel_digest(rgb: np.ndarray) -> str:
    """SHA-256 of the pixels and their shape: equal for a losslessly re-saved copy without metadata."""
    rgb = np.ascontiguousarray(rgb)
    return hashlib.sha256(f"{rgb.shape}:{rgb.dtype}".encode() + rgb.tobytes()).hexdigest()


def file_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def distances(stored: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Hamming distance between each stored hash (…, HASH_BYTES) and one query hash."""
    return _POPCOUNT[np.bitwise_xor(stored, query)].sum(axis=-1)


# The registry -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    """A registered image that the queried one is a copy of."""

    kind: str  # "file" (identical bytes), "pixels" (same pixels) or "perceptual"
    distance: int  # Hamming distance of the perceptual hashes (0 for exact matches)
    window: int  # index in WINDOWS of the stored crop that matched
    mirrored: bool  # the query matched once mirrored
    path: str  # where the registered image was written
    width: int
    height: int
    info: dict
    created_at: float
    registry: str  # the registry's name: as given on the command line, or `<cache>/provenance.sqlite`


@dataclass(frozen=True)
class Fingerprint:
    """What a registry records about one image, computed where the image was made."""

    file_sha256: str | None  # None: the file's bytes were not known
    pixel_sha256: str
    hashes: bytes  # window_hashes: len(WINDOWS) x HASH_BYTES
    width: int
    height: int
    info: dict

    @classmethod
    def of(cls, rgb: np.ndarray, data: bytes | None = None, info: dict | None = None) -> Fingerprint:
        """The fingerprint of the image `rgb`, written as the file bytes `data` when known."""
        return cls(
            file_sha256=file_digest(data) if data is not None else None,
            pixel_sha256=pixel_digest(rgb),
            hashes=window_hashes(rgb).tobytes(),
            width=rgb.shape[1],
            height=rgb.shape[0],
            info=dict(info or {}),
        )


def stored_path(image_path: str | os.PathLike, registry_folder: Path, others: list[Path] = ()) -> str:
    """Where an image is, as a registry in `registry_folder` stores it: relative to that folder when the
    image is inside it, else relative to one of `others` (the folders of the registries it is recorded
    in besides) led by that folder's name, else the file's name: never a path of this machine."""
    image = Path(image_path).absolute()
    for folder in (registry_folder, *others):
        folder = folder.absolute()
        if image.is_relative_to(folder):
            relative = image.relative_to(folder).as_posix()
            return relative if folder == registry_folder.absolute() else f"{folder.name}/{relative}"
    return image.name


class Registry:
    """One registry file. Hashes are read once per instance, on the first match."""

    def __init__(self, path: str | os.PathLike, name: str | None = None, readonly: bool = False):
        """readonly: only look images up (`amari verify`), which also works on a read-only disk."""
        from amari.storage.sqlite import connect

        self.path = Path(path)
        self.name = name or str(self.path)
        if self.path.exists() and not self.path.is_file():
            from amari.errors import AmariError

            raise AmariError(f"{self.path} is a folder, not a fingerprint registry: move it away")
        self.conn = _open_readonly(self.path) if readonly else connect(self.path, MIGRATIONS)
        self._ids: np.ndarray | None = None
        self._hashes: np.ndarray | None = None

    def close(self) -> None:
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM fingerprints").fetchone()[0]

    def add(self, rgb: np.ndarray, path: str | os.PathLike, data: bytes | None = None, info: dict | None = None) -> int:
        """Record the image `rgb` written at `path` (with file bytes `data` when known); returns its id."""
        return self.record(Fingerprint.of(rgb, data, info), path)

    def record(self, fingerprint: Fingerprint, path: str | os.PathLike, others: list[Path] = ()) -> int:
        """Record an image's fingerprint under its place (`stored_path`); returns its id. The same file
        recorded at the same place again (a resumed run writing it anew) keeps its first entry."""
        where = stored_path(path, self.path.parent, others)
        if fingerprint.file_sha256 is not None:
            row = self.conn.execute(
                "SELECT id FROM fingerprints WHERE file_sha256 = ? AND path = ? LIMIT 1",
                (fingerprint.file_sha256, where),
            ).fetchone()
            if row is not None:
                return int(row[0])
        cursor = self.conn.execute(
            "INSERT INTO fingerprints (file_sha256, pixel_sha256, scheme, hashes, path, width, height, info,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                fingerprint.file_sha256,
                fingerprint.pixel_sha256,
                HASH_SCHEME,
                fingerprint.hashes,
                where,
                fingerprint.width,
                fingerprint.height,
                json.dumps(fingerprint.info, ensure_ascii=False),
                time.time(),
            ),
        )
        self._ids = self._hashes = None
        return int(cursor.lastrowid)

    def match(self, rgb: np.ndarray, data: bytes | None = None) -> Match | None:
        """The registered image that `rgb` (file bytes `data`) is a copy of, or None."""
        if data is not None:
            row = self.conn.execute(
                "SELECT * FROM fingerprints WHERE file_sha256 = ? LIMIT 1", (file_digest(data),)
            ).fetchone()
            if row is not None:
                return self._match(row, "file", 0, 0, False)
        row = self.conn.execute(
            "SELECT * FROM fingerprints WHERE pixel_sha256 = ? LIMIT 1", (pixel_digest(rgb),)
        ).fetchone()
        if row is not None:
            return self._match(row, "pixels", 0, 0, False)
        ids, stored = self._load()
        if not len(ids):
            return None
        best = None
        for mirrored, query in ((False, rgb), (True, rgb[:, ::-1])):
            found = distances(stored, perceptual_hash(query))  # (entries, windows)
            entry, window = np.unravel_index(int(np.argmin(found)), found.shape)
            if best is None or found[entry, window] < best[0]:
                best = (int(found[entry, window]), int(entry), int(window), mirrored)
        distance, entry, window, mirrored = best
        if distance > MATCH_DISTANCE:
            return None
        row = self.conn.execute("SELECT * FROM fingerprints WHERE id = ?", (int(ids[entry]),)).fetchone()
        return self._match(row, "perceptual", distance, window, mirrored)

    def _load(self) -> tuple[np.ndarray, np.ndarray]:
        if self._ids is None:
            rows = self.conn.execute(
                "SELECT id, hashes FROM fingerprints WHERE scheme = ? ORDER BY id", (HASH_SCHEME,)
            ).fetchall()
            self._ids = np.array([row[0] for row in rows], dtype=np.int64)
            blob = b"".join(row[1] for row in rows)
            self._hashes = np.frombuffer(blob, dtype=np.uint8).reshape(len(rows), len(WINDOWS), HASH_BYTES)
        return self._ids, self._hashes

    def _match(self, row, kind: str, distance: int, window: int, mirrored: bool) -> Match:
        try:
            info = json.loads(row["info"])
        except ValueError:
            info = {}
        return Match(
            kind=kind,
            distance=distance,
            window=window,
            mirrored=mirrored,
            path=row["path"],
            width=row["width"],
            height=row["height"],
            info=info if isinstance(info, dict) else {},
            created_at=row["created_at"],
            registry=self.name,
        )


def _open_readonly(path: Path):
    """A registry opened for reading only. SQLite opens a database in WAL mode read-only only when it may
    create the side file beside it; on a read-only disk nobody writes it, so it is opened as immutable."""
    import sqlite3
    from urllib.parse import quote

    from amari.errors import AmariError, describe_failure

    where = quote(str(path.absolute()))
    failure = None
    for mode in ("mode=ro", "immutable=1"):
        try:
            conn = sqlite3.connect(f"file:{where}?{mode}", uri=True, timeout=60)
            conn.execute("SELECT id FROM fingerprints LIMIT 1")
        except sqlite3.Error as exc:
            failure = exc
            continue
        conn.row_factory = sqlite3.Row
        return conn
    raise AmariError(f"cannot read the fingerprint registry {path}: {describe_failure(failure)}")


def match_any(rgb: np.ndarray, data: bytes | None, registries: list[Registry]) -> Match | None:
    """The closest match over several registries (exact matches first)."""
    found = [m for m in (registry.match(rgb, data) for registry in registries) if m is not None]
    order = {"file": 0, "pixels": 1, "perceptual": 2}
    return min(found, key=lambda m: (order[m.kind], m.distance)) if found else None
