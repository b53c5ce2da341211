"""Single-file Stable Diffusion checkpoints (.safetensors and .ckpt in the original LDM key layout), offline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from amari.errors import ModelError
from amari.generate import generate, preset_config, with_overrides

PROMPT = "a photo of a woman"


# diffusers layout -> the original LDM layout of SD 1.x checkpoints (what sd-v1-4.ckpt holds), so the
# test loads a file shaped like the real one through diffusers' own converter.
_RESNET = (
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("time_emb_proj", "emb_layers.1"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("conv_shortcut", "skip_connection"),
)
_VAE_RESNET = (("conv_shortcut", "nin_shortcut"),)
_VAE_ATTENTION = (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out"))


def _rename_inner(rest, table):
    for new, old in table:
        if rest == new or rest.startswith(new + "."):
            return old + rest[len(new) :]
    return rest


def unet_to_ldm(state, config):
    """UNet keys: blocks become LDM's numbered input/middle/output blocks (layers + 1 per level)."""
    per_level = config["layers_per_block"] + 1
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "conv_in":
            new = "input_blocks.0.0." + ".".join(parts[1:])
        elif parts[0] == "time_embedding":
            new = {"linear_1": "time_embed.0", "linear_2": "time_embed.2"}[parts[1]] + "." + ".".join(parts[2:])
        elif parts[0] == "conv_norm_out":
            new = "out.0." + ".".join(parts[1:])
        elif parts[0] == "conv_out":
            new = "out.2." + ".".join(parts[1:])
        elif parts[0] == "down_blocks":
            i, kind, j, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
            if kind == "resnets":
                new = f"input_blocks.{i * per_level + j + 1}.0.{_rename_inner(rest, _RESNET)}"
            elif kind == "attentions":
                new = f"input_blocks.{i * per_level + j + 1}.1.{rest}"
            else:
                new = f"input_blocks.{(i + 1) * per_level}.0.op.{'.'.join(parts[5:])}"
        elif parts[0] == "mid_block":
            kind, j, rest = parts[1], int(parts[2]), ".".join(parts[3:])
            if kind == "resnets":
                new = f"middle_block.{2 * j}.{_rename_inner(rest, _RESNET)}"
            else:
                new = f"middle_block.1.{rest}"
        elif parts[0] == "up_blocks":
            i, kind, j, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
            has_attention = any(k.startswith(f"up_blocks.{i}.attentions.") for k in state)
            if kind == "resnets":
                new = f"output_blocks.{i * per_level + j}.0.{_rename_inner(rest, _RESNET)}"
            elif kind == "attentions":
                new = f"output_blocks.{i * per_level + j}.1.{rest}"
            else:
                block = i * per_level + per_level - 1
                new = f"output_blocks.{block}.{2 if has_attention else 1}.conv.{'.'.join(parts[5:])}"
        else:
            raise KeyError(key)
        out["model.diffusion_model." + new] = value
    return out


def vae_to_ldm(state, config):
    """VAE keys: LDM numbers the decoder's levels from the bottom and keeps attention as 1×1 convs."""
    n = len(config["block_out_channels"])
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        side = parts[0]
        if side in ("quant_conv", "post_quant_conv") or parts[1] in ("conv_in", "conv_out"):
            new = key
        elif parts[1] == "conv_norm_out":
            new = f"{side}.norm_out.{'.'.join(parts[2:])}"
        elif parts[1] in ("down_blocks", "up_blocks"):
            i, kind = int(parts[2]), parts[3]
            level = i if side == "encoder" else n - 1 - i
            name = "down" if side == "encoder" else "up"
            if kind == "resnets":
                new = f"{side}.{name}.{level}.block.{parts[4]}.{_rename_inner('.'.join(parts[5:]), _VAE_RESNET)}"
            else:
                sample = "downsample" if side == "encoder" else "upsample"
                new = f"{side}.{name}.{level}.{sample}.{'.'.join(parts[5:])}"
        elif parts[1] == "mid_block":
            kind, j, rest = parts[2], int(parts[3]), ".".join(parts[4:])
            if kind == "resnets":
                new = f"{side}.mid.block_{j + 1}.{_rename_inner(rest, _VAE_RESNET)}"
            else:
                new = f"{side}.mid.attn_1.{_rename_inner(rest, _VAE_ATTENTION)}"
                if value.ndim == 2:
                    value = value[:, :, None, None]
        else:
            raise KeyError(key)
        out["first_stage_model." + new] = value
    return out


def text_to_ldm(state):
    return {
        "cond_stage_model.transformer." + (k if k.startswith("text_model.") else "text_model." + k): v
        for k, v in state.items()
    }


def export_ldm(folder) -> dict:
    """One state dict in the original single-file layout from a saved diffusers pipeline folder."""
    from safetensors.torch import load_file

    folder = Path(folder)
    unet = load_file(folder / "unet/diffusion_pytorch_model.safetensors")
    vae = load_file(folder / "vae/diffusion_pytorch_model.safetensors")
    text = load_file(folder / "text_encoder/model.safetensors")
    out = {}
    out.update(unet_to_ldm(unet, json.loads((folder / "unet/config.json").read_text())))
    out.update(vae_to_ldm(vae, json.loads((folder / "vae/config.json").read_text())))
    out.update(text_to_ldm(text))
    return {k: v.contiguous() for k, v in out.items()}


@pytest.fixture(scope="module")
def checkpoints(tiny_sd, tmp_path_factory):
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("single-file")
    state = export_ldm(tiny_sd)
    save_file(state, folder / "tiny-sd.safetensors")
    # Lightning-era checkpoints wrap the weights and carry bookkeeping beside them.
    torch.save({"state_dict": state, "global_step": 470000, "epoch": 6}, folder / "tiny-sd.ckpt")
    return folder


@pytest.fixture(scope="module")
def config(tiny_sd):
    return preset_config("fast", model=str(tiny_sd), steps=3)


@pytest.fixture(scope="module")
def reference(config):
    return np.asarray(generate(PROMPT, seeds=[21], config=config, progress=False).images[0].image)


@pytest.mark.parametrize("name", ["tiny-sd.safetensors", "tiny-sd.ckpt"])
def test_single_file_gives_the_same_images_as_the_folder(config, checkpoints, tiny_sd, reference, name):
    single = with_overrides(config, model=str(checkpoints / name), model_config=str(tiny_sd))
    result = generate(PROMPT, seeds=[21], config=single, progress=False)
    assert np.array_equal(np.asarray(result.images[0].image), reference)
    assert result.images[0].params["model"] == "tiny-sd"  # the file's name, not its path


def test_single_file_offline_without_configs_says_what_to_pass(config, checkpoints):
    lonely = with_overrides(config, model=str(checkpoints / "tiny-sd.safetensors"))
    with pytest.raises(ModelError, match="--model-config FOLDER_OR_ID"):
        generate(PROMPT, seeds=[1], config=lonely, progress=False)


class _RunsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def test_malicious_checkpoint_is_refused_and_never_runs(config, tiny_sd, tmp_path):
    marker = tmp_path / "ran.txt"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "callbacks": _RunsCode(marker)}, evil)
    with pytest.raises(ModelError, match="refused"):
        generate(
            PROMPT, seeds=[1], progress=False, config=with_overrides(config, model=str(evil), model_config=str(tiny_sd))
        )
    assert not marker.exists()


def test_corrupt_checkpoint_is_a_model_error(config, tiny_sd, tmp_path):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError):
        generate(
            PROMPT,
            seeds=[1],
            progress=False,
            config=with_overrides(config, model=str(broken), model_config=str(tiny_sd)),
        )


def test_malicious_weights_in_a_diffusers_folder_are_refused(config, tiny_sd, tmp_path):
    import shutil

    from safetensors.torch import load_file

    folder = tmp_path / "evil-pipeline"
    shutil.copytree(tiny_sd, folder)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    weights.unlink()
    marker = tmp_path / "ran.txt"
    torch.save({**state, "extra": _RunsCode(marker)}, folder / "unet" / "diffusion_pytorch_model.bin")
    with pytest.raises(ModelError, match="refused.*diffusion_pytorch_model.bin|diffusion_pytorch_model.bin.*refused"):
        generate(PROMPT, seeds=[1], progress=False, config=with_overrides(config, model=str(folder)))
    assert not marker.exists()
