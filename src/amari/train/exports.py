"""LoRA files in the layouts the Stable Diffusion tools load, and the record of what goes with them.

- `pytorch_lora_weights.safetensors`, diffusers' layout (`pipe.load_lora_weights(folder)`):
  `unet.<module>.lora_A.weight` `[rank, in]` and `.lora_B.weight` `[out, rank]` (text encoder:
  `text_encoder.text_model.<module>...`), and in the header `lora_adapter_metadata`, each part's peft
  `LoraConfig` under `unet.` / `text_encoder.` keys. diffusers builds the adapter from that metadata;
  without it, it would take alpha = rank and a LoRA trained at another alpha would load at the wrong
  strength (diffusers' own `save_lora_weights` leaves it out unless asked).
- `NAME-lora.safetensors`, kohya's layout, which A1111 (`models/Lora`), ComfyUI (`models/loras`),
  InvokeAI and kohya's scripts load (and diffusers too): per module `<kohya name>.lora_down.weight`
  `[rank, in]`, `.lora_up.weight` `[out, rank]` and `.alpha`, a 0-dim float32 holding the real alpha (the
  tools scale by alpha / rank; a missing alpha means alpha = rank). The model family names the modules
  (`amari.models.families`): SD 1.x/2.x `lora_unet_<diffusers module path with '.' -> '_'>` and
  `lora_te_text_model_encoder_layers_N_self_attn_q_proj...`; SDXL `lora_unet_<SGM block path>`,
  `lora_te1_…`, `lora_te2_…`; FLUX.1 has no such file (its diffusers file is the one the tools read).
  The header holds kohya's `ss_network_*` keys, the family's `ss_base_model_version` (and `ss_v2` for
  SD 2.x, which A1111 reads), and `sshs_model_hash`, the hash A1111 writes as `Lora hashes` (SHA-256 of
  the tensor data after the header).
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
from amari.models.families.sd1 import SD1
from amari.storage.files import safetensors_data_sha256, write_atomic
from amari.storage.layout import LORA_RECORD, LORA_WEIGHTS, kohya_lora_file
from amari.train.lora import LoraSpec

DIFFUSERS_LORA = LORA_WEIGHTS
RECORD = LORA_RECORD
ADAPTER_METADATA_KEY = "lora_adapter_metadata"  # the header key diffusers reads the adapters' configs from
# The embedding files' kinds (`amari.train.formats.save_embedding`) as lora.json names them.
_RECORD_KINDS = {"diffusers": "embedding", "a1111": "embedding_a1111"}


def kohya_module(key: str, family=SD1) -> tuple[str | None, str]:
    """(kohya module name, 'down' | 'up') of a diffusers LoRA key `unet.<module>.lora_A.weight`; the name is
    None where the family has no kohya file."""
    prefix, rest = key.split(".", 1)
    module, _, kind = rest.removesuffix(".weight").rpartition(".")
    if kind not in ("lora_A", "lora_B"):
        raise ValueError(f"not a LoRA weight key: {key}")
    return family.kohya_module(prefix, module), "down" if kind == "lora_A" else "up"


def kohya_state(state: dict[str, torch.Tensor], spec: LoraSpec, family=SD1) -> dict[str, torch.Tensor] | None:
    """The LoRA in kohya's layout: lora_down / lora_up / alpha per module (None: the family has no kohya file)."""
    converted = {}
    for key, tensor in state.items():
        module, side = kohya_module(key, family)
        if module is None:
            return None
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


def kohya_base_version(family=SD1, v_prediction: bool = False) -> dict[str, str]:
    """kohya's keys for the model a LoRA was trained on: the family's (`ss_base_model_version`, and `ss_v2`
    for SD 1.x and 2.x, which A1111 reads to show an SD 2 LoRA with SD 2 models only), with `_v` added to
    `sd_v1`/`sd_v2` for a v-prediction model, as kohya spells it."""
    metadata = dict(family.kohya_metadata)
    if v_prediction and metadata.get("ss_base_model_version") in ("sd_v1", "sd_v2"):
        metadata["ss_base_model_version"] += "_v"
    return metadata


def save_lora(
    folder: str | Path,
    state: dict[str, torch.Tensor],
    spec: LoraSpec,
    name: str,
    metadata: dict | None = None,
    family=SD1,
    v_prediction: bool = False,
) -> dict[str, Path]:
    """Write the diffusers and (where the family has one) the kohya file into `folder`; returns
    {"lora": path, "kohya": path}. `family` is the model's it was trained on (`amari.models.families`)."""
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
        **kohya_base_version(family, v_prediction),
        "ss_output_name": Path(kohya_lora_file(name)).stem,
        **common,
    }
    files = {"lora": _save(folder / DIFFUSERS_LORA, state, diffusers_meta)}
    kohya = kohya_state(state, spec, family)
    if kohya is not None:
        files["kohya"] = _save(folder / kohya_lora_file(name), kohya, kohya_meta, hashed=True)
    return files


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
    kohya = Path(files.get("kohya", files["lora"])).stem
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
