"""A study killed (SIGKILL, at exact crash points) and run again ends with the uninterrupted study's
results.csv, best.json and validation.csv, byte for byte, and leaves no half-written file.

The suite runs one chain of kills across the stages on the tiniest study there is. The whole sweep,
each of at least 30 points killed in a study of its own and resumed, runs when AMARI_CRASH_SWEEP=1:

    AMARI_CRASH_SWEEP=1 HF_HUB_OFFLINE=1 python -m pytest -q tests/test_study_crashes.py -k sweep
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from amari.cli import main
from amari.study.demo import COMMANDS, PROMPTS, study_toml, write_face_folder
from crashhooks import crash_command

GROUPS = ("g_all",)
COMPARED = [
    "results/results.csv",
    *[f"train/{g}/{name}" for g in GROUPS for name in ("best.json", "validation.csv")],
    *[f"train/{g}/{name}" for g in GROUPS for name in ("learned_embeds.safetensors", "amari.safetensors")],
]


def tiny_study(root: Path, out: Path, model: Path) -> Path:
    """The toy study (`amari study --demo`) at its smallest: one group trained two steps (a checkpoint and
    a validation each), one prompt and seed to evaluate, no second look with the CNN detector."""
    faces, reference = root / "faces", root / "reference.png"
    if not faces.is_dir():
        write_face_folder(faces)
    text = study_toml(out, model, faces, reference)
    for old, new in (
        ('[[select.groups]]\nname = "g_2"\nimages = 2\n', ""),
        ("max_steps = 3\ncheckpoint_every = 3", "max_steps = 2\ncheckpoint_every = 1"),
        (f"prompts = {json.dumps(list(PROMPTS))}", f"prompts = {json.dumps(PROMPTS[:1])}\ncnn_second_pass = false"),
        (f'\n[[evaluate.commands]]\nname = "{COMMANDS[1][0]}"\nseed = {COMMANDS[1][1]}\n', ""),
    ):
        assert old in text, old
        text = text.replace(old, new)
    config = out.parent / "study.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(text)
    return config


def outputs(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in COMPARED}


def half_written(out: Path) -> list[str]:
    return [str(p.relative_to(out)) for p in out.rglob("*") if p.name.endswith((".part", ".partial"))]


def environment() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")


def killed(config: Path, target: str, calls: int, when: str) -> bool:
    """`amari study CONFIG` killed at the crash point; False when the run ended before reaching it."""
    done = subprocess.run(
        crash_command(target, calls, when, "study", str(config)),
        env=environment(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode in (0, -signal.SIGKILL), done.stderr[-3000:]
    return done.returncode == -signal.SIGKILL


def finish(config: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "amari", "study", str(config)], env=environment(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_sd, one_thread):
    root = tmp_path_factory.mktemp("crash-study")
    out = root / "whole" / "study"
    assert main(["study", str(tiny_study(root, out, tiny_sd))]) == 0
    return root, outputs(out)


# A kill in mining, one in training, one in evaluation, then a run to the end: every run goes on from
# where the one before it was killed.
CHAIN = [
    ("amari.mine.workspace:Workspace.commit", 2, "after"),  # a batch committed, the next not begun
    ("amari.train.checkpoints:summarize_validation", 2, "before"),  # the last checkpoint, not its summary
    # The grid's first image recorded in both registries and renamed, the second half-written: its
    # fingerprint recorded, its temporary file not yet renamed into place.
    ("amari.provenance.fingerprint:Registry.record", 3, "after"),
]


@pytest.mark.slow
def test_a_study_killed_again_and_again_ends_as_one_run(uninterrupted, tiny_sd):
    root, expected = uninterrupted
    out = root / "chain" / "study"
    config = tiny_study(root, out, tiny_sd)
    for target, calls, when in CHAIN:
        assert killed(config, target, calls, when), (target, calls, when)
    finish(config)
    assert outputs(out) == expected
    assert half_written(out) == []
    # Another training seed: the study trains the groups anew rather than refusing their folders.
    config.write_text(config.read_text().replace("max_steps = 2", "max_steps = 2\nseed = 24"))
    assert main(["study", str(config), "--until", "train"]) == 0
    assert json.loads((out / "train" / "g_all" / "run.json").read_text())["settings"]["seed"] == 24


# -- the sweep: each point in a study of its own (AMARI_CRASH_SWEEP=1) --------------------------------

SWEEP = [
    *[("amari.mine.workspace:Workspace.commit", k, w) for k in (1, 2, 3) for w in ("before", "after")],
    ("amari.mine.engine:Engine._pump", 2, "before"),
    ("amari.select.stage:write_group", 1, "after"),
    ("amari.prepare.stage:run", 2, "before"),
    *[("amari.train.loop:train_step", k, "before") for k in (1, 2)],
    *[("amari.train.saving:save_checkpoint", k, w) for k in (1, 2) for w in ("before", "after")],
    *[("amari.train.checkpoints:summarize_validation", k, "before") for k in (1, 2)],
    *[("amari.provenance.fingerprint:Registry.record", k, "after") for k in (1, 3, 5, 7)],
    ("amari.train.checkpoints:save_training_state", 2, "after"),
    ("amari.train.saving:export_final", 1, "after"),
    *[("amari.evaluate.stage:write_results", k, w) for k in (1, 2) for w in ("before", "after")],
    ("amari.storage.results:write_manifest", 1, "before"),
    *[("amari.study.run:Markers.mark", k, "before") for k in (1, 2, 3, 4, 5, 6)],
    *[("os:replace", k, "before") for k in (4, 12, 20, 28, 36)],
]


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("AMARI_CRASH_SWEEP"), reason="the whole sweep: AMARI_CRASH_SWEEP=1")
@pytest.mark.parametrize("target, calls, when", SWEEP)
def test_sweep_a_study_killed_anywhere_ends_as_one_run(uninterrupted, tiny_sd, tmp_path, target, calls, when):
    root, expected = uninterrupted
    out = tmp_path / "study"
    config = tiny_study(root, out, tiny_sd)
    if not killed(config, target, calls, when):
        pytest.skip(f"the study ends before call {calls} of {target}")
    finish(config)
    assert outputs(out) == expected
    assert half_written(out) == []
