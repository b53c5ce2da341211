"""`amari doctor` on the 2022 study's settings with full-size random-weight models: the README's stage times.

Builds once, under bench/out/, Stable Diffusion 1.5's full architecture, a full-size RealESRGAN_x4plus
and a full-size GFPGANv1.4-style network, all with random weights (the same compute as the real models,
without a download), writes a copy of configs/amari-2022.toml that points at them, and runs

    amari doctor bench/out/doctor-2022.toml --timing-steps N --markdown

so that the stage times print as Markdown tables. On a CPU, --timing-steps 4 (the default here) runs
4 denoising steps per generation and extrapolates to the study's 250 from the median step; 0 times
every step (for a GPU).

    python bench/doctor.py [--timing-steps N] [--device cpu|cuda|auto]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

from _models import OUT

REPO = Path(__file__).resolve().parents[1]


def build_models() -> dict[str, Path]:
    from amari.testing.enhance import REAL_ESRGAN_X4PLUS, build_random_esrgan, build_random_gfpgan
    from amari.testing.sd import build_sd15_random

    paths = {
        "model": OUT / "sd15-random",
        "upscaler": OUT / "esrgan-x4plus-random.pth",
        "face_restorer": OUT / "gfpgan-random.pth",
    }
    if not (paths["model"] / "model_index.json").is_file():
        print(f"building {paths['model']} (once) ...", file=sys.stderr, flush=True)
        build_sd15_random(paths["model"])
    if not paths["upscaler"].is_file():
        build_random_esrgan(paths["upscaler"], **REAL_ESRGAN_X4PLUS)
    if not paths["face_restorer"].is_file():
        build_random_gfpgan(paths["face_restorer"])
    return paths


def study_config(models: dict[str, Path], device: str) -> Path:
    """configs/amari-2022.toml with its models replaced by the random-weight ones."""
    values = {**{key: str(path) for key, path in models.items()}, "device": device, "out": str(OUT / "doctor-2022")}
    text = (REPO / "configs" / "amari-2022.toml").read_text(encoding="utf-8")
    for key, value in values.items():
        text = re.sub(rf'(?m)^{key} = "[^"]*"', f'{key} = "{value}"', text, count=1)
    path = OUT / "doctor-2022.toml"
    path.write_text(text, encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timing-steps", type=int, default=4, help="denoising steps to time (0: all)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    config = study_config(build_models(), args.device)
    command = [sys.executable, "-m", "amari", "doctor", str(config), "--markdown"]
    if args.timing_steps:
        command += ["--timing-steps", str(args.timing_steps)]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    sys.exit(subprocess.run(command, env=env, check=False).returncode)


if __name__ == "__main__":
    main()
