"""How much GPU memory each model family needs to generate and to train, and whether this machine has it.

Estimates, not measurements: the weights' bytes from each family's parameter counts
(`Family.parameters`, in its half precision: float16, or bfloat16 for FLUX.1), plus an allowance for the
working memory of one image at the family's native size (activations, attention, the VAE's decoding;
`WORKING_GIB`). Training adds the text encoders that learn in float32 (Textual Inversion's) and a larger
allowance for the backward pass with gradient checkpointing. Model CPU offload (`--offload`) keeps only
the largest part on the GPU at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3
HALF = 2  # bytes a parameter in float16 / bfloat16
# Working memory at the native size, batch 1: (generation, training) in GiB. Allowances, not measured.
WORKING_GIB = {"sd1": (1.5, 3.0), "sd2": (2.0, 4.0), "sdxl": (3.0, 6.0), "flux-schnell": (3.5, 8.0)}
WORKING_GIB["flux-dev"] = WORKING_GIB["flux-schnell"]


@dataclass(frozen=True)
class MemoryNeed:
    family: str  # its label
    generate: float  # GiB
    offloaded: float  # GiB with model CPU offload
    train_lora: float
    train_ti: float | None  # None: not offered

    def verdict(self, total_gib: float | None) -> str:
        if total_gib is None:
            return "no GPU"
        if max(self.train_lora, self.train_ti or 0.0) <= total_gib:
            return "yes: generates and trains"
        if self.train_lora <= total_gib:
            return "generates, trains a LoRA; TI needs more"
        if self.generate <= total_gib:
            return "generates; training needs more"
        if self.offloaded <= total_gib:
            return "only with --offload (slower)"
        return "no"


def need(family) -> MemoryNeed:
    weights = sum(family.parameters.values()) * 1e9 * HALF / GIB
    largest = max(family.parameters.values()) * 1e9 * HALF / GIB
    generating, training = WORKING_GIB.get(family.name, (3.0, 6.0))
    # Textual Inversion keeps the text encoders it trains in float32: two more bytes a parameter.
    learning = sum(family.parameters.get(slot.encoder, 0.0) for slot in family.text_encoders if slot.learns_token)
    return MemoryNeed(
        family=family.label,
        generate=weights + generating,
        offloaded=largest + generating,
        train_lora=weights + training,
        train_ti=None if family.no_token_training else weights + learning * 1e9 * HALF / GIB + training,
    )


HEADERS = ["family", "generate", "with --offload", "train (LoRA)", "train (TI)", "this GPU"]


def memory_rows(total_gib: float | None) -> list[list[str]]:
    """One row per family amari knows (the two FLUX.1 variants need the same)."""
    from amari.models.families.registry import FAMILIES

    rows, seen = [], set()
    for family in FAMILIES:
        if family.base in seen and family.base == "flux":
            continue
        seen.add(family.base)
        estimate = need(family)
        label = "FLUX.1" if family.base == "flux" else estimate.family
        ti = "not offered" if estimate.train_ti is None else f"{estimate.train_ti:.1f} GiB"
        rows.append(
            [
                label,
                f"{estimate.generate:.1f} GiB",
                f"{estimate.offloaded:.1f} GiB",
                f"{estimate.train_lora:.1f} GiB",
                ti,
                estimate.verdict(total_gib),
            ]
        )
    return rows


def gpu_total_gib() -> float | None:
    """The first CUDA GPU's memory, or None without one."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(0).total_memory / GIB
