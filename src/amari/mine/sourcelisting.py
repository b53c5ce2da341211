"""The files of a source folder not taken yet, in name order, kept between looks.

A tool's output folder grows to tens of thousands of files, and the folder source takes them one at a
time: walking the whole tree before each one costs as much as the tree holds. So the files not taken
yet are listed once and kept in name order; before each look a (sub-)folder is listed again only when
it may have changed, by the rules of `amari.mine.folderwatch`: its own time moved (a file added,
removed or renamed), a listing made in a racy moment, or every `RESCAN_SECONDS` all of them (a file
rewritten in place changes no folder's time). A look then costs one `stat` per folder and the files it
examines, however many were taken before.

Names sort as `pathlib` sorts them (part by part), so the order is the one a full walk gives.
"""

from __future__ import annotations

import heapq
import os
import time
from collections.abc import Callable
from pathlib import Path

from amari.mine.folderwatch import RESCAN_SECONDS, FolderWatch
from amari.storage.images import IMAGE_EXTENSIONS

ROOT = ""  # the source folder itself, among its sub-folders' relative paths

# (relative path, size, mtime_ns) of the files under a sub-folder that count as taken
TakenUnder = Callable[[str], set[tuple[str, int, int]]]


def _order(relpath: str) -> list[str]:
    return relpath.split("/")


def _parent(relpath: str) -> str:
    return relpath.rpartition("/")[0]


def _within(relpath: str, folders: list[str]) -> bool:
    """Whether a path is one of these folders or lies under one."""
    return any(folder == ROOT or relpath == folder or relpath.startswith(folder + "/") for folder in folders)


class SourceListing:
    """Files that may still be taken, first name first; `pop` the next, `put_back` what stays for later."""

    def __init__(
        self,
        folder: Path,
        taken_under: TakenUnder,
        look_seconds: float = 0.0,
        rescan_seconds: float = RESCAN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        wall_ns: Callable[[], int] = time.time_ns,
    ):
        self.folder = folder
        self.taken_under = taken_under
        self.look_seconds = look_seconds
        self.watch = FolderWatch({ROOT: folder}, rescan_seconds, clock, wall_ns)
        self._looked_at: float | None = None  # when the folders' times were last looked at
        self._next: list[str] = []  # in reverse name order, so that the first name is popped off the end

    def pop(self) -> str | None:
        return self._next.pop() if self._next else None

    def put_back(self, relpaths: list[str]) -> None:
        """Files popped and not taken (held or skipped for now): back into their places."""
        for relpath in relpaths:
            key, low, high = _order(relpath), 0, len(self._next)
            while low < high:  # the list runs backwards: the first place whose name sorts before this one
                middle = (low + high) // 2
                if _order(self._next[middle]) > key:
                    low = middle + 1
                else:
                    high = middle
            self._next.insert(low, relpath)

    def relist_all(self) -> None:
        """List every folder at the next `refresh`, whatever their times say."""
        self.watch.forget()
        self._looked_at = None

    def refresh(self) -> None:
        """List again the folders that may have changed, and the sub-folders that appeared in them; their
        times are looked at once every `look_seconds` (a `stat` per folder, for a tree of dated folders
        hundreds of them: too many for every file)."""
        now = self.watch.clock()
        if self._looked_at is not None and now - self._looked_at < self.look_seconds:
            return
        self._looked_at = now
        due = self.watch.due()
        if not due:
            return
        children: dict[str, set[str]] = {}
        for name in self.watch.folders:
            if name != ROOT:
                children.setdefault(_parent(name), set()).add(name)
        looked: dict[str, os.stat_result] = {}
        found: list[str] = []
        gone: list[str] = []
        folders = list(due.items())
        while folders:
            folder, stat = folders.pop()
            if stat is None:
                gone.append(folder)
                continue
            files, subfolders = self._list(folder)
            looked[folder] = stat
            found += files
            known = children.get(folder, set())
            gone += known - set(subfolders)
            for name in set(subfolders) - known:
                try:
                    folders.append((name, os.stat(self.folder / name)))  # before it is listed: see `listed`
                except OSError:
                    continue  # gone since the listing
                self.watch.folders[name] = self.folder / name
        if gone:
            self._forget_folders(gone)
            looked = {name: stat for name, stat in looked.items() if not _within(name, gone)}
            found = [relpath for relpath in found if not _within(relpath, gone)]
        listed = set(looked)
        kept = (r for r in self._next if _parent(r) not in listed and not (gone and _within(r, gone)))
        found.sort(key=_order, reverse=True)
        self._next = list(heapq.merge(kept, found, key=_order, reverse=True))  # both run backwards
        self.watch.listed(looked)

    def _forget_folders(self, gone: list[str]) -> None:
        for name in [n for n in self.watch.folders if n != ROOT and _within(n, gone)]:
            del self.watch.folders[name]
            self.watch.marks.pop(name, None)

    def _list(self, folder: str) -> tuple[list[str], list[str]]:
        """(files not taken, sub-folders) directly in one folder; hidden names and other files left out."""
        prefix = f"{folder}/" if folder != ROOT else ""
        taken = self.taken_under(folder)
        files, subfolders = [], []
        try:
            entries = list(os.scandir(self.folder / folder))
        except (FileNotFoundError, NotADirectoryError):
            return [], []  # gone since its stat: the next look finds it missing
        for entry in entries:
            relpath = prefix + entry.name
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir():
                    if not entry.is_symlink():  # as os.walk: a linked folder is not entered
                        subfolders.append(relpath)
                    continue
                if os.path.splitext(entry.name)[1].lower() not in IMAGE_EXTENSIONS:
                    continue
                stat = entry.stat()
            except OSError:
                continue  # gone since the listing, or a link to nothing
            if (relpath, stat.st_size, stat.st_mtime_ns) not in taken:
                files.append(relpath)
        return files, subfolders
