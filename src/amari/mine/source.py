"""Where the miner's candidate images come from: feeds, behind one small interface.

A feed puts candidates into the engine (`amari.mine.engine`) in the order the policy takes them, and
writes their files into the workspace's `incoming/` folder; the miner judges each and moves it into
sim-group/, almost-sim/ or unknown-person/. Two feeds exist:

- `folder:PATH` (`FolderSource`) copies images that another tool (A1111, ComfyUI, InvokeAI, a camera)
  writes into PATH, in sorted order, never touching PATH; with `watch` it keeps waiting for new files.
- `diffusers` (`amari.generate.DiffusersSource`) generates them with Stable Diffusion.

The caller builds the feed and hands it to `amari.mine.run`. Rules every feed keeps, so that a killed
miner resumes without losing or repeating an image: write each file under a hidden temporary name and
rename it when complete; remember what was produced in the workspace database (`open(state_path)`);
offer what a killed run left in incoming/ first (`start`); never delete a file it did not create.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from pathlib import Path
from stat import S_ISREG
from typing import Protocol

from amari.errors import UsageError
from amari.faces.embeddings import content_hash
from amari.mine.sourcelisting import SourceListing
from amari.storage.files import fit_name, free_name, same_content
from amari.storage.images import is_image_path, read_bytes
from amari.storage.sqlite import connect, migrate


class Source(Protocol):
    description: str
    notes: list[str]  # what the user should hear (files skipped and why); the miner reports and clears them

    def open(self, state_path: Path) -> None:
        """Called once the workspace is open: where the feed remembers what it produced."""
        ...

    def start(self, engine, context) -> None:
        """Queue what a killed run left in incoming/ (`context` is an `amari.mine.engine.FeedContext`)."""
        ...

    def more(self, engine) -> bool:
        """Queue more candidates without waiting; False when there is nothing more now."""
        ...

    def wait_for_more(self) -> bool:
        """Nothing is queued or under way: wait for more (a watched folder), or say there is none."""
        ...

    def release(self, candidates: list) -> None:
        """The run ends with these candidates made ahead and not judged."""
        ...

    def made(self, name: str, digest: str) -> bool:
        """Whether this feed wrote the file `name` with this content into incoming/ (only such files
        may be deleted there: the miner never deletes a file it did not create)."""
        ...

    def close(self) -> None: ...


_LEDGER_MIGRATIONS = [
    (
        "0001_folder_source_ledger",
        """
        CREATE TABLE folder_source_ledger (
            folder TEXT NOT NULL,
            relpath TEXT NOT NULL,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            content_hash TEXT NOT NULL,
            copied_as TEXT NOT NULL,
            ingested_at REAL NOT NULL,
            PRIMARY KEY (folder, relpath, size, mtime_ns)
        )
    """,
    ),
    (
        # A copy's content is looked up by its hash, and a copy made ahead by its name: at 100,000 rows a
        # scan of the table for each file cost more than copying it.
        "0002_folder_source_ledger_indexes",
        """
        CREATE INDEX folder_source_ledger_content ON folder_source_ledger (content_hash);
        CREATE INDEX folder_source_ledger_copied_as ON folder_source_ledger (copied_as)
    """,
    ),
]


class FolderSource:
    """Copies images another tool writes into a folder, oldest name first, each file once.

    A file counts as new until it is in the ledger (kept in `state_path`, the workspace database);
    a changed file (new size or time) counts as new again, and the miner drops it if its content is
    one it already has. With `watch`, only files whose size and time held still for one poll are
    taken, so a file another program is still writing is not copied half-done.

    The files not taken yet are listed once and kept (`amari.mine.sourcelisting`): the folders' times
    are looked at once every `poll_interval`, a folder is listed again when its time says it changed,
    all of them every minute, and, without `watch`, once more when the list runs out, before the source
    says it is exhausted. So taking a file costs the same after 100,000 files as after none; a file
    added, removed or renamed is seen within `poll_interval`, one rewritten in place while a watched
    folder is mined within a minute.
    """

    def __init__(self, folder: str | Path, watch: bool = False, poll_interval: float = 2.0):
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise UsageError(f"source folder {folder} does not exist or is not a folder")
        if not poll_interval > 0:
            raise UsageError(f"the poll interval must be positive, not {poll_interval}")
        self.folder = folder
        self.key = str(folder.resolve())  # the ledger's name for the folder; relative to the workspace once open
        self.watch = watch
        self.poll_interval = poll_interval
        self.description = f"folder:{folder}" + (" (watching)" if self.watch else "")
        self.exhausted = False
        self.notes: list[str] = []
        self._ledger = _memory_ledger()
        self.listing = SourceListing(folder, self._taken_under, look_seconds=poll_interval)
        self._listed_since_dry = True  # nothing was taken since the whole folder was last listed
        self._last_seen: dict[str, tuple[int, int]] = {}
        self._skipped: dict[str, tuple[int, int]] = {}  # relpath -> (size, mtime) when it could not be read

    def open(self, state_path: Path) -> None:
        """Keep the ledger in the workspace database, so a rerun carries on where this one stopped.

        The ledger names each source folder by its path relative to the workspace (the database's folder):
        a database names no local folder, and a workspace moved together with its source keeps its ledger.
        """
        self._ledger.close()
        self._ledger = connect(state_path, _LEDGER_MIGRATIONS)
        workspace = Path(state_path).resolve().parent
        self.key = Path(os.path.relpath(self.folder.resolve(), workspace)).as_posix()
        # The miner publishes its source's description in the workspace (progress.json): relative there too.
        self.description = f"folder:{self.key}" + (" (watching)" if self.watch else "")
        # Ledgers written before named folders by absolute path: the same rows, by their relative names.
        for (folder,) in self._ledger.execute("SELECT DISTINCT folder FROM folder_source_ledger").fetchall():
            if Path(folder).is_absolute():
                relative = Path(os.path.relpath(folder, workspace)).as_posix()
                self._ledger.execute(
                    "UPDATE OR REPLACE folder_source_ledger SET folder=? WHERE folder=?", (relative, folder)
                )

    # -- as the miner's feed ----------------------------------------------------------------------

    def start(self, engine, context) -> None:
        """What a killed run copied but did not judge, and what the user dropped there, comes first."""
        self._engine, self._context = engine, context
        for path in leftover_files(context.incoming):
            self._queue(path, None)

    def more(self, engine) -> bool:
        copied = self._copy_new(1, self._context.incoming, self._context.known)
        for path, digest in copied:
            self._queue(path, digest)
        return bool(copied)

    def wait_for_more(self) -> bool:
        if not self.watch:
            return False
        time.sleep(self.poll_interval)
        return True

    def _queue(self, path: Path, digest: str | None) -> None:
        """A file in incoming/ becomes a candidate once its faces are known (from the cache, else a worker)."""
        from amari.mine.work import Inspected

        candidate = self._engine.add_candidate(path.name)
        context = self._context
        faces = context.cache.get(digest, context.settings.key) if digest else None
        if faces is not None:
            candidate.final = context.accept(path, Inspected(None, digest, faces, (0, 0)), cache=False)
            return

        def inspected(result) -> None:
            candidate.final = context.accept(path, result)

        context.inspect(self._engine, path, inspected)

    def next_batch(self, n: int, out_dir: Path, context=None) -> list[Path]:
        """Copy up to n new files into `out_dir` and return them; a watched folder waits for one."""
        if n < 1:
            raise ValueError(f"a batch needs at least one image, not {n}")
        known = context.known if context is not None else (lambda digest: False)
        while True:
            copied = self._copy_new(n, out_dir, known)
            if copied or not self.watch:
                return [path for path, _digest in copied]
            time.sleep(self.poll_interval)

    def _copy_new(self, n: int, out_dir: Path, known) -> list[tuple[Path, str]]:
        """(path, content hash) of up to n files copied now; sets `exhausted` once nothing is left."""
        out_dir.mkdir(parents=True, exist_ok=True)
        _remove_partial_copies(out_dir)
        written: list[tuple[Path, str]] = []
        while len(written) < n:
            wanted = n - len(written)
            fresh = self._new_files(out_dir, wanted)
            written += [copy for copy in (self._copy(path, stat, out_dir, known) for path, stat in fresh) if copy]
            if len(fresh) < wanted:
                # Fewer than asked after a look at the whole folder: nothing else is left that can be copied.
                self.exhausted = not self.watch
                break
        return written

    def made(self, name: str, digest: str) -> bool:
        return False  # it never copies content the workspace (or its own ledger) already has

    def release(self, candidates: list) -> None:
        """Copies made ahead go, and the ledger forgets them, so the next run copies them again: incoming/
        holds no more than what a run was judging when it stopped."""
        for candidate in candidates:
            path = self._context.incoming / candidate.name
            row = self._ledger.execute(
                "SELECT relpath FROM folder_source_ledger WHERE copied_as=?", (candidate.name,)
            ).fetchone()
            if row is not None:
                self._ledger.execute("DELETE FROM folder_source_ledger WHERE copied_as=?", (candidate.name,))
                path.unlink(missing_ok=True)

    def close(self) -> None:
        self._ledger.close()

    # A file is "new" when the ledger lacks it; one already sitting complete in out_dir was copied by
    # a run killed before it wrote the ledger, so it is recorded now instead of copied twice.
    def _new_files(self, out_dir: Path, limit: int) -> list[tuple[Path, os.stat_result]]:
        self.listing.refresh()
        fresh, later, chosen = [], [], set()
        while len(fresh) < limit:
            relpath = self.listing.pop()
            if relpath is None:
                if self.watch or self._listed_since_dry:
                    break
                self._listed_since_dry = True  # before saying nothing is left: list everything once more
                self.listing.relist_all()
                self.listing.refresh()
                continue
            if relpath in chosen:
                continue  # listed again before its copy was made
            path = self.folder / relpath
            try:
                stat = path.stat()
            except OSError:
                continue  # removed since the listing
            if self._ingested(relpath, stat):
                continue
            if self._skip(relpath, stat):
                if self.watch:
                    later.append(relpath)  # looked at again until it changes
                continue
            if self.watch and self._last_seen.get(relpath) != (stat.st_size, stat.st_mtime_ns):
                self._last_seen[relpath] = (stat.st_size, stat.st_mtime_ns)
                later.append(relpath)
                continue  # not yet seen still: maybe being written
            copied = out_dir / _flat_name(relpath)
            if copied.is_file() and same_content(copied, path):
                self._record(relpath, stat, content_hash(read_bytes(copied)), copied.name)
                continue
            fresh.append((path, stat))
            chosen.add(relpath)
            self._listed_since_dry = False
        self.listing.put_back(later)
        return fresh

    def _taken_under(self, folder: str) -> set[tuple[str, int, int]]:
        """(relative path, size, mtime_ns) the ledger holds for the files under a sub-folder ("": all)."""
        query = "SELECT relpath, size, mtime_ns FROM folder_source_ledger WHERE folder=?"
        if not folder:
            return set(map(tuple, self._ledger.execute(query, (self.key,))))
        # The primary key's range: every relpath that starts with "folder/" ("0" follows "/").
        rows = self._ledger.execute(f"{query} AND relpath >= ? AND relpath < ?", (self.key, folder + "/", folder + "0"))
        return set(map(tuple, rows))

    def _skip(self, relpath: str, stat: os.stat_result) -> bool:
        """Files that cannot be read are reported once and passed over; a watched folder tries one
        again once it changed (its permissions fixed, a pipe replaced by a file)."""
        if not S_ISREG(stat.st_mode):
            return self._note_skipped(relpath, stat, "not a regular file (a pipe or a device?)")
        previous = self._skipped.get(relpath)
        return previous is not None and (not self.watch or previous == (stat.st_size, stat.st_mtime_ns))

    def _note_skipped(self, relpath: str, stat: os.stat_result, why: str) -> bool:
        if self._skipped.get(relpath) != (stat.st_size, stat.st_mtime_ns):
            self._skipped[relpath] = (stat.st_size, stat.st_mtime_ns)
            again = ", tried again when it changes" if self.watch else ""
            self.notes.append(f"{self.folder / relpath}: {why}; skipped{again}")
        return True

    def _copy(self, path: Path, stat: os.stat_result, out_dir: Path, known) -> tuple[Path, str] | None:
        """Copy one file into incoming/ (None: unreadable, gone, or content the workspace already has)."""
        relpath = path.relative_to(self.folder).as_posix()
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None  # removed after the look: nothing to copy
        except OSError as exc:
            self._note_skipped(relpath, stat, f"cannot be read ({exc.strerror})")
            if self.watch:
                self.listing.put_back([relpath])  # looked at again until it changes
            return None
        digest = content_hash(data)
        seen = self._ledger.execute("SELECT 1 FROM folder_source_ledger WHERE content_hash=?", (digest,)).fetchone()
        if known(digest) or seen:
            self._record(relpath, stat, digest, "")  # a copy of an image already taken: nothing to judge
            return None
        target = free_name(out_dir, _flat_name(relpath))
        partial = out_dir / f".{target.name}.part"
        try:
            # A failure here is the workspace's (a full or read-only disk): it ends the run with one line.
            with open(partial, "wb") as copy:
                copy.write(data)
            shutil.copystat(path, partial)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, target)
        self._record(relpath, stat, digest, target.name)
        return target, digest

    def _ingested(self, relpath: str, stat: os.stat_result) -> bool:
        row = self._ledger.execute(
            "SELECT 1 FROM folder_source_ledger WHERE folder=? AND relpath=? AND size=? AND mtime_ns=?",
            (self.key, relpath, stat.st_size, stat.st_mtime_ns),
        ).fetchone()
        return row is not None

    def _record(self, relpath: str, stat: os.stat_result, digest: str, copied_as: str) -> None:
        self._ledger.execute(
            "INSERT OR REPLACE INTO folder_source_ledger VALUES (?, ?, ?, ?, ?, ?, ?)",
            (self.key, relpath, stat.st_size, stat.st_mtime_ns, digest, copied_as, time.time()),
        )


def _memory_ledger() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    migrate(conn, _LEDGER_MIGRATIONS)
    return conn


def _flat_name(relpath: str) -> str:
    """Sub-folders become part of the name: 2024-05-01/00012.png → 2024-05-01__00012.png (cut short when
    too long for the names the workspace gives, `fit_name`)."""
    return fit_name(relpath.replace("/", "__"))


def leftover_files(incoming: Path) -> list[Path]:
    """Complete image files waiting in incoming/, by name (hidden names are temporaries)."""
    if not incoming.is_dir():
        return []
    return sorted(p for p in incoming.iterdir() if p.is_file() and not p.name.startswith(".") and is_image_path(p))


def _remove_partial_copies(out_dir: Path) -> None:
    for partial in out_dir.glob(".*.part"):
        partial.unlink(missing_ok=True)
