"""Embedding files in the layouts the Stable Diffusion tools load, all safetensors.

- `learned_embeds.safetensors`: `{token: float32[n, width]}`, diffusers' layout
  (`pipe.load_textual_inversion(path)` adds `token`, `token_1`, ...).
- `<name>.safetensors`: `{"emb_params": float32[n, width]}`, the key kohya's trainer writes and reads.
  A1111 (`embeddings/`) and ComfyUI (`models/embeddings/`) accept any safetensors file holding one
  tensor and name the embedding after the file; InvokeAI looks for `emb_params` by name when it probes
  an embedding's width. A1111's `.pt` layout (`string_to_param: {"*": tensor}`) is a nested dict that
  safetensors cannot hold; these tools read `emb_params` in its place.
- SDXL (two text encoders): both files hold `{"clip_l": float32[n, 768], "clip_g": float32[n, 1280]}`,
  the layout kohya's SDXL trainer writes and A1111 (`create_embedding_from_data`), ComfyUI (its
  `embedding_key` per encoder) and InvokeAI read; diffusers loads it with one `load_textual_inversion`
  call per encoder and tokenizer.

`load_embedding` reads all of these back, and A1111's `.pt`/`.bin` files through torch's weights-only
loader (never running code from the file).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from amari.errors import ModelError
from amari.storage.files import write_atomic
from amari.storage.layout import DIFFUSERS_EMBEDDING, a1111_embedding_file

DIFFUSERS_FILE = DIFFUSERS_EMBEDDING
KOHYA_KEY = "emb_params"


@dataclass(frozen=True)
class EmbeddingFile:
    """An embedding read from a file: its vectors, the token it names (if any) and the layout found."""

    vectors: torch.Tensor  # float32 [n, width]
    token: str | None
    layout: str  # "diffusers", "emb_params", "string_to_param", "clip_l" or "tensor"
    metadata: dict


def safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """A safetensors file's bytes with its header's keys in one order. safetensors writes the metadata in
    an order that changes from process to process; fixed, the same tensors and metadata make the same file,
    so a file written again unchanged keeps its hash (evaluation keys its cells on it)."""
    from safetensors.torch import save

    payload = save(tensors, metadata=metadata)
    (length,) = struct.unpack("<Q", payload[:8])
    header = json.loads(payload[8 : 8 + length])
    ordered = {
        key: dict(sorted(value.items())) if key == "__metadata__" else value for key, value in sorted(header.items())
    }
    text = json.dumps(ordered, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the tensor data starts 8-byte aligned, as safetensors pads it
    return struct.pack("<Q", len(text)) + text + payload[8 + length :]


def save_embedding(
    folder: str | Path,
    vectors: torch.Tensor | dict,
    token: str,
    name: str,
    metadata: dict | None = None,
    family=None,
) -> dict[str, Path]:
    """Write both files into `folder`; returns {"diffusers": path, "a1111": path}. `vectors` is one tensor,
    or a two-encoder family's {key: tensor} (SDXL's clip_l and clip_g)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    parts = vectors if isinstance(vectors, dict) else {None: vectors}
    parts = {key: value.detach().to("cpu", torch.float32).contiguous() for key, value in parts.items()}
    if any(tensor.ndim != 2 for tensor in parts.values()):
        raise ValueError(f"vectors must be [n, width], not {[tuple(t.shape) for t in parts.values()]}")
    first = next(iter(parts.values()))
    widths = ",".join(f"{key}={t.shape[1]}" if key else str(t.shape[1]) for key, t in parts.items())
    meta = {"token": token, "name": name, "vectors": str(first.shape[0]), "width": widths}
    meta.update({key: str(value) for key, value in (metadata or {}).items() if value is not None})
    paths = {"diffusers": folder / DIFFUSERS_FILE, "a1111": folder / a1111_embedding_file(name)}
    if None in parts:
        contents = {"diffusers": {token: first}, "a1111": {KOHYA_KEY: first.clone()}}
    else:  # one layout serves every tool
        layout = family.embedding_file(parts)
        contents = {"diffusers": layout, "a1111": {key: value.clone() for key, value in layout.items()}}
    for kind, path in paths.items():
        write_atomic(path, safetensors_bytes(contents[kind], meta))
    return paths


def load_embedding(path: str | Path) -> EmbeddingFile:
    """Read any of the layouts above; raises `ModelError` for a file that holds no single embedding."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"embedding file {path} does not exist")
    metadata: dict = {}
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                metadata = dict(handle.metadata() or {})
                data = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - a safetensors handle, not a dict
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any reader failure means the same thing to the user
        raise ModelError(f"{path}: not a readable embedding file ({_first_line(exc)})") from None
    vectors, token, layout = _pick(data, path)
    if vectors.ndim == 1:
        vectors = vectors.unsqueeze(0)
    if vectors.ndim != 2:
        raise ModelError(f"{path}: embedding has shape {tuple(vectors.shape)}, expected [vectors, width]")
    token = token or metadata.get("token")
    return EmbeddingFile(vectors=vectors.float(), token=token, layout=layout, metadata=metadata)


def _pick(data, path: Path) -> tuple[torch.Tensor, str | None, str]:
    if isinstance(data, torch.Tensor):
        return data, None, "tensor"
    if not isinstance(data, dict) or not data:
        raise ModelError(f"{path}: holds no embedding")
    if "string_to_param" in data and isinstance(data["string_to_param"], dict):
        params = data["string_to_param"]
        if len(params) != 1:
            raise ModelError(f"{path}: holds {len(params)} embeddings, expected one")
        name = data.get("name")
        return next(iter(params.values())), name if isinstance(name, str) else None, "string_to_param"
    if KOHYA_KEY in data:
        return data[KOHYA_KEY], None, KOHYA_KEY
    if "clip_l" in data:
        return data["clip_l"], None, "clip_l"
    tensors = {key: value for key, value in data.items() if isinstance(value, torch.Tensor)}
    if len(tensors) == 1:
        token, vectors = next(iter(tensors.items()))
        return vectors, token, "diffusers"
    raise ModelError(f"{path}: found keys {sorted(data)[:5]}, expected one tensor, '{KOHYA_KEY}' or 'string_to_param'")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
