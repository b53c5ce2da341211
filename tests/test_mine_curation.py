"""Curation's cost follows what changed, not what the folders hold; the database stays indexed as it grows.

A pass lists a folder only when its own `stat` says it may have changed (`amari.mine.folderwatch`).
These tests change real folders and files and look at which passes list what. A change that a folder's
time cannot show (a change in the same timestamp tick, a file rewritten in place) is made by putting
the folder's time back with `os.utime`, as a coarse clock would have left it; the watch's clocks are
given, so that "2 seconds later" and "a minute later" need no waiting.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from amari.faces.descriptors import FaceSettings
from amari.faces.embeddings import EmbeddingCache, FaceEncoder
from amari.mine import MineConfig, policy
from amari.mine.curation import reconcile
from amari.mine.engine import FINAL, Candidate, FeedContext
from amari.mine.folderwatch import RACY_SECONDS, RESCAN_SECONDS, FolderWatch
from amari.mine.loop import members, run_batch
from amari.mine.records import MIGRATIONS, Commit, NewImage
from amari.mine.work import inspect_file
from amari.mine.workspace import DELETED, FOLDERS, Workspace, file_identity
from amari.storage.layout import ALMOST_SIM, SIM_GROUP, UNKNOWN_PERSON
from amari.storage.sqlite import connect, to_blob
from test_mine_run import ASTRONAUT_FACE, amari, assert_consistent, face_variant, mine_args, wait_for


def write_image(path: Path, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)
    return path


class Clocks:
    """The watch's two clocks: monotonic seconds, and the wall clock (compared with file times) moved on."""

    def __init__(self):
        self.seconds = 0.0
        self.ahead_ns = 0

    def wall_ns(self) -> int:
        return time.time_ns() + self.ahead_ns


@pytest.fixture()
def ws(tmp_path):
    """An open workspace holding three faceless images in unknown-person/, and its encoder and clocks."""
    clocks = Clocks()
    with Workspace.open(tmp_path / "ws") as workspace:
        workspace.watch = FolderWatch(workspace.watch.folders, clock=lambda: clocks.seconds, wall_ns=clocks.wall_ns)
        arrive(workspace, {f"img{i}.png": 10 * i for i in range(3)})
        yield workspace, FaceEncoder(FaceSettings(), EmbeddingCache(connection=workspace.conn)), clocks


def arrive(workspace: Workspace, values: dict[str, int], folder: str = UNKNOWN_PERSON) -> None:
    """New faceless images from incoming/, moved into `folder` by the miner itself."""
    change = Commit(batch=workspace.state().batch)
    for name, value in values.items():
        path = write_image(workspace.incoming / name, value)
        digest, size, mtime_ns = file_identity(path)
        change.new_images.append(NewImage(path, folder, digest, size, mtime_ns, 0, None, None, "source"))
    workspace.commit(change)


def age(workspace: Workspace) -> None:
    """Date the folders 10 s back: nobody touched them lately, so a listing of them is not racy."""
    past = time.time_ns() - 10 * 10**9
    for folder in FOLDERS:
        os.utime(workspace.root / folder, ns=(past, past))


def hide_change(folder: Path, mtime_ns: int) -> None:
    """Put a folder's time back, as a change within the same timestamp tick leaves it."""
    os.utime(folder, ns=(mtime_ns, mtime_ns))


def row(workspace: Workspace, name: str) -> sqlite3.Row | None:
    return workspace.conn.execute("SELECT * FROM images WHERE name=?", (name,)).fetchone()


def test_passes_over_untouched_folders_list_nothing_and_the_miners_own_moves_change_that_not(ws):
    workspace, encoder, _ = ws
    age(workspace)
    assert reconcile(workspace, encoder) == [] and workspace.watch.listings == 3  # a run's first pass: all
    statements = []
    workspace.conn.set_trace_callback(statements.append)
    assert reconcile(workspace, encoder) == []
    workspace.conn.set_trace_callback(None)
    assert workspace.watch.listings == 3 and statements == []  # three stat calls, not one query

    arrive(workspace, {"new.png": 200})  # the miner moves a file into unknown-person/ and almost-sim/
    arrive(workspace, {"near.png": 201}, ALMOST_SIM)
    reconcile(workspace, encoder)
    assert workspace.watch.listings == 3
    assert row(workspace, "new.png")["folder"] == UNKNOWN_PERSON


def test_a_users_move_delete_drop_and_rename_are_seen_at_the_next_pass(ws):
    workspace, encoder, _ = ws
    age(workspace)
    reconcile(workspace, encoder)
    arrive(workspace, {"new.png": 200})  # right after the miner's own moves
    unknown, almost = workspace.root / UNKNOWN_PERSON, workspace.root / ALMOST_SIM
    os.replace(unknown / "img0.png", almost / "img0.png")
    (unknown / "img1.png").unlink()
    write_image(unknown / "dropped.png", 77)
    os.replace(unknown / "img2.png", unknown / "renamed.png")

    notes = reconcile(workspace, encoder)
    assert workspace.watch.listings == 3 + 2  # unknown-person and almost-sim; not the untouched sim-group
    assert notes == []
    assert row(workspace, "img0.png")["folder"] == ALMOST_SIM
    assert row(workspace, "img1.png")["folder"] == DELETED
    assert row(workspace, "dropped.png")["origin"] == "user"
    assert row(workspace, "renamed.png")["origin"] == "source" and row(workspace, "img2.png") is None
    assert workspace.counts() == {SIM_GROUP: 0, ALMOST_SIM: 1, UNKNOWN_PERSON: 3}


def test_a_file_rewritten_in_place_is_seen_by_the_periodic_listing(ws):
    workspace, encoder, clocks = ws
    age(workspace)
    reconcile(workspace, encoder)
    path = workspace.root / UNKNOWN_PERSON / "img1.png"
    before = row(workspace, "img1.png")["mtime_ns"]
    os.utime(path, ns=(before + 10**9, before + 10**9))  # touched: its folder's time does not change

    reconcile(workspace, encoder)
    assert row(workspace, "img1.png")["mtime_ns"] == before  # not seen yet, as docs/mining.md says
    clocks.seconds += RESCAN_SECONDS
    reconcile(workspace, encoder)
    assert workspace.watch.listings == 6
    assert row(workspace, "img1.png")["mtime_ns"] == before + 10**9


def test_a_change_in_the_tick_of_a_listing_is_seen_once_the_tick_is_surely_over(ws):
    workspace, encoder, clocks = ws
    folder = workspace.root / UNKNOWN_PERSON
    reconcile(workspace, encoder)  # the folder changed just now: a racy listing
    listed_at = folder.stat().st_mtime_ns
    write_image(folder / "same_tick.png", 99)
    hide_change(folder, listed_at)

    reconcile(workspace, encoder)
    assert row(workspace, "same_tick.png") is None
    clocks.ahead_ns = int(RACY_SECONDS * 1e9)
    reconcile(workspace, encoder)
    assert row(workspace, "same_tick.png")["origin"] == "user"
    listings = workspace.watch.listings
    reconcile(workspace, encoder)
    assert workspace.watch.listings == listings  # listed again once, not at every pass


def test_a_change_in_the_instant_of_the_miners_own_move_is_seen_by_the_periodic_listing(ws):
    workspace, encoder, clocks = ws
    age(workspace)
    reconcile(workspace, encoder)
    folder = workspace.root / UNKNOWN_PERSON
    arrive(workspace, {"new.png": 200})
    after_own_move = folder.stat().st_mtime_ns
    write_image(folder / "same_instant.png", 99)
    hide_change(folder, after_own_move)

    reconcile(workspace, encoder)
    assert row(workspace, "same_instant.png") is None
    clocks.seconds += RESCAN_SECONDS
    reconcile(workspace, encoder)
    assert row(workspace, "same_instant.png")["origin"] == "user"


def test_a_move_that_one_folder_hides_is_still_a_move(ws):
    workspace, encoder, _ = ws
    age(workspace)
    reconcile(workspace, encoder)
    unknown = workspace.root / UNKNOWN_PERSON
    known_as = unknown.stat().st_mtime_ns
    os.replace(unknown / "img0.png", workspace.root / ALMOST_SIM / "img0.png")
    hide_change(unknown, known_as)  # only almost-sim/ shows the move

    assert reconcile(workspace, encoder) == []
    assert workspace.watch.listings == 3 + 1
    moved = row(workspace, "img0.png")
    assert moved["folder"] == ALMOST_SIM and moved["origin"] == "source"  # followed, not a copy or a deletion


def test_a_folder_the_user_deleted_is_made_again_and_listed(ws):
    workspace, encoder, _ = ws
    age(workspace)
    reconcile(workspace, encoder)
    for path in (workspace.root / UNKNOWN_PERSON).iterdir():
        path.unlink()
    (workspace.root / UNKNOWN_PERSON).rmdir()
    reconcile(workspace, encoder)
    assert (workspace.root / UNKNOWN_PERSON).is_dir()
    assert workspace.counts()[UNKNOWN_PERSON] == 0 and row(workspace, "img0.png")["folder"] == DELETED


def test_folder_sizes_are_counted_from_an_older_database_and_kept_by_every_change(tmp_path):
    root = tmp_path / "ws"
    older = connect(root / "mine.sqlite", MIGRATIONS[:1])  # a workspace from before the counts
    older.executemany(
        "INSERT INTO images (content_hash, folder, name, size, mtime_ns, origin, first_batch, created_at) "
        "VALUES (?, ?, ?, 1, 1, 'source', 0, 0)",
        [(f"h{i}", folder, f"{i}.png") for i, folder in enumerate([SIM_GROUP, ALMOST_SIM, ALMOST_SIM, DELETED])],
    )
    older.close()
    with Workspace.open(root) as workspace:
        assert workspace.counts() == {SIM_GROUP: 1, ALMOST_SIM: 2, UNKNOWN_PERSON: 0}
        arrive(workspace, {"a.png": 1, "b.png": 2})
        workspace.conn.execute("UPDATE images SET folder=? WHERE name='0.png'", (UNKNOWN_PERSON,))
        workspace.conn.execute("DELETE FROM images WHERE name='1.png'")
        counted = dict(workspace.conn.execute("SELECT folder, COUNT(*) FROM images GROUP BY folder").fetchall())
        assert workspace.counts() == {folder: counted.get(folder, 0) for folder in FOLDERS}
        assert workspace.counts() == {SIM_GROUP: 0, ALMOST_SIM: 1, UNKNOWN_PERSON: 3}


# -- the database at 100,000 images ----------------------------------------------------------------

BIG_TABLES = ("images", "decisions", "batches", "face_images", "face_rows")


def _batch_workspace(root: Path, images: int) -> Workspace:
    """A group of 3 faces and `images` faceless images (rows only), with 4 candidates in incoming/."""
    workspace = Workspace.open(root)
    rng = np.random.default_rng(0)
    rows = [(f"member{i}", SIM_GROUP, f"member{i}.png", to_blob(rng.normal(0, 0.05, 128) + 0.1)) for i in range(3)]
    rows += [
        (f"h{i}", ALMOST_SIM if i % 25 == 0 else UNKNOWN_PERSON, f"small_{i:06d}.png", None) for i in range(images)
    ]
    workspace.conn.execute("BEGIN")
    workspace.conn.executemany(
        "INSERT INTO images (content_hash, folder, name, size, mtime_ns, n_faces, descriptor, origin, "
        "first_batch, created_at) VALUES (?, ?, ?, 1, 1, 0, ?, 'source', 0, 0)",
        rows,
    )
    workspace.conn.execute(
        "INSERT INTO decisions (batch, image_id, verdict, reason, created_at) "
        "SELECT 0, id, folder, 'no face found', 0 FROM images"
    )
    workspace.conn.execute("COMMIT")
    for i in range(4):
        write_image(workspace.incoming / f"candidate{i}.png", 100 + i)
    return workspace


def _one_batch(workspace: Workspace, config: MineConfig) -> tuple[int, list[str]]:
    """What the batch loop asks of the database in one batch, curation aside (that lists nothing when
    nobody changed a folder): SQLite instructions run, and the statements."""
    settings = FaceSettings()
    feed = FeedContext(workspace.incoming, settings, EmbeddingCache(connection=workspace.conn), known=lambda _: False)
    instructions, statements = [0], []

    def count() -> int:
        instructions[0] += 10
        return 0

    workspace.conn.set_progress_handler(count, 10)
    workspace.conn.set_trace_callback(statements.append)
    try:
        group = members(workspace)
        planned = policy.begin_batch(workspace.state(), len(group), config.policy())
        # As the folder feed makes them: faces found (and cached) for each file, the file judged as it is.
        candidates = [
            Candidate(p.name, final=feed.accept(p, inspect_file(p, p.read_bytes(), settings)), choice=FINAL)
            for p in workspace.incoming_files()
        ]
        change, _, _ = run_batch(workspace, planned, group, candidates, config)
        workspace.commit(change)
        workspace.counts()
    finally:
        workspace.conn.set_progress_handler(None, 0)
        workspace.conn.set_trace_callback(None)
    return instructions[0], statements


def _scans(conn: sqlite3.Connection, statements: list[str]) -> list[tuple[str, str]]:
    """(statement, plan line) for every statement that reads a big table row by row."""
    found = []
    for statement in statements:
        if statement.split(None, 1)[0].upper() in ("SELECT", "INSERT", "UPDATE", "DELETE"):
            for line in (r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {statement}")):
                if line.startswith("SCAN ") and line.split()[1] in BIG_TABLES:
                    found.append((statement[:120], line))
    return found


def test_a_batch_asks_as_much_of_the_database_at_100000_images_as_when_empty(tmp_path):
    config = MineConfig(source=f"folder:{tmp_path}")
    instructions = {}
    for images in (0, 100_000):
        with _batch_workspace(tmp_path / f"ws{images}", images) as workspace:
            instructions[images], statements = _one_batch(workspace, config)
            assert workspace.counts()[UNKNOWN_PERSON] == images - images // 25 + 4  # faceless candidates
            assert len(statements) > 20 and _scans(workspace.conn, statements) == []
    # A scan of 100,000 rows alone would take several hundred thousand instructions.
    assert instructions[100_000] < 1.5 * instructions[0], instructions


# -- a running miner -------------------------------------------------------------------------------


def test_a_running_miner_sees_a_users_move_at_its_next_batch(tmp_path, data_dir):
    """The user takes a member out of the group while the miner waits on a watched folder."""
    rng = np.random.default_rng(3)
    astronaut = Image.open(data_dir / "astronaut.png").convert("RGB")
    watched, workspace = tmp_path / "watched", tmp_path / "ws"
    watched.mkdir()
    face_variant(astronaut, ASTRONAUT_FACE, rng).save(tmp_path / "reference.png")
    for name in ("a.png", "b.png"):
        face_variant(astronaut, ASTRONAUT_FACE, rng).save(watched / name)
    miner = subprocess.Popen(
        amari(*mine_args(workspace, watched, tmp_path / "reference.png", "--watch", "--poll", "0.2")),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        # Once the batch's row is written its moves are done: the user's move is the folder's next change.
        wait_for(lambda: (workspace / "sim-group" / "a.png").exists() and _batches(workspace) >= 1)
        os.replace(workspace / "sim-group" / "a.png", workspace / "unknown-person" / "a.png")
        face_variant(astronaut, ASTRONAUT_FACE, rng).save(watched / "c.png")  # a batch begins
        wait_for(lambda: _decided(workspace, "a.png", "moved by the user from sim-group/"))
    finally:
        miner.send_signal(signal.SIGINT)
        miner.wait(timeout=60)
    with Workspace.open(workspace) as opened:
        moved = opened.conn.execute("SELECT folder, user_removed FROM images WHERE name='a.png'").fetchone()
        assert tuple(moved) == (UNKNOWN_PERSON, 1)
    assert_consistent(workspace)


def _batches(workspace: Path) -> int:
    with sqlite3.connect(workspace / "mine.sqlite") as conn:
        return conn.execute("SELECT COUNT(*) FROM batches").fetchone()[0]


def _decided(workspace: Path, name: str, reason: str) -> bool:
    with sqlite3.connect(workspace / "mine.sqlite") as conn:
        query = "SELECT 1 FROM decisions d JOIN images i ON i.id = d.image_id WHERE i.name=? AND d.reason=?"
        return conn.execute(query, (name, reason)).fetchone() is not None
