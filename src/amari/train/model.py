"""The Stable Diffusion parts a Textual Inversion run needs, loaded once and frozen."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from amari.errors import ModelError


@dataclass
class Components:
    tokenizer: object
    text_encoder: object
    vae: object
    unet: object
    noise_scheduler: object  # DDPM, for adding noise during training
    sample_scheduler: object  # DDIM with the model's own scheduler settings, for sample images


def load_components(model: str, dtype=None) -> Components:
    """From a diffusers folder, a Hugging Face id (local cache when offline), or one .ckpt/.safetensors file,
    with the UNet and VAE weights in `dtype` (default float32).

    The text encoder stays in float32: the placeholder's float32 vectors enter it, and autocast runs its
    matrix products in half precision anyway.
    """
    import torch

    dtype = dtype or torch.float32
    path = Path(model).expanduser()
    if path.is_file():
        return _from_single_file(path, dtype)
    if path.is_dir():
        return _from_pretrained(str(path), model, dtype)
    if _looks_like_path(model):
        raise ModelError(f"model {model}: no such file or folder")
    return _from_pretrained(model, model, dtype)


def _looks_like_path(model: str) -> bool:
    return model.startswith((".", "~", os.sep)) or model.endswith((".ckpt", ".safetensors")) \
        or model.count("/") > 1 or (os.altsep is not None and os.altsep in model)


def _from_pretrained(location: str, model: str, dtype) -> Components:
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    try:
        return Components(
            tokenizer=CLIPTokenizer.from_pretrained(location, subfolder="tokenizer"),
            text_encoder=CLIPTextModel.from_pretrained(location, subfolder="text_encoder", dtype=torch.float32),
            vae=AutoencoderKL.from_pretrained(location, subfolder="vae", torch_dtype=dtype),
            unet=UNet2DConditionModel.from_pretrained(location, subfolder="unet", torch_dtype=dtype),
            noise_scheduler=DDPMScheduler.from_pretrained(location, subfolder="scheduler"),
            sample_scheduler=DDIMScheduler.from_pretrained(location, subfolder="scheduler"),
        )
    except (OSError, ValueError) as exc:
        raise ModelError(_explain(model, exc)) from None


def _from_single_file(path: Path, dtype) -> Components:
    from diffusers import DDIMScheduler, DDPMScheduler, StableDiffusionPipeline

    try:
        pipe = StableDiffusionPipeline.from_single_file(str(path), safety_checker=None, torch_dtype=dtype,
                                                        requires_safety_checker=False)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelError(_explain(str(path), exc)) from None
    return Components(tokenizer=pipe.tokenizer, text_encoder=pipe.text_encoder.float(), vae=pipe.vae, unet=pipe.unet,
                      noise_scheduler=DDPMScheduler.from_config(pipe.scheduler.config),
                      sample_scheduler=DDIMScheduler.from_config(pipe.scheduler.config))


def _explain(model: str, exc: Exception) -> str:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on") and not Path(model).exists():
        return (f"cannot load Stable Diffusion model {model!r}: it is not a local folder and is not in the "
                f"Hugging Face cache, and downloads are off (HF_HUB_OFFLINE). Download it once while online, "
                f"or pass --model with a diffusers folder or a .safetensors/.ckpt file")
    return f"cannot load Stable Diffusion model {model!r}: {first}"


def freeze(components: Components, device) -> None:
    """Move every module to the device, switch to inference mode and stop its gradients."""
    for module in (components.text_encoder, components.vae, components.unet):
        module.requires_grad_(False)
        module.eval()
        module.to(device)
