"""The miner's workspace (folders, database, lock, archive) and its folder source, without face detection."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from amari.errors import UsageError, WorkspaceError
from amari.mine import MineConfig
from amari.mine.policy import MinerState
from amari.mine.records import Commit, Decision, NewImage, Relocation
from amari.mine.source import FolderSource
from amari.mine.workspace import Workspace, file_identity, tagged_name
from amari.storage.layout import ALMOST_SIM, SIM_GROUP
from amari.study.stages import mining_source


def write_image(path: Path, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((16, 16, 3), value, np.uint8)).save(path)
    return path


def tree_digest(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        p.relative_to(folder).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# -- folder source -------------------------------------------------------------------------------


@pytest.fixture()
def outputs(tmp_path):
    """A tool's output folder with dated sub-folders, a non-image file and a hidden file."""
    folder = tmp_path / "outputs"
    for i, name in enumerate(["b.png", "a.png", "2024-05-01/00001.png", "2024-05-01/00002.jpg"]):
        write_image(folder / name, 10 * i)
    (folder / "notes.txt").write_text("prompt: a face")
    write_image(folder / ".hidden.png", 99)
    return folder


def folder_source(folder, state=None, **options) -> FolderSource:
    source = FolderSource(folder, **options)
    if state is not None:
        source.open(state)
    return source


def test_folder_source_copies_new_images_in_name_order_and_never_touches_the_folder(outputs, tmp_path):
    before = tree_digest(outputs)
    source = folder_source(outputs, tmp_path / "state.sqlite")
    incoming = tmp_path / "incoming"
    first = source.next_batch(3, incoming, None)
    assert [p.name for p in first] == ["2024-05-01__00001.png", "2024-05-01__00002.jpg", "a.png"]
    assert not source.exhausted
    second = source.next_batch(3, incoming, None)
    assert [p.name for p in second] == ["b.png"]
    assert source.exhausted
    assert source.next_batch(3, incoming, None) == []
    source.close()
    assert tree_digest(outputs) == before
    assert (incoming / "a.png").read_bytes() == (outputs / "a.png").read_bytes()


def test_folder_source_remembers_what_it_ingested_across_runs(outputs, tmp_path):
    state = tmp_path / "state.sqlite"
    source = folder_source(outputs, state)
    taken = source.next_batch(2, tmp_path / "incoming", None)
    source.close()
    for path in taken:
        path.unlink()  # the miner judged them and moved them away
    again = folder_source(outputs, state)
    rest = again.next_batch(10, tmp_path / "incoming", None)
    again.close()
    assert {p.name for p in rest} == {"a.png", "b.png"}
    # A file the tool rewrites counts as new (the miner then drops it if its content is known).
    write_image(outputs / "a.png", 200)
    os.utime(outputs / "a.png", ns=(1, 1))
    third = folder_source(outputs, state)
    assert [p.name for p in third.next_batch(10, tmp_path / "incoming2", None)] == ["a.png"]
    third.close()


def test_a_copy_left_by_a_killed_run_is_recognised_not_copied_twice(outputs, tmp_path):
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    # A run copied a.png and died before writing its ledger; it also left a half-written temporary.
    (incoming / "a.png").write_bytes((outputs / "a.png").read_bytes())
    (incoming / ".b.png.part").write_bytes(b"half")
    source = folder_source(outputs, tmp_path / "state.sqlite")
    names = [p.name for p in source.next_batch(10, incoming, None)]
    source.close()
    assert "a.png" not in names and "b.png" in names
    assert not (incoming / ".b.png.part").exists()
    assert sorted(p.name for p in incoming.iterdir()) == sorted(names + ["a.png"])


def test_watching_takes_a_file_only_once_it_held_still(tmp_path):
    folder = tmp_path / "watched"
    write_image(folder / "x.png", 1)
    source = folder_source(folder, watch=True, poll_interval=0.05)
    assert [p.name for p in source.next_batch(4, tmp_path / "incoming", None)] == ["x.png"]
    assert not source.exhausted  # a watched folder never runs dry
    source.close()


def test_source_specs(tmp_path):
    with pytest.raises(UsageError, match="unknown source"):
        MineConfig(source="camera")
    with pytest.raises(UsageError, match="needs a folder"):
        MineConfig(source="folder:")
    with pytest.raises(UsageError, match="does not exist"):
        mining_source(MineConfig(source=f"folder:{tmp_path / 'missing'}"))
    source = mining_source(MineConfig(source=f"folder:{tmp_path}"))
    assert isinstance(source, FolderSource) and source.description == f"folder:{tmp_path}"
    source.close()
    with pytest.raises(UsageError, match="poll"):
        MineConfig(source=f"folder:{tmp_path}", poll=0)
    with pytest.raises(UsageError, match="poll interval"):
        FolderSource(tmp_path, poll_interval=0)


# -- workspace -----------------------------------------------------------------------------------


def test_a_second_open_of_a_workspace_is_refused_while_the_first_holds_it(tmp_path):
    first = Workspace.open(tmp_path / "ws")
    try:
        with pytest.raises(WorkspaceError, match="in use by another miner"):
            Workspace.open(tmp_path / "ws")
    finally:
        first.close()
    Workspace.open(tmp_path / "ws").close()  # free again once closed


def test_workspace_creates_its_folders_and_keeps_its_settings(tmp_path):
    with Workspace.open(tmp_path / "ws", {"face_settings": "hog"}) as workspace:
        assert all((workspace.root / f).is_dir() for f in ("sim-group", "almost-sim", "unknown-person", "incoming"))
        assert workspace.state() == MinerState()
    with pytest.raises(WorkspaceError, match="other settings"):
        Workspace.open(tmp_path / "ws", {"face_settings": "cnn"})
    (tmp_path / "file").write_text("x")
    with pytest.raises(WorkspaceError, match="not a folder"):
        Workspace.open(tmp_path / "file")


def _arrive(workspace: Workspace, name: str, value: int, folder: str = SIM_GROUP) -> NewImage:
    path = write_image(workspace.incoming / name, value)
    digest, size, mtime_ns = file_identity(path)
    return NewImage(path, folder, digest, size, mtime_ns, 1, np.full(128, value / 255), None, "source")


def test_commit_moves_files_names_almost_sim_by_bound_and_writes_the_archive(tmp_path):
    with Workspace.open(tmp_path / "ws") as workspace:
        one, two = _arrive(workspace, "one.png", 1), _arrive(workspace, "two.png", 2, ALMOST_SIM)
        two.bound = 0.41234
        write_image(workspace.root / SIM_GROUP / "one.png", 7)  # the user's own file holds the name
        state = MinerState(batch=1, hi=0.45)
        row = dict(
            number=1,
            requested=4,
            received=2,
            joined=1,
            group_size=1,
            almost_size=1,
            unknown_size=0,
            avg=0.5,
            hi=0.45,
            until_gsa=2,
            n=4,
            event="accept",
            state=state.to_json(),
        )
        workspace.commit(
            Commit(
                batch=1,
                new_images=[one, two],
                state=state,
                batch_row=row,
                decisions=[Decision(one.content_hash, SIM_GROUP, "accepted", 0.3, 0.5)],
            )
        )
        assert workspace.incoming_files() == []
        assert file_identity(workspace.root / SIM_GROUP / "one-1.png")[0] == one.content_hash
        assert sorted(p.name for p in (workspace.root / SIM_GROUP).iterdir()) == ["one-1.png", "one.png"]
        assert [p.name for p in (workspace.root / ALMOST_SIM).iterdir()] == ["two_hi0.4123.png"]
        assert workspace.state() == state
        assert workspace.counts() == {"sim-group": 1, "almost-sim": 1, "unknown-person": 0}
        rows = (workspace.root / "archive.csv").read_text().splitlines()
        assert rows[0] == "time,group_size,almost_size,avg,hi,batch,until_gsa,n,event"
        assert rows[1].split(",")[1:] == ["1", "1", "0.500000", "0.450000", "1", "2", "4", "accept"]

        # Back to the group (a reset): the bound tag goes.
        moved = workspace.image_by_hash(two.content_hash)
        workspace.commit(Commit(batch=2, relocations=[Relocation(moved.id, SIM_GROUP)]))
        assert (workspace.root / SIM_GROUP / "two.png").exists()


def test_a_damaged_archive_is_rebuilt_from_the_database(tmp_path):
    with Workspace.open(tmp_path / "ws") as workspace:
        state = MinerState(batch=1)
        workspace.commit(
            Commit(
                batch=1,
                state=state,
                batch_row=dict(
                    number=1,
                    requested=4,
                    received=0,
                    joined=0,
                    group_size=0,
                    almost_size=0,
                    unknown_size=0,
                    avg=0.5,
                    hi=0.5,
                    until_gsa=3,
                    n=4,
                    event="idle",
                    state=state.to_json(),
                ),
            )
        )
        good = workspace.archive_path.read_text()
    (tmp_path / "ws" / "archive.csv").write_text(good + "2026-01-01T00:00:00,1,0,0.5")  # a torn last line
    Workspace.open(tmp_path / "ws").close()
    assert (tmp_path / "ws" / "archive.csv").read_text() == good


def test_tagged_names():
    assert tagged_name("photo.png", ALMOST_SIM, 0.4) == "photo_hi0.4000.png"
    assert tagged_name("photo_hi0.4000.png", ALMOST_SIM, 0.52) == "photo_hi0.5200.png"
    assert tagged_name("photo_hi0.4000.png", SIM_GROUP, None) == "photo.png"
    assert tagged_name("photo.png", ALMOST_SIM, None) == "photo.png"


def test_names_too_long_for_the_file_system_are_cut_short_not_a_wedge(tmp_path):
    """A source file of 254 bytes cannot be copied under a hidden temporary name of its own plus six bytes,
    and one of 249 bytes judged almost-sim cannot carry its bound tag: both are cut short, kept apart by a
    hash of the whole name, and the commit's moves go through."""
    source_folder = tmp_path / "outputs"
    long_names = ["x" * 250 + ".png", "x" * 245 + ".png", "x" * 245 + "y.png"]
    for value, name in enumerate(long_names):
        write_image(source_folder / name, 40 * value)
    with Workspace.open(tmp_path / "ws") as workspace:
        source = folder_source(source_folder, workspace.database_path)
        copied = source.next_batch(3, workspace.incoming)
        assert len(copied) == 3 and len({p.name for p in copied}) == 3
        dropped = write_image(workspace.incoming / ("z" * 245 + ".png"), 200)  # the user's, under its own name
        arrived = []
        for path in [*copied, dropped]:
            digest, size, mtime_ns = file_identity(path)
            arrived.append(NewImage(path, ALMOST_SIM, digest, size, mtime_ns, 1, np.zeros(128), None, "source"))
            arrived[-1].bound = 0.41234
        workspace.commit(Commit(batch=1, new_images=arrived))
        names = sorted(p.name for p in (workspace.root / ALMOST_SIM).iterdir())
        assert len(names) == 4 and all(len(n.encode()) <= 210 and n.endswith("_hi0.4123.png") for n in names)
        assert workspace.incoming_files() == [] and source.next_batch(3, workspace.incoming) == []
    with Workspace.open(tmp_path / "ws") as workspace:  # nothing is left to redo
        assert workspace.counts()[ALMOST_SIM] == 4
