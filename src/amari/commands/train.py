"""amari train DATA_DIR --out DIR: Textual Inversion on a training group."""

from __future__ import annotations

HELP = "train a Textual Inversion embedding (checkpoints, samples, metrics CSV; resumable)"
DESCRIPTION = """\
Learn the embedding of a placeholder token from the images in DATA_DIR with the study's settings:
placeholder '*', init word 'woman', 1 vector, ImageNet-style object templates, base lr 0.005 scaled by
processes x batch x accumulation, batch 1, each image repeated 100x per epoch, random horizontal flip,
512 px, 15,500 steps, a checkpoint and sample images every 500 steps.

DIR receives metrics.csv (step, epoch, loss, lr, images_per_s), checkpoints/step-NNNNNN/ (embedding
files, optimizer state, samples), and at the end learned_embeds.safetensors (diffusers) and
NAME.safetensors (A1111, ComfyUI, InvokeAI, kohya). Run the same command again to resume after an
interruption. With --reference-group the samples are scored against that identity and best.json names
the best checkpoint. Several GPUs: accelerate launch --multi_gpu --num_processes N -m amari train ..."""


def _seeds(text: str) -> tuple[int, ...]:
    import argparse

    try:
        return tuple(int(part) for part in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be integers separated by commas, not {text!r}") from None


def add_arguments(parser) -> None:
    from amari.train.config import DEFAULT_MODEL, LR_SCHEDULES, MIXED_PRECISION, STUDY_SEEDS

    parser.add_argument("data_dir", metavar="DATA_DIR", help="folder of training images")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (resumed when it holds a run)")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"diffusers folder, Hugging Face id or .safetensors/.ckpt file (default {DEFAULT_MODEL})")
    what = parser.add_argument_group("what is learned")
    what.add_argument("--token", default="*", help="placeholder written in prompts (default '*')")
    what.add_argument("--init-word", default="woman", help="word whose embedding starts the vectors (default woman)")
    what.add_argument("--vectors", type=int, default=1, help="vectors per token (default 1)")
    what.add_argument("--name", help="name of the A1111-style file and prompt word there "
                                     "(default: the token if it is a valid file name, else 'amari')")
    what.add_argument("--templates", metavar="FILE",
                      help="prompt templates, one per line, '{}' marks the token (default: ImageNet object templates)")
    data = parser.add_argument_group("data")
    data.add_argument("--resolution", type=int, default=512, help="training image side in pixels (default 512)")
    data.add_argument("--repeats", type=int, default=100, help="times each image appears per epoch (default 100)")
    data.add_argument("--no-flip", action="store_true", help="no random horizontal flips")
    data.add_argument("--no-center-crop", action="store_true",
                      help="squash non-square images to a square instead of centre-cropping them")
    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--steps", type=int, default=15_500, help="optimizer steps (default 15500)")
    opt.add_argument("--batch-size", type=int, default=1, help="images per step per process (default 1)")
    opt.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps (default 1)")
    opt.add_argument("--lr", type=float, default=0.005, help="base learning rate (default 0.005)")
    opt.add_argument("--no-scale-lr", action="store_true",
                     help="use --lr as is instead of scaling it by processes x batch x accumulation")
    opt.add_argument("--lr-schedule", choices=LR_SCHEDULES, default="constant", help="default constant")
    opt.add_argument("--lr-warmup-steps", type=int, default=0)
    opt.add_argument("--seed", type=int, default=23, help="random seed of the run (default 23)")
    opt.add_argument("--mixed-precision", choices=MIXED_PRECISION, default="auto",
                     help="auto: bf16 (or fp16) on a GPU, none on the CPU")
    opt.add_argument("--gradient-checkpointing", action=_optional_bool(), default=None,
                     help="trade compute for memory (default: on for CUDA)")
    opt.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is present")
    ckpt = parser.add_argument_group("checkpoints and validation")
    ckpt.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints (default 500)")
    ckpt.add_argument("--reference-group", metavar="DIR",
                      help="images of the identity: score the samples and mark the best checkpoint")
    ckpt.add_argument("--sample-prompt", action="append", metavar="TEXT",
                      help="sample prompt with '{}' for the token (repeatable; default 'a photo of {}')")
    ckpt.add_argument("--sample-seeds", type=_seeds, default=STUDY_SEEDS, metavar="N,N,...",
                      help="seeds of the samples (default: the study's five; '' for no samples)")
    ckpt.add_argument("--sample-steps", type=int, default=50, help="denoising steps of the samples (default 50)")
    ckpt.add_argument("--guidance-scale", type=float, default=7.5, help="CFG of the samples (default 7.5)")


def _optional_bool():
    import argparse

    return argparse.BooleanOptionalAction


def config_from_args(args):
    from amari.train.config import TrainConfig
    from amari.train.data import read_templates

    return TrainConfig(
        data_dir=args.data_dir, out_dir=args.out, model=args.model, token=args.token, init_word=args.init_word,
        num_vectors=args.vectors, name=args.name,
        templates=read_templates(args.templates) if args.templates else None,
        resolution=args.resolution, center_crop=not args.no_center_crop, repeats=args.repeats,
        flip_p=0.0 if args.no_flip else 0.5, batch_size=args.batch_size, grad_accum=args.grad_accum,
        base_lr=args.lr, scale_lr=not args.no_scale_lr, lr_schedule=args.lr_schedule,
        lr_warmup_steps=args.lr_warmup_steps, max_steps=args.steps, checkpoint_every=args.checkpoint_every,
        seed=args.seed, mixed_precision=args.mixed_precision, gradient_checkpointing=args.gradient_checkpointing,
        cpu=args.cpu, sample_prompts=tuple(args.sample_prompt or ("a photo of {}",)),
        sample_seeds=args.sample_seeds, sample_steps=args.sample_steps, guidance_scale=args.guidance_scale,
        reference_group=args.reference_group)


def run(args) -> int:
    import sys

    from amari.train import train

    result = train(config_from_args(args), log=lambda message: print(message, file=sys.stderr, flush=True))
    for kind, path in result.embedding_files.items():
        print(f"{kind}: {path}")
    if result.best:
        print(f"best checkpoint: {result.best['checkpoint']} (score {result.best['score']:.3f})")
    return 0
