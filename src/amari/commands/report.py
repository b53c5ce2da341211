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
    from amari.config.options import add_options
    from amari.report import ReportConfig

    parser.add_argument("results", metavar="RESULTS_DIR", help="folder written by `amari evaluate`")
    add_options(parser, ReportConfig)


def run(args) -> int:
    from amari import report
    from amari.config.options import from_args
    from amari.storage.layout import ResultsLayout

    result = report.run(from_args(report.ReportConfig, args), ResultsLayout(args.results))
    total = result.summary.total
    print(f"report of {total.images} images ({total.not_found} with no face found): {result.html}")
    return 0
