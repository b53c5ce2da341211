"""Upscaler speed: tiny vs full-size random-weight ESRGAN x4, with and without tiling, on the CPU.

Prints seconds per image and per 512×512 input (scaled by pixel count), and each as a ratio to the
first row, measured in the same run (machines are noisy; compare ratios, not seconds). The full-size
network is RealESRGAN_x4plus's (23 blocks, 64 features) and is slow on a CPU, so it runs one smaller
image. `--gfpgan` adds one face restoration with a full-size random GFPGAN.

    python bench/enhance.py [--tiny-size 512] [--full-size 256] [--tile 128] [--device cpu] [--gfpgan]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from amari.enhance.loading import load_image_model, pick_device
from amari.enhance.restore import restore_crop
from amari.enhance.upscale import upscale
from amari.testing.enhance import REAL_ESRGAN_X4PLUS, build_random_esrgan, build_random_gfpgan


def test_image(size: int) -> np.ndarray:
    """A smooth colour field with some texture: the content does not change the cost, only the size."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([x, y, (x + y) / 2], axis=2) * 200
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def timed(function, repeats: int = 1) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny-size", type=int, default=512)
    parser.add_argument("--full-size", type=int, default=256)
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--gfpgan", action="store_true", help="also time one GFPGAN face restoration")
    args = parser.parse_args()
    device = pick_device(args.device)

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        tiny = load_image_model(str(build_random_esrgan(folder / "tiny.pth")), "SR", device)
        full_file = build_random_esrgan(folder / "full.pth", **REAL_ESRGAN_X4PLUS)
        full = load_image_model(str(full_file), "SR", device)
        for name, model, size, repeats in [
            ("tiny ESRGAN (16nf, 1 block)", tiny, args.tiny_size, 2),
            ("full ESRGAN (64nf, 23 blocks)", full, args.full_size, 1),
        ]:
            image = test_image(size)
            upscale(model, image[:32, :32])  # first call pays one-off setup costs
            for tile in (0, args.tile):
                seconds = timed(lambda model=model, image=image, tile=tile: upscale(model, image, tile=tile), repeats)
                rows.append(
                    (
                        name,
                        f"{size}²",
                        "none" if tile == 0 else str(tile),
                        seconds,
                        seconds * (512 * 512) / (size * size),
                    )
                )
        if args.gfpgan:
            gfpgan = load_image_model(str(build_random_gfpgan(folder / "gfpgan.pth")), "FaceSR", device)
            crop = test_image(512)
            restore_crop(gfpgan, crop)
            seconds = timed(lambda: restore_crop(gfpgan, crop))
            rows.append(("GFPGAN v1 clean, one face", "512²", "-", seconds, seconds))

    baseline = rows[0][4]
    print(f"device: {device}, torch threads: {torch.get_num_threads()}")
    print(f"{'model':32} {'input':>7} {'tile':>5} {'s/image':>9} {'s/512²':>9} {'× baseline':>11}")
    for name, size, tile, seconds, per_512 in rows:
        print(f"{name:32} {size:>7} {tile:>5} {seconds:9.3f} {per_512:9.3f} {per_512 / baseline:11.2f}")


if __name__ == "__main__":
    main()
