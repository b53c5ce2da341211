"""The folder source takes the same files in the same order as a full walk before each file would, at a
cost that does not grow with the files it took: it keeps what it listed (`amari.mine.sourcelisting`).

The reference a test compares with is the rule itself: the first file, in `image_files` order, whose
(path, size, time) the ledger lacks. A change a folder's time cannot show (one in the same timestamp
tick, a file rewritten in place) is made by putting the folder's time back with `os.utime`; the watch's
clocks are moved on instead of waited for.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from amari.faces.embeddings import content_hash
from amari.mine.folderwatch import RACY_SECONDS, RESCAN_SECONDS
from amari.mine.source import FolderSource
from amari.storage.images import image_files
from amari.storage.sqlite import connect

LEDGER = "folder_source_ledger"


def write_unique(path: Path, seed: int) -> Path:
    """An 8×8 PNG whose content no other seed gives."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path)
    return path


def first_untaken(folder: Path, places: set[tuple[str, int, int]], contents: set[str]) -> str | None:
    """What a walk of the whole folder before each file would take next: the first file whose place
    (path, size, time) is not taken; one whose content was taken is recorded as taken, not copied."""
    for path in image_files(folder):
        stat = path.stat()
        place = (path.relative_to(folder).as_posix(), stat.st_size, stat.st_mtime_ns)
        if place in places:
            continue
        if content_hash(path.read_bytes()) in contents:
            places.add(place)
            continue
        return place[0]
    return None


def take_one(source: FolderSource, incoming: Path) -> str | None:
    copied = source.next_batch(1, incoming)
    if not copied:
        return None
    row = source._ledger.execute(f"SELECT relpath FROM {LEDGER} WHERE copied_as=?", (copied[0].name,)).fetchone()
    return row[0]


def test_files_are_taken_in_the_order_of_a_full_walk_while_the_folder_changes(tmp_path):
    """Files added with earlier names, in new sub-folders, removed, renamed, whole sub-folders removed:
    after each change the source takes what a full walk would have taken."""
    folder, incoming = tmp_path / "outputs", tmp_path / "incoming"
    rng = np.random.default_rng(7)
    seeds = iter(range(10_000))
    for i in range(6):
        write_unique(folder / f"{rng.integers(100, 999)}-{i}.png", next(seeds))
    source = FolderSource(folder, poll_interval=0.01)
    source.open(tmp_path / "state.sqlite")
    places: set[tuple[str, int, int]] = set()
    contents: set[str] = set()
    for step in range(70):
        change = rng.integers(0, 6)
        files = image_files(folder)
        if change <= 1:  # a new file, anywhere in the order, sometimes in a new sub-folder
            sub = rng.choice(["", "a/", "b/", f"day{rng.integers(0, 4)}/", "a/deeper/"])
            write_unique(folder / f"{sub}{rng.integers(100, 999)}-{step}.png", next(seeds))
        elif change == 2 and files:  # a file removed
            files[rng.integers(0, len(files))].unlink()
        elif change == 3 and files:  # a file renamed
            path = files[rng.integers(0, len(files))]
            path.rename(path.with_name(f"{rng.integers(100, 999)}-{step}-renamed.png"))
        elif change == 4 and rng.random() < 0.3:  # a whole sub-folder removed
            shutil.rmtree(folder / rng.choice(["a", "b", "day1"]), ignore_errors=True)
        time.sleep(0.02)  # past the poll, and the change's timestamp tick (the racy test has one inside it)
        expected = first_untaken(folder, places, contents)
        got = take_one(source, incoming)
        assert got == expected, step
        if got is not None:
            stat = (folder / got).stat()
            places.add((got, stat.st_size, stat.st_mtime_ns))
            contents.add(content_hash((folder / got).read_bytes()))
    source.close()


def test_a_look_lists_nothing_until_a_folder_changes_and_once_more_before_the_end(tmp_path):
    folder, incoming = tmp_path / "outputs", tmp_path / "incoming"
    for i in range(40):
        write_unique(folder / f"day{i % 4}" / f"{i:03d}.png", i)
    source = FolderSource(folder, poll_interval=0.01)
    listings = source.listing.watch
    listings.wall_ns = lambda: time.time_ns() + int(10e9)  # as if the files were old: no racy listing
    names = [take_one(source, incoming) for _ in range(20)]
    assert names == [f"day{d}/{i:03d}.png" for d in range(2) for i in range(d, 40, 4)]
    assert listings.listings == 5  # the folder and its four sub-folders, once, for 20 files
    write_unique(folder / "day3" / "000.png", 100)  # a change: that folder alone is listed again
    time.sleep(0.02)
    assert take_one(source, incoming) == "day2/002.png"
    assert listings.listings == 6
    rest = [take_one(source, incoming) for _ in range(21)]
    assert rest[-1] is None and "day3/000.png" in rest
    # The list ran out: everything was listed once more before the source said it is exhausted.
    assert listings.listings == 11 and source.exhausted
    assert take_one(source, incoming) is None and listings.listings == 11
    source.close()


def test_the_folders_times_are_looked_at_once_per_poll(tmp_path):
    folder, incoming = tmp_path / "outputs", tmp_path / "incoming"
    for name in ("b.png", "c.png", "d.png"):
        write_unique(folder / name, ord(name[0]))
    source = FolderSource(folder, poll_interval=30)
    seconds = [0.0]
    source.listing.watch.clock = lambda: seconds[0]
    assert take_one(source, incoming) == "b.png"
    write_unique(folder / "a.png", 1)
    assert take_one(source, incoming) == "c.png"  # the list as it was, until the poll is over
    seconds[0] += 30
    assert take_one(source, incoming) == "a.png"
    assert [take_one(source, incoming) for _ in range(2)] == ["d.png", None]
    source.close()


def test_a_batch_larger_than_the_folder_copies_each_file_once(tmp_path):
    folder, incoming = tmp_path / "outputs", tmp_path / "incoming"
    for i, name in enumerate(("a.png", "sub/b.png", "c.png")):
        write_unique(folder / name, i)
    source = FolderSource(folder)
    copied = source.next_batch(10, incoming)  # runs out, lists everything again, finds nothing new
    assert [p.name for p in copied] == ["a.png", "c.png", "sub__b.png"] and source.exhausted
    rows = source._ledger.execute(f"SELECT relpath, copied_as FROM {LEDGER} ORDER BY relpath").fetchall()
    assert [tuple(r) for r in rows] == [("a.png", "a.png"), ("c.png", "c.png"), ("sub/b.png", "sub__b.png")]
    assert sorted(p.name for p in incoming.iterdir()) == ["a.png", "c.png", "sub__b.png"]
    source.close()


def test_a_pipe_is_noted_once_and_the_source_still_runs_dry(tmp_path):
    folder, incoming = tmp_path / "outputs", tmp_path / "incoming"
    write_unique(folder / "b.png", 1)
    os.mkfifo(folder / "a.png")
    source = FolderSource(folder)
    assert [take_one(source, incoming) for _ in range(3)] == ["b.png", None, None]
    assert source.exhausted and len(source.notes) == 1 and "a.png: not a regular file" in source.notes[0]
    source.close()


def test_a_file_rewritten_in_place_is_taken_again_before_the_end(tmp_path):
    folder, incoming = tmp_path / "outputs", tmp_path / "incoming"
    for name in ("a.png", "b.png"):
        write_unique(folder / name, len(name) + ord(name[0]))
    source = FolderSource(folder)
    assert take_one(source, incoming) == "a.png"
    before = folder.stat()
    write_unique(folder / "a.png", 99)  # in place: the folder's time does not move
    os.utime(folder / "a.png", ns=(1, 1))
    os.utime(folder, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert take_one(source, incoming) == "b.png"
    assert take_one(source, incoming) == "a.png"
    assert take_one(source, incoming) is None
    source.close()


def test_a_watched_folder_sees_a_change_its_time_hides_once_the_tick_is_over_and_every_minute(tmp_path):
    folder, incoming = tmp_path / "watched", tmp_path / "incoming"
    write_unique(folder / "m.png", 1)
    source = FolderSource(folder, watch=True, poll_interval=0.01)
    watch = source.listing.watch
    seconds, ahead_ns, now_ns = [0.0], [0], time.time_ns()
    watch.clock, watch.wall_ns = (lambda: time.monotonic() + seconds[0]), (lambda: now_ns + ahead_ns[0])
    assert source.next_batch(1, incoming) == [incoming / "m.png"]  # seen, then seen still
    # A file added in the tick of the last listing: the folder's time says nothing.
    before = folder.stat()
    write_unique(folder / "a.png", 2)
    os.utime(folder, ns=(before.st_atime_ns, before.st_mtime_ns))
    time.sleep(0.02)
    source.listing.refresh()
    assert source.listing.pop() is None
    ahead_ns[0] = int((RACY_SECONDS + 1) * 1e9)  # the tick is surely over: listed once more
    assert [p.name for p in source.next_batch(1, incoming)] == ["a.png"]
    # A file rewritten in place: seen at the listing of everything, a minute after the last one.
    write_unique(folder / "m.png", 3)
    os.utime(folder / "m.png", ns=(1, 1))
    os.utime(folder, ns=(before.st_atime_ns, before.st_mtime_ns))
    time.sleep(0.02)
    source.listing.refresh()
    assert source.listing.pop() is None
    seconds[0] += RESCAN_SECONDS
    assert [p.name for p in source.next_batch(1, incoming)] == ["m-1.png"]  # the name m.png is taken
    source.close()


def test_taking_a_file_asks_as_much_of_the_ledger_at_100000_rows_as_when_empty(tmp_path):
    """Ledger rows of files the tool has since removed (the rows stay): the look-ups by place, by
    content and the insert are indexed; only the first look of a run reads the folder's rows."""
    instructions = {}
    for rows in (0, 100_000):
        folder, state = tmp_path / f"outputs{rows}", tmp_path / f"state{rows}.sqlite"
        for i in range(6):
            write_unique(folder / f"new{i}.png", 1000 + i)
        source = FolderSource(folder)
        source.open(state)
        source._ledger.execute("BEGIN")
        source._ledger.executemany(
            f"INSERT INTO {LEDGER} VALUES (?, ?, 1, 1, ?, ?, 0)",
            ((source.key, f"old/{i:06d}.png", f"h{i}", f"old__{i:06d}.png") for i in range(rows)),
        )
        source._ledger.execute("COMMIT")
        incoming = tmp_path / f"incoming{rows}"
        assert take_one(source, incoming) == "new0.png"  # the run's first look lists the folder
        counted, statements = [0], []

        def count(counted=counted) -> int:
            counted[0] += 10
            return 0

        source._ledger.set_progress_handler(count, 10)
        source._ledger.set_trace_callback(statements.append)
        assert [take_one(source, incoming) for _ in range(4)] == [f"new{i}.png" for i in range(1, 5)]
        source._ledger.set_progress_handler(None, 0)
        source._ledger.set_trace_callback(None)
        instructions[rows] = counted[0]
        plans = [
            line
            for statement in statements
            if statement.startswith(("SELECT", "INSERT"))
            for line in (r[3] for r in source._ledger.execute(f"EXPLAIN QUERY PLAN {statement}"))
        ]
        assert plans and not [line for line in plans if line.startswith(f"SCAN {LEDGER}")], plans
        source.close()
    assert instructions[100_000] < 1.5 * instructions[0], instructions


def test_the_ledger_indexes_come_with_a_migration_of_an_older_workspace(tmp_path):
    state = tmp_path / "state.sqlite"
    old = connect(state)
    old.executescript(
        f"""CREATE TABLE {LEDGER} (folder TEXT NOT NULL, relpath TEXT NOT NULL, size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL, content_hash TEXT NOT NULL, copied_as TEXT NOT NULL,
            ingested_at REAL NOT NULL, PRIMARY KEY (folder, relpath, size, mtime_ns));
        INSERT INTO _migrations VALUES ('0001_folder_source_ledger', 0);"""
    )
    old.close()
    source = FolderSource(tmp_path)
    source.open(state)
    indexes = {r[0] for r in source._ledger.execute(f"SELECT name FROM sqlite_master WHERE tbl_name='{LEDGER}'")}
    assert {"folder_source_ledger_content", "folder_source_ledger_copied_as"} <= indexes
    source.close()


def test_the_ledger_names_folders_relative_to_the_workspace_and_keeps_what_older_runs_took(tmp_path):
    """The workspace database names no folder of the machine: a source folder is kept by its path relative
    to the workspace, and a ledger that named it by its absolute path still counts its files as taken."""
    workspace, folder = tmp_path / "ws", tmp_path / "outputs"
    workspace.mkdir()
    taken, fresh = write_unique(folder / "a.png", 1), write_unique(folder / "b.png", 2)
    stat = taken.stat()
    old = connect(workspace / "mine.sqlite")
    old.executescript(
        f"""CREATE TABLE {LEDGER} (folder TEXT NOT NULL, relpath TEXT NOT NULL, size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL, content_hash TEXT NOT NULL, copied_as TEXT NOT NULL,
            ingested_at REAL NOT NULL, PRIMARY KEY (folder, relpath, size, mtime_ns));
        INSERT INTO _migrations VALUES ('0001_folder_source_ledger', 0);"""
    )
    old.execute(
        f"INSERT INTO {LEDGER} VALUES (?, 'a.png', ?, ?, 'h', 'a.png', 0)",
        (str(folder.resolve()), stat.st_size, stat.st_mtime_ns),
    )
    old.commit()
    old.close()
    source = FolderSource(folder)
    source.open(workspace / "mine.sqlite")
    assert [p.name for p in source.next_batch(5, tmp_path / "incoming")] == [fresh.name]
    names = {row[0] for row in source._ledger.execute(f"SELECT DISTINCT folder FROM {LEDGER}")}
    assert names == {"../outputs"} and source.description == "folder:../outputs"  # as progress.json shows it
    source.close()


@pytest.mark.parametrize("watch", [False, True])
def test_a_sub_folder_replaced_by_a_file_or_gone_ends_nothing(tmp_path, watch):
    folder, incoming = tmp_path / "outputs", tmp_path / "incoming"
    write_unique(folder / "a" / "1.png", 1)
    write_unique(folder / "b.png", 2)
    source = FolderSource(folder, watch=watch, poll_interval=0.01)
    source.listing.refresh()
    shutil.rmtree(folder / "a")
    (folder / "a").write_bytes(b"not a folder")
    time.sleep(0.02)
    copied = [p.name for p in source.next_batch(2, incoming)]
    assert copied == ["b.png"]
    source.close()
