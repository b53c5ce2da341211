"""Random-weight Real-ESRGAN and GFPGAN model files, built locally from spandrel's architectures.

The files have the structure of the released ones (Real-ESRGAN's key names under `params_ema`, the
full GFPGANv1Clean network), so loading them walks the same detection and loading path; only the
weights are random. `build_random_esrgan` makes the tiny one by default and the full-size one with
`**REAL_ESRGAN_X4PLUS`.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

# RealESRGAN_x4plus: RRDBNet with 64 features and 23 blocks, x4.
REAL_ESRGAN_X4PLUS = {"num_filters": 64, "num_blocks": 23}


def _real_esrgan_key(old_key: str, num_blocks: int) -> str:
    """Spandrel's sequential key -> the key Real-ESRGAN's own RRDBNet writes (x4 layout)."""
    fixed = {
        "model.0.": "conv_first.",
        f"model.1.sub.{num_blocks}.": "conv_body.",
        "model.3.": "conv_up1.",
        "model.6.": "conv_up2.",
        "model.8.": "conv_hr.",
        "model.10.": "conv_last.",
    }
    for prefix, new in fixed.items():
        if old_key.startswith(prefix):
            return new + old_key[len(prefix) :]
    match = re.fullmatch(r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)", old_key)
    if match is None:
        raise ValueError(f"unexpected ESRGAN key {old_key}")
    block, rdb, conv, kind = match.groups()
    return f"body.{block}.rdb{rdb}.conv{conv}.{kind}"


def random_esrgan_state_dict(
    num_filters: int = 16, num_blocks: int = 1, seed: int = 0, passthrough: bool = True
) -> dict:
    """A random x4 RRDBNet state dict with Real-ESRGAN's key names.

    With `passthrough` the first three channels of every convolution outside the dense blocks carry
    the image through (a centre tap of 1) and all weights get small random values on top, so the
    output is the input upscaled (nearest neighbour) plus a random texture: faces stay findable in it
    and a tiling seam would show. Without it, every weight is random at PyTorch's default scale.
    """
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(seed)
    model = ESRGAN(in_nc=3, out_nc=3, num_filters=num_filters, num_blocks=num_blocks, scale=4)
    if passthrough:
        _make_passthrough(model, num_blocks)
    return {_real_esrgan_key(k, num_blocks): v.contiguous() for k, v in model.state_dict().items()}


def _make_passthrough(model, num_blocks: int) -> None:
    params = dict(model.named_parameters())
    carriers = ["model.0", "model.3", "model.6", "model.8", "model.10"]
    with torch.no_grad():
        for name, tensor in params.items():
            # Real-ESRGAN starts its dense blocks at a tenth of the default scale; the rest stays small
            # so the carried image dominates.
            tensor.mul_(0.1 if ".RDB" in name else 0.02)
        for prefix in carriers:
            weight = params[f"{prefix}.weight"]
            for channel in range(3):
                weight[channel, channel, 1, 1] += 1.0


def build_random_esrgan(path: str | Path, num_filters: int = 16, num_blocks: int = 1, seed: int = 0) -> Path:
    """Save a random x4 ESRGAN as `.pth` (wrapped in `params_ema`, as released) or `.safetensors`."""
    path = Path(path)
    state = random_esrgan_state_dict(num_filters, num_blocks, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    elif path.suffix == ".pth":
        torch.save({"params_ema": state}, path)
    else:
        raise ValueError(f"expected a .pth or .safetensors path, got {path}")
    return path


def build_random_gfpgan(path: str | Path, seed: int = 0) -> Path:
    """Save a full-size GFPGANv1Clean (about 350 MB) with random weights as `.pth`, like v1.3/v1.4."""
    from spandrel.architectures.GFPGAN import GFPGAN

    torch.manual_seed(seed)
    model = GFPGAN(
        out_size=512,
        num_style_feat=512,
        channel_multiplier=2,
        decoder_load_path=None,
        fix_decoder=False,
        num_mlp=8,
        input_is_latent=True,
        different_w=True,
        narrow=1,
        sft_half=True,
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"params_ema": model.state_dict()}, path)
    return path
