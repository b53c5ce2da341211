"""What a model's files say about it, read without loading a weight: the evidence families are told by.

- A diffusers folder or a Hugging Face id: `model_index.json` (which components there are), each
  component's `config.json`, and the names of the denoiser's tensors (from the safetensors header or its
  shard index), so that a FLUX.1 [dev] transformer is known by its guidance embedding's weights, not only
  by its config.
- One checkpoint file: every tensor's name and shape (a safetensors header; a `.ckpt` through the
  weights-only loader, which refuses a pickle that asks to run code).

A hub id is read from the Hugging Face cache; online, the few small JSON files missing there are fetched
(never a weight). `None` means the model cannot be read yet (offline, not in the cache): callers then fall
back to the default family and loading says what is missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from amari.errors import ModelError

MODEL_INDEX = "model_index.json"
CONFIG = "config.json"
DENOISERS = ("unet", "transformer")
_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json")


@dataclass(frozen=True)
class Evidence:
    """A model's structure: `layout` "diffusers" (components and their configs) or "file" (tensor shapes)."""

    layout: str
    components: frozenset[str] = frozenset()
    configs: dict[str, dict] = field(default_factory=dict)  # component -> its config.json
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # tensor name -> shape (() when unknown)

    def config(self, component: str, key: str, default=None):
        return self.configs.get(component, {}).get(key, default)

    def has(self, suffix: str) -> bool:
        """Whether a tensor's name ends with `suffix` (prefixes differ between single-file layouts)."""
        return any(name.endswith(suffix) for name in self.shapes)

    def has_prefix(self, prefix: str) -> bool:
        return any(name.startswith(prefix) for name in self.shapes)

    def shape(self, suffix: str) -> tuple[int, ...] | None:
        for name, shape in self.shapes.items():
            if name.endswith(suffix):
                return shape
        return None

    def describe(self) -> str:
        if self.layout == "diffusers":
            return "components " + ", ".join(sorted(self.components))
        sample = sorted(self.shapes)[:3]
        return f"{len(self.shapes)} tensors ({', '.join(sample)}, ...)"


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{Path(path).name}: not a readable JSON file ({exc})") from None
    if not isinstance(value, dict):
        raise ModelError(f"{Path(path).name}: expected a JSON object")
    return value


def _header_names(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of a safetensors file, or of every shard its index names."""
    if path.name.endswith(".index.json"):
        return {name: () for name in _read_json(path).get("weight_map", {})}
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}  # noqa: SIM118
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for a damaged file
        raise ModelError(f"{path.name}: not a readable safetensors file ({str(exc).splitlines()[0]})") from None


def _from_files(find) -> Evidence | None:
    """Evidence of a diffusers layout whose files `find(relative_path)` locates (None: not available)."""
    index_path = find(MODEL_INDEX)
    if index_path is None:
        return None
    index = _read_json(index_path)
    components = frozenset(
        name for name, value in index.items() if not name.startswith("_") and isinstance(value, list) and value[0]
    )
    configs = {}
    for component in sorted(components):
        path = find(f"{component}/{CONFIG}")
        if path is not None:
            configs[component] = _read_json(path)
    shapes: dict[str, tuple[int, ...]] = {}
    for denoiser in DENOISERS:
        if denoiser in components:
            for name in _WEIGHTS:
                path = find(f"{denoiser}/{name}", weights=True)
                if path is not None:
                    shapes.update({f"{denoiser}.{key}": shape for key, shape in _header_names(path).items()})
                    break
    return Evidence("diffusers", components, configs, shapes)


def folder_evidence(folder: str | Path) -> Evidence:
    folder = Path(folder)

    def find(relative: str, weights: bool = False) -> Path | None:
        path = folder / relative
        return path if path.is_file() else None

    evidence = _from_files(find)
    if evidence is None:
        raise ModelError(f"{folder.name}: not a diffusers pipeline folder (no {MODEL_INDEX})")
    return evidence


def hub_evidence(repo_id: str) -> Evidence | None:
    """From the Hugging Face cache; online, the missing JSON files are fetched (weights never are)."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    from amari.models.files import is_offline

    offline = is_offline()

    def find(relative: str, weights: bool = False) -> Path | None:
        cached = try_to_load_from_cache(repo_id, relative)
        if isinstance(cached, str):
            return Path(cached)
        if offline or (weights and not relative.endswith(".json")):
            return None
        try:
            return Path(hf_hub_download(repo_id, relative))
        except Exception:  # noqa: BLE001 - a missing file, no network: the evidence is partial
            return None

    return _from_files(find)


def file_evidence(path: str | Path) -> Evidence:
    """Every tensor's name and shape in one checkpoint file."""
    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        return Evidence("file", shapes=_header_names(path))
    from amari.models.files import safe_torch_load

    state = safe_torch_load(path)
    state = state.get("state_dict", state) if isinstance(state, dict) else {}
    return Evidence(
        "file",
        shapes={name: tuple(getattr(value, "shape", ())) for name, value in state.items() if isinstance(name, str)},
    )
