"""amari train DATA_DIR [DATA_DIR ...] --out DIR: Textual Inversion, LoRA or pivotal tuning on training groups."""

from __future__ import annotations

HELP = "train a Textual Inversion embedding, a LoRA, or both (checkpoints, samples, metrics CSV; resumable)"
DESCRIPTION = """\
Learn the embedding of a placeholder token from the images in DATA_DIR with the study's settings:
placeholder '*', init word 'woman', 1 vector, ImageNet-style object templates, base lr 0.005 scaled by
processes x batch x accumulation, batch 1, each image repeated 100x per epoch, random horizontal flip,
the model's native size (512 px for SD 1.x), 15,500 steps, a checkpoint and sample images every 500 steps.

DIR receives metrics.csv (step, epoch, loss, lr, images_per_s), checkpoints/step-NNNNNN/ (embedding
files, optimizer state, samples), and at the end learned_embeds.safetensors (diffusers) and
NAME.safetensors (A1111, ComfyUI, InvokeAI, kohya). Run the same command again to resume after an
interruption. With --reference-group the samples are scored against that identity and best.json names
the best checkpoint. Several GPUs: accelerate launch --multi_gpu --num_processes N -m amari train ...

--method lora trains a LoRA on the UNet's attention instead (prompts hold the token as plain words and the
init word: "a photo of a * woman"); --method pivotal trains the token's vectors and the LoRA together.
Both write pytorch_lora_weights.safetensors (diffusers: pipe.load_lora_weights(DIR)), NAME-lora.safetensors
(kohya naming: A1111, ComfyUI, InvokeAI) and lora.json (what to write in prompts; for pivotal, the token
that learned_embeds.safetensors stands for).

Several DATA_DIRs train several groups with the same settings, each into DIR/NAME (NAME: its folder's
name). Textual Inversion trains them in one run: the model loads once and every step is one batch that
holds each group's samples, each group's result equal to training it alone (within float tolerance).
LoRA and pivotal tuning train them one after another.

The model's family decides the rest: SDXL learns a vector in each of its two text encoders (one file with
clip_l and clip_g) and its kohya LoRA names follow SDXL's original block numbering; FLUX.1 trains a LoRA
on its transformer (diffusers file only) and offers no Textual Inversion (--method ti is refused there:
use --method lora). FLUX.1 [dev] weights are refused with --reference-group (their licence forbids
biometric processing) unless --biometric-licence names a licence that permits it."""


def add_arguments(parser) -> None:
    from amari.config.options import add_options
    from amari.train import TrainConfig

    parser.add_argument("data_dir", metavar="DATA_DIR", nargs="+", help="folder of training images (one per group)")
    parser.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output folder (resumed when it holds a run); with several DATA_DIRs, one folder per group inside it",
    )
    add_options(parser, TrainConfig)


def run(args) -> int:
    import sys
    from pathlib import Path

    from amari import train
    from amari.config.options import from_args
    from amari.errors import UsageError
    from amari.storage.layout import TrainLayout

    config = from_args(train.TrainConfig, args)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    if len(args.data_dir) == 1:
        results = {"": train.run(config, TrainLayout(args.data_dir[0], args.out), log=log)}
    else:
        names = [Path(folder).resolve().name for folder in args.data_dir]
        if len(set(names)) != len(names):
            raise UsageError(f"the training folders need distinct names (each trains into --out/NAME): {names}")
        groups = [
            train.Group(name, config, TrainLayout(folder, Path(args.out) / name))
            for name, folder in zip(names, args.data_dir)
        ]
        results = train.run_groups(groups, log=log)
    for name, result in results.items():
        where = f"{name} " if name else ""
        for kind, path in {**result.embedding_files, **result.lora_files}.items():
            print(f"{where}{kind}: {path}")
        if result.best:
            print(f"{where}best checkpoint: {result.best['checkpoint']} (score {result.best['score']:.3f})")
    return 0
