"""A tiny random-weight IP-Adapter and CLIP image encoder for a tiny Stable Diffusion, built offline.

Written in the layout h94/IP-Adapter publishes and diffusers' `load_ip_adapter(ROOT, subfolder="models",
weight_name=...)` reads: `ROOT/models/NAME.safetensors` holding `image_proj.*` (the "plus" variants'
Resampler, in its original key names) and `ip_adapter.N.to_k_ip.weight` / `ip_adapter.N.to_v_ip.weight`
for the UNet's cross-attention layers (N = 1, 3, 5, ...: the attention processors counted in the UNet's
order, self-attention included), and the image encoder (`CLIPVisionModelWithProjection`) in
`ROOT/models/image_encoder/`. The Resampler's facts are diffusers' converter's: 64 channels per head, four
blocks, a feed-forward four times as wide.
"""

from __future__ import annotations

from pathlib import Path

WEIGHTS = "ip-adapter-plus-face_tiny.safetensors"
HEAD = 64  # diffusers reads the Resampler's heads as to_q's rows / 64
DEPTH = 4  # ... and builds four blocks
FF_MULT = 4


def build_tiny_ip_adapter(root: str | Path, model: str | Path, seed: int = 0, queries: int = 4) -> Path:
    """Write the adapter for the UNet of the diffusers folder `model`; returns the weights file."""
    import torch
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    folder = Path(root) / "models"
    folder.mkdir(parents=True, exist_ok=True)
    unet = UNet2DConditionModel.from_pretrained(model, subfolder="unet")
    cross = int(unet.config.cross_attention_dim)
    torch.manual_seed(seed)
    encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=37,
            projection_dim=cross,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=4,
        )
    )
    encoder.save_pretrained(folder / "image_encoder", safe_serialization=True)

    generator = torch.Generator().manual_seed(seed)

    def linear(rows: int, columns: int) -> torch.Tensor:
        return torch.randn(rows, columns, generator=generator) / columns**0.5

    tensors = {}
    cross_attention = [name for name in unet.attn_processors if not name.endswith("attn1.processor")]
    for key_id, name in zip(range(1, 2 * len(cross_attention), 2), cross_attention):
        hidden = unet.get_submodule(name.removesuffix(".processor")).to_q.in_features
        tensors[f"ip_adapter.{key_id}.to_k_ip.weight"] = linear(hidden, cross)
        tensors[f"ip_adapter.{key_id}.to_v_ip.weight"] = linear(hidden, cross)
    embed, width = encoder.config.hidden_size, HEAD
    proj = {
        "latents": torch.randn(1, queries, width, generator=generator) / width**0.5,
        "proj_in.weight": linear(width, embed),
        "proj_in.bias": torch.zeros(width),
        "proj_out.weight": linear(cross, width),
        "proj_out.bias": torch.zeros(cross),
        "norm_out.weight": torch.ones(cross),
        "norm_out.bias": torch.zeros(cross),
    }
    for block in range(DEPTH):
        layer = f"layers.{block}"
        for norm in ("0.norm1", "0.norm2", "1.0"):
            proj[f"{layer}.{norm}.weight"], proj[f"{layer}.{norm}.bias"] = torch.ones(width), torch.zeros(width)
        proj[f"{layer}.0.to_q.weight"] = linear(HEAD, width)
        proj[f"{layer}.0.to_kv.weight"] = linear(2 * HEAD, width)
        proj[f"{layer}.0.to_out.weight"] = linear(width, HEAD)
        proj[f"{layer}.1.1.weight"] = linear(FF_MULT * width, width)
        proj[f"{layer}.1.3.weight"] = linear(width, FF_MULT * width)
    tensors.update({f"image_proj.{key}": value.contiguous() for key, value in proj.items()})
    path = folder / WEIGHTS
    save_file(tensors, str(path))
    return path
