"""Diffusion models (SD 1.x, SD 2.x, SDXL, FLUX.1) from a Hugging Face id, a diffusers folder or one
checkpoint file, loaded safely as the pipeline of their family.

Generation, training and evaluation all load their model here, so a model that works for one works
for all. The weights decide the family (`amari.models.families.registry`), which names the pipeline
class and how a single file is read. Checkpoint files are read without running code: safetensors, or
torch's weights-only unpickler for `.ckpt`, which amari checks first (a file that asks to run code is
refused with an error naming what it asked for) and which diffusers then reads with the same inert
extras allowed (numpy scalars and a Lightning callback record, what the original SD checkpoints hold).
A checkpoint that holds both EMA and plain weights (`sd-v1-4-full-ema.ckpt`) gives its EMA weights,
which the original configs sample with, unless `extract_ema=False`; the log says which were loaded.

Outputs never name a local path: `ModelInfo.name` is a hub id, a folder's name, or a file's name, and
a file also gets A1111's short hash (`Model hash:`).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, replace
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
    family: str | None = None  # amari's name of the model family (sd1, sdxl, flux-schnell, ...)
    vae: str | None = None  # a replacement VAE's public name
    vae_hash: str | None = None  # ... and, for a file, A1111's short hash


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


def dtype_kwargs(torch_dtype) -> dict:
    return {_dtype_keyword(): torch_dtype}


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _from_hub(pipeline, model_id: str, kwargs: dict):
    from amari.models.files import is_offline

    offline = is_offline()
    try:
        return pipeline.from_pretrained(model_id, local_files_only=offline, **kwargs)
    except Exception as exc:  # noqa: BLE001 - hub, network and format errors all end the same way
        where = (
            "is not (completely) in the Hugging Face cache, and amari is offline (HF_HUB_OFFLINE or AMARI_OFFLINE)"
            if offline
            else "could not be loaded from the Hugging Face hub or cache"
        )
        raise ModelError(
            f"model {model_id!r} {where}. While online, run `amari models pull` or "
            f"`hf download {model_id}` once, then it works offline; or pass --model a local diffusers "
            f"folder or .ckpt/.safetensors file [{first_line(exc)}]"
        ) from exc


def _from_folder(pipeline, folder: str, kwargs: dict):
    try:
        return pipeline.from_pretrained(folder, local_files_only=True, **kwargs)
    except Exception as exc:  # noqa: BLE001
        _explain_unsafe_pickles(Path(folder))
        raise ModelError(
            f"{Path(folder).name}: cannot load the diffusers pipeline in this folder ({first_line(exc)})"
        ) from exc


def _explain_unsafe_pickles(folder: Path) -> None:
    # diffusers and transformers read pickled weights with torch's weights-only loader, so a file
    # that asks to run code fails there, with a vague message; amari's loader names the culprit.
    from amari.models.files import PICKLE_SUFFIXES, safe_torch_load

    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in PICKLE_SUFFIXES and path.is_file():
            safe_torch_load(path)


def has_ema_weights(keys) -> bool:
    return sum(key.startswith(_EMA_PREFIX) for key in keys) > _EMA_MIN_KEYS


def _from_single_file(family, path: str, kwargs: dict, model_config: str | None, extract_ema: bool):
    import torch

    from amari.models.families.registry import evidence_of
    from amari.models.files import checkpoint_extras, is_offline

    ema = has_ema_weights(evidence_of(path).shapes)
    config_source = checked_config_source(model_config)
    try:
        # diffusers reads `.ckpt` with weights_only too; it must accept the same inert extras
        # (numpy scalars, a Lightning callback record) that amari's check let through.
        with torch.serialization.safe_globals(checkpoint_extras()):
            pipe = family.load_single_file(
                path, {**kwargs, "local_files_only": is_offline()}, config_source, ema and extract_ema
            )
    except Exception as exc:  # noqa: BLE001
        hint = (
            ""
            if config_source
            else f"; a single-file checkpoint takes its component configs (and any component the file lacks) "
            f"from a diffusers model of the same family: pass --model-config FOLDER_OR_ID (model_config in a "
            f"study's [study] table), a diffusers folder or a cached Hugging Face id (for this {family.label} "
            f"file, e.g. {family.hub_example}), or run once online"
        )
        raise ModelError(f"{Path(path).name}: cannot load this checkpoint ({first_line(exc)}){hint}") from exc
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
    vae: str | None = None,
):
    """(the family's diffusers pipeline on the CPU, ModelInfo) for a hub id, a diffusers folder or one file;
    `vae` replaces the model's VAE (a folder, hub id or file, e.g. SDXL's fp16-fix VAE)."""
    import diffusers
    import torch

    from amari.models.families.registry import detect

    kind, location = model_source(spec)
    family = detect(spec)
    torch_dtype = torch_dtype or torch.float32
    kwargs = {**dtype_kwargs(torch_dtype), **family.pipeline_kwargs(safety_checker)}
    info = describe(spec)
    pipeline = getattr(diffusers, family.pipeline_class)
    with quiet_loading():
        if vae is not None:
            from amari.models.vae import load_vae

            kwargs["vae"], vae_name, vae_hash = load_vae(vae, torch_dtype, spec if kind != "file" else model_config)
            info = replace(info, vae=vae_name, vae_hash=vae_hash)
        if kind == "hub":
            pipe = _from_hub(pipeline, location, kwargs)
        elif kind == "folder":
            pipe = _from_folder(pipeline, location, kwargs)
        else:
            pipe, weights = _from_single_file(family, location, kwargs, model_config, extract_ema)
            info = replace(info, weights=weights)
    info = replace(info, family=family.name)
    if log is not None and info.weights is not None:
        log(
            f"{info.name}: the file holds EMA and non-EMA weights; loaded the {info.weights} weights"
            + (" (extract_ema=false)" if info.weights == "non-ema" else "")
        )
    return pipe, info
