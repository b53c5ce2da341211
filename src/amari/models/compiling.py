"""torch.compile for the runs that call one network thousands of times (mining's generator, the evaluation
grid), with a stated fallback.

The network is compiled in place (`nn.Module.compile`): it stays the same module, so its config, dtype,
adapters and embeddings read as before. It is compiled for fixed shapes (`dynamic=False`): the callers
keep their shapes constant (mining's batch never changes; evaluation pads its last pass of a prompt to
the batch), so it compiles once per run. Compiling happens at the first call; when it fails there (no
Triton, a graph torch cannot compile, an old GPU), amari says so once on stderr and the network runs
uncompiled from then on, with the same results.
"""

from __future__ import annotations

from collections.abc import Callable

from amari.progress import warn


def should_compile(setting: bool | None, device: str) -> bool:
    """--compile as given; by default on CUDA only (on the CPU compiling costs more than it saves)."""
    return device.startswith("cuda") if setting is None else bool(setting)


def compile_in_place(module, name: str, say: Callable[[str], None] = warn, **options) -> bool:
    """Compile `module`'s calls for fixed shapes, falling back to running it uncompiled when compiling fails;
    returns False when torch cannot compile at all here. `options` go to `torch.compile` (a backend)."""
    import torch

    try:
        compiled = torch.compile(module._call_impl, dynamic=False, **options)
    except (RuntimeError, ImportError, AttributeError) as exc:  # torch.compile unsupported on this Python
        say(f"{name} runs uncompiled: torch.compile is not available here ({_first_line(exc)})")
        return False
    failures = (torch._dynamo.exc.TorchDynamoException, ImportError)

    def call(*args, **kwargs):
        try:
            return compiled(*args, **kwargs)
        except failures as exc:
            module._compiled_call_impl = None  # every later call runs the plain module
            say(f"{name} runs uncompiled: torch.compile failed ({_first_line(exc)})")
            return module._call_impl(*args, **kwargs)

    module._compiled_call_impl = call
    return True


def is_compiled(module) -> bool:
    """Whether `module`'s calls go through its compiled form (False again after a fallback)."""
    return getattr(module, "_compiled_call_impl", None) is not None


def padded(items: list, size: int) -> list:
    """`items` filled up to `size` with copies of the last one: a pass of a compiled network keeps its
    shape (the copies' outputs are thrown away)."""
    return items + [items[-1]] * (size - len(items))


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = next((line for line in lines if "Error" in line and "raised" not in line), lines[0] if lines else "")
    return detail or type(exc).__name__
