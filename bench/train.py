"""Training steps per second and peak memory per method (ti, lora, pivotal), and amari's TI loop against the
common recipe, all in one run, with ratios against amari's TI measured in the same run.

The common recipe (diffusers' example script and most trainers built on it) makes the text encoder's
whole token table trainable, so AdamW keeps two moments for all 49,408 × 768 rows and the backward
pass writes a gradient for the full table; after each step it copies the original rows back. It also
runs the VAE encoder on the training image at every step. amari trains a separate [vectors × width]
tensor spliced into the table and encodes each image (and its mirror image) once.

LoRA (rank 4 on the UNet's attention projections, amari's default) needs the backward pass through the
UNet's weights' inputs as TI does, plus the adapters' own products and AdamW over their weights; pivotal
tuning adds the token's vectors, so its backward pass also runs through the text encoder.

Each side runs in its own process on the same model, images, settings and seeds, so the peak memory
of one does not hide in the other's; the steps are timed after a warm-up.

Last, the study's groups: three Textual Inversion groups (4, 2 and 1 images) trained in one run, one
batch holding every group's sample each step, against the same three trained one after another (three
runs, each loading the model), the same steps each; wall time of the whole training, each side in its
own process, best of --repeats:

    3 groups at once vs one after another: X.XX×

    python bench/train.py                # tiny random-weight model on the CPU (minutes)
    python bench/train.py --full         # SD 1.5's full architecture, random weights, 512 px (GPU)
    python bench/train.py --model PATH   # any Stable Diffusion model amari can load
    python bench/train.py --sides groups # the groups' comparison alone

On a GPU every side uses the run's defaults there (bf16 or fp16 autocast, gradient checkpointing).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _models import model_folder

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
# Faces (top, right, bottom, left) in tests/data/t1.jpg, cropped as stand-in training images.
FACES = [(283, 1226, 390, 1118), (283, 175, 390, 67), (367, 832, 474, 724), (295, 557, 402, 450)]


def write_images(folder: Path) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    photo = Image.open(DATA / "t1.jpg").convert("RGB")
    for index, (top, right, bottom, left) in enumerate(FACES):
        cx, cy = (left + right) // 2, (top + bottom) // 2
        photo.crop((cx - 120, cy - 120, cx + 120, cy + 120)).save(folder / f"{index}.png")
    return folder


SIDES = ("ti", "lora", "pivotal", "recipe")  # amari's three methods, then the common TI recipe
GROUP_SIDES = ("together", "apart")  # three groups in one run; the same three one after another
GROUP_IMAGES = {"g_4": 4, "g_2": 2, "g_1": 1}


def config_for(args, method: str):
    from amari.train import TrainConfig

    return TrainConfig(
        model=args.model_path,
        method=method,
        resolution=args.resolution,
        max_steps=args.warmup + args.steps,
        sample_seeds=(),
        cpu=args.cpu,
    )


# 1. The common recipe -------------------------------------------------------------------------------


class CommonRecipe:
    """Whole token table trainable, VAE encode per step, original rows restored after each step."""

    def __init__(self, run):
        import torch

        from amari.train.data import OBJECT_TEMPLATES, load_training_images

        self.run = run  # reuse the loaded, frozen model and the accelerator
        components = run.components
        encoder = components.text_encoder
        encoder.set_input_embeddings(run.placeholder.table)  # back to the plain table
        table = encoder.get_input_embeddings()
        with_vectors = self._grow(table, run.placeholder.placeholder_ids, run.placeholder.vectors)
        encoder.set_input_embeddings(with_vectors)
        self.table = with_vectors.weight
        self.original = self.table.detach().clone()
        self.keep = torch.ones(self.table.shape[0], dtype=torch.bool, device=self.table.device)
        self.keep[run.placeholder.placeholder_ids] = False
        self.table.requires_grad_(True)
        self.optimizer = run.accelerator.prepare(
            torch.optim.AdamW([self.table], lr=run.lr, weight_decay=run.config.weight_decay)
        )
        _names, self.images = load_training_images(run.layout.data, run.config.resolution)
        self.templates = OBJECT_TEMPLATES

    @staticmethod
    def _grow(table, ids, vectors):
        import torch

        rows = max(max(ids) + 1, table.weight.shape[0])
        grown = torch.nn.Embedding(rows, table.weight.shape[1]).to(table.weight.device, torch.float32)
        with torch.no_grad():
            grown.weight[: table.weight.shape[0]] = table.weight.float()
            grown.weight[torch.tensor(ids)] = vectors.detach().to(grown.weight.device)
        return grown

    def step(self, step: int) -> float:
        import torch
        import torch.nn.functional as F

        from amari.train.data import draw, seed_for, to_pixels

        run, config = self.run, self.run.config
        components, device = run.components, run.accelerator.device
        sample = draw(config.seed, step, len(self.images), config.repeats, len(self.templates), config.flip_p)
        generator = torch.Generator().manual_seed(seed_for(config.seed, 2, step))
        timestep = torch.randint(components.noise_scheduler.config.num_train_timesteps, (1,), generator=generator)
        pixels = to_pixels(self.images[sample.image], sample.flip).unsqueeze(0).to(device, run.weight_dtype)
        with run.accelerator.autocast():
            with torch.no_grad():
                latents = components.vae.encode(pixels).latent_dist.sample() * components.vae.config.scaling_factor
            noise = torch.randn(latents.shape, generator=generator).to(device, latents.dtype)
            noisy = components.noise_scheduler.add_noise(latents, noise, timestep.to(device))
            text = components.text_encoder(run.template_ids[sample.template][None].to(device))[0]
            prediction = components.unet(
                noisy.to(run.weight_dtype), timestep.to(device), text.to(run.weight_dtype)
            ).sample
            loss = F.mse_loss(prediction.float(), noise.float())
        run.accelerator.backward(loss)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():  # the recipe's way of keeping the other rows unchanged
            self.table[self.keep] = self.original[self.keep]
        return float(loss)


# 2. One side, in its own process ------------------------------------------------------------------


def worker(args) -> None:
    import torch

    from amari.storage.layout import TrainLayout
    from amari.train.loop import prepare_run, train_step

    with tempfile.TemporaryDirectory() as tmp:
        method = "ti" if args.worker == "recipe" else args.worker
        run = prepare_run(config_for(args, method), TrainLayout(Path(args.images), Path(tmp) / "out"))
        step_fn = CommonRecipe(run).step if args.worker == "recipe" else (lambda s: train_step(run, s)[0])
        for s in range(args.warmup):
            step_fn(s)
        cuda = run.accelerator.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        for s in range(args.warmup, args.warmup + args.steps):
            step_fn(s)
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        peak = torch.cuda.max_memory_allocated() if cuda else _peak_rss()
        print(
            json.dumps(
                {
                    "steps_per_s": args.steps / seconds,
                    "peak_bytes": peak,
                    "memory": "GPU allocated" if cuda else "process RSS",
                    "device": str(run.accelerator.device),
                    "precision": run.accelerator.mixed_precision,
                }
            )
        )


def groups_worker(args) -> None:
    """Train the three groups `args.worker` says how (together, or apart), from a fresh output folder."""
    from amari.storage.layout import TrainLayout
    from amari.train import Group, run, run_groups

    config = config_for(args, "ti").replace(max_steps=args.steps, checkpoint_every=args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        groups = [Group(name, config, TrainLayout(Path(args.images) / name, Path(tmp) / name)) for name in GROUP_IMAGES]
        started = time.perf_counter()
        if args.worker == "together":
            run_groups(groups)
        else:
            for group in groups:
                run(group.config, group.layout)
        print(json.dumps({"seconds": time.perf_counter() - started}))


def group_folders(images: Path) -> Path:
    """The three groups' folders, from the stand-in training images."""
    import shutil

    root = images.parent / "groups"
    files = sorted(images.iterdir())
    for name, count in GROUP_IMAGES.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for path in files[:count]:
            shutil.copy(path, root / name / path.name)
    return root


def compare_groups(args, images: Path) -> None:
    root = group_folders(images)
    seconds: dict[str, list[float]] = {side: [] for side in GROUP_SIDES}
    for _ in range(args.repeats):
        for side in GROUP_SIDES:
            seconds[side].append(measure(side, args, root)["seconds"])
    together, apart = min(seconds["together"]), min(seconds["apart"])
    print(
        f"groups of {', '.join(map(str, GROUP_IMAGES.values()))} images, {args.steps} steps each, wall time of the "
        f"whole training (best of {args.repeats}): together {together:.1f} s, one after another {apart:.1f} s"
    )
    print(f"3 groups at once vs one after another: {apart / together:.2f}×")


def _peak_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(side: str, args, images: Path) -> dict:
    command = [
        sys.executable,
        __file__,
        "--worker",
        side,
        "--model-path",
        args.model_path,
        "--images",
        str(images),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--resolution",
        str(args.resolution),
    ]
    if args.cpu:
        command.append("--cpu")
    result = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
    if result.returncode != 0:
        sys.exit(f"{side} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="SD 1.5's full architecture (random weights)")
    parser.add_argument("--model", help="a Stable Diffusion model to time instead of a random one")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 20 tiny, 50 full)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--resolution", type=int, default=None, help="default 64 tiny, 512 otherwise")
    parser.add_argument("--repeats", type=int, default=2, help="runs per side, alternating; the fastest counts")
    every = ",".join((*SIDES, "groups"))
    parser.add_argument("--sides", default=every, help=f"which to time, of {every}")
    parser.add_argument("--cpu", action="store_true", help="stay on the CPU even with a GPU")
    parser.add_argument("--worker", choices=SIDES + GROUP_SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--model-path", help=argparse.SUPPRESS)
    parser.add_argument("--images", help=argparse.SUPPRESS)
    args = parser.parse_args()
    big = args.full or args.model
    args.steps = args.steps or (50 if big else 20)
    args.resolution = args.resolution or (512 if big else 64)
    if args.worker:
        groups_worker(args) if args.worker in GROUP_SIDES else worker(args)
        return

    args.model_path = model_folder(args)
    chosen = args.sides.split(",")
    sides = [side for side in SIDES if side in chosen]
    with tempfile.TemporaryDirectory() as tmp:
        images = write_images(Path(tmp) / "images")
        if sides:
            compare_methods(args, sides, images)
        if "groups" in chosen:
            compare_groups(args, images)


def compare_methods(args, sides: list[str], images: Path) -> None:
    if "ti" not in sides:
        sides.insert(0, "ti")  # the baseline of every ratio
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    for _ in range(args.repeats):  # alternating, so a busy spell of the machine hits every side
        for side in runs:
            runs[side].append(measure(side, args, images))
    best = {side: max(rows, key=lambda row: row["steps_per_s"]) for side, rows in runs.items()}
    ti = best["ti"]
    print(
        f"model {args.model_path}, {args.resolution} px, {args.steps} timed steps after {args.warmup} warm-up, "
        f"best of {args.repeats} runs per side, {ti['device']}, {ti['precision']} mixed precision"
    )
    print(f"{'':<22}{'steps/s':>10}{'peak MiB':>12}{'steps/s ÷ TI':>15}{'memory ÷ TI':>14}  ({ti['memory']})")
    names = {"ti": "amari ti", "lora": "amari lora", "pivotal": "amari pivotal", "recipe": "common TI recipe"}
    for side, row in best.items():
        print(
            f"{names[side]:<22}{row['steps_per_s']:>10.2f}{row['peak_bytes'] / 2**20:>12.0f}"
            f"{row['steps_per_s'] / ti['steps_per_s']:>14.2f}x{row['peak_bytes'] / ti['peak_bytes']:>13.2f}x"
        )


if __name__ == "__main__":
    main()
