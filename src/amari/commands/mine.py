"""amari mine --workspace DIR --prompt TEXT [--source diffusers|folder:PATH] ...: the face miner."""

from __future__ import annotations

HELP = "mine a consistent synthetic identity: an adaptive, resumable sim-group search"
DESCRIPTION = """\
Takes candidate images from a source (Stable Diffusion, or a folder another tool writes into), finds
the largest face of each and keeps an adaptive sim-group of images that all look like one person.
Each image ends in WORKSPACE/sim-group/, almost-sim/ or unknown-person/ (no face, unreadable, or
someone else). The upper bound of the group tightens and relaxes batch by batch; the run is done when
the group holds --target images whose average sim-score is at most --stop-average.

With --identities K, it grows K such groups at once, one folder each (identity-NN/sim-group/ and
identity-NN/almost-sim/) beside a shared unknown-person/, founding each from a cluster of the faces no
identity took (docs/identities.md).

Rerun the same command to resume after a crash or Ctrl-C. Between runs, or while one runs, you may
move or delete files between the three folders: a file you take out of the group never comes back by
itself, and one you drop into it joins. WORKSPACE/archive.csv gets one row per batch."""


def add_arguments(parser) -> None:
    from amari.config.options import add_options
    from amari.mine import MineConfig

    parser.add_argument("--workspace", required=True, metavar="DIR", help="the miner's folder (created if new)")
    add_options(parser, MineConfig)
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")


def run(args) -> int:
    from amari import mine
    from amari.config.options import from_args
    from amari.progress import warn
    from amari.storage.layout import WorkspaceLayout
    from amari.study.stages import mining_source

    config = from_args(mine.MineConfig, args)
    for key in config.unused_options():
        warn(f"--option {key} is not used: the folder source takes images as they are")
    with mine.MiningProgress(enabled=not args.quiet) as progress:
        result = mine.run(config, WorkspaceLayout(args.workspace), mining_source(config), progress)
    print(result.summary())
    return 0
