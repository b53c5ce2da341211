"""Stable Diffusion weights from a Hugging Face id, a diffusers folder or one checkpoint file, loaded safely.

Generation, training and evaluation all load their model here, so a model that works for one works
for all. Checkpoint files are read without running code: safetensors, or torch's weights-only
unpickler for `.ckpt`, which amari checks first (a file that asks to run code is refused with an error
naming what it asked for) and which diffusers then reads with the same inert extras allowed (numpy
scalars and a Lightning callback record, what the original SD checkpoints hold). A checkpoint that
holds both EMA and plain weights (`sd-v1-4-full-ema.ckpt`) gives its EMA weights, which the original
configs sample with, unless `extract_ema=False`; the log says which were loaded.

Outputs never name a local path: `ModelInfo.name` is a hub id, a folder's name, or a file's name, and
a file also gets A1111's short hash (`Model hash:`).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from amari.errors import ModelError

SINGLE_FILE_SUFFIXES = frozenset({".ckpt", ".safetensors"})
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_EMA_PREFIX = "model_ema."
_EMA_MIN_KEYS = 100  # diffusers' own test for a checkpoint that carries EMA weights


@dataclass(frozen=True)
class ModelInfo:
    """What metadata may say about a model: never a local path."""

    name: str  # hub id, folder name, or file name without its suffix
    kind: str  # "hub", "folder" or "file"
    model_hash: str | None = None  # A1111's short hash of a single file (sha256, 10 hex digits)
    weights: str | None = None  # "ema" or "non-ema" for a file that holds both, else None


# Stable Diffusion's families by the width of their text encoder (SD 1.x: CLIP ViT-L, 768; SD 2.x: OpenCLIP
# ViT-H, 1024), as InvokeAI names them.
BASES = {768: "sd-1", 1024: "sd-2"}


def model_base(text_encoder) -> str | None:
    """The model's family as InvokeAI names it (sd-1, sd-2) from its text encoder, or None when unknown."""
    width = getattr(getattr(text_encoder, "config", None), "hidden_size", None)
    return BASES.get(width)


def model_source(spec: str) -> tuple[str, str]:
    """("folder" | "file" | "hub", location) for a model spec, or ModelError when it names nothing."""
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelError(
                f"{spec}: not a diffusers pipeline folder (no model_index.json); give a "
                f"folder saved by diffusers, a .ckpt/.safetensors file or a Hugging Face id"
            )
        return "folder", str(path.resolve())
    if path.is_file():
        if path.suffix.lower() not in SINGLE_FILE_SUFFIXES:
            raise ModelError(f"{spec}: a Stable Diffusion checkpoint file must end in .ckpt or .safetensors")
        return "file", str(path.resolve())
    if _HUB_ID.fullmatch(spec) and path.suffix.lower() not in SINGLE_FILE_SUFFIXES:
        return "hub", spec
    raise ModelError(
        f"model not found: {spec} (give a Hugging Face id like CompVis/stable-diffusion-v1-4, "
        f"a diffusers folder, or a .ckpt/.safetensors file)"
    )


def short_hash(path: str | Path) -> str:
    """A1111's short hash of a checkpoint: the first 10 hex digits of the file's SHA-256."""
    from amari.storage.files import sha256_once

    return sha256_once(path)[:10]


def describe(spec: str) -> ModelInfo:
    """The public description of a model spec (computes a file's hash, once per process)."""
    kind, location = model_source(spec)
    name = _public_name(kind, location)
    return ModelInfo(name, kind, model_hash=short_hash(location) if kind == "file" else None)


def public_name(spec: str) -> str:
    """How outputs name a model, without reading it: a hub id, a folder's name, a file's name without its
    suffix; a spec that names nothing (any more) keeps its last part."""
    try:
        return _public_name(*model_source(spec))
    except ModelError:
        path = Path(spec)
        return _public_name("file" if path.suffix.lower() in SINGLE_FILE_SUFFIXES else "folder", spec)


def _public_name(kind: str, location: str) -> str:
    if kind == "hub":
        return location
    return Path(location).stem if kind == "file" else Path(location).name


def checked_config_source(model_config: str | None) -> str | None:
    """The diffusers folder or hub id that gives a single file its component configs."""
    if model_config is None:
        return None
    kind, location = model_source(model_config)
    if kind == "file":
        raise ModelError(f"model_config {model_config}: expected a diffusers folder or a Hugging Face id")
    return location


# -- loading ------------------------------------------------------------------------------------------


def _dtype_keyword() -> str:
    # diffusers renamed `torch_dtype` to `dtype` (the old name warns, and goes away in 1.0).
    from diffusers.utils import deprecation_utils

    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"


def _pipeline_kwargs(torch_dtype, safety_checker: bool) -> dict:
    kwargs = {_dtype_keyword(): torch_dtype}
    if not safety_checker:
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    return kwargs


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _from_hub(model_id: str, kwargs: dict):
    from diffusers import StableDiffusionPipeline

    from amari.models.files import is_offline

    offline = is_offline()
    try:
        return StableDiffusionPipeline.from_pretrained(model_id, local_files_only=offline, **kwargs)
    except Exception as exc:  # noqa: BLE001 - hub, network and format errors all end the same way
        where = (
            "is not (completely) in the Hugging Face cache, and amari is offline (HF_HUB_OFFLINE or AMARI_OFFLINE)"
            if offline
            else "could not be loaded from the Hugging Face hub or cache"
        )
        raise ModelError(
            f"Stable Diffusion model {model_id!r} {where}. While online, run `amari models pull` or "
            f"`hf download {model_id}` once, then it works offline; or pass --model a local diffusers "
            f"folder or .ckpt/.safetensors file [{_first_line(exc)}]"
        ) from exc


def _from_folder(folder: str, kwargs: dict):
    from diffusers import StableDiffusionPipeline

    try:
        return StableDiffusionPipeline.from_pretrained(folder, local_files_only=True, **kwargs)
    except Exception as exc:  # noqa: BLE001
        _explain_unsafe_pickles(Path(folder))
        raise ModelError(
            f"{Path(folder).name}: cannot load the diffusers pipeline in this folder ({_first_line(exc)})"
        ) from exc


def _explain_unsafe_pickles(folder: Path) -> None:
    # diffusers and transformers read pickled weights with torch's weights-only loader, so a file
    # that asks to run code fails there, with a vague message; amari's loader names the culprit.
    from amari.models.files import PICKLE_SUFFIXES, safe_torch_load

    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in PICKLE_SUFFIXES and path.is_file():
            safe_torch_load(path)


def _checkpoint_keys(path: str) -> list[str]:
    """The tensor names of a checkpoint file (refusing a pickle that asks to run code)."""
    from amari.models.files import safe_torch_load

    if path.lower().endswith(".safetensors"):
        from safetensors import safe_open

        try:
            with safe_open(path, framework="pt") as handle:
                return list(handle.keys())
        except Exception as exc:  # noqa: BLE001 - safetensors raises several types for a bad file
            raise ModelError(f"{Path(path).name}: not a readable safetensors file ({_first_line(exc)})") from None
    state = safe_torch_load(path)
    return list(state.get("state_dict", state))


def has_ema_weights(keys: list[str]) -> bool:
    return sum(key.startswith(_EMA_PREFIX) for key in keys) > _EMA_MIN_KEYS


def _from_single_file(path: str, kwargs: dict, model_config: str | None, extract_ema: bool):
    import torch
    from diffusers import StableDiffusionPipeline

    from amari.models.files import checkpoint_extras, is_offline

    ema = has_ema_weights(_checkpoint_keys(path))
    config_source = checked_config_source(model_config)
    if config_source is not None:
        kwargs["config"] = config_source
    try:
        # diffusers reads `.ckpt` with weights_only too; it must accept the same inert extras
        # (numpy scalars, a Lightning callback record) that amari's check let through.
        with torch.serialization.safe_globals(checkpoint_extras()):
            pipe = StableDiffusionPipeline.from_single_file(
                path, local_files_only=is_offline(), extract_ema=ema and extract_ema, **kwargs
            )
    except Exception as exc:  # noqa: BLE001
        hint = (
            ""
            if config_source
            else "; a single-file checkpoint takes its component configs (UNet, VAE, text encoder, tokenizer, "
            "scheduler) from a diffusers model of the same architecture: pass --model-config "
            "FOLDER_OR_ID (model_config in a study's [study] table), a diffusers folder or a cached "
            "Hugging Face id (e.g. stable-diffusion-v1-5/stable-diffusion-v1-5 for SD 1.x), or run once "
            "online"
        )
        raise ModelError(f"{Path(path).name}: cannot load this checkpoint ({_first_line(exc)}){hint}") from exc
    return pipe, ("ema" if extract_ema else "non-ema") if ema else None


@contextmanager
def quiet_loading():
    """Loading bars and notes from diffusers and transformers would bury amari's own output; real
    failures still surface as exceptions."""
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


def load_pipeline(
    spec: str,
    model_config: str | None = None,
    torch_dtype=None,
    safety_checker: bool = False,
    extract_ema: bool = True,
    log: Callable[[str], None] | None = None,
):
    """(StableDiffusionPipeline on the CPU, ModelInfo) for a hub id, a diffusers folder or one file."""
    import torch

    kind, location = model_source(spec)
    kwargs = _pipeline_kwargs(torch_dtype or torch.float32, safety_checker)
    info = describe(spec)
    with quiet_loading():
        if kind == "hub":
            pipe = _from_hub(location, kwargs)
        elif kind == "folder":
            pipe = _from_folder(location, kwargs)
        else:
            pipe, weights = _from_single_file(location, kwargs, model_config, extract_ema)
            info = ModelInfo(info.name, kind, info.model_hash, weights)
    if log is not None and info.weights is not None:
        log(
            f"{info.name}: the file holds EMA and non-EMA weights; loaded the {info.weights} weights"
            + (" (extract_ema=false)" if info.weights == "non-ema" else "")
        )
    return pipe, info
