"""Several Textual Inversion groups in one run: each group ends where training it alone ends (within float
tolerance), and a run killed with SIGKILL while it writes one step's checkpoints resumes to the same end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from amari.storage.layout import TrainLayout
from amari.train import Group, TrainConfig, run, run_groups
from amari.train.formats import load_embedding
from amari.train.groups import apart_because
from crashhooks import crash_command
from test_train_resume import _env, _rows

# Three people's faces in t1.jpg (top, right, bottom, left); the groups hold 3, 2 and 1 of them.
T1_FACES = [(283, 1226, 390, 1118), (283, 175, 390, 67), (367, 832, 474, 724)]
GROUPS = {"a_3": (0, 1, 2), "b_2": (2, 0), "c_1": (1,)}
STEPS, EVERY, LR = 9, 3, 0.05


@pytest.fixture(scope="module")
def folders(tmp_path_factory, data_dir) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("groups")
    photo = Image.open(data_dir / "t1.jpg").convert("RGB")
    for name, faces in GROUPS.items():
        (root / name).mkdir()
        for index in faces:
            top, right, bottom, left = T1_FACES[index]
            cx, cy = (left + right) // 2, (top + bottom) // 2
            photo.crop((cx - 100, cy - 100, cx + 100, cy + 100)).save(root / name / f"{index}.png")
    return {name: root / name for name in GROUPS}


def _config(tiny_sd: Path) -> TrainConfig:
    return TrainConfig(
        model=str(tiny_sd),
        token="amari",
        resolution=64,
        max_steps=STEPS,
        checkpoint_every=EVERY,
        base_lr=LR,
        sample_seeds=(),
    )


@pytest.fixture(scope="module")
def together(tmp_path_factory, tiny_sd, folders, one_thread) -> Path:
    """The three groups trained in one run, in this process."""
    out = tmp_path_factory.mktemp("together")
    config = _config(tiny_sd)
    messages: list[str] = []
    results = run_groups([Group(n, config, TrainLayout(f, out / n)) for n, f in folders.items()], messages.append)
    assert set(results) == set(GROUPS) and all(result.step == STEPS for result in results.values())
    said = [m for m in messages if m.startswith("a_3: ") and "trained with 2 other groups in one batch" in m]
    assert len(said) == 1 and ", 3 images at 64²" in said[0]
    return out


def _state(out: Path, step: int) -> dict:
    return torch.load(out / "checkpoints" / f"step-{step:06d}" / "training_state.pt", weights_only=True)


@pytest.mark.slow
def test_each_group_trained_together_ends_where_it_ends_alone(together, tmp_path, tiny_sd, folders, one_thread):
    config = _config(tiny_sd)
    for name, folder in folders.items():
        alone = tmp_path / name
        run(config, TrainLayout(folder, alone))
        joint, single = _rows(together / name), _rows(alone)
        assert [row[:2] for row in joint] == [row[:2] for row in single]  # the same steps and epochs
        # The same samples in the same order: each step's loss is the lone run's, up to the order of sums.
        for a, b in zip(joint, single):
            assert float(a[2]) == pytest.approx(float(b[2]), rel=1e-5)
        # The same gradients: AdamW's second moments are the squared gradients' running mean, so a group
        # that saw another's loss, or its own at another scale, would be far off here.
        mine, its = _state(together / name, STEPS)["optimizer"], _state(alone, STEPS)["optimizer"]
        assert mine["param_groups"] == its["param_groups"]  # a lone run's optimizer, resumable either way
        assert torch.allclose(mine["state"][0]["exp_avg_sq"], its["state"][0]["exp_avg_sq"], rtol=2e-3)
        vectors = load_embedding(together / name / "learned_embeds.safetensors").vectors
        expected = load_embedding(alone / "learned_embeds.safetensors").vectors
        moved = (expected - _state(alone, EVERY)["vectors"]).abs().max()  # in the last steps
        assert moved > LR
        assert (vectors - expected).abs().max() <= 2e-3 * moved
    finals = [load_embedding(together / n / "learned_embeds.safetensors").vectors for n in GROUPS]
    assert not torch.equal(finals[0], finals[1]) and not torch.equal(finals[1], finals[2])


@pytest.mark.slow
def test_a_run_killed_between_two_groups_checkpoints_resumes_to_the_same_end(tmp_path, together, tiny_sd, folders):
    out = tmp_path / "killed"
    args = ["train", *map(str, folders.values()), "--out", str(out), "--model", str(tiny_sd), "--token", "amari"]
    args += ["--resolution", "64", "--steps", str(STEPS), "--checkpoint-every", str(EVERY), "--lr", str(LR)]
    args += ["--sample-seeds", ""]
    # Killed as the second step's checkpoints are written: a_3's step 6 is on disk, b_2's and c_1's are not.
    child = subprocess.run(
        crash_command("amari.train.saving:save_checkpoint", 4, "after", *args),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert child.returncode == -9, child.stderr[-2000:]
    steps = {name: sorted(p.name for p in (out / name / "checkpoints").iterdir()) for name in GROUPS}
    assert steps == {"a_3": ["step-000003", "step-000006"], "b_2": ["step-000003"], "c_1": ["step-000003"]}

    resumed = subprocess.run([sys.executable, "-m", "amari", *args], env=_env(), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # Every group goes back to the last step all of them reached, so the batches are the unkilled run's.
    for name in GROUPS:
        assert f"{name}: resuming from checkpoints/step-000003 (step 3)" in resumed.stderr
        assert _rows(out / name) == _rows(together / name)  # bit for bit, every step once
        vectors = load_embedding(out / name / "learned_embeds.safetensors").vectors
        assert torch.equal(vectors, load_embedding(together / name / "learned_embeds.safetensors").vectors)


def test_what_cannot_share_a_run_trains_apart():
    layout = TrainLayout("data", "out")
    ti = [Group(name, TrainConfig(), layout) for name in ("a", "b")]
    assert apart_because(ti) is None
    assert apart_because(ti[:1]) == "one group"
    lora = [Group("a", TrainConfig(method="lora"), layout), ti[1]]
    assert apart_because(lora) == "lora changes weights every group shares"
    other = [ti[0], Group("b", TrainConfig(resolution=256), layout)]
    assert apart_because(other) == "their resolution differs"
    # What a group may have of its own: steps, seed, learning rate and schedule, checkpoints, its reference.
    own = TrainConfig(max_steps=10, seed=5, base_lr=0.01, lr_schedule="cosine", checkpoint_every=2, repeats=3)
    assert apart_because([ti[0], Group("b", own, layout)]) is None
