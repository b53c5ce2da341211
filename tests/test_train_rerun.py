"""Running a finished training again: its summary and exports (byte for byte), shortened, given its
model by another path, re-run by a study with other settings. A kill between the last checkpoint and
the summary, in a real process, is one of the study's crash points (test_study_crashes.py)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from amari.errors import UsageError
from amari.storage.layout import TrainLayout
from amari.train import TrainConfig, run
from amari.train.formats import load_embedding
from test_train import reference_group, train_images  # noqa: F401 - fixtures

EXPORTS = ("learned_embeds.safetensors", "amari.safetensors")
SUMMARIES = ("validation.csv", "best.json")


def config_for(tiny_sd, reference, **changes) -> TrainConfig:
    settings = dict(
        model=str(tiny_sd),
        token="amari",
        resolution=64,
        max_steps=2,
        checkpoint_every=1,
        base_lr=0.05,
        sample_seeds=(11,),
        sample_steps=2,
        reference_group=reference,
    )
    return TrainConfig(**{**settings, **changes})


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_sd, train_images, reference_group, one_thread):  # noqa: F811
    """A two-step run with a checkpoint and a validation at each step, in this process."""
    config = config_for(tiny_sd, reference_group)
    layout = TrainLayout(train_images, tmp_path_factory.mktemp("finished") / "out")
    run(config, layout)
    return config, layout


def files(out: Path, names) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in names}


def test_a_rerun_summarises_again_and_writes_the_same_bytes(finished, tmp_path):
    """Run again, a finished run rewrites its summary (lost if a kill came between its last checkpoint
    and the summary) and its exports, byte for byte (safetensors' header in one order)."""
    config, layout = finished
    out = tmp_path / "out"
    shutil.copytree(layout.out, out)
    for name in SUMMARIES:
        (out / name).unlink()
    again = run(config, TrainLayout(layout.data, out))
    assert again.resumed_from == 2
    assert files(out, SUMMARIES + EXPORTS) == files(layout.out, SUMMARIES + EXPORTS)


def test_a_shorter_run_uses_its_own_last_step_not_a_later_checkpoint(finished, tmp_path):
    config, layout = finished
    out = tmp_path / "out"
    shutil.copytree(layout.out, out)
    shorter = run(config.replace(max_steps=1), TrainLayout(layout.data, out))
    assert shorter.step == 1 and [p.name for p in shorter.checkpoints] == ["step-000001"]
    final = load_embedding(out / "learned_embeds.safetensors")
    at_one = load_embedding(out / "checkpoints" / "step-000001" / "learned_embeds.safetensors")
    assert final.metadata["step"] == "1" and (final.vectors == at_one.vectors).all()
    assert json.loads((out / "best.json").read_text())["step"] == 1
    assert [line.split(",")[0] for line in (out / "validation.csv").read_text().splitlines()] == ["step", "1"]
    longer = run(config, TrainLayout(layout.data, out))  # the later checkpoint is there again for the longer run
    assert longer.resumed_from == 2 and files(out, EXPORTS + SUMMARIES) == files(layout.out, EXPORTS + SUMMARIES)


def test_the_model_given_by_a_relative_path_is_the_same_model(finished, tmp_path, monkeypatch):
    config, layout = finished
    out = tmp_path / "out"
    shutil.copytree(layout.out, out)
    model = Path(config.model)
    monkeypatch.chdir(model.parent)
    again = run(config.replace(model=model.name), TrainLayout(layout.data, out))
    assert again.resumed_from == 2
    monkeypatch.chdir(model.parent.parent)
    again = run(config.replace(model=os.path.join(model.parent.name, model.name)), TrainLayout(layout.data, out))
    assert again.resumed_from == 2


def test_other_settings_are_refused_or_with_start_over_trained_anew(finished, tmp_path):
    config, layout = finished
    out = tmp_path / "out"
    shutil.copytree(layout.out, out)
    changed = config.replace(seed=24, max_steps=1)
    with pytest.raises(UsageError, match="seed: 23 there, 24 now"):
        run(changed, TrainLayout(layout.data, out))
    messages = []
    fresh = run(changed, TrainLayout(layout.data, out), log=messages.append, start_over=True)
    assert fresh.resumed_from == 0 and fresh.step == 1
    assert any("training starts over" in m for m in messages)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000001"]
    assert json.loads((out / "run.json").read_text())["settings"]["seed"] == 24
