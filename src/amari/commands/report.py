"""amari report RESULTS_DIR: charts and a self-contained HTML report of an evaluated study."""

from __future__ import annotations

HELP = "charts (PNG) and a self-contained HTML report of an evaluated study"
DESCRIPTION = """\
Reads RESULTS_DIR/results.csv (and manifest.json, which says where the training metrics and the mining
archive are) and writes into RESULTS_DIR/report/ (or --out):

  faces_not_found_per_prompt.png   average_sim_score_per_prompt.png   group_sim_scores.png
  epochs_at_global_step.png        mining_curve.png                   (arcface_similarity_per_prompt.png)
  summary.json                     every number of the report
  index.html                       one file with the charts, tables and image grids embedded"""


def add_arguments(parser) -> None:
    parser.add_argument("results", metavar="RESULTS_DIR", help="folder written by `amari evaluate`")
    parser.add_argument("--out", metavar="DIR", help="where the report goes (default: RESULTS_DIR/report)")
    parser.add_argument("--thumbnail", type=int, default=256, metavar="PX",
                        help="side of the grid images embedded in the page (default 256)")
    parser.add_argument("--metrics", action="append", default=[], metavar="GROUP=CSV",
                        help="a group's training metrics CSV, instead of the manifest's (repeatable)")
    parser.add_argument("--archive", metavar="CSV", help="the miner's archive.csv, instead of the manifest's")


def parse_metrics(items: list[str]) -> tuple:
    from pathlib import Path

    from amari.errors import UsageError

    pairs = []
    for item in items:
        group, sep, path = item.partition("=")
        if not sep or not group or not path:
            raise UsageError(f"--metrics {item!r} is not GROUP=CSV")
        if not Path(path).is_file():
            raise UsageError(f"--metrics {group}: file not found: {path}")
        pairs.append((group, Path(path)))
    return tuple(pairs)


def run(args) -> int:
    from pathlib import Path

    from amari.errors import UsageError
    from amari.study.report import ReportOptions, build_report

    if args.archive and not Path(args.archive).is_file():
        raise UsageError(f"--archive: file not found: {args.archive}")
    options = ReportOptions(out=Path(args.out) if args.out else None, thumbnail=args.thumbnail,
                            training_metrics=parse_metrics(args.metrics),
                            mining_archive=Path(args.archive) if args.archive else None)
    result = build_report(args.results, options)
    total = result.summary.total
    print(f"report of {total.images} images ({total.not_found} with no face found): {result.html}")
    return 0
