"""amari select --workspace DIR --out DIR --groups a_312=all,b_11=11,c_4=4: training groups."""

from __future__ import annotations

HELP = "training groups from the miner's sim-group (best sim-scores first, or a diverse pick)"
DESCRIPTION = """\
Scores every image of WORKSPACE/sim-group/ as the miner's group analysis does (mean distance of its
largest face to every member's, itself included; images with no face are skipped with a warning) and
writes one folder per group under OUT, ready for `amari train`: copies of the chosen images (file names
kept) and manifest.csv (file, source, score[, yaw]).

--by score takes the best scores first. --by diverse spreads the pick over head pose (from 68 face
landmarks) and image content, among members whose score is within --tolerance. In both, NAME=all is
every member with a face, and a smaller group is the start of a larger one."""


def add_arguments(parser) -> None:
    from amari.config.options import add_options
    from amari.select import SelectConfig

    parser.add_argument("--workspace", required=True, metavar="DIR", help="the miner's workspace folder")
    parser.add_argument(
        "--identity",
        type=int,
        metavar="N",
        help="in a workspace mined with --identities K: pick from identity-NN/sim-group/",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="folder that receives one folder per group")
    add_options(parser, SelectConfig)


def run(args) -> int:
    from amari import select
    from amari.config.options import from_args
    from amari.errors import UsageError
    from amari.progress import progress_bar, warn
    from amari.storage.layout import SelectLayout, WorkspaceLayout

    config = from_args(select.SelectConfig, args)
    if args.identity is not None and args.identity < 1:
        raise UsageError(f"--identity must be 1 or more, not {args.identity}")
    workspace = WorkspaceLayout(args.workspace, args.identity)
    with progress_bar(None, "scoring the sim-group") as advance:
        result = select.run(config, SelectLayout(workspace, args.out), on_progress=lambda _step, _path: advance())
    for path, why in result.skipped:
        warn(f"skipped {path}: {why}")
    print(f"{len(result.members)} sim-group members scored; {len(result.skipped)} skipped")
    for name, picks in result.groups.items():
        scores = [p.member.score for p in picks]
        line = f"{name}: {len(picks)} images, sim-score mean {sum(scores) / len(scores):.4f}, worst {max(scores):.4f}"
        yaws = [p.yaw for p in picks if p.yaw is not None]
        if yaws:
            line += f", yaw {min(yaws):+.0f}..{max(yaws):+.0f} degrees"
        print(line)
    return 0
