"""Evaluation images per second at batch 1 and at the batch the evaluation chooses, in one run, same model.

The grid's passes hold one prompt's images of one group, one per command (the study's five seeds); the
evaluation chooses how many go into a pass from the memory the device has free once the model is loaded
(`amari.generate.pass_size`), at most a prompt's commands. Both sides make the same images: the 2022
study's four prompts × five seeds with its sampler (LMS, CFG 7.5), at --steps denoising steps (the
study's 250 take long on a CPU; the per-image cost scales with the steps on both sides alike).

    python bench/evaluate.py                 # tiny random-weight model on the CPU (minutes)
    python bench/evaluate.py --full          # SD 1.5's full architecture, random weights, 512 px (GPU)
    python bench/evaluate.py --model PATH    # any Stable Diffusion model amari can load
"""

from __future__ import annotations

import argparse
import time

from _models import model_folder

PROMPTS = (
    "a photo of a woman",
    "a photograph of a woman walking outside",
    "a side profile image of a woman",
    "an extremely detailed photograph of a woman",
)
SEEDS = (335728730, 691007764, 1295044561, 2565311105, 1995053400)


def images_per_second(config, size: int, fixed: bool) -> float:
    """The grid's images of every prompt, in passes of `size` (padded as the evaluation pads them)."""
    from dataclasses import replace

    from amari.generate import generate_images
    from amari.models.compiling import padded

    config = replace(config, batch_size=size)
    started = time.perf_counter()
    for prompt in PROMPTS:
        for start in range(0, len(SEEDS), size):
            seeds = list(SEEDS[start : start + size])
            generate_images(prompt, padded(seeds, size) if fixed else seeds, config)
    return len(PROMPTS) * len(SEEDS) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="SD 1.5's full architecture (random weights)")
    parser.add_argument("--model", help="a Stable Diffusion model to time instead of a random one")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default 25 tiny, 50 full)")
    parser.add_argument("--size", type=int, default=None, help="image side (default 64 tiny, 512 otherwise)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per side, alternating; the fastest counts")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    big = args.full or args.model
    steps = args.steps or (50 if big else 25)
    side = args.size or (512 if big else 64)

    from dataclasses import replace

    from amari.generate import GenerateConfig, generate_images, load_model, pass_size

    config = GenerateConfig(
        model=model_folder(args),
        scheduler="k_lms",
        steps=steps,
        guidance_scale=7.5,
        width=side,
        height=side,
        device=args.device,
    )
    chosen, fixed = pass_size(config, len(SEEDS))  # loads the model, then reads the free memory
    generate_images(PROMPTS[0], list(SEEDS[:chosen]), replace(config, batch_size=chosen))  # warm-up (and compile)
    generate_images(PROMPTS[0], [SEEDS[0]], config)
    rates: dict[int, list[float]] = {1: [], chosen: []}
    for _ in range(args.repeats):  # alternating, so a busy spell of the machine hits both sides
        for size in rates:
            rates[size].append(images_per_second(config, size, fixed))
    best = {size: max(found) for size, found in rates.items()}
    device = load_model(config).device
    print(
        f"model {config.model}, {side}×{side} px, LMS {steps} steps, {len(PROMPTS)} prompts × {len(SEEDS)} seeds, "
        f"{device}{', compiled UNet' if fixed else ''}, best of {args.repeats} runs per side"
    )
    print(f"evaluation at batch 1: {best[1]:.2f} images/s")
    print(f"evaluation at the chosen batch ({chosen}): {best[chosen]:.2f} images/s ({best[chosen] / best[1]:.2f}×)")


if __name__ == "__main__":
    main()
