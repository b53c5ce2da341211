"""Generation settings: one frozen dataclass, and presets that fill it in by name.

Sampler, steps and guidance left unset (None) are the model family's (`amari.models.families`): SD 1.x
and 2.x DPM++ 2M Karras 25 steps CFG 7.5, SDXL the same sampler 30 steps CFG 5, FLUX.1 [schnell] its
flow-matching Euler 4 steps without guidance. `preset_config` fills them in from the family the weights
tell (read from the model's config files, no weights loaded); generation fills in whatever is still unset.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from amari.config.defaults import DEFAULT_MODEL
from amari.config.limits import MAX_DENOISING_STEPS, check_at_most, check_image_size
from amari.config.settings import Settings, setting
from amari.errors import UsageError
from amari.execution.devices import check_device
from amari.generate.ip_adapter import IpAdapter
from amari.generate.schedulers import check_sampler

DTYPES = ("auto", "float32", "float16", "bfloat16")
RNG_SOURCES = ("cpu", "device")


@dataclass(frozen=True)
class Embedding:
    """A textual-inversion embedding file and the token that stands for it in prompts."""

    path: str
    token: str


@dataclass(frozen=True)
class Lora:
    """A LoRA file (diffusers' or kohya's layout) and the strength it is applied at."""

    path: str
    weight: float = 1.0


@dataclass(frozen=True)
class GenerateConfig(Settings):
    """How to turn a prompt into images. `width`/`height` None means the model's native size."""

    model: str = setting(DEFAULT_MODEL, "Hugging Face id, diffusers folder, or one .ckpt/.safetensors file")
    model_config: str | None = setting(
        None, "diffusers folder or Hugging Face id giving a single-file model its component configs (needed offline)"
    )
    scheduler: str | None = setting(None, "sampler (default: the model family's)")
    steps: int | None = setting(None, "denoising steps (default: the model family's)")
    guidance_scale: float | None = setting(None, "classifier-free guidance, CFG (default: the model family's)")
    width: int | None = setting(None, "image width in pixels (default: the model's native size)")
    height: int | None = setting(None, "image height in pixels (default: the model's native size)")
    batch_size: int = setting(4, "images per forward pass")
    negative_prompt: str = setting("", "what the images avoid")
    eta: float = setting(0.0, "DDIM's stochasticity; 0 is deterministic DDIM, as the study ran it")
    device: str = setting("auto", "auto: cuda, then mps, then cpu")
    dtype: str = setting("auto", "auto: the family's on a GPU (float16; FLUX.1 bfloat16), float32 on cpu")
    compile: bool | None = setting(
        None,
        "torch.compile the UNet (FLUX.1: the transformer) for fixed shapes (default: on CUDA; if compiling "
        "fails, it says so once and runs uncompiled)",
    )
    rng: str = setting("cpu", "where seeds draw their noise; cpu makes a seed give the same image everywhere")
    safety_checker: bool = setting(False, "load the model's NSFW checker when it ships one")
    extract_ema: bool = setting(True, "a checkpoint file with EMA and plain weights gives its EMA weights")
    vae: str | None = setting(
        None, "a replacement VAE: folder, Hugging Face id or file (e.g. madebyollin/sdxl-vae-fp16-fix)"
    )
    offload: bool = setting(
        False, "model CPU offload: each part moves to the GPU only while it runs (FLUX.1 on smaller GPUs)"
    )
    embeddings: tuple[Embedding, ...] = setting((), "textual-inversion embeddings to load", cli=False, toml=False)
    loras: tuple[Lora, ...] = setting((), "LoRA files to load (needs peft)", cli=False, toml=False)
    ip_adapter: IpAdapter | None = setting(None, "an IP-Adapter and the images it is guided by", cli=False, toml=False)

    def check(self):
        if self.scheduler is not None:
            check_sampler(self.scheduler)
        if not self.model:
            raise UsageError("model must name a Hugging Face id, a diffusers folder or a checkpoint file")
        if self.steps is not None and self.steps < 1:
            raise UsageError(f"steps must be at least 1, got {self.steps}")
        if self.guidance_scale is not None and self.guidance_scale < 0:
            raise UsageError(f"guidance scale must be >= 0, got {self.guidance_scale}")
        if self.batch_size < 1:
            raise UsageError(f"batch size must be at least 1, got {self.batch_size}")
        for name, value in (("width", self.width), ("height", self.height)):
            if value is not None and (value < 8 or value % 8):
                raise UsageError(f"{name} must be a positive multiple of 8, got {value}")
        check_at_most(MAX_DENOISING_STEPS, "the schedulers' training timesteps", steps=self.steps)
        check_image_size(self.width, self.height, self.batch_size, "generating images")
        check_device(self.device)
        if self.dtype not in DTYPES:
            raise UsageError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.rng not in RNG_SOURCES:
            raise UsageError(f"rng must be one of {', '.join(RNG_SOURCES)}, got {self.rng!r}")
        tokens = [e.token for e in self.embeddings]
        if len(set(tokens)) != len(tokens):
            raise UsageError(f"each embedding needs its own token, got {tokens}")


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    generate: dict  # GenerateConfig fields


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "fast",
            "mining defaults: the model family's sampler, steps and CFG (SD 1.x: DPM++ 2M Karras, 25 steps, "
            "CFG 7.5), 8 images per pass",
            {"batch_size": 8},
        ),
        Preset(
            "study",
            "the original study: DDIM 250 steps (eta 0), CFG 8.2653, 512x512, 4 per pass, x2 enhance",
            {
                "scheduler": "ddim",
                "steps": 250,
                "guidance_scale": 8.2653,
                "width": 512,
                "height": 512,
                "batch_size": 4,
                "eta": 0.0,
            },
        ),
    )
}

DEFAULT_PRESET = "fast"


def check_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None


def preset_config(name: str = DEFAULT_PRESET, **overrides) -> GenerateConfig:
    """The preset's settings, then `overrides` (None values are ignored, so CLI defaults can pass)."""
    known = {f.name for f in fields(GenerateConfig)}
    unknown = set(overrides) - known
    if unknown:
        raise UsageError(f"unknown generation settings: {', '.join(sorted(unknown))}")
    values = dict(check_preset(name).generate)
    values.update({key: value for key, value in overrides.items() if value is not None})
    config = GenerateConfig(**values)
    from amari.models.families.registry import guess

    return with_family_defaults(config, guess(config.model))


def with_family_defaults(config: GenerateConfig, family) -> GenerateConfig:
    """`config` with the family's sampler, steps and guidance where it leaves them unset."""
    defaults = family.defaults
    return with_overrides(
        config,
        scheduler=defaults.sampler if config.scheduler is None else None,
        steps=defaults.steps if config.steps is None else None,
        guidance_scale=defaults.guidance if config.guidance_scale is None else None,
    )


def with_overrides(config: GenerateConfig, **overrides) -> GenerateConfig:
    return replace(config, **{key: value for key, value in overrides.items() if value is not None})
