"""Random-weight Stable Diffusion pipelines saved as diffusers folders, built offline.

`build_tiny_sd` makes a pipeline small enough for CPU tests (64×64 images, a few MB); `build_sd15_random`
has SD 1.x's full architecture, so it costs what the real model costs, for benchmarks. Both write a
CLIP tokenizer of their own: byte-level symbols plus whole-word merges for the words tests use.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

WORDS = (
    "a",
    "woman",
    "man",
    "person",
    "photo",
    "photograph",
    "of",
    "face",
    "portrait",
    "side",
    "profile",
    "image",
    "an",
    "extremely",
    "detailed",
    "walking",
    "outside",
    "the",
    "with",
    "smiling",
)


def _bytes_to_unicode() -> dict[int, str]:
    # CLIP's reversible byte -> printable character table.
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def write_clip_tokenizer(folder: str | Path, words=WORDS) -> Path:
    """vocab.json, merges.txt and the config files of a small CLIP BPE tokenizer."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    symbols = list(_bytes_to_unicode().values())
    vocab_list = symbols + [s + "</w>" for s in symbols]
    merges: list[tuple[str, str]] = []
    for word in words:
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        current = pieces[0]
        for piece in pieces[1:]:
            pair = (current, piece)
            current = current + piece
            if pair not in merges:
                merges.append(pair)
            if current not in vocab_list:
                vocab_list.append(current)
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(vocab_list)}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n", encoding="utf-8"
    )
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "CLIPTokenizer",
                "model_max_length": 77,
                "do_lower_case": True,
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>",
            }
        )
    )
    (folder / "special_tokens_map.json").write_text(
        json.dumps(
            {
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>",
            }
        )
    )
    return folder


def _assemble(folder: Path, unet, vae, text_config, seed: int) -> Path:
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline
    from transformers import CLIPTextModel, CLIPTokenizer

    tokenizer_dir = write_clip_tokenizer(folder / "_tokenizer_src")
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
    text_config.bos_token_id = tokenizer.bos_token_id
    text_config.eos_token_id = tokenizer.eos_token_id
    text_config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(text_config)
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    shutil.rmtree(folder / "_tokenizer_src")
    return folder


# The text encoder's width of each family (SD 2.x's is how amari.models.families tells it from SD 1.x); the
# tiny SD 2.x has it at one layer.
_TEXT_WIDTHS = {"sd-1": 32, "sd-2": 1024}


def build_tiny_sd(folder: str | Path, seed: int = 0, family: str = "sd-1") -> Path:
    """A tiny random-weight Stable Diffusion pipeline (64×64 output) saved at `folder`: SD 1.x-style with a
    CLIP width of 32, or with `family="sd-2"` SD 2.x's shape where amari tells the families apart (a text
    encoder 1024 wide, OpenCLIP's activation, linear attention projections; one text layer, about 25 MB)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig

    folder = Path(folder)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=_TEXT_WIDTHS[family],
        norm_num_groups=32,
        use_linear_projection=family == "sd-2",
    )
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        sample_size=64,
    )
    width = _TEXT_WIDTHS[family]
    text_config = CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_size=width,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=5 if family == "sd-1" else 1,
        vocab_size=1000,
        projection_dim=width,
        hidden_act="quick_gelu" if family == "sd-1" else "gelu",
    )
    return _assemble(folder, unet, vae, text_config, seed)


def build_sd15_random(folder: str | Path, seed: int = 0) -> Path:
    """SD 1.5's full architecture with random weights (same compute as the real model), saved at `folder`."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig

    folder = Path(folder)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=64,
        cross_attention_dim=768,
        attention_head_dim=8,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
    )
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        sample_size=512,
    )
    text_config = CLIPTextConfig(
        hidden_size=768,
        intermediate_size=3072,
        num_attention_heads=12,
        num_hidden_layers=12,
        max_position_embeddings=77,
        vocab_size=49408,
        hidden_act="quick_gelu",
        projection_dim=768,
    )
    return _assemble(folder, unet, vae, text_config, seed)
