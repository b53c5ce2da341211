"""FLUX.1 [schnell] and [dev]: a rectified-flow transformer (19 double and 38 single blocks), a CLIP ViT-L
whose pooled output conditions it and a T5-XXL whose tokens it attends to, a 16-channel VAE, 1024²
images, in bfloat16.

Recognised by a transformer with single blocks beside a second text encoder (diffusers layout), or by
BFL's `double_blocks.…` keys (one file). [dev] is told from [schnell] by its weights: its transformer
has a guidance embedding (`time_text_embed.guidance_embedder…`, `guidance_in…` in BFL's layout), which
the guidance-distilled [dev] needs and the timestep-distilled [schnell] does not have.

[schnell] is Apache-2.0. [dev] and models derived from it are under the FLUX.1 [dev] Non-Commercial
License, which forbids using the model or its outputs for biometric processing: amari's mining, scoring
and evaluation compute face descriptors, so they refuse it unless the user says which licence permits it
(`biometric_licence`).

Training: a LoRA on the transformer (rectified flow: the noisy latent is (1 - σ)·x + σ·ε and the
target ε - x); Textual Inversion is not offered. The LoRA's diffusers file (`transformer.…` keys) is the
format ComfyUI maps onto FLUX.1 too (`comfy/lora.py`, through `flux_to_diffusers`).
"""

from __future__ import annotations

from dataclasses import dataclass

from amari.errors import UsageError
from amari.models.families.base import RESTORE, Defaults, Family, TextEncoder

FLOW_SAMPLER = "flow_euler"
DEV_LICENCE = "FLUX.1 [dev] Non-Commercial License"
_GUIDANCE_KEYS = ("time_text_embed.guidance_embedder.linear_1.weight", "guidance_in.in_layer.weight")
_FILE_KEYS = ("double_blocks.0.img_attn.qkv.weight", "single_transformer_blocks.0.attn.to_q.weight")


def is_flux(evidence) -> bool:
    if evidence.layout == "diffusers":
        return {"transformer", "text_encoder", "text_encoder_2"} <= evidence.components and (
            evidence.config("transformer", "num_single_layers") is not None
        )
    return any(evidence.has(key) for key in _FILE_KEYS)


def has_guidance_embedding(evidence) -> bool:
    """From the weights' names when they can be read, else from the transformer's config."""
    if evidence.shapes:
        return any(evidence.has(key) for key in _GUIDANCE_KEYS)
    return bool(evidence.config("transformer", "guidance_embeds", False))


def pack(latents):
    """[B, C, h, w] latents as FLUX's sequence of 2×2 patches, [B, h/2 · w/2, 4C]."""
    b, c, h, w = latents.shape
    patches = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return patches.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(sequence, channels: int, height: int, width: int):
    b = sequence.shape[0]
    patches = sequence.view(b, height // 2, width // 2, channels, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return patches.reshape(b, channels, height, width)


def image_positions(height: int, width: int, device, dtype):
    """Each patch's (0, row, column): the rotary position the transformer gives image tokens."""
    import torch

    rows = torch.arange(height // 2, device=device, dtype=dtype)[:, None].expand(height // 2, width // 2)
    cols = torch.arange(width // 2, device=device, dtype=dtype)[None, :].expand(height // 2, width // 2)
    return torch.stack([torch.zeros_like(rows), rows, cols], dim=-1).reshape(-1, 3)


@dataclass(frozen=True)
class Flux(Family):
    guidance_embedding: bool = False
    training_guidance: float = 1.0  # what [dev]'s guidance embedding is given while a LoRA trains

    def matches(self, evidence) -> bool:
        return is_flux(evidence) and has_guidance_embedding(evidence) == self.guidance_embedding

    def pipeline_kwargs(self, safety_checker: bool) -> dict:
        return {}

    def load_single_file(self, path: str, kwargs: dict, config_source: str | None, extract_ema: bool):
        """BFL's files hold the transformer alone: the rest comes from `config_source` (a diffusers FLUX
        folder or hub id), or from the hub when none is given."""
        import diffusers

        if config_source is None:
            return diffusers.FluxPipeline.from_single_file(path, **kwargs)
        dtype = {key: value for key, value in kwargs.items() if key in ("dtype", "torch_dtype")}
        local = {"local_files_only": kwargs["local_files_only"]} if "local_files_only" in kwargs else {}
        transformer = diffusers.FluxTransformer2DModel.from_single_file(
            path, config=config_source, subfolder="transformer", **dtype, **local
        )
        return diffusers.FluxPipeline.from_pretrained(config_source, transformer=transformer, **kwargs)

    def native_size(self, pipe) -> int:
        return int(pipe.default_sample_size) * int(pipe.vae_scale_factor)

    def call_kwargs(self, negative_prompt: str, count: int, sampler: str, eta: float) -> dict:
        if negative_prompt:
            raise UsageError(f"{self.label} takes no negative prompt (its guidance is distilled); leave it empty")
        return {"max_sequence_length": self.defaults.max_tokens}

    # Training -------------------------------------------------------------------------------------

    def max_tokens(self, slot: TextEncoder, tokenizer, encoder) -> int:
        if slot.encoder == "text_encoder_2":
            return self.defaults.max_tokens  # T5, padded as the pipeline pads prompts
        return super().max_tokens(slot, tokenizer, encoder)

    def training_scheduler(self, pipe):
        from diffusers import FlowMatchEulerDiscreteScheduler

        return FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)

    sample_scheduler = training_scheduler

    def scale_latents(self, vae, latents):
        return (latents - vae.config.shift_factor) * vae.config.scaling_factor

    def noisy_input(self, scheduler, latents, noise, timesteps):
        """Rectified flow at σ = (t + 1) / T, shifted as the scheduler's static `shift` says."""
        total = scheduler.config.num_train_timesteps
        shift = float(scheduler.config.get("shift", 1.0))
        sigma = (timesteps.float() + 1) / total
        sigma = shift * sigma / (1 + (shift - 1) * sigma)
        sigma = sigma.to(latents.device, latents.dtype)
        mix = sigma.view(-1, 1, 1, 1)
        return (1 - mix) * latents + mix * noise, sigma, noise - latents

    def encode_text(self, encoders: list, ids: list) -> dict:
        pooled = encoders[0](ids[0], output_hidden_states=False).pooler_output
        return {"pooled_projections": pooled, "encoder_hidden_states": encoders[1](ids[1])[0]}

    def predict(self, denoiser, noisy, time, conditioning: dict, dtype, size: int):
        import torch

        batch, channels, height, width = noisy.shape
        text = conditioning["encoder_hidden_states"].to(dtype)
        guidance = None
        if self.guidance_embedding:
            guidance = torch.full((batch,), self.training_guidance, device=noisy.device, dtype=dtype)
        output = denoiser(
            hidden_states=pack(noisy.to(dtype)),
            timestep=time.to(dtype),
            guidance=guidance,
            pooled_projections=conditioning["pooled_projections"].to(dtype),
            encoder_hidden_states=text,
            txt_ids=torch.zeros(text.shape[1], 3, device=noisy.device, dtype=dtype),
            img_ids=image_positions(height, width, noisy.device, dtype),
            return_dict=False,
        )[0]
        return unpack(output, channels, height, width)

    def _sample_extras(self) -> dict:
        return {}

    def kohya_module(self, part: str, module: str) -> str | None:
        # kohya's FLUX.1 files use BFL's fused layout (qkv in one matrix); the diffusers file is the one
        # ComfyUI, Forge and diffusers read for FLUX.1.
        return None


_FLUX = dict(
    pipeline_class="FluxPipeline",
    base="flux",
    denoiser="transformer",
    text_encoders=(
        TextEncoder("text_encoder", "tokenizer", kohya_prefix="lora_te1", learns_token=False),
        TextEncoder("text_encoder_2", "tokenizer_2", learns_token=False),
    ),
    samplers=(FLOW_SAMPLER,),
    size_multiple=16,
    no_token_training="FLUX.1 learns an identity through a LoRA on its transformer: use --method lora",
    loads_in_training_dtype=True,
    parameters={"transformer": 11.90, "text_encoder": 0.123, "text_encoder_2": 4.76, "vae": 0.084},
)

FLUX_SCHNELL = Flux(
    name="flux-schnell",
    label="FLUX.1 [schnell]",
    hub_example="black-forest-labs/FLUX.1-schnell",
    defaults=Defaults(
        size=1024,
        sampler=FLOW_SAMPLER,
        steps=4,
        guidance=0.0,  # timestep-distilled: no guidance
        dtype="bfloat16",
        max_tokens=256,
        enhancement=RESTORE,
        sample_sampler=FLOW_SAMPLER,
        sample_steps=4,
    ),
    kohya_metadata={"ss_base_model_version": "flux1", "modelspec.architecture": "flux-1-schnell/lora"},
    **_FLUX,
)

FLUX_DEV = Flux(
    name="flux-dev",
    label="FLUX.1 [dev]",
    hub_example="black-forest-labs/FLUX.1-dev",
    defaults=Defaults(
        size=1024,
        sampler=FLOW_SAMPLER,
        steps=28,
        guidance=3.5,  # the distilled guidance its embedding takes
        dtype="bfloat16",
        max_tokens=512,
        enhancement=RESTORE,
        sample_sampler=FLOW_SAMPLER,
        sample_steps=28,
    ),
    biometric_licence=DEV_LICENCE,
    kohya_metadata={"ss_base_model_version": "flux1", "modelspec.architecture": "flux-1-dev/lora"},
    guidance_embedding=True,
    **_FLUX,
)
