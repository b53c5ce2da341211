"""amari train killed with SIGKILL and resumed ends where an uninterrupted run ends; two processes
train what one process accumulating two batches trains."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from amari.storage.layout import TrainLayout
from amari.train import TrainConfig, run
from amari.train.checkpoints import MetricsLog
from amari.train.formats import load_embedding
from crashhooks import crash_command

T1_FACES = [(283, 1226, 390, 1118), (283, 175, 390, 67), (367, 832, 474, 724)]
COMPARED = ("step", "epoch", "loss", "lr")  # images_per_s is a wall-clock measure


@pytest.fixture(scope="module")
def images(tmp_path_factory, data_dir) -> Path:
    folder = tmp_path_factory.mktemp("images")
    photo = Image.open(data_dir / "t1.jpg").convert("RGB")
    for index, (top, right, bottom, left) in enumerate(T1_FACES):
        cx, cy = (left + right) // 2, (top + bottom) // 2
        photo.crop((cx - 100, cy - 100, cx + 100, cy + 100)).save(folder / f"{index}.png")
    return folder


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _free_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def _args(images: Path, out: Path, model: Path, steps: int, every: int) -> list[str]:
    return [
        "train",
        str(images),
        "--out",
        str(out),
        "--model",
        str(model),
        "--token",
        "amari",
        "--resolution",
        "64",
        "--steps",
        str(steps),
        "--checkpoint-every",
        str(every),
        "--lr",
        "0.05",
        "--sample-seeds",
        "",
    ]


def _rows(out: Path) -> list[tuple]:
    return [tuple(row[k] for k in COMPARED) for row in MetricsLog(out / "metrics.csv").rows()]


def _config(tiny_sd: Path, steps: int, every: int, **changes) -> TrainConfig:
    """What `_args` says, as a config for a run in this process."""
    settings = dict(model=str(tiny_sd), token="amari", resolution=64, max_steps=steps, checkpoint_every=every)
    return TrainConfig(**settings, base_lr=0.05, sample_seeds=(), **changes)


def kill_at_step_5_then_resume(args: list[str], out: Path, timeout: float) -> str:
    """`amari ARGS` in a child SIGKILLed as step 5 begins (checkpoint 3 saved, step 4 logged), then run
    again to its end; the resumed run's stderr."""
    from amari.train.checkpoints import latest_checkpoint

    child = subprocess.run(
        crash_command("amari.train.loop:train_step", 5, "before", *args),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    assert latest_checkpoint(out)[0] == 3 and [int(row[0]) for row in _rows(out)] == [1, 2, 3, 4]
    command = [sys.executable, "-m", "amari", *args]
    resumed = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from checkpoints/step-000003 (step 3)" in resumed.stderr
    assert library_noise(resumed.stderr) == []  # amari's own lines only, however the model loaded
    return resumed.stderr


# What the libraries under amari print of their own: logger notes (diffusers' "should be kept in float32"
# on every cast of a model), Python warnings, progress bars, pointers to their documentation.
LIBRARY_MARKS = ("should be kept in float32", "Warning:", "it/s]", "s/it]", "Writing model shards", "https://")


def library_noise(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if any(mark in line for mark in LIBRARY_MARKS)]


def test_library_notes_and_warnings_show_with_debug_only():
    """`amari` keeps the libraries' notes off its terminal; `--debug` lets them through. (The notes are
    read by a handler of the test's own: diffusers' handler writes to whichever stderr it first saw.)"""
    import io
    import logging as std_logging
    import warnings

    from diffusers.utils import logging

    from amari.progress import quiet_libraries

    note = logging.get_logger("diffusers.models.modeling_utils")
    seen = std_logging.StreamHandler(io.StringIO())
    std_logging.getLogger("diffusers").addHandler(seen)
    caught = {}
    try:
        for debug in (False, True):
            with warnings.catch_warnings(record=True) as caught[debug]:
                warnings.simplefilter("always")
                with quiet_libraries(debug):
                    note.warning(f"a note for diffusers' maintainers (debug={debug})")
                    warnings.warn_explicit("deprecated", FutureWarning, "x.py", 1, module="transformers.x")
    finally:
        std_logging.getLogger("diffusers").removeHandler(seen)
    assert seen.stream.getvalue().splitlines() == ["a note for diffusers' maintainers (debug=True)"]
    assert [str(w.message) for w in caught[False]] == [] and [str(w.message) for w in caught[True]] == ["deprecated"]
    assert logging.get_verbosity() == logging.WARNING  # as it was before


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_end(tmp_path, tiny_sd, images, one_thread):
    # The uninterrupted run, in this process.
    reference = tmp_path / "reference"
    run(_config(tiny_sd, steps=9, every=3), TrainLayout(images, reference))

    # The same run in a child process, killed as step 5 begins, then resumed.
    out = tmp_path / "killed"
    kill_at_step_5_then_resume(_args(images, out, tiny_sd, steps=9, every=3), out, timeout=120)

    rows = _rows(out)
    assert [int(row[0]) for row in rows] == list(range(1, 10))  # every step once, none twice
    # Every draw is a function of (seed, sample index), so the resumed run repeats the reference bit for bit.
    assert rows == _rows(reference)
    final = load_embedding(out / "learned_embeds.safetensors")
    assert final.token == "amari"
    assert torch.equal(final.vectors, load_embedding(reference / "learned_embeds.safetensors").vectors)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000003", "step-000006", "step-000009"]


def train_on_two_processes(args: list[str], timeout: float) -> str:
    """`amari ARGS` launched on two processes (torch.distributed.run); its stderr, once it succeeded."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", _free_port()]
    # Its own session, so that a hang ends with every worker of the launcher, not only the launcher.
    launcher = subprocess.Popen(
        [*command, "-m", "amari", *args],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _out, err = launcher.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(launcher.pid, signal.SIGKILL)
        launcher.communicate()
        raise
    assert launcher.returncode == 0, err[-3000:]
    return err


@pytest.mark.slow
def test_two_processes_train_like_one_accumulating_two_batches(tmp_path, tiny_sd, images, one_thread):
    out = tmp_path / "two"
    err = train_on_two_processes(_args(images, out, tiny_sd, steps=4, every=2), timeout=150)
    assert "lr 0.1 on 2 process(es)" in err  # 0.05 × 2 processes × batch 1

    single = tmp_path / "one"
    run(_config(tiny_sd, steps=4, every=2, grad_accum=2), TrainLayout(images, single))
    two, one = MetricsLog(out / "metrics.csv").rows(), MetricsLog(single / "metrics.csv").rows()
    assert [r["epoch"] for r in two] == [r["epoch"] for r in one] == [repr(s * 2 / 300) for s in range(1, 5)]
    assert [r["lr"] for r in two] == [r["lr"] for r in one] == ["0.1"] * 4
    # The same samples in the same steps; gradients averaged across processes instead of over micro-batches.
    for a, b in zip(two, one):
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=1e-4)
    vectors_two = load_embedding(out / "learned_embeds.safetensors").vectors
    vectors_one = load_embedding(single / "learned_embeds.safetensors").vectors
    assert torch.allclose(vectors_two, vectors_one, atol=1e-4)
