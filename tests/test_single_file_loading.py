"""One safe loader for single-file checkpoints in every stage: training from an LDM-layout file offline,
real Lightning `.ckpt` bookkeeping, and the EMA weights of full-EMA checkpoints."""

from __future__ import annotations

import pytest
import torch

from amari.cli import main
from amari.models.diffusion import load_pipeline
from amari.testing.ldm import export_ldm, save_lightning_checkpoint, with_ema


@pytest.fixture(scope="module")
def files(tiny_sd, tmp_path_factory):
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("ldm")
    state = export_ldm(tiny_sd)
    save_file(state, folder / "tiny.safetensors")
    save_lightning_checkpoint(state, folder / "lightning.ckpt")
    save_lightning_checkpoint(with_ema(state), folder / "full-ema.ckpt")
    return folder, state


@pytest.fixture(scope="module")
def train_images(tmp_path_factory, t1_people):
    from PIL import Image

    folder = tmp_path_factory.mktemp("train-images")
    for path in t1_people[:2]:
        Image.open(path).convert("RGB").resize((64, 64)).save(folder / path.name)
    return folder


def _train_args(images, out, model, *extra):
    return [
        "train",
        str(images),
        "--out",
        str(out),
        "--model",
        str(model),
        "--resolution",
        "64",
        "--steps",
        "1",
        "--checkpoint-every",
        "1",
        "--sample-seeds",
        "",
        "--mixed-precision",
        "no",
        *extra,
    ]


@pytest.mark.parametrize("name", ["tiny.safetensors", "lightning.ckpt"])
def test_train_takes_a_single_file_checkpoint_offline_with_model_config(
    files, tiny_sd, train_images, tmp_path, capsys, name, one_thread
):
    folder, _ = files
    out = tmp_path / "out"
    assert main(_train_args(train_images, out, folder / name, "--model-config", str(tiny_sd))) == 0, (
        capsys.readouterr().err
    )
    assert (out / "learned_embeds.safetensors").is_file()
    from safetensors import safe_open

    with safe_open(str(out / "amari.safetensors"), framework="pt") as handle:
        metadata = handle.metadata()
    # The model is named by its file, with A1111's short hash: never a local path.
    assert metadata["sd_checkpoint_name"] == name.rsplit(".", 1)[0]
    assert len(metadata["sd_checkpoint_hash"]) == 10 and str(folder) not in str(metadata)


def test_a_single_file_without_configs_offline_says_to_pass_model_config(files, train_images, tmp_path, capsys):
    folder, _ = files
    assert main(_train_args(train_images, tmp_path / "out", folder / "tiny.safetensors")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--model-config" in err[0]


def _unet_weight(pipe):
    return pipe.unet.conv_in.weight.detach().clone()


def test_full_ema_checkpoints_give_their_ema_weights_unless_told_otherwise(files, tiny_sd, one_thread):
    folder, state = files
    said = []
    ema, info = load_pipeline(str(folder / "full-ema.ckpt"), str(tiny_sd), log=said.append)
    plain, plain_info = load_pipeline(str(folder / "full-ema.ckpt"), str(tiny_sd), extract_ema=False, log=said.append)
    original = state["model.diffusion_model.input_blocks.0.0.weight"]
    assert torch.allclose(_unet_weight(ema), original + 0.01)
    assert torch.allclose(_unet_weight(plain), original)
    assert (info.weights, plain_info.weights) == ("ema", "non-ema")
    assert any("loaded the ema weights" in line for line in said)
    assert any("loaded the non-ema weights" in line for line in said)
    lightning, lightning_info = load_pipeline(str(folder / "lightning.ckpt"), str(tiny_sd))
    assert lightning_info.weights is None and torch.allclose(_unet_weight(lightning), original)
