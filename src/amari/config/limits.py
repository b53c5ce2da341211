"""Upper bounds on sizes and counts, checked when a setting is read: a number beyond what any machine
could do, or beyond this machine's memory, is refused in one line, instead of an overflow, a memory
error or a run that eats every byte of memory hours later.

Each bound says why it is where it is. Memory needs are rough lower estimates (what the largest arrays
alone take), so a refusal is certain to be right; a value under them can still be too much for a
small GPU, which then says so itself.
"""

from __future__ import annotations

import os

from amari.errors import UsageError

MAX_STEPS = 10**9  # optimizer or checkpoint steps: at 10 steps a second, three years of one GPU
MAX_DENOISING_STEPS = 1000  # a sampler's steps: Stable Diffusion's schedulers have 1000 training timesteps
MAX_SIDE = 16384  # pixels a side of an image amari generates or trains on (16× SDXL's native size)
MAX_BATCH = 4096  # images in one forward pass
MAX_UPSAMPLE = 4  # dlib's detector doubles the image's side per upsampling: 16× the side, 256× the pixels
MAX_COUNT = 10**9  # anything counted one by one (repeats, batches, images to reach)
# Bytes a pixel of an image needs while Stable Diffusion's VAE decodes or encodes it: 128 float32
# channels at full resolution, two of them alive at once; the UNet's latents and attention come on top.
VAE_BYTES_PER_PIXEL = 1024
# Bytes a pixel needs while dlib's HOG detector looks at it: the RGB copy, its pyramid and the HOG features.
DETECTOR_BYTES_PER_PIXEL = 16


def machine_memory() -> int | None:
    """This machine's physical memory in bytes (None where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def check_at_most(limit: int, why: str, **values) -> None:
    """Each value (when given) must be at most `limit`; the error says why the bound is there."""
    for name, value in values.items():
        if value is not None and value > limit:
            raise UsageError(f"{name} must be at most {limit:,}, not {value:,} ({why})")


def check_memory(what: str, needed: float, hint: str) -> None:
    """Refuse a setting whose arrays alone need more memory than this machine has."""
    memory = machine_memory()
    if memory is not None and needed > memory:
        raise UsageError(f"{what} needs at least {_gib(needed)} of memory, this machine has {_gib(memory)}; {hint}")


def check_image_size(
    width: int | None, height: int | None, batch: int = 1, what: str = "an image", names=("width", "height")
) -> None:
    """Width, height and batch of images a Stable Diffusion pipeline makes or trains on; `names`: the
    settings' own names of the two sides, for the message."""
    check_at_most(MAX_SIDE, "pixels a side", **dict(zip(names, (width, height))))
    check_at_most(MAX_BATCH, "images in one pass", batch_size=batch)
    if width and height:
        check_memory(
            f"{what} of {width}×{height} pixels{f' in batches of {batch}' if batch > 1 else ''}",
            width * height * batch * VAE_BYTES_PER_PIXEL,
            "use a smaller size or batch",
        )


def detector_memory(width: int, height: int, upsample: int) -> int:
    """Bytes dlib's HOG detector needs for an image of width × height upsampled `upsample` times."""
    return width * height * 4**upsample * DETECTOR_BYTES_PER_PIXEL


def _gib(size: float) -> str:
    return f"{size / 2**30:,.1f} GiB"
