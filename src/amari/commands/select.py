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
    parser.add_argument("--workspace", required=True, metavar="DIR", help="the miner's workspace folder")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder that receives one folder per group")
    parser.add_argument("--groups", required=True, metavar="NAME=COUNT,...",
                        help="groups to write, e.g. a_312=all,b_11=11,c_4=4 (COUNT: a number or 'all')")
    parser.add_argument("--by", choices=("score", "diverse"), default="score",
                        help="score: best sim-scores first (default); diverse: spread over pose and content")
    parser.add_argument("--tolerance", type=float, default=0.40,
                        help="--by diverse picks only members with a sim-score at most this (default 0.40)")
    parser.add_argument("--cpus", type=int, default=1, help="processes for face detection; -1 means all cores")
    parser.add_argument("--force", action="store_true", help="replace group folders that already exist")


def run(args) -> int:
    from amari.progress import progress_bar, warn
    from amari.select import SelectConfig, parse_groups, select

    config = SelectConfig(groups=parse_groups(args.groups), by=args.by, tolerance=args.tolerance,
                          cpus=args.cpus, force=args.force)
    with progress_bar(None, "scoring the sim-group") as advance:
        result = select(args.workspace, args.out, config, on_progress=lambda _step, _path: advance())
    for path, why in result.skipped:
        warn(f"skipped {path}: {why}")
    print(f"{len(result.members)} sim-group members scored; {len(result.skipped)} skipped")
    for name, picks in result.groups.items():
        scores = [p.member.score for p in picks]
        line = (f"{name}: {len(picks)} images, sim-score mean {sum(scores) / len(scores):.4f}, "
                f"worst {max(scores):.4f}")
        yaws = [p.yaw for p in picks if p.yaw is not None]
        if yaws:
            line += f", yaw {min(yaws):+.0f}..{max(yaws):+.0f} degrees"
        print(line)
    return 0
