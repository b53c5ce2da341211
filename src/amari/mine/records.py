"""What the miner's database holds and what one step changes in it: the schema and the records.

A `Commit` is everything one step (a batch, a curation pass, the references) changes; the workspace
writes it in one transaction and then does its file moves (`amari.mine.workspace`).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from amari.errors import WorkspaceError
from amari.mine.policy import MinerState
from amari.storage.layout import JUDGED_FOLDERS, MINE_DATABASE, WorkspaceLayout
from amari.storage.sqlite import connect, from_blob

MIGRATIONS = [
    (
        "0001_mine_state",
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE images (
            id INTEGER PRIMARY KEY,
            content_hash TEXT NOT NULL UNIQUE,
            folder TEXT NOT NULL,
            name TEXT NOT NULL,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            n_faces INTEGER,
            descriptor BLOB,
            error TEXT,
            origin TEXT NOT NULL,
            user_removed INTEGER NOT NULL DEFAULT 0,
            first_batch INTEGER NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE UNIQUE INDEX images_place ON images (folder, name) WHERE folder != 'deleted';
        CREATE TABLE decisions (
            id INTEGER PRIMARY KEY,
            batch INTEGER NOT NULL,
            image_id INTEGER NOT NULL REFERENCES images (id),
            verdict TEXT NOT NULL,
            reason TEXT NOT NULL,
            score REAL,
            bound REAL,
            created_at REAL NOT NULL
        );
        CREATE INDEX decisions_image ON decisions (image_id);
        CREATE TABLE batches (
            number INTEGER PRIMARY KEY,
            finished_at REAL NOT NULL,
            requested INTEGER NOT NULL,
            received INTEGER NOT NULL,
            joined INTEGER NOT NULL,
            group_size INTEGER NOT NULL,
            almost_size INTEGER NOT NULL,
            unknown_size INTEGER NOT NULL,
            avg REAL NOT NULL,
            hi REAL NOT NULL,
            until_gsa INTEGER NOT NULL,
            n INTEGER NOT NULL,
            event TEXT NOT NULL,
            state TEXT NOT NULL
        );
        CREATE TABLE pending_moves (
            id INTEGER PRIMARY KEY,
            op TEXT NOT NULL CHECK (op IN ('move', 'copy')),
            src TEXT NOT NULL,
            dst TEXT NOT NULL
        )
    """,
    ),
    (
        # A journal entry may also delete a file the miner made (the image a candidate was not judged on).
        "0002_pending_ops",
        """
        CREATE TABLE pending_ops (
            id INTEGER PRIMARY KEY,
            op TEXT NOT NULL CHECK (op IN ('move', 'copy', 'delete')),
            src TEXT NOT NULL,
            dst TEXT NOT NULL
        );
        INSERT INTO pending_ops SELECT id, op, src, dst FROM pending_moves;
        DROP TABLE pending_moves;
        ALTER TABLE pending_ops RENAME TO pending_moves
    """,
    ),
]

# Every batch reads the group by folder and the number of images in each folder; at 100,000 images a
# scan of the table or a COUNT over it costs more than the rest of the batch, so the folder is indexed
# and the counts are kept up to date by triggers, in the same transaction as the rows they count.
_FOLDER_SIZES = (
    "CREATE INDEX images_folder ON images (folder)",
    "CREATE TABLE folder_sizes (folder TEXT PRIMARY KEY, images INTEGER NOT NULL) WITHOUT ROWID",
    "INSERT INTO folder_sizes SELECT folder, COUNT(*) FROM images GROUP BY folder",
    """CREATE TRIGGER images_insert_counted AFTER INSERT ON images BEGIN
        INSERT INTO folder_sizes VALUES (NEW.folder, 1) ON CONFLICT (folder) DO UPDATE SET images = images + 1;
    END""",
    """CREATE TRIGGER images_delete_counted AFTER DELETE ON images BEGIN
        UPDATE folder_sizes SET images = images - 1 WHERE folder = OLD.folder;
    END""",
    """CREATE TRIGGER images_move_counted AFTER UPDATE OF folder ON images WHEN OLD.folder != NEW.folder BEGIN
        UPDATE folder_sizes SET images = images - 1 WHERE folder = OLD.folder;
        INSERT INTO folder_sizes VALUES (NEW.folder, 1) ON CONFLICT (folder) DO UPDATE SET images = images + 1;
    END""",
)


def _count_images_by_folder(conn: sqlite3.Connection) -> None:
    for statement in _FOLDER_SIZES:  # one by one: a trigger's body holds semicolons
        conn.execute(statement)


MIGRATIONS.append(("0003_folder_index_and_sizes", _count_images_by_folder))


@dataclass(frozen=True)
class ImageRow:
    id: int
    content_hash: str
    folder: str
    name: str
    size: int
    mtime_ns: int
    n_faces: int | None
    descriptor: np.ndarray | None
    error: str | None
    origin: str
    user_removed: bool

    @property
    def relpath(self) -> str:
        return f"{self.folder}/{self.name}"


@dataclass
class NewImage:
    """A file entering the workspace: from incoming/ (moved), a reference (copied), or found in place."""

    path: Path
    folder: str
    content_hash: str
    size: int
    mtime_ns: int
    n_faces: int | None  # None: the file cannot be read as an image
    descriptor: np.ndarray | None  # the largest face's
    error: str | None
    origin: str  # source | reference | user
    op: str = "move"  # move | copy | none (the file already is where it belongs)
    bound: float | None = None  # almost-sim names carry the bound they failed
    name: str | None = None  # the name it takes in its folder (default: its own)


@dataclass
class Relocation:
    image_id: int
    folder: str
    bound: float | None = None
    user_removed: bool | None = None  # None: unchanged


@dataclass
class Decision:
    content_hash: str
    verdict: str  # a folder name, "duplicate" or "deleted"
    reason: str
    score: float | None = None
    bound: float | None = None


@dataclass
class Commit:
    """Everything one step changes, written in one transaction and then done on disk."""

    batch: int
    new_images: list[NewImage] = field(default_factory=list)
    relocations: list[Relocation] = field(default_factory=list)
    user_changes: list[tuple[int, dict]] = field(default_factory=list)  # (image id, columns) seen on disk
    decisions: list[Decision] = field(default_factory=list)
    state: MinerState | None = None
    batch_row: dict | None = None  # set for a finished batch: a row of `batches` and of the archive
    meta: dict[str, str] = field(default_factory=dict)
    deletions: list[Path] = field(default_factory=list)  # files the miner made and no longer needs

    def __bool__(self) -> bool:
        return bool(
            self.new_images
            or self.relocations
            or self.user_changes
            or self.decisions
            or self.state
            or self.batch_row
            or self.meta
            or self.deletions
        )


def image_row(row: sqlite3.Row) -> ImageRow:
    descriptor = row["descriptor"]
    return ImageRow(
        row["id"],
        row["content_hash"],
        row["folder"],
        row["name"],
        row["size"],
        row["mtime_ns"],
        row["n_faces"],
        None if descriptor is None else from_blob(descriptor),
        row["error"],
        row["origin"],
        bool(row["user_removed"]),
    )


def check_database_file(root: Path) -> None:
    """Refuse to start over silently: an emptied database beside folders full of judged images means a
    crash or a full disk lost the state, and starting afresh would forget the user's removals."""
    database = root / MINE_DATABASE
    if not database.is_file() or database.stat().st_size > 0:
        return
    folders = [root / name for name in JUDGED_FOLDERS if (root / name).is_dir()]
    for number in WorkspaceLayout(root).identities():
        folders += [folder for folder in WorkspaceLayout(root).identity_folders(number) if folder.is_dir()]
    judged = sum(1 for folder in folders for path in folder.iterdir() if path.is_file())
    if judged:
        raise WorkspaceError(
            f"{database} is empty (0 bytes) while the workspace's folders hold {judged} images: its state was "
            "lost (a crash or a full disk?). Restore the file from a backup, or move it away to start this "
            "workspace over (every image is then judged again and removals you made are forgotten)"
        )


def open_database(path: Path, migrations) -> sqlite3.Connection:
    try:
        return connect(path, migrations)
    except sqlite3.DatabaseError as exc:
        if "locked" in str(exc):
            raise
        raise WorkspaceError(
            f"{path} is not a readable database ({exc}): restore it from a backup, or move it away to start this "
            "workspace over (the images in its folders stay where they are)"
        ) from None
