"""`amari mine` end to end on real photos: one person's variants among others, no-face and broken files.

The held-out folder is built at test time from tests/data: crops, flips, scale and brightness changes of
the astronaut's face (the person to mine), crops of four other people from t1.jpg, two images without
a face and two broken files, under shuffled names so that they arrive mixed.
"""

from __future__ import annotations

import csv
import hashlib
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from amari.cli import main
from amari.mine.workspace import ARCHIVE_COLUMNS
from crashhooks import crash_command

ASTRONAUT_FACE = (76, 265, 166, 175)
T1_FACES = [(283, 1226, 390, 1118), (283, 175, 390, 67), (367, 832, 474, 724), (295, 557, 402, 450)]
FOLDERS = ("sim-group", "almost-sim", "unknown-person")
VARIANTS = 20


def face_variant(photo: Image.Image, box, rng: np.random.Generator, side: int = 200) -> Image.Image:
    """A crop around a face: moved, scaled, maybe mirrored, brighter or darker."""
    top, right, bottom, left = box
    width = right - left
    half = width * 1.4 * rng.uniform(0.8, 1.25)
    cx, cy = (left + right) / 2 + rng.uniform(-0.2, 0.2) * width, (top + bottom) / 2 + rng.uniform(-0.2, 0.2) * width
    crop = photo.crop((int(cx - half), int(cy - half), int(cx + half), int(cy + half)))
    crop = crop.resize((side, side), Image.LANCZOS)
    if rng.random() < 0.5:
        crop = ImageOps.mirror(crop)
    return ImageEnhance.Brightness(crop).enhance(rng.uniform(0.75, 1.25))


def build_photo_folder(folder: Path, data_dir: Path, seed: int = 0) -> dict[str, str]:
    """The held-out folder; returns {file name: kind} with kind astronaut / other / noface / broken."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    astronaut = Image.open(data_dir / "astronaut.png").convert("RGB")
    t1 = Image.open(data_dir / "t1.jpg").convert("RGB")
    items: list[tuple[str, str, object]] = []
    items += [("astronaut", ".png", face_variant(astronaut, ASTRONAUT_FACE, rng)) for _ in range(VARIANTS)]
    items += [("other", ".jpg", face_variant(t1, box, rng)) for box in T1_FACES for _ in range(2)]
    items.append(("noface", ".jpg", t1.crop((0, 600, 200, 800))))
    items.append(("noface", ".png", Image.fromarray(rng.integers(0, 255, (160, 160, 3), dtype=np.uint8))))
    items.append(("broken", ".png", "truncated"))
    items.append(("broken", ".png", "text"))
    names = [f"{i:03d}" for i in rng.permutation(len(items))]
    kinds = {}
    for (kind, suffix, content), prefix in zip(items, names):
        name = f"{prefix}_{kind}{suffix}"
        path = folder / name
        if content == "truncated":
            face_variant(astronaut, ASTRONAUT_FACE, rng).save(path)
            path.write_bytes(path.read_bytes()[:2000])
        elif content == "text":
            path.write_text("this is not an image")
        else:
            content.save(path)
        kinds[name] = kind
    return kinds


@pytest.fixture(scope="module")
def photos(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("photos")
    kinds = build_photo_folder(root / "folder", data_dir)
    reference = root / "reference.png"
    face_variant(Image.open(data_dir / "astronaut.png").convert("RGB"), ASTRONAUT_FACE, np.random.default_rng(99)).save(
        reference
    )
    return root / "folder", reference, kinds


def mine_args(workspace: Path, folder: Path, reference: Path | None, *extra: str) -> list[str]:
    args = ["mine", "--workspace", str(workspace), "--source", f"folder:{folder}", "--quiet", *extra]
    return args + (["--reference", str(reference)] if reference else [])


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(workspace: Path) -> dict:
    """Everything that must not depend on when or how often a run was killed (no clock times)."""
    files = {
        f"{folder}/{p.name}": digest(p)
        for folder in FOLDERS + ("incoming",)
        for p in sorted((workspace / folder).iterdir())
    }
    conn = sqlite3.connect(workspace / "mine.sqlite")
    try:
        tables = dict(
            images=conn.execute(
                "SELECT id, content_hash, folder, name, size, origin, user_removed, first_batch, "
                "n_faces, descriptor, error FROM images ORDER BY id"
            ).fetchall(),
            decisions=conn.execute(
                "SELECT d.batch, i.content_hash, d.verdict, d.reason, d.score, d.bound FROM "
                "decisions d JOIN images i ON i.id = d.image_id ORDER BY d.id"
            ).fetchall(),
            batches=conn.execute(
                "SELECT number, requested, received, joined, group_size, almost_size, "
                "unknown_size, avg, hi, until_gsa, n, event, state FROM batches "
                "ORDER BY number"
            ).fetchall(),
            state=conn.execute("SELECT value FROM meta WHERE key='state'").fetchall(),
            pending=conn.execute("SELECT * FROM pending_moves").fetchall(),
        )
    finally:
        conn.close()
    archive = [row[1:] for row in csv.reader((workspace / "archive.csv").open())]
    return dict(files=files, archive=archive, **tables)


def assert_consistent(workspace: Path) -> None:
    """The folders and the database agree, and nothing is left half-done."""
    conn = sqlite3.connect(workspace / "mine.sqlite")
    rows = conn.execute("SELECT folder, name, content_hash FROM images WHERE folder != 'deleted'").fetchall()
    assert conn.execute("SELECT COUNT(*) FROM pending_moves").fetchone()[0] == 0
    conn.close()
    on_disk = {f"{folder}/{p.name}": digest(p) for folder in FOLDERS for p in (workspace / folder).iterdir()}
    assert on_disk == {f"{folder}/{name}": h for folder, name, h in rows}
    assert list((workspace / "incoming").iterdir()) == []


def kind_of(name: str, kinds: dict[str, str]) -> str:
    if name == "reference.png":
        return "reference"
    return kinds[name.split("_hi")[0] + Path(name).suffix if "_hi" in name else name]


@pytest.fixture(scope="module")
def mined(photos, tmp_path_factory):
    """One uninterrupted run over the folder with one reference, in this process."""
    folder, reference, _ = photos
    workspace = tmp_path_factory.mktemp("uninterrupted") / "ws"
    assert main(mine_args(workspace, folder, reference)) == 0
    return workspace


def test_the_group_ends_with_that_person_only(mined, photos):
    _, _, kinds = photos
    group = [p.name for p in (mined / "sim-group").iterdir()]
    group_kinds = [kind_of(name, kinds) for name in group]
    assert set(group_kinds) == {"astronaut", "reference"}
    assert group_kinds.count("astronaut") >= 0.9 * VARIANTS
    others = {kind_of(p.name, kinds) for p in (mined / "unknown-person").iterdir()}
    assert {"other", "noface", "broken"} <= others
    assert_consistent(mined)


def test_every_file_of_the_folder_was_judged_once(mined, photos):
    folder, _, kinds = photos
    judged = sorted(kind_of(p.name, kinds) for f in FOLDERS for p in (mined / f).iterdir())
    assert len(judged) == len(kinds) + 1  # + the reference
    conn = sqlite3.connect(mined / "mine.sqlite")
    reasons = dict(
        conn.execute(
            "SELECT i.name, d.reason FROM decisions d JOIN images i ON i.id = d.image_id "
            "WHERE d.verdict = 'unknown-person'"
        ).fetchall()
    )
    conn.close()
    broken = [name for name, kind in kinds.items() if kind == "broken"]
    assert all(reasons[name].startswith("unreadable: ") for name in broken)
    assert all(reasons[name] == "no face found" for name, kind in kinds.items() if kind == "noface")
    assert all(digest(folder / name) == digest(mined / "unknown-person" / name) for name in broken)


def test_archive_has_one_row_per_batch(mined):
    rows = list(csv.DictReader((mined / "archive.csv").open()))
    conn = sqlite3.connect(mined / "mine.sqlite")
    batches = conn.execute("SELECT number, group_size, event FROM batches ORDER BY number").fetchall()
    conn.close()
    assert tuple(rows[0]) == ARCHIVE_COLUMNS
    assert [(int(r["batch"]), int(r["group_size"]), r["event"]) for r in rows] == batches
    assert [int(r["batch"]) for r in rows] == list(range(1, len(rows) + 1))
    assert all(0 < float(r["hi"]) <= 0.52 and 0 <= float(r["avg"]) <= 1 for r in rows)  # 0.52: reset round 1
    assert "analysis" in {e for r in rows for e in r["event"].split("+")}


def test_decisions_record_the_bound_in_force(mined):
    conn = sqlite3.connect(mined / "mine.sqlite")
    accepted = conn.execute("SELECT score, bound FROM decisions WHERE reason = 'accepted'").fetchall()
    too_far = conn.execute("SELECT score, bound FROM decisions WHERE reason = 'too far'").fetchall()
    conn.close()
    assert accepted and too_far
    assert all(score <= bound for score, bound in accepted)
    assert all(score >= bound + 0.10 for score, bound in too_far)


def test_a_rerun_of_a_finished_workspace_changes_nothing(mined, photos, capsys):
    folder, reference, _ = photos
    before = snapshot(mined)
    assert main(mine_args(mined, folder, reference)) == 0
    assert snapshot(mined) == before
    assert "source exhausted" in capsys.readouterr().out


@pytest.mark.parametrize("engine", [("--engine", "serial"), ("--engine", "streaming", "--cpus", "2")])
def test_both_engines_end_as_the_default_run(mined, photos, tmp_path, engine):
    """Serial, and streaming on a pool of worker processes, leave what the default run left."""
    folder, reference, _ = photos
    assert main(mine_args(tmp_path / "ws", folder, reference, *engine)) == 0
    assert snapshot(tmp_path / "ws") == snapshot(mined)


def test_mining_without_a_reference_bootstraps_from_the_tightest_pair(photos, tmp_path):
    folder, _, kinds = photos
    assert main(mine_args(tmp_path / "ws", folder, None)) == 0
    group = {kind_of(p.name, kinds) for p in (tmp_path / "ws" / "sim-group").iterdir()}
    assert group == {"astronaut"}
    conn = sqlite3.connect(tmp_path / "ws" / "mine.sqlite")
    seeds = conn.execute("SELECT COUNT(*) FROM decisions WHERE reason LIKE 'bootstrap%'").fetchone()[0]
    conn.close()
    assert seeds == 2
    assert_consistent(tmp_path / "ws")


# -- curation ------------------------------------------------------------------------------------


@pytest.fixture()
def small_run(photos, tmp_path, data_dir):
    """A source folder of 8 astronaut variants, mined once; returns (workspace, source folder, rng)."""
    rng = np.random.default_rng(5)
    astronaut = Image.open(data_dir / "astronaut.png").convert("RGB")
    source = tmp_path / "source"
    source.mkdir()
    for i in range(8):
        face_variant(astronaut, ASTRONAUT_FACE, rng).save(source / f"a{i:02d}.png")
    _, reference, _ = photos
    assert main(mine_args(tmp_path / "ws", source, reference)) == 0
    assert len(list((tmp_path / "ws" / "sim-group").iterdir())) == 9
    return tmp_path / "ws", source, rng


def image_row(workspace: Path, name: str):
    conn = sqlite3.connect(workspace / "mine.sqlite")
    conn.row_factory = sqlite3.Row
    row = conn.execute("SELECT * FROM images WHERE name = ?", (name,)).fetchone()
    conn.close()
    return row


def test_a_member_the_user_removed_is_never_put_back(small_run, photos, data_dir):
    workspace, source, rng = small_run
    # The user takes a00 out of the group and puts a new variant into almost-sim.
    shutil.move(workspace / "sim-group" / "a00.png", workspace / "almost-sim" / "a00.png")
    astronaut = Image.open(data_dir / "astronaut.png").convert("RGB")
    face_variant(astronaut, ASTRONAUT_FACE, rng).save(workspace / "almost-sim" / "dropped.png")
    # 16 faces of other people: four unproductive batches, the fourth a reset, then its two rounds.
    t1 = Image.open(data_dir / "t1.jpg").convert("RGB")
    for i in range(16):
        face_variant(t1, T1_FACES[i % 4], rng).save(source / f"b{i:02d}.jpg")
    assert main(mine_args(workspace, source, photos[1])) == 0

    events = [r["event"] for r in csv.DictReader((workspace / "archive.csv").open())]
    assert "reset" in events and "reset-analysis-1" in events and "reset-analysis-2" in events
    assert (workspace / "almost-sim" / "a00.png").exists()  # stayed where the user put it
    assert image_row(workspace, "a00.png")["user_removed"] == 1
    assert (workspace / "sim-group" / "dropped.png").exists()  # re-tested by the reset, and kept
    assert_consistent(workspace)


def test_files_dropped_into_the_group_join_or_leave_for_unknown(small_run, photos, data_dir):
    workspace, source, rng = small_run
    astronaut = Image.open(data_dir / "astronaut.png").convert("RGB")
    face_variant(astronaut, ASTRONAUT_FACE, rng).save(workspace / "sim-group" / "mine.png")
    Image.fromarray(np.full((120, 120, 3), 200, np.uint8)).save(workspace / "sim-group" / "blank.png")
    (workspace / "sim-group" / "a03.png").rename(workspace / "sim-group" / "renamed.png")
    assert main(mine_args(workspace, source, photos[1])) == 0

    joined = image_row(workspace, "mine.png")
    assert joined["folder"] == "sim-group" and joined["origin"] == "user"
    assert (workspace / "unknown-person" / "blank.png").exists()
    assert image_row(workspace, "blank.png")["folder"] == "unknown-person"
    renamed = image_row(workspace, "renamed.png")
    assert renamed["folder"] == "sim-group" and renamed["origin"] == "source"  # followed, not re-judged
    assert image_row(workspace, "a03.png") is None
    assert_consistent(workspace)


def test_a_deleted_image_is_not_mined_again(small_run, photos):
    workspace, source, _ = small_run
    content = (workspace / "sim-group" / "a01.png").read_bytes()
    (workspace / "sim-group" / "a01.png").unlink()
    (source / "z_copy_of_a01.png").write_bytes(content)  # the same image arrives again under a new name
    assert main(mine_args(workspace, source, photos[1])) == 0
    row = image_row(workspace, "a01.png")
    assert row["folder"] == "deleted" and row["user_removed"] == 1
    assert not any("copy_of" in p.name for f in FOLDERS for p in (workspace / f).iterdir())
    assert_consistent(workspace)


# -- command line --------------------------------------------------------------------------------


def test_bad_references_stop_before_anything_is_written(photos, tmp_path, capsys):
    folder, _, kinds = photos
    noface = next(folder / n for n, k in kinds.items() if k == "noface")
    broken = next(folder / n for n, k in kinds.items() if k == "broken")
    for bad, message in ((noface, "no face found"), (broken, "reference image")):
        assert main(mine_args(tmp_path / "ws", folder, bad)) == 2
        assert message in capsys.readouterr().err
        assert not any((tmp_path / "ws" / f).exists() and any((tmp_path / "ws" / f).iterdir()) for f in FOLDERS)


def test_switches_that_turn_something_off_say_what_they_do(capsys):
    with pytest.raises(SystemExit):
        main(["mine", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--no-enhance judge generated images as they come, without upscaling them" in text
    assert "--no-early-reject enhance every image, also one whose raw face is so far" in text


def test_usage_errors(tmp_path, capsys):
    assert main(["mine", "--workspace", str(tmp_path / "ws"), "--quiet"]) == 2
    assert "needs --prompt" in capsys.readouterr().err
    assert main(["mine", "--workspace", str(tmp_path / "ws"), "--source", "ftp:x", "--quiet"]) == 2
    assert "unknown source" in capsys.readouterr().err
    assert main(["mine", "--workspace", str(tmp_path / "ws"), "--source", f"folder:{tmp_path / 'nope'}"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["mine", "--workspace", str(tmp_path / "ws"), "--source", "folder:.", "--target", "1"]) == 2
    assert "target" in capsys.readouterr().err


def test_face_settings_cannot_change_within_a_workspace(mined, photos, capsys):
    folder, reference, _ = photos
    assert main(mine_args(mined, folder, reference, "--upsample", "2")) == 1
    assert "other settings" in capsys.readouterr().err


def test_max_batches_counts_the_workspace_batches(photos, tmp_path):
    folder, reference, _ = photos
    assert main(mine_args(tmp_path / "ws", folder, reference, "--max-batches", "2")) == 0
    assert len(list(csv.DictReader((tmp_path / "ws" / "archive.csv").open()))) == 2
    assert main(mine_args(tmp_path / "ws", folder, reference, "--max-batches", "3")) == 0
    assert len(list(csv.DictReader((tmp_path / "ws" / "archive.csv").open()))) == 3
    assert_consistent(tmp_path / "ws")


# -- other processes -----------------------------------------------------------------------------


def amari(*args: str) -> list[str]:
    return [sys.executable, "-m", "amari", *args]


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


def judged_names(workspace: Path) -> set[str]:
    return {p.name for f in FOLDERS if (workspace / f).is_dir() for p in (workspace / f).iterdir()}


def test_watch_mode_waits_for_files_and_a_second_miner_is_refused(photos, tmp_path):
    folder, reference, kinds = photos
    watched = tmp_path / "watched"
    watched.mkdir()
    astronauts = [n for n, k in kinds.items() if k == "astronaut"]
    for name in astronauts[:2]:
        shutil.copy(folder / name, watched / name)
    workspace = tmp_path / "ws"
    first = subprocess.Popen(
        amari(*mine_args(workspace, watched, reference, "--watch", "--poll", "0.2")),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: set(astronauts[:2]) <= judged_names(workspace))
        second = subprocess.run(
            amari(*mine_args(workspace, watched, reference)), capture_output=True, text=True, timeout=60
        )
        assert second.returncode == 1
        assert "in use by another miner" in second.stderr and str(first.pid) in second.stderr
        for name in astronauts[2:5]:
            shutil.copy(folder / name, watched / name)
        wait_for(lambda: set(astronauts[:5]) <= judged_names(workspace))
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(timeout=60)
    assert first.returncode == 130
    assert_consistent(workspace)


# Crash points met one after another on one workspace, each run resuming the last one's kill: at
# start-up after the journal was replayed, while reconciling, inside a batch after one more batch was
# committed, with copies made ahead in incoming/ not yet judged, with faces found but not judged, and
# with a batch judged but not committed.
CRASH_POINTS = [
    ("amari.mine.workspace:Workspace.recover", 1, "after"),
    ("amari.mine.workspace:Workspace.commit", 3, "after"),
    ("amari.mine.loop:reconcile", 2, "before"),
    ("amari.mine.source:FolderSource.more", 5, "after"),
    ("amari.mine.engine:FeedContext.accept", 6, "after"),
    ("amari.mine.workspace:Workspace.commit", 2, "before"),
    ("amari.mine.workspace:Workspace.commit", 4, "after"),
]


@pytest.mark.slow
def test_sigkill_at_many_moments_then_resume_gives_the_same_result(mined, photos, tmp_path):
    """Killed at exact places (crash hooks, not timers), resumed each time, then run to the end."""
    folder, reference, _ = photos
    expected = snapshot(mined)
    workspace = tmp_path / "ws"
    args = mine_args(workspace, folder, reference)
    for target, calls, when in CRASH_POINTS:
        crashed = subprocess.run(crash_command(target, calls, when, *args), capture_output=True, text=True)
        assert crashed.returncode == -signal.SIGKILL, (target, calls, when, crashed.stderr[-2000:])
    finished = subprocess.run(amari(*args), capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert snapshot(workspace) == expected
    assert_consistent(workspace)


@pytest.mark.slow
def test_sigkill_around_file_moves_then_resume_gives_the_same_result(mined, photos, tmp_path):
    """Killed just before or after the k-th rename of a file.

    Renames come in this order: 1 for the reference's copy, then per batch of 4 the source's 4 copies
    into incoming/ (each a rename of a finished temporary) and the miner's 4 moves out of it.
    """
    folder, reference, _ = photos
    expected = snapshot(mined)
    cases = [
        (2, "after"),  # batch 1's first copy is in incoming/, the source has not noted it yet
        (13, "after"),  # batch 2's last copy is in incoming/, not noted: the resumed batch needs no source
        (14, "before"),  # batch 2 is committed, none of its moves done: the journal finishes them
        (16, "after"),  # batch 2 half moved
    ]
    for k, when in cases:
        workspace = tmp_path / f"ws-{k}-{when}"
        crashed = subprocess.run(
            crash_command("os:replace", k, when, *mine_args(workspace, folder, reference)), capture_output=True
        )
        assert crashed.returncode == -signal.SIGKILL
        subprocess.run(amari(*mine_args(workspace, folder, reference)), check=True, capture_output=True)
        assert snapshot(workspace) == expected, (k, when)
        assert_consistent(workspace)
