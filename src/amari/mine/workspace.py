"""The miner's workspace: three folders the user may curate, one SQLite database, an archive CSV, a lock.

    WORKSPACE/
      sim-group/ almost-sim/ unknown-person/   where every judged image lives
      incoming/                                new images from the source, not yet judged
      mine.sqlite                              images, decisions, batches, policy state, face cache
      archive.csv                              one row per batch: the mining curve
      progress.json                            the running miner's live numbers (`amari serve` shows them)
      .lock                                    held while a miner runs

Crash safety rests on one rule: every change of a batch is first written to the database in one
transaction, file moves included as a journal (`pending_moves`), and only then done on disk. A run
killed at any moment either lost the whole transaction (the batch is redone from the same inputs) or
finds the journal on restart and finishes it; a move is idempotent (done when the target exists).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from pathlib import Path

import numpy as np

from amari.errors import WorkspaceError, describe_failure
from amari.faces import embeddings
from amari.faces.embeddings import content_hash
from amari.mine.archive import ARCHIVE_COLUMNS as ARCHIVE_COLUMNS  # re-exported: its readers import it here
from amari.mine.archive import append_archive, rewrite_archive_if_stale
from amari.mine.folderwatch import FolderWatch
from amari.mine.identities import IdentitiesState
from amari.mine.lock import WorkspaceLock
from amari.mine.names import NamePlanner, copy_once
from amari.mine.names import tagged_name as tagged_name  # re-exported: its readers import it here
from amari.mine.policy import MinerState
from amari.mine.records import MIGRATIONS, Commit, ImageRow, check_database_file, image_row, open_database
from amari.storage.files import free_name, same_content
from amari.storage.images import IMAGE_EXTENSIONS, is_image_path, read_bytes
from amari.storage.layout import (
    ARCHIVE_CSV,
    INCOMING,
    JUDGED_FOLDERS,
    LOCK_FILE,
    MINE_DATABASE,
    UNKNOWN_PERSON,
    IdentityFolders,
    WorkspaceLayout,
)
from amari.storage.sqlite import to_blob

FOLDERS = JUDGED_FOLDERS  # sim-group, almost-sim, unknown-person
MANY_IDENTITIES = "many_identities"  # the setting that says a workspace mines several identities
DELETED = "deleted"  # folder of an image the user deleted: kept so that it is never mined again

# Names of the hidden files sources write into incoming/ before they are complete.
SOURCE_TEMPORARIES = (".*.part", ".sd-*.raw.png")


class Workspace:
    """An open, locked workspace. Use `Workspace.open(path)` and close it (or use `with`)."""

    def __init__(self, root: Path, conn: sqlite3.Connection, lock: WorkspaceLock):
        self.root, self.conn, self.lock = root, conn, lock
        # (folder, name, size, mtime_ns) of user copies of tracked images: reported once, then left alone
        self.ignored_copies: set[tuple[str, str, int, int]] = set()
        self.ignored_incoming: set[Path] = set()  # the user's files in incoming/ that repeat a known image
        self.many = False  # several identities: identity-NN/sim-group, identity-NN/almost-sim, unknown-person
        self.watch = FolderWatch({folder: root / folder for folder in FOLDERS})  # which folders curation lists

    @classmethod
    def open(cls, root: str | os.PathLike, settings: dict[str, str] | None = None) -> Workspace:
        """Lock, create or migrate the database, finish what a killed run left, check the settings.

        settings: values that must not change during a workspace's life (face settings, almost band);
        a first run records them, a later one with different values is refused.
        """
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise WorkspaceError(f"workspace {root} exists and is not a folder")
        root.mkdir(parents=True, exist_ok=True)
        lock = WorkspaceLock(root / LOCK_FILE)
        try:
            check_database_file(root)
            conn = open_database(root / MINE_DATABASE, MIGRATIONS + embeddings.MIGRATIONS)
            workspace = cls(root, conn, lock)
            workspace._check_settings(settings or {})
            workspace.many = workspace.meta().get(MANY_IDENTITIES) == "true"
            workspace._watch_folders()
            workspace.recover()
        except BaseException:
            lock.close()
            raise
        return workspace

    def close(self) -> None:
        self.conn.close()
        self.lock.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def layout(self) -> WorkspaceLayout:
        return WorkspaceLayout(self.root)

    @property
    def incoming(self) -> Path:
        return self.root / INCOMING

    @property
    def database_path(self) -> Path:
        return self.root / MINE_DATABASE

    @property
    def archive_path(self) -> Path:
        return self.root / ARCHIVE_CSV

    # -- start-up -----------------------------------------------------------------------------

    def _check_settings(self, settings: dict[str, str]) -> None:
        stored = self.meta()
        changed = [
            f"{key} was {stored[key]}, now {value}"
            for key, value in settings.items()
            if key in stored and stored[key] != value
        ]
        if changed:
            raise WorkspaceError(
                f"workspace {self.root} was mined with other settings ({'; '.join(changed)}); "
                "use the same settings or a new workspace"
            )
        missing = {k: v for k, v in settings.items() if k not in stored}
        if missing:
            self.conn.executemany("INSERT INTO meta VALUES (?, ?)", missing.items())

    def recover(self) -> None:
        """Finish a journal a killed run left, drop half-written temporaries, rebuild the archive."""
        self.ensure_folders()
        self._apply_pending_moves()
        for pattern in SOURCE_TEMPORARIES:  # a source's half-written files, never the user's
            for temporary in self.incoming.glob(pattern):
                if temporary.is_file():
                    temporary.unlink(missing_ok=True)
        rewrite_archive_if_stale(self.archive_path, self.batch_rows())

    def ensure_folders(self) -> None:
        for folder in self.folders + (INCOMING,):
            path = self.root / folder
            for place in (path.parent, path) if "/" in folder else (path,):
                if place.exists() and not place.is_dir():
                    raise WorkspaceError(f"{place} is a file where a folder of the workspace belongs: move it away")
            path.mkdir(parents=True, exist_ok=True)

    @property
    def folders(self) -> tuple[str, ...]:
        """The folders whose images the miner judged: the three, or each live identity's two and the
        shared unknown-person folder."""
        if not self.many:
            return FOLDERS
        numbers = [i.number for i in self.identities().live()]
        return (UNKNOWN_PERSON,) + tuple(
            f for n in numbers for f in (IdentityFolders(n).group, IdentityFolders(n).almost)
        )

    def _watch_folders(self) -> None:
        """Curation lists the judged folders; identities founded or retired change which they are."""
        gone = set(self.watch.folders) - set(self.folders)
        self.watch.folders = {folder: self.root / folder for folder in self.folders}
        for folder in gone:  # a retired identity's folders, emptied by the miner: gone unless someone put a file there
            if IdentityFolders.of(folder) is None or IdentityFolders.of(folder).number is None:
                continue
            for path in (self.root / folder, (self.root / folder).parent):
                with contextlib.suppress(OSError):
                    path.rmdir()

    # -- reading ------------------------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        return {row[0]: row[1] for row in self.conn.execute("SELECT key, value FROM meta")}

    def state(self) -> MinerState:
        row = self.conn.execute("SELECT value FROM meta WHERE key='state'").fetchone()
        return MinerState.from_json(row[0]) if row else MinerState()

    def identities(self) -> IdentitiesState:
        """The identities of a workspace that mines several (none yet, or a single-identity workspace: empty)."""
        row = self.conn.execute("SELECT value FROM meta WHERE key='identities'").fetchone()
        return IdentitiesState.from_json(row[0]) if row else IdentitiesState()

    def batch_number(self) -> int:
        """The number of the last batch begun."""
        return self.identities().batch if self.many else self.state().batch

    def images(self, *folders: str) -> list[ImageRow]:
        """Rows of the images in these folders (all, deleted included, when none given), oldest first."""
        query = "SELECT * FROM images"
        if folders:
            query += f" WHERE folder IN ({','.join('?' * len(folders))})"
        return [image_row(r) for r in self.conn.execute(query + " ORDER BY id", folders)]

    def image_by_hash(self, digest: str) -> ImageRow | None:
        row = self.conn.execute("SELECT * FROM images WHERE content_hash=?", (digest,)).fetchone()
        return image_row(row) if row else None

    def known_files(self, *folders: str) -> list[sqlite3.Row]:
        """What the database says these folders hold, to compare with a listing: place, size, time, hash."""
        query = "SELECT id, content_hash, folder, name, size, mtime_ns FROM images WHERE folder IN"
        return self.conn.execute(f"{query} ({','.join('?' * len(folders))}) ORDER BY id", folders).fetchall()

    def name_taken(self, folder: str, name: str) -> bool:
        # The partial index images_place serves this look-up only with its own condition spelled out.
        query = f"SELECT 1 FROM images WHERE folder=? AND name=? AND folder != '{DELETED}'"
        return self.conn.execute(query, (folder, name)).fetchone() is not None

    def counts(self) -> dict[str, int]:
        """Images per folder, kept by triggers (records.py): no count over the whole table each batch."""
        found = dict(self.conn.execute("SELECT folder, images FROM folder_sizes").fetchall())
        return {folder: found.get(folder, 0) for folder in self.folders}

    def incoming_files(self) -> list[Path]:
        """Complete files waiting in incoming/, by name (hidden names are temporaries)."""
        return sorted(
            p for p in self.incoming.iterdir() if p.is_file() and not p.name.startswith(".") and is_image_path(p)
        )

    def file_stats(self, folder: str) -> dict[str, os.stat_result]:
        """The image files the user sees in one of the three folders, by name, with their stat."""
        found = {}
        with os.scandir(self.root / folder) as entries:
            for entry in entries:
                if entry.name.startswith(".") or os.path.splitext(entry.name)[1].lower() not in IMAGE_EXTENSIONS:
                    continue  # (not is_image_path: a Path per file is most of the time of a large folder)
                with contextlib.suppress(FileNotFoundError):  # gone since the listing: as if never there
                    if entry.is_file():
                        found[entry.name] = entry.stat()
        return found

    def batch_rows(self) -> list[sqlite3.Row]:
        return self.conn.execute("SELECT * FROM batches ORDER BY number").fetchall()

    # -- writing ------------------------------------------------------------------------------

    def commit(self, change: Commit) -> None:
        """Write `change` in one transaction (moves as a journal), then do the moves, then the archive."""
        if not change:
            return
        now = time.time()
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            names = NamePlanner(self)
            self._write_user_changes(change)
            self._write_new_images(change, names, now)
            self._write_relocations(change, names)
            self._write_decisions(change, now)
            self.conn.executemany(
                "INSERT INTO pending_moves (op, src, dst) VALUES ('delete', ?, '')",
                [(self._relative(path),) for path in change.deletions],
            )
            meta = dict(change.meta)
            if change.state is not None:
                meta["state"] = change.state.to_json()
            self.conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", meta.items())
            if change.batch_row is not None:
                row = dict(change.batch_row, finished_at=now)
                self.conn.execute(
                    f"INSERT INTO batches ({','.join(row)}) VALUES ({','.join('?' * len(row))})", tuple(row.values())
                )
            self.conn.execute("COMMIT")
        except BaseException as exc:
            if self.conn.in_transaction:  # a failed COMMIT (a full disk) has already rolled back
                self.conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):
                raise WorkspaceError(f"{self.database_path}: {describe_failure(exc)}") from None
            raise
        if "identities" in meta:
            self.ensure_folders()  # a founded identity's folders, before the moves into them
        self._apply_pending_moves()
        if "identities" in meta:
            self._watch_folders()
        if change.batch_row is not None:
            append_archive(self.archive_path, dict(change.batch_row, finished_at=now))

    def _write_user_changes(self, change: Commit) -> None:
        # Every changed row leaves its place first, so that swapped or reused names never clash.
        self.conn.executemany(
            "UPDATE images SET folder=? WHERE id=?", [(DELETED, image_id) for image_id, _ in change.user_changes]
        )
        for image_id, columns in change.user_changes:
            sets = ", ".join(f"{column}=?" for column in columns)
            self.conn.execute(f"UPDATE images SET {sets} WHERE id=?", (*columns.values(), image_id))

    def _write_new_images(self, change: Commit, names: NamePlanner, now: float) -> None:
        for image in change.new_images:
            wanted = image.name or image.path.name
            name = image.path.name if image.op == "none" else names.reserve(image.folder, wanted, image.bound)
            self.conn.execute(
                "INSERT INTO images (content_hash, folder, name, size, mtime_ns, n_faces, descriptor, error, "
                "origin, first_batch, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    image.content_hash,
                    image.folder,
                    name,
                    image.size,
                    image.mtime_ns,
                    image.n_faces,
                    None if image.descriptor is None else to_blob(image.descriptor),
                    image.error,
                    image.origin,
                    change.batch,
                    now,
                ),
            )
            if image.op != "none":
                src = str(image.path) if image.op == "copy" else self._relative(image.path)
                self.conn.execute(
                    "INSERT INTO pending_moves (op, src, dst) VALUES (?, ?, ?)",
                    (image.op, src, f"{image.folder}/{name}"),
                )

    def _write_relocations(self, change: Commit, names: NamePlanner) -> None:
        for move in change.relocations:
            row = self.conn.execute(
                "SELECT folder, name, user_removed FROM images WHERE id=?", (move.image_id,)
            ).fetchone()
            if row is None or row["folder"] == DELETED:
                continue
            name = names.reserve(move.folder, row["name"], move.bound)
            removed = row["user_removed"] if move.user_removed is None else int(move.user_removed)
            self.conn.execute(
                "UPDATE images SET folder=?, name=?, user_removed=? WHERE id=?",
                (move.folder, name, removed, move.image_id),
            )
            self.conn.execute(
                "INSERT INTO pending_moves (op, src, dst) VALUES ('move', ?, ?)",
                (f"{row['folder']}/{row['name']}", f"{move.folder}/{name}"),
            )

    def _write_decisions(self, change: Commit, now: float) -> None:
        for decision in change.decisions:
            image_id = self.conn.execute(
                "SELECT id FROM images WHERE content_hash=?", (decision.content_hash,)
            ).fetchone()[0]
            self.conn.execute(
                "INSERT INTO decisions (batch, image_id, verdict, reason, score, bound, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    change.batch,
                    image_id,
                    decision.verdict,
                    decision.reason,
                    _finite_or_none(decision.score),
                    _finite_or_none(decision.bound),
                    now,
                ),
            )

    def _apply_pending_moves(self) -> None:
        """Do the journal's file operations; each is idempotent, so a killed run's journal is safe to redo."""
        moves = self.conn.execute("SELECT id, op, src, dst FROM pending_moves ORDER BY id").fetchall()
        if not moves:
            return
        with self.watch.own_changes():
            for _move_id, op, src, dst in moves:
                if not self._apply_one(op, src, dst):  # someone else's hand was in it: curation lists all next time
                    self.watch.forget()
        self.conn.execute("DELETE FROM pending_moves WHERE id <= ?", (moves[-1][0],))

    def _apply_one(self, op: str, src: str, dst: str) -> bool:
        """One journal operation; False when it did not go as the journal planned."""
        if op == "copy":
            return copy_once(Path(src), self.root / dst)
        if op == "delete":
            (self.root / src).unlink(missing_ok=True)  # a file the miner made in incoming/
            return True
        return self._move_once(self.root / src, dst)

    def _move_once(self, src: Path, dst_relative: str) -> bool:
        """Move src to dst; False when it did not go as the journal planned."""
        dst = self.root / dst_relative
        if not src.exists():
            return False  # done before the kill, or the user took the file: the next reconcile sees which
        if not dst.exists():
            os.replace(src, dst)
            return True
        if same_content(src, dst):
            src.unlink()
            return True
        # Someone put another file under this name between the journal and now: keep both.
        folder = dst.parent
        fresh = free_name(folder, dst.name)
        os.replace(src, fresh)
        self.conn.execute(
            f"UPDATE images SET name=? WHERE folder=? AND name=? AND folder != '{DELETED}'",
            (fresh.name, self._relative(folder), dst.name),
        )
        return False

    def _relative(self, path: Path) -> str:
        return Path(path).resolve().relative_to(self.root.resolve()).as_posix()


def _finite_or_none(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def file_identity(path: Path) -> tuple[str, int, int]:
    """(content hash, size, mtime_ns) of a file; raises ImageError when it cannot be read."""
    data = read_bytes(path)
    stat = path.stat()
    return content_hash(data), stat.st_size, stat.st_mtime_ns


def settings_meta(**values) -> dict[str, str]:
    return {key: json.dumps(value, sort_keys=True) for key, value in values.items()}
