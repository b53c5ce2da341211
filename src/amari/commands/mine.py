"""amari mine --workspace DIR --prompt TEXT [--source diffusers|folder:PATH] ...: the face miner."""

from __future__ import annotations

import argparse

HELP = "mine a consistent synthetic identity: an adaptive, resumable sim-group search"
DESCRIPTION = """\
Takes candidate images from a source (Stable Diffusion, or a folder another tool writes into), finds
the largest face of each and keeps an adaptive sim-group of images that all look like one person.
Each image ends in WORKSPACE/sim-group/, almost-sim/ or unknown-person/ (no face, unreadable, or
someone else). The upper bound of the group tightens and relaxes batch by batch; the run is done when
the group holds --target images whose average sim-score is at most --stop-average.

Rerun the same command to resume after a crash or Ctrl-C. Between runs, or while one runs, you may
move or delete files between the three folders: a file you take out of the group never comes back by
itself, and one you drop into it joins. WORKSPACE/archive.csv gets one row per batch."""


def _key_value(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, not {text!r}")
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        return key.strip(), lowered == "true"
    for kind in (int, float):
        try:
            return key.strip(), kind(value)
        except ValueError:
            pass
    return key.strip(), value


def add_arguments(parser) -> None:
    parser.add_argument("--workspace", required=True, metavar="DIR", help="the miner's folder (created if new)")
    parser.add_argument("--prompt", metavar="TEXT", help="the text prompt (needed by the diffusers source)")
    parser.add_argument("--negative-prompt", default="", metavar="TEXT", help="what generated images avoid")
    parser.add_argument("--model", metavar="ID_OR_PATH",
                        help="Stable Diffusion model: Hugging Face id, diffusers folder or .ckpt/.safetensors")
    parser.add_argument("--preset", metavar="NAME", help="named generation settings (e.g. the study's)")
    parser.add_argument("--seed", type=int, metavar="N", help="first seed (default: random seeds)")
    parser.add_argument("--source", default="diffusers", metavar="diffusers|folder:PATH",
                        help="where candidates come from (default diffusers); folder:PATH copies images "
                             "another tool (A1111, ComfyUI, InvokeAI) writes into PATH")
    parser.add_argument("--watch", action="store_true", help="folder source: keep waiting for new files")
    parser.add_argument("--poll", type=float, default=2.0, metavar="SECONDS",
                        help="seconds between looks at a watched folder (default 2)")
    parser.add_argument("--reference", nargs="+", default=[], metavar="IMG",
                        help="images that seed the group (default: the tightest pair of faces seen)")
    parser.add_argument("--target", type=int, default=100, metavar="N",
                        help="group size to reach (default 100, the original's 'more than 99'; e.g. 312)")
    parser.add_argument("--stop-average", type=float, default=0.40, metavar="D",
                        help="done when the group's average sim-score is at most this (default 0.40)")
    parser.add_argument("--almost-band", type=float, default=0.10, metavar="D",
                        help="width of the almost-sim band above the upper bound (default 0.10)")
    parser.add_argument("--max-batches", type=int, metavar="N",
                        help="stop after batch N of the workspace (earlier runs count)")
    parser.add_argument("--detector", choices=("hog", "cnn"), default="hog", help="face detector (default hog)")
    parser.add_argument("--upsample", type=int, default=1, metavar="N",
                        help="times the detector upsamples the image (default 1)")
    parser.add_argument("--max-side", type=int, metavar="PX",
                        help="shrink images to at most this many pixels a side before finding faces "
                             "(faster on large upscaled images; default: full size)")
    parser.add_argument("--cpus", type=int, default=1, help="processes for face detection; -1 means all cores")
    parser.add_argument("--option", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                        help="a generation or enhancement option for the source (repeatable)")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")


def run(args) -> int:
    from amari.errors import UsageError
    from amari.faces import FaceSettings
    from amari.mine.policy import PolicyConfig
    from amari.mine.progress import MiningProgress
    from amari.mine.run import MineConfig, mine
    from amari.mine.source import SourceOptions

    if args.source == "diffusers" and not args.prompt:
        raise UsageError("the diffusers source needs --prompt TEXT")
    try:
        policy = PolicyConfig(almost_band=args.almost_band, target=args.target, stop_average=args.stop_average)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    options = SourceOptions(prompt=args.prompt or "", negative_prompt=args.negative_prompt, model=args.model,
                            preset=args.preset, seed=args.seed, watch=args.watch, poll_interval=args.poll,
                            extra=dict(args.option))
    config = MineConfig(source=args.source, source_options=options, references=tuple(args.reference),
                        policy=policy, max_batches=args.max_batches, cpus=args.cpus,
                        face_settings=FaceSettings(detector=args.detector, upsample=args.upsample,
                                                      max_side=args.max_side))
    with MiningProgress(enabled=not args.quiet) as progress:
        result = mine(args.workspace, config, progress)
    print(result.summary())
    return 0
