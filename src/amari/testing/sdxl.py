"""Random-weight SDXL pipelines saved as diffusers folders, built offline.

`build_tiny_sdxl` follows the smallest configuration diffusers' own SDXL pipeline tests run (a UNet with
`addition_embed_type="text_time"`, two CLIP text encoders, the second with a projection), with encoders
of different widths (32 and 48) so that anything that mixes them up fails; 64×64 images, a few MB.
`build_sdxl_random` has SDXL base 1.0's full architecture (2.6 B UNet parameters), for benchmarks.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from amari.testing.sd import write_clip_tokenizer


def _save(folder: Path, unet, vae, configs, seed: int) -> Path:
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer(folder / "_tokenizer_src"))
    for config in configs:
        config.bos_token_id, config.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
        config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(configs[0])
    text_encoder_2 = CLIPTextModelWithProjection(configs[1])
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
    )
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=scheduler,
        add_watermarker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    shutil.rmtree(folder / "_tokenizer_src")
    return folder


def build_tiny_sdxl(folder: str | Path, seed: int = 0) -> Path:
    """A tiny random-weight SDXL pipeline (64×64 output; text encoders 32 and 48 wide) saved at `folder`."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig

    folder = Path(folder)
    widths = (32, 48)
    time_embed = 8
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_embed,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=6 * time_embed + widths[1],  # six size numbers + pooled text
        cross_attention_dim=sum(widths),
        norm_num_groups=32,
    )
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        sample_size=64,
        scaling_factor=0.13025,
        force_upcast=True,
    )
    configs = [
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            hidden_size=width,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=3,
            vocab_size=1000,
            hidden_act="gelu",
            projection_dim=width,
        )
        for width in widths
    ]
    return _save(folder, unet, vae, configs, seed)


def build_sdxl_random(folder: str | Path, seed: int = 0) -> Path:
    """SDXL base 1.0's full architecture with random weights (same compute as the real model)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig

    folder = Path(folder)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=128,
        block_out_channels=(320, 640, 1280),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2, 10),
        attention_head_dim=(5, 10, 20),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816,
        cross_attention_dim=2048,
    )
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        sample_size=1024,
        scaling_factor=0.13025,
        force_upcast=True,
    )
    configs = [
        CLIPTextConfig(
            hidden_size=768,
            intermediate_size=3072,
            num_attention_heads=12,
            num_hidden_layers=12,
            vocab_size=49408,
            hidden_act="quick_gelu",
            projection_dim=768,
        ),
        CLIPTextConfig(
            hidden_size=1280,
            intermediate_size=5120,
            num_attention_heads=20,
            num_hidden_layers=32,
            vocab_size=49408,
            hidden_act="gelu",
            projection_dim=1280,
        ),
    ]
    return _save(folder, unet, vae, configs, seed)
