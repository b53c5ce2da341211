"""Which torch device a stage runs on: "auto" is CUDA, then Apple's MPS, then the CPU."""

from __future__ import annotations

import re

from amari.errors import UsageError

DEVICES = ("auto", "cuda", "mps", "cpu")
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def check_device(name: str) -> None:
    """A device name amari understands (checked without importing torch)."""
    if not _DEVICE.fullmatch(name):
        raise UsageError(f"device must be one of {', '.join(DEVICES)} or cuda:N, not {name!r}")


def resolve_device(name: str = "auto") -> str:
    """The device to use for `name`; an explicit one must be present on this machine."""
    import torch

    check_device(name)
    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps and mps.is_available())
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if mps_ok else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"device {name} asked for, but torch sees no CUDA GPU")
    if name == "mps" and not mps_ok:
        raise UsageError("device mps asked for, but this torch build or machine has no MPS")
    return name


def resolve_dtype(name: str, device: str, gpu_default: str = "float16"):
    """ "auto" is `gpu_default` (the model family's) on a GPU and float32 on the CPU."""
    import torch

    if name == "auto":
        name = "float32" if device == "cpu" else gpu_default
    return getattr(torch, name)


def repeatable_kernels(deterministic: bool = False) -> None:
    """CUDA kernels chosen the same way in every run: cuDNN's autotuner off (it times candidate
    algorithms and may pick another one in the next process, so a resumed run could differ in the last
    bits). Inference is then repeatable; training's backward pass still adds with atomics (embedding
    gradients, attention and convolution kernels) unless `deterministic` asks torch for deterministic
    kernels only, which costs speed."""
    import os

    import torch

    torch.backends.cudnn.benchmark = False
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's own condition for it
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)
