"""SDXL (base 1.0 and its fine-tunes): two CLIP text encoders (ViT-L, 768 wide, and OpenCLIP bigG, 1280
wide, with a projection), a UNet conditioned on the image size as well, 1024² images.

Recognised by the UNet's added text-time embedding (`addition_embed_type="text_time"`, `label_emb` in
a checkpoint file) beside two text encoders (the refiner has one, and is not a base model amari mines
with). Its VAE overflows in float16: diffusers upcasts it to float32 for decoding when its config says
`force_upcast` (a replacement VAE such as the fp16-fix one says not), and training encodes with it in
float32 for the same reason.

Files: an embedding holds `clip_l` [n, 768] and `clip_g` [n, 1280] (A1111, ComfyUI, kohya; diffusers
loads it with one `load_textual_inversion` call per encoder); kohya's LoRA names (`lora_unet_…`,
`lora_te1_…`, `lora_te2_…`) follow the original SGM UNet's block numbering (`input_blocks.4.1…`), which
kohya's scripts, A1111, ComfyUI and diffusers all map.
"""

from __future__ import annotations

import re

from amari.errors import UsageError
from amari.models.families.base import CLIP_MAX_TOKENS, RESTORE, Defaults, Family, TextEncoder

_LEVEL = 3  # SGM blocks per UNet level: two resnet (+ attention) layers and a down/up sampler
_RESNET = (
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("time_emb_proj", "emb_layers.1"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("conv_shortcut", "skip_connection"),
)
_BLOCK = re.compile(r"(down|up)_blocks\.(\d+)\.(attentions|resnets)\.(\d+)\.(.+)")
_MID = re.compile(r"mid_block\.(attentions|resnets)\.(\d+)\.(.+)")


def _inner(kind: str, rest: str) -> str:
    if kind == "attentions":
        return rest
    for new, old in _RESNET:
        if rest == new or rest.startswith(new + "."):
            return old + rest[len(new) :]
    return rest


def sgm_module(module: str) -> str | None:
    """The original SGM UNet's name of a diffusers UNet module inside a block (None: not inside one)."""
    match = _BLOCK.fullmatch(module)
    if match:
        side, level, kind, layer, rest = match.groups()
        level, layer = int(level), int(layer)
        index = level * _LEVEL + layer + 1 if side == "down" else level * _LEVEL + layer
        name = "input_blocks" if side == "down" else "output_blocks"
        return f"{name}.{index}.{1 if kind == 'attentions' else 0}.{_inner(kind, rest)}"
    match = _MID.fullmatch(module)
    if match:
        kind, layer, rest = match.groups()
        return f"middle_block.{1 if kind == 'attentions' else 2 * int(layer)}.{_inner(kind, rest)}"
    return None


class StableDiffusionXL(Family):
    def matches(self, evidence) -> bool:
        if evidence.layout == "diffusers":
            return {"unet", "text_encoder", "text_encoder_2"} <= evidence.components and (
                evidence.config("unet", "addition_embed_type") == "text_time"
            )
        two_encoders = evidence.has_prefix("conditioner.embedders.1.") or not evidence.has_prefix("conditioner.")
        return evidence.has("diffusion_model.label_emb.0.0.weight") and two_encoders

    def pipeline_kwargs(self, safety_checker: bool) -> dict:
        # amari marks every image itself (watermark, fingerprint, credentials); the pipeline's own
        # invisible watermark would sit under amari's in the same frequencies.
        return {"add_watermarker": False}

    def load_single_file(self, path: str, kwargs: dict, config_source: str | None, extract_ema: bool):
        import diffusers

        if config_source is not None:
            kwargs = {**kwargs, "config": config_source}
        return getattr(diffusers, self.pipeline_class).from_single_file(path, **kwargs)

    def _sample_extras(self) -> dict:
        return {"add_watermarker": False}

    def training_vae_dtype(self, vae, dtype):
        import torch

        return torch.float32 if getattr(vae.config, "force_upcast", True) and dtype == torch.float16 else dtype

    def encode_text(self, encoders: list, ids: list) -> dict:
        """Both encoders' penultimate hidden states side by side, and the second's pooled projection."""
        import torch

        first = encoders[0](ids[0], output_hidden_states=True)
        second = encoders[1](ids[1], output_hidden_states=True)
        hidden = torch.cat([first.hidden_states[-2], second.hidden_states[-2]], dim=-1)
        return {"encoder_hidden_states": hidden, "text_embeds": second[0]}

    def predict(self, denoiser, noisy, time, conditioning: dict, dtype, size: int):
        import torch

        # The size conditioning of a square training image, uncropped: original (h, w), crop (0, 0), target (h, w).
        time_ids = torch.tensor([[size, size, 0, 0, size, size]], device=noisy.device, dtype=dtype)
        added = {
            "text_embeds": conditioning["text_embeds"].to(dtype),
            "time_ids": time_ids.repeat(noisy.shape[0], 1),
        }
        hidden = conditioning["encoder_hidden_states"].to(dtype)
        return denoiser(noisy.to(dtype), time, hidden, added_cond_kwargs=added).sample

    def kohya_module(self, part: str, module: str) -> str | None:
        if part != self.denoiser:
            return super().kohya_module(part, module)
        original = sgm_module(module)
        if original is None:
            raise UsageError(f"{module}: kohya's SDXL LoRA files name UNet blocks only; choose block modules")
        return "lora_unet_" + original.replace(".", "_")

    def embedding_file(self, vectors: dict) -> dict:
        return {"clip_l": vectors["clip_l"], "clip_g": vectors["clip_g"]}


SDXL = StableDiffusionXL(
    name="sdxl",
    label="SDXL",
    base="sdxl",
    pipeline_class="StableDiffusionXLPipeline",
    hub_example="stabilityai/stable-diffusion-xl-base-1.0",
    defaults=Defaults(
        size=1024,
        sampler="dpmpp_2m",
        steps=30,
        guidance=5.0,  # diffusers' SDXL default
        dtype="float16",
        max_tokens=CLIP_MAX_TOKENS,
        enhancement=RESTORE,
        sample_sampler="ddim",
        sample_steps=30,
    ),
    text_encoders=(
        TextEncoder("text_encoder", "tokenizer", embedding_key="clip_l", kohya_prefix="lora_te1"),
        TextEncoder("text_encoder_2", "tokenizer_2", embedding_key="clip_g", kohya_prefix="lora_te2"),
    ),
    kohya_metadata={
        "ss_base_model_version": "sdxl_base_v1-0",
        "modelspec.architecture": "stable-diffusion-xl-v1-base/lora",
    },
    parameters={"unet": 2.567, "text_encoder": 0.123, "text_encoder_2": 0.695, "vae": 0.084},
    broken_image_hint=(
        "SDXL's VAE overflows in float16 unless it is upcast: give --vae madebyollin/sdxl-vae-fp16-fix, "
        "or --option dtype=float32"
    ),
)
