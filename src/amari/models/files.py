"""Model files: where they come from and how they are read without running code.

A model is named either by a path to a file the user already has, or by a known name (for example
`RealESRGAN_x4plus`). A known name resolves to a file in amari's model cache; when the file is not
there and the machine is online it is downloaded once from its official release, checked against its
SHA-256 and moved into place in one step, so an interrupted download never leaves a half file behind.
Offline (or when the download fails) the error names the file, where it comes from and where to put it.

Reading is safe by construction: `.safetensors` files hold tensors only, and pickle-based files
(`.pth`, `.pt`, `.ckpt`, `.bin`) go through torch's `weights_only` unpickler, which refuses any
function call or class it has not been told is harmless. A file that asks for more is a `ModelError`,
never executed.
"""

from __future__ import annotations

import http.client
import os
import re
import urllib.error
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

from amari.errors import ModelError
from amari.progress import progress_bar
from amari.storage.files import remove_stale_temporaries, temporary_name
from amari.storage.layout import cache_root

PICKLE_SUFFIXES = frozenset({".pth", ".pt", ".ckpt", ".bin"})
MODEL_SUFFIXES = PICKLE_SUFFIXES | {".safetensors"}


@dataclass(frozen=True)
class KnownModel:
    """A model file amari can fetch by name: its file name, official URLs (first is tried first),
    SHA-256 and size in bytes (None when not published)."""

    name: str
    filename: str
    urls: tuple[str, ...]
    sha256: str | None
    size: int | None
    description: str = ""


KNOWN_MODELS: dict[str, KnownModel] = {
    m.name: m
    for m in (
        KnownModel(
            name="RealESRGAN_x4plus",
            filename="RealESRGAN_x4plus.pth",
            urls=("https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth",),
            sha256="4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1",
            size=67_040_989,
            description="Real-ESRGAN x4 (RRDBNet, 23 blocks), the study's upscaler",
        ),
        KnownModel(
            name="GFPGANv1.3",
            filename="GFPGANv1.3.pth",
            urls=("https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.3.pth",),
            sha256="c953a88f2727c85c3d9ae72e2bd4846bbaf59fe6972ad94130e23e7017524a70",
            size=348_632_874,
            description="GFPGAN v1.3 face restoration (clean architecture)",
        ),
        KnownModel(
            name="GFPGANv1.4",
            filename="GFPGANv1.4.pth",
            urls=(
                "https://github.com/TencentARC/GFPGAN/releases/download/v1.3.4/GFPGANv1.4.pth",
                "https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth",
            ),
            sha256="e2cd4703ab14f4d01fd1383a8a8b266f9a5833dacee8e6a79d3bf21a1b6be5ad",
            size=348_632_874,
            description="GFPGAN v1.4 face restoration (clean architecture)",
        ),
    )
}


# 1. Where files live ------------------------------------------------------------------------------


def models_dir() -> Path:
    """The folder known models are downloaded into (and where a user may put them by hand)."""
    return cache_root() / "models"


def is_offline() -> bool:
    """True when the user asked for no network: AMARI_OFFLINE or HF_HUB_OFFLINE set to a true value."""
    return any(
        os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on")
        for var in ("AMARI_OFFLINE", "HF_HUB_OFFLINE")
    )


def known_model(spec: str | os.PathLike) -> KnownModel | None:
    """The known model `spec` names, by name or by file name (`RealESRGAN_x4plus[.pth]`), or None."""
    if isinstance(spec, os.PathLike):
        return None
    return KNOWN_MODELS.get(spec) or next((m for m in KNOWN_MODELS.values() if m.filename == spec), None)


def resolve_model_file(spec: str | os.PathLike, download: bool = True) -> Path:
    """The local file for `spec`: an existing path, or a known model name (downloaded if needed)."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    known = known_model(spec)
    if known is None:
        if path.is_dir():
            raise ModelError(f"{path} is a folder; expected a model file ({', '.join(sorted(MODEL_SUFFIXES))})")
        raise ModelError(
            f"model file not found: {path} (give a path to an existing file, "
            f"or one of the known names: {', '.join(sorted(KNOWN_MODELS))})"
        )
    return fetch(known, models_dir(), download=download)


# 2. Fetching a known model once -------------------------------------------------------------------


def _where_to_get(model: KnownModel, target: Path) -> str:
    return f"download {model.urls[0]} and save it as {target}, or pass the file's path instead of the name"


def fetch(model: KnownModel, folder: Path, download: bool = True, timeout: float | None = None) -> Path:
    """`folder/model.filename`, downloading and verifying it first when it is not there yet (`timeout`:
    seconds a download may go without making progress, `amari.models.download`)."""
    target = Path(folder) / model.filename
    if target.is_file():
        # A complete file only ever appears by an atomic rename after its checksum passed, so the
        # size is enough to catch a file someone replaced by hand with the wrong thing.
        if model.size is not None and target.stat().st_size != model.size:
            raise ModelError(
                f"{target} has {target.stat().st_size} bytes, expected {model.size} "
                f"for {model.name}; delete it to download it again"
            )
        return target
    if not download or is_offline():
        raise ModelError(
            f"model file {model.filename} ({model.name}) is not in the cache and amari "
            f"is offline: {_where_to_get(model, target)}"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(f"cannot create the model cache folder {target.parent}: {exc}") from None
    remove_stale_temporaries(target.parent)  # what a killed download left
    failures = []
    for url in model.urls:
        try:
            _download(url, model, target, timeout)
            return target
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            failures.append(f"{url}: {getattr(exc, 'reason', None) or exc}")
    raise ModelError(f"could not download {model.filename} ({'; '.join(failures)}): {_where_to_get(model, target)}")


def _download(url: str, model: KnownModel, target: Path, timeout: float | None) -> None:
    """Stream `url` into a private temporary file beside `target`, verify, then rename into place."""
    from amari.models.download import DEFAULT_TIMEOUT_S, download

    partial = temporary_name(target)
    try:
        with progress_bar(model.size, f"downloading {model.filename}", unit="bytes") as advance:
            sha256 = download(url, partial, timeout or DEFAULT_TIMEOUT_S, advance)
        _verify(model, partial, sha256, url)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _verify(model: KnownModel, path: Path, sha256: str, url: str) -> None:
    if model.sha256 is not None and sha256 != model.sha256:
        raise ModelError(
            f"{model.filename} from {url} failed its checksum (sha256 {sha256}, "
            f"expected {model.sha256}); nothing was kept"
        )
    size = path.stat().st_size
    if model.size is not None and size != model.size:
        raise ModelError(f"{model.filename} from {url} has {size} bytes, expected {model.size}; nothing was kept")


# 3. Reading without running code ------------------------------------------------------------------


class _Ignored:
    """Stands in for harmless bookkeeping objects in training checkpoints; keeps none of their state."""

    def __setstate__(self, state):
        pass


def checkpoint_extras() -> list:
    """Globals old training checkpoints (e.g. Stable Diffusion's `.ckpt`) hold besides tensors.

    All are inert: numpy scalars and dtypes rebuilt from bytes, and a Lightning callback that is
    replaced by `_Ignored` without importing anything. Nothing here can call arbitrary code. Pass
    them to `torch.serialization.safe_globals` when another library reads the same checkpoint.
    """
    import numpy as np

    scalar = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
    extras = [
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
        (np.dtype, "numpy.dtype"),
        (_Ignored, "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"),
    ]
    for name in ("Float64DType", "Float32DType", "Float16DType", "Int64DType", "Int32DType", "BoolDType"):
        dtype_class = getattr(getattr(np, "dtypes", None), name, None)
        if dtype_class is not None:
            extras.append((dtype_class, f"numpy.dtypes.{name}"))
    return extras


def safe_torch_load(path: str | os.PathLike) -> dict:
    """The dict stored in a model file, read without executing anything it contains.

    `.safetensors` through safetensors; pickle-based files through `torch.load(weights_only=True)`,
    memory-mapped when the file is a zip archive (torch's current format). Raises ModelError for a
    missing, truncated or corrupt file, and for one whose pickle asks to call code or build objects.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        content = _load_safetensors(path)
    elif suffix in PICKLE_SUFFIXES:
        content = _load_pickle(path)
    else:
        raise ModelError(
            f"{path}: unsupported model file type {suffix or '(none)'}; "
            f"expected one of {', '.join(sorted(MODEL_SUFFIXES))}"
        )
    if not isinstance(content, dict):
        raise ModelError(
            f"{path}: expected a state dict (a mapping of names to tensors), found {type(content).__name__}"
        )
    return content


def _load_safetensors(path: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{path}: not a readable safetensors file, truncated or corrupt ({exc})") from None


_GLOBAL_NAME = re.compile(r"GLOBAL ([\w.]+)|unrecognized function (\S+)|got (<class '[^']+'>)")


def _load_pickle(path: Path) -> dict:
    import pickle

    import torch

    mmap = zipfile.is_zipfile(path)
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(checkpoint_extras()):
            # torch warns about pickle protocols it was not written with; that is not the user's concern.
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        found = _GLOBAL_NAME.search(str(exc))
        if found:
            what = next(g for g in found.groups() if g)
            raise ModelError(
                f"{path}: refused to load: the file asks to run or build {what}, which a "
                f"plain model file never needs (possibly malicious); convert it to "
                f".safetensors from a source you trust"
            ) from None
        _, _, detail = str(exc).partition("WeightsUnpickler error:")
        raise ModelError(
            f"{path}: not a readable model file, truncated or corrupt ({_first_line(detail) or _first_line(exc)})"
        ) from None
    except (
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
        IndexError,
        KeyError,
        TypeError,
        AttributeError,
        zipfile.BadZipFile,
    ) as exc:
        raise ModelError(
            f"{path}: not a readable model file, truncated or corrupt ({_first_line(exc) or type(exc).__name__})"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
