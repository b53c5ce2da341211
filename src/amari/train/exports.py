"""LoRA files in the layouts the Stable Diffusion tools load, and the record of what goes with them.

- `pytorch_lora_weights.safetensors`, diffusers' layout (`pipe.load_lora_weights(folder)`):
  `unet.<module>.lora_A.weight` `[rank, in]` and `.lora_B.weight` `[out, rank]` (text encoder:
  `text_encoder.text_model.<module>...`), and in the header `lora_adapter_metadata`, each part's peft
  `LoraConfig` under `unet.` / `text_encoder.` keys. diffusers builds the adapter from that metadata;
  without it, it would take alpha = rank and a LoRA trained at another alpha would load at the wrong
  strength (diffusers' own `save_lora_weights` leaves it out unless asked).
- `NAME-lora.safetensors`, kohya's layout, which A1111 (`models/Lora`), ComfyUI (`models/loras`),
  InvokeAI and kohya's scripts load (and diffusers too): per module
  `lora_unet_<diffusers module path with '.' -> '_'>.lora_down.weight` `[rank, in]`, `.lora_up.weight`
  `[out, rank]` and `.alpha`, a 0-dim float32 holding the real alpha (the tools scale by alpha / rank; a
  missing alpha means alpha = rank); text encoder `lora_te_text_model_encoder_layers_N_self_attn_q_proj...`.
  The header holds kohya's `ss_network_*` keys and `sshs_model_hash`, the hash A1111 writes as
  `Lora hashes` (SHA-256 of the tensor data after the header).
- `lora.json`: the method, what to write in prompts, the token the embedding stands for (pivotal), the
  files, and how each tool loads them.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import torch

from amari.errors import ModelError
from amari.storage.files import safetensors_data_sha256, write_atomic
from amari.storage.layout import LORA_RECORD, LORA_WEIGHTS, kohya_lora_file
from amari.train.lora import TEXT_ENCODER, UNET, LoraSpec

DIFFUSERS_LORA = LORA_WEIGHTS
RECORD = LORA_RECORD
KOHYA_PREFIXES = {UNET: "lora_unet_", TEXT_ENCODER: "lora_te_"}
ADAPTER_METADATA_KEY = "lora_adapter_metadata"  # the header key diffusers reads the adapters' configs from
# The embedding files' kinds (`amari.train.formats.save_embedding`) as lora.json names them.
_RECORD_KINDS = {"diffusers": "embedding", "a1111": "embedding_a1111"}


def kohya_module(key: str) -> tuple[str, str]:
    """(kohya module name, 'down' | 'up') of a diffusers LoRA key `unet.<module>.lora_A.weight`."""
    prefix, rest = key.split(".", 1)
    module, _, kind = rest.removesuffix(".weight").rpartition(".")
    if prefix not in KOHYA_PREFIXES or kind not in ("lora_A", "lora_B"):
        raise ValueError(f"not a LoRA weight key: {key}")
    return KOHYA_PREFIXES[prefix] + module.replace(".", "_"), "down" if kind == "lora_A" else "up"


def kohya_state(state: dict[str, torch.Tensor], spec: LoraSpec) -> dict[str, torch.Tensor]:
    """The LoRA in kohya's layout: lora_down / lora_up / alpha per module."""
    converted = {}
    for key, tensor in state.items():
        module, side = kohya_module(key)
        converted[f"{module}.lora_{side}.weight"] = tensor
        converted[f"{module}.alpha"] = torch.tensor(float(spec.alpha), dtype=torch.float32)
    return converted


def _header_and_data(payload: bytes) -> tuple[bytes, bytes]:
    (length,) = struct.unpack("<Q", payload[:8])
    return payload[8 : 8 + length], payload[8 + length :]


def addnet_hash(path: str | Path) -> str:
    """A1111's and kohya's LoRA hash: SHA-256 of a safetensors file's tensor data (after its header)."""
    return safetensors_data_sha256(path)


def _save(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str], hashed: bool = False) -> Path:
    from safetensors.torch import save

    from amari.train.formats import safetensors_bytes

    tensors = {key: value.detach().to("cpu", torch.float32).contiguous() for key, value in tensors.items()}
    if hashed:  # the data bytes do not depend on the header, so the hash can go into it
        metadata = {**metadata, "sshs_model_hash": hashlib.sha256(_header_and_data(save(tensors))[1]).hexdigest()}
    return write_atomic(path, safetensors_bytes(tensors, metadata))


def kohya_base_version(base: str | None, v_prediction: bool = False) -> dict[str, str]:
    """kohya's keys for the model a LoRA was trained on: `ss_v2` ("True" for SD 2.x, which A1111 reads to
    show the LoRA with SD 2 models only) and `ss_base_model_version` (`sd_v1`, `sd_v2`, `_v` added for a
    v-prediction model)."""
    v2 = base == "sd-2"
    version = ("sd_v2" if v2 else "sd_v1") + ("_v" if v_prediction else "")
    return {"ss_v2": str(v2), "ss_base_model_version": version}


def save_lora(
    folder: str | Path,
    state: dict[str, torch.Tensor],
    spec: LoraSpec,
    name: str,
    metadata: dict | None = None,
    base: str | None = None,
    v_prediction: bool = False,
) -> dict[str, Path]:
    """Write the diffusers and the kohya file into `folder`; returns {"lora": path, "kohya": path}.

    `base` is the family of the model it was trained on, as InvokeAI names it (`amari.models.diffusion`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    common = {key: str(value) for key, value in (metadata or {}).items() if value is not None}
    common.update(rank=str(spec.rank), alpha=repr(spec.alpha), name=name)
    adapters = {
        f"{part}.{key}": value for part, config in spec.adapter_metadata().items() for key, value in config.items()
    }
    diffusers_meta = {"format": "pt", ADAPTER_METADATA_KEY: json.dumps(adapters, indent=2, sort_keys=True), **common}
    kohya_meta = {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(spec.rank),
        "ss_network_alpha": repr(spec.alpha),
        **kohya_base_version(base, v_prediction),
        "ss_output_name": Path(kohya_lora_file(name)).stem,
        **common,
    }
    return {
        "lora": _save(folder / DIFFUSERS_LORA, state, diffusers_meta),
        "kohya": _save(folder / kohya_lora_file(name), kohya_state(state, spec), kohya_meta, hashed=True),
    }


def write_record(folder: str | Path, record: dict) -> Path:
    return write_atomic(Path(folder) / RECORD, json.dumps(record, indent=2, sort_keys=True) + "\n")


def read_record(path: str | Path) -> dict:
    """A run's `lora.json`; raises ModelError when it is missing or damaged."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the LoRA record {path}: {exc}") from None
    if not isinstance(record, dict) or "trigger" not in record:
        raise ModelError(f"{path} is not a LoRA record (no 'trigger')")
    return record


def lora_record(
    method: str, name: str, step: int, trigger: str, token: str | None, files: dict[str, Path], spec: LoraSpec
) -> dict:
    """What `lora.json` says: what to write in prompts, which files to load, and how each tool loads them."""
    kohya = Path(files["kohya"]).stem
    a1111_word = name if token is not None else trigger  # A1111 names an embedding after its file
    record = {
        "method": method,
        "name": name,
        "step": step,
        "trigger": trigger,
        "token": token,
        "rank": spec.rank,
        "alpha": spec.alpha,
        "unet_targets": list(spec.unet_targets),
        "text_encoder_targets": list(spec.text_encoder_targets),
        "files": {_RECORD_KINDS.get(kind, kind): Path(path).name for kind, path in files.items()},
        "prompts": {
            "diffusers": f"a photo of {trigger}",
            "a1111": f"a photo of {a1111_word} <lora:{kohya}:1>",
            "comfyui": f"a photo of {'embedding:' + name if token is not None else trigger} (LoraLoader: {kohya})",
        },
    }
    return record
