"""Single-file Stable Diffusion checkpoints in the original LDM key layout, made from a diffusers folder.

What `sd-v1-4.ckpt` and `v1-5-pruned-emaonly.safetensors` hold, at any size: tests and benchmarks load
a file shaped like the real ones through diffusers' own converter, without a download. Also the
bookkeeping real Lightning checkpoints carry (a numpy-scalar `global_step`, a pickled callback), and
the EMA copy of the UNet that full-EMA checkpoints (`sd-v1-4-full-ema.ckpt`) hold beside the weights.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

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


def with_ema(state: dict, shift: float = 0.01) -> dict:
    """`state` plus an EMA copy of its UNet under `model_ema.` with every dot of the key removed, as
    the original trainer stored it; the EMA weights differ from the plain ones by `shift`."""
    import torch

    out = dict(state)
    for key, value in state.items():
        if key.startswith("model.diffusion_model."):
            out["model_ema." + "".join(key.split(".")[1:])] = value + shift
    out["model_ema.decay"] = torch.tensor(0.9999)
    return out


def save_lightning_checkpoint(state: dict, path: str | Path) -> Path:
    """A `.ckpt` as PyTorch Lightning wrote SD 1.x: weights under `state_dict`, a numpy-scalar global step,
    and a pickled `pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint` object."""
    import numpy as np
    import torch

    module_name = "pytorch_lightning.callbacks.model_checkpoint"
    created = [
        name for name in ("pytorch_lightning", "pytorch_lightning.callbacks", module_name) if name not in sys.modules
    ]
    for name in created:
        sys.modules[name] = types.ModuleType(name)
    callback_class = type("ModelCheckpoint", (), {"__module__": module_name})
    sys.modules[module_name].ModelCheckpoint = callback_class
    callback = callback_class()
    callback.best_model_path = "checkpoints/last.ckpt"
    try:
        torch.save(
            {
                "state_dict": state,
                "global_step": np.int64(470000),
                "epoch": 6,
                "callbacks": {"ModelCheckpoint": callback},
            },
            path,
        )
    finally:
        for name in created:
            sys.modules.pop(name, None)
    return Path(path)
