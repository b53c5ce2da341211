"""amari score IMAGE... --group DIR: sim-scores against a group."""

from __future__ import annotations

HELP = "sim-score of images against a group (mean face distance; 0 = same face)"
DESCRIPTION = """\
For each image (or every image in a folder), find its largest face and print its mean distance to the
largest face of every image in the group folder: the study's sim-score (<= 0.40 counts as the same
person), or `no face found`. Descriptors are cached by file content."""


def add_arguments(parser) -> None:
    from amari.config.options import add_options
    from amari.score import ScoreConfig

    parser.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR", help="images or folders to score")
    add_options(parser, ScoreConfig)


def run(args) -> int:
    import sys

    from amari import score
    from amari.config.options import from_args

    results = score.run(from_args(score.ScoreConfig, args), args.images)
    for result in results:
        if result.error:
            print(f"WARNING: cannot read {result.path}: {result.error}. Skipped.", file=sys.stderr)
        else:
            print(f"{result.path},{score.label(result)}")
    return 1 if results and all(r.error for r in results) else 0
