"""The model a run trains on, loaded once (through `amari.models.diffusion`, as generation loads it) and frozen:
its family's text encoders, VAE and denoiser (a UNet, or FLUX.1's transformer), and its schedulers."""

from __future__ import annotations

from dataclasses import dataclass

from amari.models.diffusion import ModelInfo, load_pipeline, quiet_loading


@dataclass
class Components:
    pipe: object  # the loaded pipeline: its modules are the ones below
    family: object  # amari.models.families.base.Family
    slots: list  # the family's TextEncoder of each text encoder, in order
    tokenizers: list
    text_encoders: list
    vae: object
    denoiser: object  # the UNet, or FLUX.1's transformer
    noise_scheduler: object  # the noise added during training (DDPM; FLUX.1: its flow-matching scheduler)
    sample_scheduler: object  # sample images' sampler, with the model's own scheduler settings
    info: ModelInfo  # the model's public name (never a local path) and short hash

    @property
    def tokenizer(self):
        return self.tokenizers[0]

    @property
    def text_encoder(self):
        return self.text_encoders[0]

    @property
    def unet(self):
        return self.denoiser

    def encoders(self) -> list[tuple]:
        """(slot, tokenizer, text encoder) of each text encoder."""
        return list(zip(self.slots, self.tokenizers, self.text_encoders))


def load_components(
    model: str, model_config: str | None = None, dtype=None, log=None, learning: frozenset = frozenset(), vae=None
) -> Components:
    """From a diffusers folder, a Hugging Face id (local cache when offline), or one .ckpt/.safetensors file:
    the denoiser and VAE in `dtype` (default float32; a VAE that overflows in float16, SDXL's, in float32),
    the text encoders named in `learning` (their attribute names) in float32 (their trained vectors and
    adapters are), the others in `dtype`.
    """
    import torch

    from amari.models.families.registry import guess

    dtype = dtype or torch.float32
    family = guess(model)
    # FLUX.1's weights ship in bf16: loading them as float32 first would take 4 bytes a parameter.
    load_dtype = dtype if family.loads_in_training_dtype else torch.float32
    pipe, info = load_pipeline(model, model_config, load_dtype, log=log, vae=vae)
    slots, tokenizers, encoders = [], [], []
    with quiet_loading():  # diffusers notes every cast
        for slot, tokenizer, encoder in family.encoders(pipe):
            encoder.to(dtype=torch.float32 if slot.encoder in learning else dtype)
            slots.append(slot)
            tokenizers.append(tokenizer)
            encoders.append(encoder)
        pipe.vae.to(dtype=family.training_vae_dtype(pipe.vae, dtype))
        denoiser = getattr(pipe, family.denoiser).to(dtype=dtype)
    return Components(
        pipe=pipe,
        family=family,
        slots=slots,
        tokenizers=tokenizers,
        text_encoders=encoders,
        vae=pipe.vae,
        denoiser=denoiser,
        noise_scheduler=family.training_scheduler(pipe),
        sample_scheduler=family.sample_scheduler(pipe),
        info=info,
    )


def freeze(components: Components, device) -> None:
    """Move every module to the device, switch to inference mode and stop its gradients."""
    for module in (*components.text_encoders, components.vae, components.denoiser):
        module.requires_grad_(False)
        module.eval()
        module.to(device)
