"""Random-weight diffusion model folders for benchmarks, built once under bench/out/."""

from __future__ import annotations

import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
GIB = 1024**3
# RAM a full-size random model needs while it is built and timed on the CPU (float32 weights, bf16 for
# FLUX.1, plus working memory), roughly.
FULL_SIZE_RAM_GIB = {"sd1": 8, "sdxl": 20, "flux": 60}


def builders(family: str):
    """(tiny builder, full-size builder) of a family: sd1, sdxl or flux (FLUX.1 [schnell])."""
    if family == "sdxl":
        from amari.testing.sdxl import build_sdxl_random, build_tiny_sdxl

        return build_tiny_sdxl, build_sdxl_random
    if family == "flux":
        from amari.testing.flux import build_flux_random, build_tiny_flux

        return build_tiny_flux, build_flux_random
    from amari.testing.sd import build_sd15_random, build_tiny_sd

    return build_tiny_sd, build_sd15_random


def available_ram_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 / GIB
    except OSError:
        return None
    return None


def family_folder(family: str, full: bool) -> str | None:
    """A random-weight model of `family` built once (full: its real architecture); None when this machine
    has too little memory for the full-size one (said on stderr)."""
    tiny, whole = builders(family)
    name = f"{family}-{'random' if full else 'tiny'}"
    folder = OUT / ("sd15-random" if (family, full) == ("sd1", True) else "tiny-sd" if family == "sd1" else name)
    if not (folder / "model_index.json").is_file():
        if full:
            need, free = FULL_SIZE_RAM_GIB[family], available_ram_gib()
            if free is not None and free < need:
                print(
                    f"skipping full-size {family}: it needs about {need} GiB of RAM, {free:.0f} GiB free",
                    file=sys.stderr,
                )
                return None
        print(f"building {name} in {folder} (once) ...", file=sys.stderr, flush=True)
        (whole if full else tiny)(folder)
    return str(folder)


def model_folder(args) -> str:
    """The model to time: --model, else a random-weight SD (--full: SD 1.5's architecture) built once."""
    if args.model:
        return args.model
    return family_folder("sd1", args.full)
