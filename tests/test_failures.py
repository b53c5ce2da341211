"""Every failure is one clear line, nothing is lost, nothing is left running: hostile inputs and a broken
environment, on real files, real mounts and real processes.

Each error case checks: a non-zero exit, exactly one line on stderr, no traceback, and every file that
existed before still there.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from amari.cli import main
from crashhooks import crash_command
from test_mine_run import build_photo_folder, mine_args


@pytest.fixture(scope="module")
def photos(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("failure-photos")
    kinds = build_photo_folder(root / "folder", data_dir)
    names = sorted(kinds)
    reference = root / "reference.png"
    shutil.copy(root / "folder" / next(n for n in names if kinds[n] == "astronaut"), reference)
    return root / "folder", reference, kinds


def amari(*args: str, **options) -> subprocess.CompletedProcess:
    options.setdefault("timeout", 300)
    return subprocess.run([sys.executable, "-m", "amari", *args], capture_output=True, text=True, **options)


def files_under(folder: Path) -> dict[str, bytes]:
    """Every file and its bytes, but for the lock (it holds the last pid) and SQLite's side files."""
    skip = (".lock", "-shm", "-wal")
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.endswith(skip)
    }


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode not in (0, None), result.stderr
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("amari ") and "error:" in lines[0], lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def without_dac_override(command: list[str]) -> list[str]:
    """Run as a user whom file permissions bind: as root, without the capabilities that ignore them."""
    if os.geteuid() != 0:
        return command
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: cannot make a file unreadable to the miner")
    drop = "-dac_override,-dac_read_search"
    return ["setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}", *command]


@pytest.fixture()
def small_disk(tmp_path):
    """A 3 MB tmpfs mounted for the test, or a skip where this machine lets no test mount one."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


# -- the folder source ------------------------------------------------------------------------------


def test_a_pipe_in_the_source_folder_is_reported_and_skipped_not_the_end(photos, tmp_path):
    folder, reference, kinds = photos
    source = tmp_path / "source"
    shutil.copytree(folder, source)
    os.mkfifo(source / "000_pipe.png")
    result = amari(*mine_args(tmp_path / "ws", source, reference))
    assert result.returncode == 0, result.stderr
    assert "000_pipe.png: not a regular file" in result.stderr
    # Every other file was taken: the pipe did not end the run as "source exhausted".
    taken = sqlite3.connect(tmp_path / "ws" / "mine.sqlite").execute("SELECT relpath FROM folder_source_ledger")
    assert {row[0] for row in taken} == set(kinds)


def test_an_unreadable_file_in_a_watched_folder_is_skipped_then_taken_once_readable(photos, tmp_path):
    folder, reference, kinds = photos
    watched = tmp_path / "watched"
    watched.mkdir()
    astronauts = sorted(n for n, k in kinds.items() if k == "astronaut")
    shutil.copy(folder / astronauts[1], watched / "a.png")  # astronauts[0] is the reference
    shutil.copy(folder / astronauts[2], watched / "locked.png")
    os.chmod(watched / "locked.png", 0)
    workspace = tmp_path / "ws"
    command = without_dac_override(
        [sys.executable, "-m", "amari", *mine_args(workspace, watched, reference, "--watch", "--poll", "0.1")]
    )
    miner = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:

        def judged():
            folders = [workspace / f for f in ("sim-group", "almost-sim", "unknown-person")]
            return {p.name for folder in folders if folder.is_dir() for p in folder.iterdir()}

        deadline = time.monotonic() + 120
        while "a.png" not in judged() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "a.png" in judged() and "locked.png" not in judged()
        os.chmod(watched / "locked.png", 0o644)
        os.utime(watched / "locked.png")  # changed: the watched folder tries it again
        while "locked.png" not in judged() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "locked.png" in judged()
    finally:
        miner.send_signal(signal.SIGINT)
        _out, err = miner.communicate(timeout=60)
    assert "locked.png: cannot be read (Permission denied); skipped, tried again when it changes" in err


def test_a_full_disk_stops_mining_with_one_line_and_keeps_what_was_judged(photos, small_disk):
    folder, reference, _ = photos
    big = small_disk / "filler"
    workspace = small_disk / "ws"
    first = amari(*mine_args(workspace, folder, reference, "--max-batches", "1"))
    assert first.returncode == 0, first.stderr
    kept = files_under(workspace / "sim-group")
    with open(big, "wb") as handle:  # fill the disk but for a few kilobytes
        try:
            while True:
                handle.write(b"\0" * 65536)
        except OSError:
            pass
    full = amari(*mine_args(workspace, folder, reference))
    assert_one_line_error(full, "full")
    big.unlink()
    assert {k: v for k, v in files_under(workspace / "sim-group").items() if k in kept} == kept
    resumed = amari(*mine_args(workspace, folder, reference))
    assert resumed.returncode == 0, resumed.stderr  # the same command carries on once there is room


# The disk fills up exactly while torch writes a checkpoint's training state.
_FILL_AT_TORCH_SAVE = """
import sys, torch
real = torch.save

def filling(*args, **kwargs):
    handle = open(sys.argv[1], "wb")
    try:
        while True:
            handle.write(bytes(1 << 16))
            handle.flush()
    except OSError:
        pass
    try:
        handle.close()
    except OSError:
        pass
    return real(*args, **kwargs)

torch.save = filling
from amari.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_a_disk_filling_while_a_checkpoint_is_saved_is_one_line(small_disk, tiny_sd, t1_people):
    out = small_disk / "train"
    args = ["train", str(t1_people[0].parent), "--out", str(out), "--model", str(tiny_sd), "--resolution", "64"]
    args += ["--steps", "1", "--sample-seeds", "", "--mixed-precision", "no"]
    result = subprocess.run(
        [sys.executable, "-c", _FILL_AT_TORCH_SAVE, str(small_disk / "filler"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    # The run's own progress lines come first; the failure is one line, the last.
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("amari train: error: cannot write checkpoint") and "disk is full" in last, last
    assert not (out / "checkpoints" / "step-000001").exists()  # no checkpoint that looks complete


# -- a damaged or unusable workspace ----------------------------------------------------------------


@pytest.fixture()
def mined(photos, tmp_path):
    folder, reference, _ = photos
    workspace = tmp_path / "ws"
    assert main(mine_args(workspace, folder, reference, "--max-batches", "2")) == 0
    return workspace


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_database_is_one_line_and_nothing_is_touched(photos, mined, damage):
    folder, reference, _ = photos
    database = mined / "mine.sqlite"
    sqlite3.connect(database).execute("PRAGMA wal_checkpoint(TRUNCATE)").close()
    data = database.read_bytes()
    database.write_bytes({"truncated": data[: len(data) // 3], "garbage": os.urandom(len(data)), "empty": b""}[damage])
    before = files_under(mined)
    result = amari(*mine_args(mined, folder, reference))
    line = assert_one_line_error(result, "mine.sqlite")
    assert ("move it away" in line) and (damage != "empty" or "0 bytes" in line)
    assert files_under(mined) == before


def test_a_read_only_workspace_is_one_line(photos, mined):
    folder, reference, _ = photos
    before = files_under(mined)
    for path in [mined, *mined.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        result = subprocess.run(
            without_dac_override([sys.executable, "-m", "amari", *mine_args(mined, folder, reference)]),
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        for path in [mined, *mined.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    assert_one_line_error(result, str(mined))
    assert files_under(mined) == before


def test_a_workspace_folder_replaced_by_a_file_is_one_line(photos, mined):
    folder, reference, _ = photos
    shutil.rmtree(mined / "almost-sim")
    (mined / "almost-sim").write_text("not a folder")
    before = files_under(mined)
    assert_one_line_error(amari(*mine_args(mined, folder, reference)), "almost-sim", "move it away")
    assert files_under(mined) == before


def test_a_file_the_user_moves_into_incoming_is_never_deleted(photos, mined):
    folder, reference, _ = photos
    member = sorted((mined / "sim-group").iterdir())[0]
    content = member.read_bytes()
    moved = mined / "incoming" / member.name
    os.replace(member, moved)
    result = amari(*mine_args(mined, folder, reference, "--max-batches", "3"))
    assert result.returncode == 0, result.stderr
    assert moved.read_bytes() == content
    assert "holds an image the workspace already has; left there" in result.stderr


def test_a_damaged_descriptor_cache_is_set_aside_and_rebuilt(tmp_path, t1_people):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "embeddings.sqlite").write_bytes(os.urandom(8192))
    env = dict(os.environ, AMARI_CACHE_DIR=str(cache))
    result = amari("score", str(t1_people[0]), "--group", str(t1_people[0].parent), env=env)
    assert result.returncode == 0, result.stderr
    assert "descriptor cache" in result.stderr and "damaged" in result.stderr
    assert [p.name for p in cache.glob("embeddings.sqlite.damaged-*")]


def test_an_unwritable_descriptor_cache_is_one_line(tmp_path, t1_people):
    cache = tmp_path / "cache"
    cache.write_text("a file where the cache folder should be")
    env = dict(os.environ, AMARI_CACHE_DIR=str(cache))
    result = amari("score", str(t1_people[0]), "--group", str(t1_people[0].parent), env=env)
    assert_one_line_error(result, "descriptor cache", "AMARI_CACHE_DIR")


# -- processes --------------------------------------------------------------------------------------


def _session_members(sid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])
def test_a_killed_miner_leaves_no_process_behind(photos, tmp_path, sig):
    folder, reference, _ = photos
    # Killed while its worker pool is busy, in a session of its own so that every process it started
    # can be found afterwards.
    command = crash_command(
        "amari.mine.engine:Engine._pump",
        2,
        "before",
        *mine_args(tmp_path / "ws", folder, reference, "--cpus", "2"),
        sig=sig,
    )
    miner = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    _, err = miner.communicate(timeout=300)  # until every holder of its stderr is gone, resource tracker included
    assert miner.returncode == -getattr(signal, sig), err.decode()[-2000:]
    deadline = time.monotonic() + 10
    while _session_members(miner.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _session_members(miner.pid) == []
    lines = err.decode().strip().splitlines()
    assert not [line for line in lines if "resource_tracker" in line or "leaked" in line], lines
    if sig == "SIGTERM":  # said in one line, after every step closed what it held
        assert lines[-1] == "amari mine: stopped by SIGTERM; run the same command again to go on", lines


@pytest.mark.slow
def test_a_killed_worker_process_is_one_line_and_the_run_resumes(photos, tmp_path):
    folder, reference, _ = photos
    args = mine_args(tmp_path / "ws", folder, reference, "--cpus", "2")
    killed = subprocess.run(
        crash_command("amari.mine.engine:Engine._pump", 2, "before", *args, victim="worker"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert_one_line_error(killed, "worker process", "run the same command again")
    assert amari(*args).returncode == 0


# -- evaluate, config values, options ---------------------------------------------------------------


@pytest.mark.parametrize("csv_text", ["a,b\n1,2\n", "", "a,b\n"])
def test_evaluate_refuses_a_folder_it_did_not_write(tmp_path, csv_text):
    """A results.csv that is not amari's, empty or of one line included, beside the user's other files."""
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "manifest.json").write_text('{"name": "my own project"}')
    (foreign / "results.csv").write_text(csv_text)
    (foreign / "notes.txt").write_text("my own notes")
    study = tmp_path / "study.toml"
    study.write_text(
        f'[study]\nout = "{tmp_path / "out"}"\n[evaluate]\nprompts = ["a photo of amari"]\n'
        f'results = "{foreign}"\nsim_group = "{tmp_path}"\n[evaluate.embeddings]\n'
        f'a_312 = "{study}"\nb_11 = "{study}"\nc_4 = "{study}"\n'
        f'[[evaluate.commands]]\nname = "sd1"\nseed = 1\n'
    )
    (tmp_path / "face.png").write_bytes((Path(__file__).parent / "data" / "astronaut.png").read_bytes())
    before = files_under(foreign)
    assert_one_line_error(amari("evaluate", "--config", str(study)), "did not write")
    assert files_under(foreign) == before


@pytest.mark.parametrize(
    "args, words",
    [
        (["mine", "--workspace", "ws", "--source", "folder:.", "--poll", "nan"], ["--poll", "finite"]),
        (["mine", "--workspace", "ws", "--source", "folder:.", "--stop-average", "inf"], ["--stop-average"]),
        (["score", "x.png", "--group", ".", "--cpus", "0"], ["cpus"]),
        (["select", "--workspace", "w", "--out", "o", "--cpus", "0"], ["cpus"]),
        (["mine", "--workspace", "ws", "--source", "folder:.", "--option", "foo=1"], ["unknown source option 'foo'"]),
        (["train", "d", "--out", "o", "--lr", "nan"], ["--lr"]),
        (["train", "d", "--out", "o", "--steps", str(10**20)], ["max_steps", "at most"]),
        (["train", "d", "--out", "o", "--resolution", "1000000"], ["resolution", "at most"]),
        (["train", "d", "--out", "o", "--resolution", "8192", "--batch-size", "64"], ["memory", "GiB"]),
        (["mine", "--workspace", "ws", "--source", "folder:.", "--upsample", "100"], ["upsample", "at most 4"]),
        (["mine", "--workspace", "ws", "--prompt", "a face", "--option", "steps=100000"], ["steps", "at most"]),
        (["mine", "--workspace", "ws", "--prompt", "a face", "--width", "1000000"], ["width", "at most"]),
    ],
)
def test_bad_numbers_and_options_are_one_line(tmp_path, args, words):
    result = amari(*args, cwd=tmp_path)
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) <= 2, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr, (word, result.stderr)
    assert not list(tmp_path.iterdir())  # nothing was written


def test_a_generation_option_with_a_folder_source_says_it_is_not_used(photos, tmp_path):
    folder, reference, _ = photos
    result = amari(*mine_args(tmp_path / "ws", folder, reference, "--option", "steps=3", "--max-batches", "1"))
    assert result.returncode == 0, result.stderr
    assert "--option steps is not used" in result.stderr


@pytest.mark.parametrize(
    "section, key, value",
    [
        ("evaluate", "guidance", "nan"),
        ("evaluate", "guidance", "inf"),
        ("report", "thumbnail", "-5"),
        ("mine", "tolerance", "-inf"),
        ("train", "max_steps", str(10**20)),
        ("train", "resolution", "1000000"),
    ],
)
def test_a_study_config_is_checked_whole_before_any_step(tmp_path, section, key, value):
    tables = {
        "study": [f'out = "{tmp_path / "out"}"'],
        "mine": [f'source = "folder:{tmp_path}"'],
        "evaluate": ['prompts = ["a photo of amari"]'],
        "report": [],
        "train": [],
    }
    tables[section].append(f"{key} = {value}")
    text = "".join(f"[{name}]\n" + "".join(f"{line}\n" for line in lines) for name, lines in tables.items())
    study = tmp_path / "study.toml"
    study.write_text(text + '[[evaluate.commands]]\nname = "sd1"\nseed = 1\n')
    result = amari("study", str(study))
    assert_one_line_error(result, section, key)
    assert not (tmp_path / "out").exists()  # no step ran


def test_score_csv_into_a_folder_is_one_line_and_leaves_nothing(tmp_path, t1_people):
    target = tmp_path / "out"
    target.mkdir()
    result = amari("score", str(t1_people[0]), "--group", str(t1_people[0].parent), "--csv", str(target))
    assert_one_line_error(result, str(target))
    assert list(tmp_path.iterdir()) == [target] and not list(target.iterdir())


def test_results_files_follow_the_umask(tmp_path):
    from amari.storage.results import CellResult, write_results

    old = os.umask(0o022)
    try:
        write_results(tmp_path / "results.csv", [CellResult(0, "p", "sd1", 1, "g", "i.png", 0)])
    finally:
        os.umask(old)
    assert (tmp_path / "results.csv").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("command", ["verify", "mark", "compare"])
def test_a_pipe_given_to_a_command_is_one_line_not_a_hang(tmp_path, data_dir, command):
    pipe = tmp_path / "pipe.png"
    os.mkfifo(pipe)
    args = {"verify": [str(pipe)], "mark": [str(pipe), "--out", str(tmp_path / "out")]}
    (tmp_path / "known").mkdir()
    shutil.copy(data_dir / "astronaut.png", tmp_path / "known")
    args["compare"] = [str(tmp_path / "known"), str(pipe)]
    result = amari(command, *args[command], timeout=60, env=dict(os.environ, AMARI_CACHE_DIR=str(tmp_path / "c")))
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert (
        [line for line in result.stderr.splitlines() if "pipe.png" in line]
        == [line for line in result.stderr.splitlines() if "not a regular file" in line]
        != []
    ), result.stderr
