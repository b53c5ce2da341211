"""The Stable Diffusion parts a Textual Inversion run needs, loaded once (through `amari.models.diffusion`, as
generation loads them) and frozen."""

from __future__ import annotations

from dataclasses import dataclass

from amari.models.diffusion import ModelInfo, load_pipeline


@dataclass
class Components:
    tokenizer: object
    text_encoder: object
    vae: object
    unet: object
    noise_scheduler: object  # DDPM, for adding noise during training
    sample_scheduler: object  # DDIM with the model's own scheduler settings, for sample images
    info: ModelInfo  # the model's public name (never a local path) and short hash


def load_components(model: str, model_config: str | None = None, dtype=None, log=None) -> Components:
    """From a diffusers folder, a Hugging Face id (local cache when offline), or one .ckpt/.safetensors file,
    with the UNet and VAE weights in `dtype` (default float32).

    The text encoder stays in float32: the placeholder's float32 vectors enter it, and autocast runs its
    matrix products in half precision anyway.
    """
    import torch
    from diffusers import DDIMScheduler, DDPMScheduler

    pipe, info = load_pipeline(model, model_config, torch.float32, log=log)
    dtype = dtype or torch.float32
    return Components(
        tokenizer=pipe.tokenizer,
        text_encoder=pipe.text_encoder.float(),
        vae=pipe.vae.to(dtype=dtype),
        unet=pipe.unet.to(dtype=dtype),
        noise_scheduler=DDPMScheduler.from_config(pipe.scheduler.config),
        sample_scheduler=DDIMScheduler.from_config(pipe.scheduler.config),
        info=info,
    )


def freeze(components: Components, device) -> None:
    """Move every module to the device, switch to inference mode and stop its gradients."""
    for module in (components.text_encoder, components.vae, components.unet):
        module.requires_grad_(False)
        module.eval()
        module.to(device)
