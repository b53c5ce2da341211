"""Random-weight Stable Diffusion folders for benchmarks, built once under bench/out/."""

from __future__ import annotations

import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"


def model_folder(args) -> str:
    """The model to time: --model, else a random-weight SD (--full: SD 1.5's architecture) built once."""
    if args.model:
        return args.model
    from amari.testing.sd import build_sd15_random, build_tiny_sd

    name, build = ("sd15-random", build_sd15_random) if args.full else ("tiny-sd", build_tiny_sd)
    folder = OUT / name
    if not (folder / "model_index.json").is_file():
        print(f"building {name} in {folder} (once) ...", file=sys.stderr, flush=True)
        build(folder)
    return str(folder)
