"""Model files -> spandrel models on a device, checked to be the kind of model they are used as."""

from __future__ import annotations

import torch

from amari.errors import ModelError
from amari.execution.devices import resolve_device
from amari.models.files import resolve_model_file, safe_torch_load

PURPOSES = {"SR": "a super-resolution model (e.g. Real-ESRGAN)", "FaceSR": "a face restoration model (GFPGAN)"}


def pick_device(name: str) -> torch.device:
    return torch.device(resolve_device(name))


def load_image_model(spec: str, purpose: str, device: torch.device, half: bool = False):
    """A spandrel ImageModelDescriptor for `spec` (known name or path) whose purpose is `purpose`.

    The state dict is read by `safe_torch_load` (never unpickled with code execution) and handed to
    spandrel, whose architecture detection decides the network from the keys and shapes.
    """
    from spandrel import ImageModelDescriptor, ModelLoader, UnsupportedModelError

    path = resolve_model_file(spec)
    state = safe_torch_load(path)
    try:
        model = ModelLoader(device="cpu").load_from_state_dict(state)
    except UnsupportedModelError:
        raise ModelError(f"{path}: not a model architecture amari can load; expected {PURPOSES[purpose]}") from None
    except (RuntimeError, KeyError, ValueError, IndexError, TypeError, AssertionError) as exc:
        text = str(exc).strip().splitlines()
        raise ModelError(
            f"{path}: the weights do not fit the architecture they look like "
            f"({text[0] if text else type(exc).__name__})"
        ) from None
    if not isinstance(model, ImageModelDescriptor) or model.purpose != purpose:
        raise ModelError(
            f"{path}: expected {PURPOSES[purpose]} (purpose {purpose}); this file holds "
            f"{model.architecture.name}, whose purpose is {model.purpose}"
        )
    model.eval()
    dtype = reduced_dtype(model.supports_half, model.supports_bfloat16, device.type) if half else None
    if dtype is not None:
        model.to(dtype=dtype)
    return model.to(device)


def reduced_dtype(supports_half: bool, supports_bfloat16: bool, device_type: str, bf16_ok: bool | None = None):
    """The 16-bit float a spandrel network runs in on a GPU: float16 where spandrel says the architecture
    supports it (Real-ESRGAN), else bfloat16 where it does and the GPU has it (GFPGAN, whose float16
    output breaks down); None elsewhere (float32)."""
    if device_type != "cuda":
        return None
    if supports_half:
        return torch.float16
    if bf16_ok is None:
        bf16_ok = torch.cuda.is_bf16_supported()
    return torch.bfloat16 if supports_bfloat16 and bf16_ok else None
