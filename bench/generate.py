"""Images per second: the original miner's way of generating against amari's, same model, one run.

The original called Stable Diffusion's txt2img script once per batch: a fresh process that imported
torch, loaded every model, ran DDIM for 250 steps in float32 on 4 images, saved them and exited.
amari keeps the model loaded, runs in half precision on a GPU with PyTorch's fused attention, and
mines with the fast preset (DPM++ 2M Karras, 25 steps). Every row writes its images as PNG files with
provenance, as the miner does.

    python bench/generate.py                 # tiny random model, CPU-sized, a few minutes
    python bench/generate.py --full          # SD 1.5's full architecture, random weights (GPU)
    python bench/generate.py --model PATH    # any Stable Diffusion model amari can load
    python bench/generate.py --family sdxl [--full] [--timing-steps 2]   # SDXL (or flux) against SD 1.x

With --family, each family runs with its own defaults (native size, sampler, steps, dtype) on a
random-weight model (--full: its real architecture, where this machine's memory allows), SD 1.x first
as the baseline; --timing-steps N times N denoising steps and extrapolates to the family's steps, so a
CPU can size a full-size model in minutes (no claims: a CPU says little about a GPU).

Targets on one H100 with --full: the fast preset at >= 8 images/s at 512x512, and >= 20x the
original's images/s. --quick cuts the study's 250 steps to 25 so a CPU run of --full ends in minutes;
its ratios then compare process and precision overheads only, not the samplers.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _models import family_folder, model_folder

PROMPT = "a photo of a woman"


# 1. The original's way: one fresh process per batch of 4 ------------------------------------------


def worker(args) -> None:
    """One txt2img call: load everything, make `--seeds` images, save them, exit."""
    from amari.generate import generate, preset_config
    from amari.provenance.png import save_png

    config = preset_config(
        "study", model=args.model, dtype="float32", steps=args.study_steps, width=args.size, height=args.size
    )
    result = generate(PROMPT, seeds=[int(s) for s in args.seeds.split(",")], config=config, progress=False)
    for image in result.images:
        save_png(image.image, Path(args.out) / f"original-{image.seed}.png", image.params)


def run_original(model: str, batches: int, args, out: Path) -> tuple[int, float]:
    started = time.perf_counter()
    for batch in range(batches):
        seeds = ",".join(str(1000 + 4 * batch + i) for i in range(4))
        command = [
            sys.executable,
            __file__,
            "--worker",
            "--model",
            model,
            "--seeds",
            seeds,
            "--out",
            str(out),
            "--study-steps",
            str(args.study_steps),
            "--size",
            str(args.size),
        ]
        subprocess.run(command, check=True, env=os.environ.copy())
    return 4 * batches, time.perf_counter() - started


# 2. amari's way: the model stays loaded --------------------------------------------------------------


def run_amari(config, count: int, out: Path, label: str) -> tuple[int, float]:
    from amari.generate import generate
    from amari.provenance.png import save_png

    def save(images):
        for image in images:
            save_png(image.image, out / f"{label}-{image.seed}.png", image.params)

    # Warm-up pass: kernels picked, torch.compile traced; a long mining run pays this once.
    generate(PROMPT, seeds=list(range(config.batch_size)), config=config, progress=False)
    started = time.perf_counter()
    generate(PROMPT, seeds=list(range(100, 100 + count)), config=config, progress=False, on_batch=save)
    return count, time.perf_counter() - started


# 3. One family against SD 1.x ----------------------------------------------------------------------


def family_rows(args) -> None:
    """Images per second of SD 1.x and of `--family`, each at its own defaults, in one run."""
    import torch

    from amari.doctor.timing import time_generation
    from amari.generate import load_model, preset_config, unload_all

    rows = []
    for family in ("sd1", args.family):
        model = family_folder(family, args.full)
        if model is None:
            rows.append((family, None))
            continue
        options = {"batch_size": args.batch_size or 1, "compile": args.compile}
        if args.size:
            options.update(width=args.size, height=args.size)
        config = preset_config("fast", model=model, **options)
        seconds, how = time_generation(config, PROMPT, config.batch_size, args.timing_steps)
        loaded = load_model(config)
        side = args.size or loaded.native_size
        label = (
            f"{loaded.family.label}: {config.scheduler} {config.steps} steps, CFG {config.guidance_scale:g}, "
            f"{side}x{side}, batch {config.batch_size}, {loaded.dtype}{', compiled' if args.compile else ''}"
        )
        rows.append((label, (config.batch_size, seconds, how)))
        unload_all()
    device = "CUDA" if torch.cuda.is_available() else "CPU"
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads")
    baseline = rows[0][1][0] / rows[0][1][1] if rows[0][1] else None
    width = max(len(label) for label, _ in rows)
    print(f"{'family and settings':<{width}}  s/image  images/s  vs SD 1.x  how")
    for label, measured in rows:
        if measured is None:
            print(f"{label:<{width}}  skipped: not enough memory here for the full-size model")
            continue
        images, seconds, how = measured
        rate = images / seconds
        ratio = f"{rate / baseline:.3f}x" if baseline else "-"
        print(f"{label:<{width}}  {seconds / images:>7.2f}  {rate:>8.4f}  {ratio:>9}  {how}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="SD 1.5's full architecture with random weights")
    parser.add_argument("--model", help="a Stable Diffusion model to time instead of a random one")
    parser.add_argument("--images", type=int, help="images per amari row (default 32 on GPU, 8 on CPU)")
    parser.add_argument("--batches", type=int, default=2, help="fresh-process batches of 4 for the original")
    parser.add_argument("--batch-size", type=int, help="amari's images per pass (default: the fast preset's)")
    parser.add_argument("--size", type=int, help="image side (default: the model's native size)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the UNet for amari's rows")
    parser.add_argument("--quick", action="store_true", help="25 study steps instead of 250 (smoke runs)")
    parser.add_argument("--family", choices=("sdxl", "flux"), help="time SDXL or FLUX.1 [schnell] against SD 1.x")
    parser.add_argument("--timing-steps", type=int, help="with --family: time N steps and extrapolate")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seeds", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--study-steps", type=int, default=250, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.family:
        family_rows(args)
        return

    import torch

    from amari.generate import load_model, preset_config

    if args.quick:
        args.study_steps = 25
    model = model_folder(args)
    gpu = torch.cuda.is_available()
    count = args.images or (32 if gpu else 8)
    loaded = load_model(preset_config("fast", model=model, compile=args.compile))
    # Every row at one size: the model's native one unless asked (the study's presets say 512).
    side = args.size = args.size or loaded.native_size
    fast = preset_config(
        "fast",
        model=model,
        width=side,
        height=side,
        compile=args.compile,
        **({"batch_size": args.batch_size} if args.batch_size else {}),
    )
    study = preset_config("study", model=model, width=side, height=side, steps=args.study_steps, compile=args.compile)
    print(
        f"model {loaded.name} at {side}x{side} on {loaded.device} ({loaded.dtype} for amari's rows); "
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads",
        flush=True,
    )

    with tempfile.TemporaryDirectory(prefix="amari-bench-") as scratch:
        out = Path(scratch)
        rows = [
            (
                f"original: fresh process per 4, DDIM {args.study_steps}, float32",
                run_original(model, args.batches, args, out),
            ),
            (
                f"amari, study preset kept loaded (DDIM {args.study_steps}, batch 4, {loaded.dtype})",
                run_amari(study, max(4, count // 4), out, "study"),
            ),
            (
                f"amari, fast preset (DPM++ 2M Karras {fast.steps}, batch {fast.batch_size}, {loaded.dtype}"
                f"{', compiled' if args.compile else ''})",
                run_amari(fast, count, out, "fast"),
            ),
        ]
    baseline = rows[0][1][0] / rows[0][1][1]
    width = max(len(label) for label, _ in rows)
    print(f"{'setting':<{width}}  images  seconds  images/s  vs original")
    for label, (images, seconds) in rows:
        rate = images / seconds
        print(f"{label:<{width}}  {images:>6}  {seconds:>7.1f}  {rate:>8.3f}  {rate / baseline:>10.1f}x")
    if args.quick:
        print("(--quick: the study's rows ran 25 steps, not 250)")
    print("targets on one H100 with --full: fast preset >= 8 images/s at 512x512, >= 20x the original")


if __name__ == "__main__":
    main()
