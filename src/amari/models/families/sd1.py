"""Stable Diffusion 1.x (the 2022 study's SD 1.4, SD 1.5 and their fine-tunes): one CLIP ViT-L text
encoder 768 wide, a UNet, 512² images.

Recognised by a UNet with cross-attention and one text encoder that is not 1024 wide (SD 2.x's
OpenCLIP is): in a diffusers layout from the components and their configs, in one checkpoint file from
the width of the UNet's cross-attention keys (`...attn2.to_k.weight`), with no `label_emb` (SDXL's).
"""

from __future__ import annotations

from amari.models.families.base import CLIP_MAX_TOKENS, UPSCALE, Defaults, Family

SD2_WIDTH = 1024  # OpenCLIP ViT-H, SD 2.x's text encoder
_CROSS_ATTENTION = "attn2.to_k.weight"
_UNET_FILE_KEY = "diffusion_model.input_blocks.0.0.weight"


def text_width(evidence) -> int | None:
    """The width of the text the UNet attends to: its config, else its cross-attention weights' shape."""
    if evidence.layout == "diffusers":
        width = evidence.config("text_encoder", "hidden_size") or evidence.config("unet", "cross_attention_dim")
        return int(width) if isinstance(width, int) else None
    shape = evidence.shape(_CROSS_ATTENTION)
    return shape[-1] if shape else None


def is_stable_diffusion(evidence) -> bool:
    """One text encoder and a UNet without SDXL's added text-time embedding."""
    if evidence.layout == "diffusers":
        return (
            {"unet", "text_encoder"} <= evidence.components
            and "text_encoder_2" not in evidence.components
            and evidence.config("unet", "addition_embed_type") is None
        )
    return evidence.has(_UNET_FILE_KEY) and not evidence.has("label_emb.0.0.weight")


class StableDiffusion(Family):
    def matches(self, evidence) -> bool:
        return is_stable_diffusion(evidence) and text_width(evidence) != SD2_WIDTH


SD1 = StableDiffusion(
    name="sd1",
    label="SD 1.x",
    base="sd-1",
    pipeline_class="StableDiffusionPipeline",
    hub_example="stable-diffusion-v1-5/stable-diffusion-v1-5",
    defaults=Defaults(
        size=512,
        sampler="dpmpp_2m",
        steps=25,
        guidance=7.5,
        dtype="float16",
        max_tokens=CLIP_MAX_TOKENS,
        enhancement=UPSCALE,
        sample_sampler="ddim",
        sample_steps=50,
    ),
    kohya_metadata={
        "ss_base_model_version": "sd_v1",
        "ss_v2": "False",
        "modelspec.architecture": "stable-diffusion-v1/lora",
    },
    parameters={"unet": 0.860, "text_encoder": 0.123, "vae": 0.084},
)
