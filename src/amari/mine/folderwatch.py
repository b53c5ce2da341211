"""Which of the workspace's folders changed since the miner last knew them, without listing them.

Listing a folder and looking at every file costs as much as the folder holds (tens of thousands of
images in a long mining run), so curation lists only the folders that may have changed. Adding,
removing or renaming an entry changes its folder's modification time, so a user's move, rename,
delete or drop shows in the folder's own `stat`, one call however many files it holds. Rewriting a file
in place (an editor saving over it, `touch`) does not: the periodic full listing catches that.

A folder is listed when:
- the miner has not listed it in this run yet (a user may have done anything between runs);
- its inode, device or modification time is not what the miner last knew;
- it was listed while its modification time was recent (`RACY_SECONDS`): a change made in the same
  timestamp tick after that look would leave the time unchanged, so once the tick is surely over it is
  listed once more (git's "racy timestamp" rule; 2 s covers FAT's coarse timestamps);
- every `RESCAN_SECONDS`, all of them are listed, whatever their times say.

The miner's own moves change the folders too. Around them (`own_changes`) each folder is looked at
before and after: one that was as the miner knew it before is known after as well, so the miner's own
moves never force a listing. A change that the user makes in the same instant (within one timestamp
tick of the miner's own move into that folder) is the one thing this can miss; the periodic listing
finds it, at most `RESCAN_SECONDS` later.

The folder source watches its own folder and sub-folders by the same rules (`amari.mine.sourcelisting`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

RACY_SECONDS = 2.0
RESCAN_SECONDS = 60.0


@dataclass(frozen=True)
class _Mark:
    """A folder as the miner last knew it."""

    identity: tuple[int, int, int]  # (device, inode, modification time in ns)
    own: bool  # the time is the one the miner's own moves left
    settle_ns: int | None  # wall time after which a listing made in a racy moment is made again


def _identity(stat: os.stat_result) -> tuple[int, int, int]:
    return stat.st_dev, stat.st_ino, stat.st_mtime_ns


class FolderWatch:
    """The folders to list at each pass (curation's, the folder source's); `clock` and `wall_ns` are there for tests."""

    def __init__(
        self,
        folders: dict[str, Path],
        rescan_seconds: float = RESCAN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        wall_ns: Callable[[], int] = time.time_ns,
    ):
        self.folders = folders
        self.rescan_seconds = rescan_seconds
        self.clock, self.wall_ns = clock, wall_ns
        self.marks: dict[str, _Mark] = {}
        self.listed_at: float | None = None  # when every folder was last listed
        self.listings = 0  # folders listed in this run, for tests and benchmarks
        self._looked_ns = 0

    def due(self) -> dict[str, os.stat_result | None]:
        """The folders to list now, with their stat taken before the listing (give it back to `listed`);
        None for one that is gone."""
        now = self.clock()
        everything = self.listed_at is None or now - self.listed_at >= self.rescan_seconds
        self._looked_ns = self.wall_ns()
        due = {}
        for name, path in self.folders.items():
            try:
                stat = os.stat(path)
            except FileNotFoundError:
                due[name] = None  # gone: what that means is the caller's to say
                continue
            mark = self.marks.get(name)
            if (
                everything
                or mark is None
                or mark.identity != _identity(stat)
                or (mark.settle_ns is not None and self._looked_ns >= mark.settle_ns)
            ):
                due[name] = stat
        if everything:
            self.listed_at = now
        return due

    def listed(self, looked: dict[str, os.stat_result]) -> None:
        """The folders `due` returned were listed and the database agrees with what the listing found."""
        for name, stat in looked.items():
            previous = self.marks.get(name)
            own = previous is not None and previous.own and previous.identity == _identity(stat)
            # An own move's tick is the accepted blind spot above; any other recent change is re-listed.
            racy = not own and self._looked_ns - stat.st_mtime_ns < RACY_SECONDS * 1e9
            settle = stat.st_mtime_ns + int(RACY_SECONDS * 1e9) if racy else None
            self.marks[name] = _Mark(_identity(stat), own, settle)
        self.listings += len(looked)

    @contextmanager
    def own_changes(self) -> Iterator[None]:
        """Around the miner's own file moves: a folder that was as known before them is known after them."""
        before = {name: self._identity(path) for name, path in self.folders.items()}
        yield
        for name, path in self.folders.items():
            mark = self.marks.get(name)
            if mark is None or before[name] != mark.identity:
                continue  # unknown, or changed by someone else since: it stays due
            after = self._identity(path)
            if after is not None and after != mark.identity:
                self.marks[name] = _Mark(after, True, mark.settle_ns)

    def forget(self) -> None:
        """List every folder at the next pass: something happened that the marks cannot account for."""
        self.marks.clear()

    @staticmethod
    def _identity(path: Path) -> tuple[int, int, int] | None:
        try:
            return _identity(os.stat(path))
        except OSError:
            return None
