"""amari prepare SRC DST: random square crops resized to 512, saved under random names."""

from __future__ import annotations

HELP = "training images: random square crop, resize to 512, random 9-letter names"
DESCRIPTION = """\
For each image under SRC, take a random square crop whose side is drawn from [SIZE, shortest side]
(the shortest side itself when that is at most SIZE), resize it to SIZE x SIZE and save it in DST as a
PNG with a random 9-letter name. DST/manifest.csv maps each output to its source, seed and crop box.
SRC is only read. The same --seed on the same SRC gives the same crops and names.

--crop face keeps the whole detected face (with a margin) in the crop; --check-faces reports, for a
random crop, how many outputs still show a face."""


def add_arguments(parser) -> None:
    from amari.config.options import add_options
    from amari.prepare import PrepareConfig

    parser.add_argument("src", metavar="SRC", help="folder of images to transform (searched recursively)")
    parser.add_argument("dst", metavar="DST", help="folder for the outputs (empty or new, unless --force)")
    add_options(parser, PrepareConfig)


def run(args) -> int:
    from amari import prepare
    from amari.config.options import from_args
    from amari.errors import UsageError
    from amari.progress import progress_bar, warn
    from amari.storage.layout import PrepareLayout

    config = from_args(prepare.PrepareConfig, args)
    with progress_bar(len(prepare.source_images(args.src)), "preparing") as advance:
        result = prepare.run(config, PrepareLayout(args.src, args.dst), on_progress=lambda _path: advance())
    for error in result.skipped:
        warn(f"skipped {error.path}: {error.reason}")
    print(
        f"prepared {len(result.prepared)} images into {result.destination} "
        f"(seed {result.seed}, {result.crop} crop); skipped {len(result.skipped)} unreadable"
    )
    if result.face_share is not None:
        found = sum(bool(p.face_found) for p in result.prepared)
        print(f"face found in {found} of {result.faces_checked} outputs ({result.face_share:.1%})")
    if not result.prepared:
        raise UsageError("no image could be read")
    return 0
