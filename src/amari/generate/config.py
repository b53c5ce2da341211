"""Generation settings: one frozen dataclass, and presets that fill it in by name."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from amari.errors import UsageError
from amari.generate.schedulers import check_sampler

DEFAULT_MODEL = "CompVis/stable-diffusion-v1-4"

DEVICES = ("auto", "cuda", "mps", "cpu")
DTYPES = ("auto", "float32", "float16", "bfloat16")
RNG_SOURCES = ("cpu", "device")


@dataclass(frozen=True)
class Embedding:
    """A textual-inversion embedding file and the token that stands for it in prompts."""

    path: str
    token: str


@dataclass(frozen=True)
class GenerateConfig:
    """How to turn a prompt into images. `width`/`height` None means the model's native size."""

    model: str = DEFAULT_MODEL  # Hugging Face id, diffusers folder, or one .ckpt/.safetensors file
    model_config: str | None = None  # diffusers folder or id giving a single-file model its configs
    scheduler: str = "dpmpp_2m"
    steps: int = 25
    guidance_scale: float = 7.5
    width: int | None = None
    height: int | None = None
    batch_size: int = 4  # images per forward pass
    negative_prompt: str = ""
    eta: float = 0.0  # DDIM's stochasticity; 0 is deterministic DDIM, as the study ran it
    device: str = "auto"  # auto: cuda, then mps, then cpu
    dtype: str = "auto"  # auto: float16 on cuda and mps, float32 on cpu
    compile: bool = False  # torch.compile the UNet (CUDA; pays off after the first batches)
    rng: str = "cpu"  # where seeds draw their noise; cpu makes a seed give the same image everywhere
    safety_checker: bool = False  # load the model's NSFW checker when it ships one
    embeddings: tuple[Embedding, ...] = ()

    def __post_init__(self):
        check_sampler(self.scheduler)
        if not self.model:
            raise UsageError("model must name a Hugging Face id, a diffusers folder or a checkpoint file")
        if self.steps < 1:
            raise UsageError(f"steps must be at least 1, got {self.steps}")
        if self.guidance_scale < 0:
            raise UsageError(f"guidance scale must be >= 0, got {self.guidance_scale}")
        if self.batch_size < 1:
            raise UsageError(f"batch size must be at least 1, got {self.batch_size}")
        for name, value in (("width", self.width), ("height", self.height)):
            if value is not None and (value < 8 or value % 8):
                raise UsageError(f"{name} must be a positive multiple of 8, got {value}")
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise UsageError(f"device must be one of {', '.join(DEVICES)} or cuda:N, got {self.device!r}")
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
    upscale: float  # final enhancement scale of mined images


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("fast", "mining defaults: DPM++ 2M Karras, 25 steps, CFG 7.5, 8 images per pass, x2 enhance",
           {"scheduler": "dpmpp_2m", "steps": 25, "guidance_scale": 7.5, "batch_size": 8}, 2.0),
    Preset("study", "the original study: DDIM 250 steps (eta 0), CFG 8.2653, 512x512, 4 per pass, x2 enhance",
           {"scheduler": "ddim", "steps": 250, "guidance_scale": 8.2653, "width": 512, "height": 512,
            "batch_size": 4, "eta": 0.0}, 2.0),
)}

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
    return GenerateConfig(**values)


def with_overrides(config: GenerateConfig, **overrides) -> GenerateConfig:
    return replace(config, **{key: value for key, value in overrides.items() if value is not None})
