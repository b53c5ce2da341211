"""Stable Diffusion generation: load a model once, make images from a prompt and seeds.

    from amari.generate import generate, preset_config
    result = generate("a photo of a woman", seeds=[1, 2, 3], config=preset_config("fast", model=...))

torch and diffusers are imported on first use, not when this package is imported.
"""

from amari.generate.config import (
    DEFAULT_PRESET,
    PRESETS,
    Embedding,
    GenerateConfig,
    Lora,
    Preset,
    check_preset,
    preset_config,
    with_overrides,
)
from amari.generate.ip_adapter import FACE_VARIANTS, Guide, IpAdapter, check_adapter_weights, make_guide
from amari.generate.pipeline import LoadedModel, load_model, unload_all
from amari.generate.run import (
    GeneratedImage,
    GenerationResult,
    generate,
    generate_images,
    pass_size,
    random_seeds,
)
from amari.generate.schedulers import SAMPLERS, make_scheduler
from amari.lazy import lazy_exports
from amari.models.diffusion import model_source

__getattr__ = lazy_exports(__name__, {"DiffusersSource": "amari.generate.source:DiffusersSource"})

__all__ = [
    "DEFAULT_PRESET",
    "FACE_VARIANTS",
    "PRESETS",
    "SAMPLERS",
    "DiffusersSource",
    "Embedding",
    "GenerateConfig",
    "GeneratedImage",
    "GenerationResult",
    "Guide",
    "IpAdapter",
    "LoadedModel",
    "Lora",
    "Preset",
    "check_preset",
    "check_adapter_weights",
    "generate",
    "generate_images",
    "load_model",
    "make_guide",
    "make_scheduler",
    "model_source",
    "pass_size",
    "preset_config",
    "random_seeds",
    "unload_all",
    "with_overrides",
]
