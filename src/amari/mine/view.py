"""A workspace seen from another process (`amari serve`): the miner's database opened read-only.

The view takes no lock and never writes: a miner may own the workspace at the same time, and the
database stays the miner's. SQLite's WAL mode lets this reader see each committed batch without
holding the writer up. A workspace no miner has run in yet reads as empty.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from amari.errors import WorkspaceError
from amari.mine.policy import JUDGED, MinerState
from amari.mine.records import ImageRow, image_row
from amari.storage.layout import WorkspaceLayout


@dataclass(frozen=True)
class Analysis:
    """One finished batch as the mining curve shows it."""

    batch: int
    group_size: int
    avg: float
    hi: float
    event: str


@dataclass(frozen=True)
class Verdict:
    """A decision of the miner (or a change of the user's it recorded), newest first in `recent`."""

    id: int
    batch: int
    folder: str  # where the image is now
    name: str
    verdict: str  # where the decision put it
    reason: str
    score: float | None


class WorkspaceView:
    """Read-only queries on a workspace's database; each opens and closes its own connection."""

    def __init__(self, layout: WorkspaceLayout):
        self.layout = layout

    def _query(self, sql: str, parameters=()) -> list[sqlite3.Row]:
        path = Path(self.layout.database).resolve()
        if not path.is_file():
            return []
        try:
            conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5)
        except sqlite3.Error as exc:
            raise WorkspaceError(f"{self.layout.database}: cannot be read ({exc})") from None
        conn.row_factory = sqlite3.Row
        try:
            return conn.execute(sql, parameters).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # created, not yet migrated by a miner
                return []
            raise WorkspaceError(f"{self.layout.database}: cannot be read ({exc})") from None
        except sqlite3.DatabaseError as exc:
            raise WorkspaceError(f"{self.layout.database} is not a readable database ({exc})") from None
        finally:
            conn.close()

    def images(self) -> list[ImageRow]:
        """Every image the miner knows, oldest first; a deleted one is in the folder "deleted"."""
        return [image_row(r) for r in self._query("SELECT * FROM images ORDER BY id")]

    def state(self) -> MinerState:
        rows = self._query("SELECT value FROM meta WHERE key='state'")
        return MinerState.from_json(rows[0][0]) if rows else MinerState()

    def analyses(self) -> list[Analysis]:
        """Every finished batch, in order."""
        rows = self._query("SELECT number, group_size, avg, hi, event FROM batches ORDER BY number")
        return [Analysis(r["number"], r["group_size"], r["avg"], r["hi"], r["event"]) for r in rows]

    def recent(self, limit: int = 12) -> list[Verdict]:
        """The last decisions, newest first, with where each image is now."""
        rows = self._query(
            "SELECT d.id, d.batch, d.verdict, d.reason, d.score, i.folder, i.name FROM decisions d "
            "JOIN images i ON i.id = d.image_id ORDER BY d.id DESC LIMIT ?",
            (limit,),
        )
        return [
            Verdict(r["id"], r["batch"], r["folder"], r["name"], r["verdict"], r["reason"], r["score"]) for r in rows
        ]

    def batch_totals(self, after: int, until: int) -> tuple[int, int]:
        """(candidates judged, images that joined the group) in batches after..until (inclusive)."""
        rows = self._query(
            "SELECT COALESCE(SUM(received), 0), COALESCE(SUM(joined), 0) FROM batches WHERE number > ? AND number <= ?",
            (after, until),
        )
        return (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)

    def candidate_scores(self, after: int, until: int) -> list[float]:
        """The sim-score of every candidate with a face that batches after..until judged against a group."""
        marks = ",".join("?" * len(JUDGED))
        rows = self._query(
            f"SELECT score FROM decisions WHERE batch > ? AND batch <= ? AND reason IN ({marks}) AND score IS NOT NULL",
            (after, until, *JUDGED.values()),
        )
        return [float(r[0]) for r in rows]

    def cached_faces(self, digests, settings_key: str) -> dict[str, list]:
        """The faces the miner found in these images (by content hash), from its cache; missing ones left out."""
        path = Path(self.layout.database).resolve()
        if not path.is_file():
            return {}
        from amari.faces.embeddings import EmbeddingCache

        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            cache = EmbeddingCache(connection=conn)
            found = {digest: cache.get(digest, settings_key) for digest in digests}
        finally:
            conn.close()
        return {digest: faces for digest, faces in found.items() if faces is not None}

    def version(self) -> tuple[int, int, int, int]:
        """Changes whenever the miner commits: the database's and its write-ahead log's size and time."""
        found = []
        for path in (Path(self.layout.database), Path(f"{self.layout.database}-wal")):
            try:
                stat = path.stat()
                found += [stat.st_size, stat.st_mtime_ns]
            except FileNotFoundError:
                found += [0, 0]
        return tuple(found)
