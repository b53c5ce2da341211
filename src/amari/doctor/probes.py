"""The machine a study will run on: Python, torch, the GPU, attention kernels, dlib, disk space."""

from __future__ import annotations

import os
import platform
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

GIB = 1024**3


@dataclass(frozen=True)
class Check:
    """One line of the environment table: `status` is ok, warn (works, but note it) or fail."""

    name: str
    status: str
    detail: str


def environment(device: str = "auto", folders: dict[str, Path] | None = None) -> list[Check]:
    """Every probe, in the order a reader checks them; `folders` maps a label to a folder to size up."""
    checks = [python_check(), *torch_checks(device), dlib_check(), libraries_check()]
    for label, folder in (folders or {}).items():
        checks.append(disk_check(label, folder))
    from amari.models.files import is_offline

    if is_offline():
        checks.append(Check("network", "ok", "offline (AMARI_OFFLINE / HF_HUB_OFFLINE): nothing will be downloaded"))
    return checks


def python_check() -> Check:
    version = sys.version_info
    status = "ok" if version >= (3, 10) else "fail"
    return Check(
        "python",
        status,
        f"{platform.python_version()} ({sys.executable})" + ("" if status == "ok" else ": amari needs 3.10 or newer"),
    )


def torch_checks(device: str = "auto") -> list[Check]:
    try:
        import torch
    except ImportError as exc:
        return [Check("torch", "fail", f"not importable ({exc}): pip install torch")]
    checks = [
        Check(
            "torch",
            "ok",
            f"{torch.__version__}" + (f", CUDA {torch.version.cuda}" if torch.version.cuda else ", no CUDA build"),
        )
    ]
    checks.append(gpu_check(torch, device))
    if torch.cuda.is_available():
        checks.append(precision_check(torch))
    checks.append(sdpa_check(torch))
    return checks


def gpu_check(torch, device: str) -> Check:
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        props = torch.cuda.get_device_properties(0)
        free, total = torch.cuda.mem_get_info(0)
        status = "ok" if total >= 10 * GIB else "warn"
        note = "" if status == "ok" else " (Stable Diffusion with training wants 10 GiB or more)"
        return Check(
            "GPU",
            status,
            f"{props.name} ×{count}: {total / GIB:.1f} GiB, {free / GIB:.1f} GiB free, "
            f"compute capability {props.major}.{props.minor}{note}",
        )
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return Check("GPU", "ok", "Apple MPS (float16; no bf16 training)")
    if device.startswith("cuda") or device == "mps":
        return Check("GPU", "fail", f"the config asks for device {device!r}, but torch sees none")
    return Check(
        "GPU", "warn", "none: every stage runs on the CPU (fine for the demo; see the estimate for a real study)"
    )


def precision_check(torch) -> Check:
    major, minor = torch.cuda.get_device_capability(0)
    bf16 = torch.cuda.is_bf16_supported()
    fp16 = (major, minor) >= (5, 3)
    tensor_cores = major >= 7
    text = (
        f"bf16 {'yes' if bf16 else 'no'}, fp16 {'yes' if fp16 else 'no'}"
        f"{' with tensor cores' if tensor_cores and fp16 else ''}; generation runs in fp16, "
        f"training in {'bf16' if bf16 else 'fp16'} mixed precision"
    )
    return Check("precision", "ok" if fp16 else "warn", text)


def sdpa_check(torch) -> Check:
    """Runs one tiny scaled_dot_product_attention on the device diffusers will use."""
    function = getattr(torch.nn.functional, "scaled_dot_product_attention", None)
    if function is None:
        return Check("SDPA", "warn", "torch has no scaled_dot_product_attention: attention is slower and larger")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if device == "cuda" else torch.float32
    try:
        q = torch.randn(1, 2, 16, 8, device=device, dtype=dtype)
        function(q, q, q)
    except Exception as exc:  # noqa: BLE001 - any kernel failure means the same thing here
        return Check("SDPA", "fail", f"scaled_dot_product_attention failed on {device}: {exc}")
    if device == "cuda":
        backends = [
            name
            for name, on in (
                ("flash", torch.backends.cuda.flash_sdp_enabled()),
                ("memory-efficient", torch.backends.cuda.mem_efficient_sdp_enabled()),
                ("math", torch.backends.cuda.math_sdp_enabled()),
            )
            if on
        ]
        return Check("SDPA", "ok", f"scaled_dot_product_attention on CUDA ({', '.join(backends)} kernels enabled)")
    return Check("SDPA", "ok", "scaled_dot_product_attention on the CPU")


def dlib_check() -> Check:
    try:
        import dlib
    except ImportError as exc:
        return Check("dlib", "fail", f"not importable ({exc}): pip install dlib-bin")
    cuda = getattr(dlib, "DLIB_USE_CUDA", False)
    return Check(
        "dlib",
        "ok",
        f"{getattr(dlib, '__version__', '?')}"
        f"{', with CUDA (the CNN detector runs on the GPU)' if cuda else ', CPU (HOG detector, as the study)'}",
    )


def libraries_check() -> Check:
    from importlib.metadata import PackageNotFoundError, version

    names = ("diffusers", "transformers", "accelerate", "spandrel", "huggingface_hub")
    found, lost = [], []
    for name in names:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            lost.append(name)
    if lost:
        return Check("libraries", "fail", f"missing {', '.join(lost)}: pip install amari again")
    return Check("libraries", "ok", ", ".join(found))


def existing_parent(path: Path) -> Path:
    path = Path(path).expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def disk_check(label: str, folder: Path, need_bytes: int | None = None) -> Check:
    """Free space where `folder` is (or will be); warn under 10 GB, or under `need_bytes` when known."""
    free = shutil.disk_usage(existing_parent(folder)).free
    floor = need_bytes if need_bytes is not None else 10 * 10**9
    status = "ok" if free >= floor else "warn"
    want = f"; needs about {need_bytes / 1e9:.1f} GB" if need_bytes is not None else ""
    return Check(f"disk: {label}", status, f"{free / 1e9:.1f} GB free at {folder}{want}")


def hub_cache() -> Path:
    try:
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE)
    except ImportError:  # pragma: no cover - a dependency of diffusers
        return Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"


def machine_label(device: str) -> str:
    """What the timings ran on: the GPU's name, or the CPU's model and core count."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    if device == "mps":
        return f"Apple MPS ({platform.machine()})"
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), model)
    except OSError:
        pass
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"CPU: {model}, {threads} cores"
