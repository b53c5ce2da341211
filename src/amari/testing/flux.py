"""Random-weight FLUX.1 pipelines saved as diffusers folders, built offline.

`build_tiny_flux` follows the smallest configuration diffusers' own FLUX pipeline tests run (a
`FluxTransformer2DModel` with one double and one single block, a CLIP and a small T5 encoder, a
one-channel VAE); `guidance=True` gives the transformer FLUX.1 [dev]'s guidance embedding, which is how
amari tells dev from schnell. The T5 tokenizer is a small Unigram model built with the `tokenizers`
library (no download). `build_flux_random` has FLUX.1's full architecture (12 B transformer parameters).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from amari.testing.sd import WORDS, write_clip_tokenizer


def write_t5_tokenizer(folder: str | Path, words=WORDS) -> Path:
    """A small T5 (SentencePiece Unigram) tokenizer: whole words, then single letters for the rest."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    specials = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces = [(f"\u2581{word}", -1.0) for word in words] + [("\u2581", -3.0)]
    letters = [(chr(code), -5.0) for code in range(ord("a"), ord("z") + 1)]
    tokenizer = Tokenizer(models.Unigram(specials + pieces + letters, unk_id=2))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    fast = T5TokenizerFast(
        tokenizer_object=tokenizer, eos_token="</s>", unk_token="<unk>", pad_token="<pad>", extra_ids=0
    )
    fast.save_pretrained(folder)
    return Path(folder)


def _save(folder: Path, transformer, vae, clip_config, t5_config, seed: int) -> Path:
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline
    from transformers import CLIPTextModel, CLIPTokenizer, T5EncoderModel, T5TokenizerFast

    tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer(folder / "_tokenizer_src"))
    tokenizer_2 = T5TokenizerFast.from_pretrained(write_t5_tokenizer(folder / "_t5_src"))
    clip_config.bos_token_id, clip_config.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    clip_config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(clip_config)
    torch.manual_seed(seed)
    text_encoder_2 = T5EncoderModel(t5_config)
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    shutil.rmtree(folder / "_tokenizer_src")
    shutil.rmtree(folder / "_t5_src")
    return folder


def build_tiny_flux(folder: str | Path, seed: int = 0, guidance: bool = False) -> Path:
    """A tiny random-weight FLUX.1 pipeline saved at `folder`: [schnell]'s layout, or [dev]'s with
    `guidance=True` (a guidance embedding in the transformer)."""
    import torch
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextConfig, T5Config

    folder = Path(folder)
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=4,  # 2×2 patches of a one-channel latent
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=guidance,
        axes_dims_rope=(4, 4, 8),
    )
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=(4,),
        layers_per_block=1,
        latent_channels=1,
        norm_num_groups=1,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
    )
    clip = CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=3,
        vocab_size=1000,
        hidden_act="gelu",
        projection_dim=32,
    )
    t5 = T5Config(
        vocab_size=64, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4, relative_attention_num_buckets=8
    )
    return _save(folder, transformer, vae, clip, t5, seed)


def build_flux_random(folder: str | Path, seed: int = 0, guidance: bool = False) -> Path:
    """FLUX.1's full architecture with random weights (about 12 B transformer and 4.8 B T5 parameters)."""
    import torch
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextConfig, T5Config

    folder = Path(folder)
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(guidance_embeds=guidance)
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=16,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        sample_size=1024,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.1159,
        scaling_factor=0.3611,
    )
    clip = CLIPTextConfig(
        hidden_size=768,
        intermediate_size=3072,
        num_attention_heads=12,
        num_hidden_layers=12,
        vocab_size=49408,
        hidden_act="quick_gelu",
        projection_dim=768,
    )
    t5 = T5Config(
        vocab_size=32128,
        d_model=4096,
        d_kv=64,
        d_ff=10240,
        num_layers=24,
        num_heads=64,
        feed_forward_proj="gated-gelu",
        dense_act_fn="gelu_new",
        is_gated_act=True,
    )
    return _save(folder, transformer, vae, clip, t5, seed)
