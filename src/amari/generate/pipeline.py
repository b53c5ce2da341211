"""Stable Diffusion pipelines from a Hugging Face id, a diffusers folder or one checkpoint file.

A pipeline is loaded once per process and kept (`load_model`); sampler and embeddings change on
the loaded pipeline between calls, the weights never reload. Checkpoint files are read without
running code: safetensors, or torch's weights-only unpickler for `.ckpt` (checked by amari first,
so a file that asks to run code is refused with a clear error before diffusers touches it).
"""

from __future__ import annotations

import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from amari.errors import ModelError
from amari.generate.config import GenerateConfig
from amari.generate.textual_inversion import apply_embeddings

SINGLE_FILE_SUFFIXES = frozenset({".ckpt", ".safetensors"})
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


@dataclass
class LoadedModel:
    """A pipeline in memory with what amari needs to know about it."""

    pipe: object
    name: str  # short name for metadata: the hub id, or a file or folder name (never a full path)
    kind: str  # "hub", "folder" or "file"
    device: str
    dtype: str
    base_scheduler_config: dict
    native_size: int
    embeddings: dict[str, str] = field(default_factory=dict)  # token -> resolved path
    scheduler_name: str | None = None

    def use(self, config: GenerateConfig) -> None:
        """Set the sampler and embeddings `config` asks for (cheap; weights stay loaded)."""
        from amari.generate.schedulers import make_scheduler

        if self.scheduler_name != config.scheduler:
            self.pipe.scheduler = make_scheduler(config.scheduler, self.base_scheduler_config)
            self.scheduler_name = config.scheduler
        apply_embeddings(self.pipe, self.embeddings, config.embeddings)


_LOADED: dict[tuple, LoadedModel] = {}


# 1. Where and how ---------------------------------------------------------------------------------

def resolve_device(name: str = "auto") -> str:
    import torch

    if name != "auto":
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise ModelError(f"device {name} asked for, but torch sees no CUDA GPU")
        if name == "mps" and not torch.backends.mps.is_available():
            raise ModelError("device mps asked for, but this torch build or machine has no MPS")
        return name
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_dtype(name: str, device: str):
    import torch

    if name == "auto":
        name = "float32" if device == "cpu" else "float16"
    return getattr(torch, name)


def model_source(spec: str) -> tuple[str, str]:
    """("folder" | "file" | "hub", location) for a model spec, or ModelError when it names nothing."""
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelError(f"{spec}: not a diffusers pipeline folder (no model_index.json); give a "
                             f"folder saved by diffusers, a .ckpt/.safetensors file or a Hugging Face id")
        return "folder", str(path.resolve())
    if path.is_file():
        if path.suffix.lower() not in SINGLE_FILE_SUFFIXES:
            raise ModelError(f"{spec}: a Stable Diffusion checkpoint file must end in .ckpt or .safetensors")
        return "file", str(path.resolve())
    if _HUB_ID.fullmatch(spec) and path.suffix.lower() not in SINGLE_FILE_SUFFIXES:
        return "hub", spec
    raise ModelError(f"model not found: {spec} (give a Hugging Face id like CompVis/stable-diffusion-v1-4, "
                     f"a diffusers folder, or a .ckpt/.safetensors file)")


def _display_name(kind: str, location: str) -> str:
    if kind == "hub":
        return location
    path = Path(location)
    return path.stem if kind == "file" else path.name


# 2. Loading ---------------------------------------------------------------------------------------

def _dtype_keyword() -> str:
    # diffusers renamed `torch_dtype` to `dtype` (the old name warns, and goes away in 1.0).
    from diffusers.utils import deprecation_utils

    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"


def _pipeline_kwargs(config: GenerateConfig, torch_dtype) -> dict:
    kwargs = {_dtype_keyword(): torch_dtype}
    if not config.safety_checker:
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    return kwargs


def _from_hub(model_id: str, config: GenerateConfig, torch_dtype):
    from diffusers import StableDiffusionPipeline

    from amari.models import is_offline

    offline = is_offline()
    try:
        return StableDiffusionPipeline.from_pretrained(model_id, local_files_only=offline,
                                                       **_pipeline_kwargs(config, torch_dtype))
    except Exception as exc:  # noqa: BLE001 - hub, network and format errors all end the same way
        where = ("is not (completely) in the Hugging Face cache, and amari is offline "
                 "(HF_HUB_OFFLINE or AMARI_OFFLINE)" if offline
                 else "could not be loaded from the Hugging Face hub or cache")
        raise ModelError(
            f"Stable Diffusion model {model_id!r} {where}. While online, run `hf download {model_id}` "
            f"(`huggingface-cli download` with older huggingface_hub) once, then it works offline; or "
            f"pass --model a local diffusers folder or .ckpt/.safetensors file [{_first_line(exc)}]") from exc


def _from_folder(folder: str, config: GenerateConfig, torch_dtype):
    from diffusers import StableDiffusionPipeline

    try:
        return StableDiffusionPipeline.from_pretrained(folder, local_files_only=True,
                                                       **_pipeline_kwargs(config, torch_dtype))
    except Exception as exc:  # noqa: BLE001
        _explain_unsafe_pickles(Path(folder))
        raise ModelError(f"{folder}: cannot load the diffusers pipeline in this folder "
                         f"({_first_line(exc)})") from exc


def _explain_unsafe_pickles(folder: Path) -> None:
    # diffusers and transformers read pickled weights with torch's weights-only loader, so a file
    # that asks to run code fails there, with a vague message; amari's loader names the culprit.
    from amari.models import PICKLE_SUFFIXES, safe_torch_load

    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in PICKLE_SUFFIXES and path.is_file():
            safe_torch_load(path)


def _checked_config_source(model_config: str | None) -> str | None:
    if model_config is None:
        return None
    kind, location = model_source(model_config)
    if kind == "file":
        raise ModelError(f"model_config {model_config}: expected a diffusers folder or a Hugging Face id")
    return location


def _from_single_file(path: str, config: GenerateConfig, torch_dtype):
    import torch
    from diffusers import StableDiffusionPipeline

    from amari.models import checkpoint_extras, is_offline, safe_torch_load

    if not path.lower().endswith(".safetensors"):
        # Refuses any pickle that asks to run code, with an error naming what it asked for.
        safe_torch_load(path)
    kwargs = _pipeline_kwargs(config, torch_dtype)
    config_source = _checked_config_source(config.model_config)
    if config_source is not None:
        kwargs["config"] = config_source
    try:
        # diffusers reads `.ckpt` with weights_only too; it must accept the same inert extras
        # (numpy scalars, a Lightning callback record) that amari's check let through.
        with torch.serialization.safe_globals(checkpoint_extras()):
            return StableDiffusionPipeline.from_single_file(path, local_files_only=is_offline(), **kwargs)
    except Exception as exc:  # noqa: BLE001
        hint = ("" if config_source else
                "; a single-file checkpoint takes its component configs (UNet, VAE, text encoder, tokenizer, "
                "scheduler) from a diffusers model of the same architecture: set model_config (amari mine "
                "--option model_config=FOLDER_OR_ID) to a diffusers folder or a cached Hugging Face id (e.g. "
                "stable-diffusion-v1-5/stable-diffusion-v1-5 for SD 1.x), or run once online")
        raise ModelError(f"{path}: cannot load this checkpoint ({_first_line(exc)}){hint}") from exc


@contextmanager
def _quiet_loading():
    # Loading bars and notes from diffusers and transformers would bury amari's own output;
    # real failures still surface as exceptions.
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    levels = diffusers.utils.logging.get_verbosity(), transformers.utils.logging.get_verbosity()
    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        diffusers.utils.logging.set_verbosity(levels[0])
        transformers.utils.logging.set_verbosity(levels[1])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _prepare(pipe, device: str, compile_unet: bool):
    import torch

    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(device)
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
        # Convolutions run fastest channels-last on tensor cores; attention already goes through
        # torch's scaled_dot_product_attention (flash / memory-efficient kernels), diffusers' default.
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    if compile_unet:
        pipe.unet = torch.compile(pipe.unet)
    return pipe


def load_model(config: GenerateConfig) -> LoadedModel:
    """The pipeline for `config.model` on its device, loaded on first use and kept for the process."""
    kind, location = model_source(config.model)
    device = resolve_device(config.device)
    torch_dtype = resolve_dtype(config.dtype, device)
    key = (kind, location, config.model_config, device, str(torch_dtype), config.safety_checker, config.compile)
    if key in _LOADED:
        return _LOADED[key]
    loader = {"hub": _from_hub, "folder": _from_folder, "file": _from_single_file}[kind]
    with _quiet_loading():
        pipe = _prepare(loader(location, config, torch_dtype), device, config.compile)
    native = int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)
    loaded = LoadedModel(pipe=pipe, name=_display_name(kind, location), kind=kind, device=device,
                         dtype=str(torch_dtype).removeprefix("torch."),
                         base_scheduler_config=dict(pipe.scheduler.config), native_size=native)
    _LOADED[key] = loaded
    return loaded


def unload_all() -> None:
    """Forget every loaded pipeline (tests and benchmarks that compare loading costs)."""
    _LOADED.clear()
