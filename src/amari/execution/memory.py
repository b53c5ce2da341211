"""Batch sizes and memory-hungry choices made from the memory a device has free, measured when the models
are loaded: how many images a generator pass holds, how many a batched upscale takes at once, and whether
training needs gradient checkpointing.

The choices are pure functions of a memory figure (`free_bytes` measures it), so they are the same on a
test machine given the figure an 80 GB card reports. The per-image figures are allowances for Stable
Diffusion 1.x at 512 × 512 in half precision, scaled by pixel count, not measurements: each one errs
large, and `RESERVE` stays free besides.
"""

from __future__ import annotations

import math
import os

GIB = 1024**3
RESERVE = 2 * GIB  # kept free for the allocator's fragmentation, cuDNN's workspaces and other processes
AREA_512 = 512 * 512
# One image of a generator pass: the UNet's activations for it and its unconditioned twin (CFG), and the
# VAE decoding it with the rest of the pass.
GENERATE_BYTES_512 = int(2.5 * GIB)
# One 512 × 512 image through a ×4 super-resolution network: its 64-channel features at the output size.
UPSCALE_BYTES_512 = int(1.5 * GIB)
# One training sample's activations kept for the backward pass without gradient checkpointing, at 512 px.
TRAIN_BYTES_512 = 6 * GIB
MINING_BATCH_CAP = 16  # beyond this a pass gains little and the policy waits longer for its candidates


def free_bytes(device: str) -> int | None:
    """Memory free on `device` now: a CUDA GPU's (torch's view, after what this process holds), else the
    machine's available RAM for the CPU; None where it cannot be told (MPS)."""
    if device.startswith("cuda"):
        import torch

        index = torch.device(device).index
        return int(torch.cuda.mem_get_info(torch.cuda.current_device() if index is None else index)[0])
    if device == "cpu":
        return available_ram()
    return None


def available_ram() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def scaled(bytes_512: int, width: int, height: int) -> int:
    """A per-image allowance at 512 × 512, for an image of width × height."""
    return math.ceil(bytes_512 * (width * height) / AREA_512)


def batch_for_memory(free: int | None, per_item: int, largest: int, reserve: int = RESERVE) -> int:
    """How many items of `per_item` bytes fit in `free` bytes less `reserve`: at least 1, at most
    `largest`; `largest` when the free memory is unknown."""
    if free is None:
        return max(1, largest)
    return max(1, min(largest, (free - reserve) // max(1, per_item)))


def generation_batch(free: int | None, width: int, height: int, largest: int = MINING_BATCH_CAP) -> int:
    """Images per generator pass at width × height with `free` bytes left after loading the models (16 on
    an 80 GB card at 512 px, 7 on a 24 GB one)."""
    return batch_for_memory(free, scaled(GENERATE_BYTES_512, width, height), largest)


def upscale_batch_size(free: int | None, width: int, height: int, largest: int) -> int:
    """Images of width × height a ×4 upscaler takes in one pass with `free` bytes."""
    return batch_for_memory(free, scaled(UPSCALE_BYTES_512, width, height), largest)


def needs_checkpointing(free: int | None, samples: int, resolution: int) -> bool:
    """Whether a training step of `samples` images at `resolution` px needs gradient checkpointing to fit
    in `free` bytes (left after loading the model); True when the free memory is unknown."""
    if free is None:
        return True
    return samples * scaled(TRAIN_BYTES_512, resolution, resolution) + RESERVE >= free
