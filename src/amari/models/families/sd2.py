"""Stable Diffusion 2.x (2.0 and 2.1, 512 and 768-v): SD 1.x's layout with an OpenCLIP ViT-H text encoder
1024 wide, which is how it is told apart. The 768-v models predict velocity; their scheduler config says
so and training follows it."""

from __future__ import annotations

from dataclasses import replace

from amari.models.families.base import Family
from amari.models.families.sd1 import SD1, SD2_WIDTH, is_stable_diffusion, text_width


class StableDiffusion2(Family):
    def matches(self, evidence) -> bool:
        return is_stable_diffusion(evidence) and text_width(evidence) == SD2_WIDTH


SD2 = StableDiffusion2(
    **{
        **SD1.__dict__,
        "name": "sd2",
        "label": "SD 2.x",
        "base": "sd-2",
        "hub_example": "stabilityai/stable-diffusion-2-1",
        "defaults": replace(SD1.defaults, size=768),
        # A1111 tells an SD 2.x LoRA by `ss_v2`; kohya writes both.
        "kohya_metadata": {
            "ss_base_model_version": "sd_v2",
            "ss_v2": "True",
        },
        "parameters": {"unet": 0.865, "text_encoder": 0.340, "vae": 0.084},
    }
)
