"""The files an image was made with, named as the tools that read its metadata name them.

A1111, ComfyUI and InvokeAI name a textual-inversion embedding after its file (A1111's embedding
database takes the file's stem; ComfyUI's A1111 import turns each installed embedding's name in the
prompt into `embedding:NAME`; InvokeAI looks `<NAME>` up by model name) and a LoRA after its file too
(`<lora:NAME:weight>`, also found again by its `Lora hashes` hash). diffusers' own layouts, which amari
loads (`learned_embeds.safetensors`, `pytorch_lora_weights.safetensors`), are named by no tool, and the
diffusers LoRA maps no keys in A1111. So an image made with a file amari trained names the file written
beside it for those tools: the embedding `NAME.safetensors` and the LoRA `NAME-lora.safetensors`, NAME
being the `name` in the diffusers file's header. Generation, evaluation and training samples all name
their files here, once per run.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from amari.storage.files import safetensors_data_sha256, sha256_once
from amari.storage.layout import a1111_embedding_file, kohya_lora_file

_MAX_HEADER = 100_000_000  # safetensors' own limit on a header's size


def embedding_entry(path: str | Path, token: str) -> dict:
    """What an image records about an embedding it was made with: the `token` in the prompt the pipeline
    got, and the A1111 file's name (its stem, what A1111 and ComfyUI call it and InvokeAI's `<name>`),
    file name and A1111's short hash (`TI hashes`: the first 12 hex digits of the file's SHA-256)."""
    shown = _counterpart(Path(path), a1111_embedding_file)
    return {"token": token, "name": shown.stem, "path": shown.name, "hash": sha256_once(shown)[:12]}


def lora_entry(path: str | Path, weight: float = 1.0) -> dict:
    """What an image records about a LoRA it was made with: the kohya file's name (A1111's `<lora:NAME:w>`;
    ComfyUI takes the LoRA file whose name starts with it), file name, A1111's short hash (`Lora hashes`:
    the SHA-256 of a safetensors file's tensor data, 12 hex digits) and the weight it was applied at."""
    shown = _counterpart(Path(path), kohya_lora_file)
    digest = safetensors_data_sha256(shown) if shown.suffix.lower() == ".safetensors" else sha256_once(shown)
    return {"name": shown.stem, "path": shown.name, "hash": digest[:12], "weight": float(weight)}


def _counterpart(path: Path, file_for) -> Path:
    """The file the other tools load that amari wrote beside `path`, or `path` itself."""
    name = header_metadata(path).get("name")
    if isinstance(name, str) and name:
        other = path.with_name(file_for(name))
        if other.is_file():
            return other
    return path


def header_metadata(path: str | Path) -> dict:
    """The `__metadata__` of a safetensors file's header, read without loading a tensor; {} for any other
    file or one that cannot be read."""
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        return {}
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > _MAX_HEADER:
                return {}
            header = json.loads(handle.read(length))
    except (OSError, struct.error, ValueError):
        return {}
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    return metadata if isinstance(metadata, dict) else {}
