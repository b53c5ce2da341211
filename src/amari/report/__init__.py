"""`amari report RESULTS_DIR`: the study's charts, tables and image grids.

- `config`: the report's settings; `stats`: every number, from `results.csv` (and the training metrics
  and mining archive); `inference`: bootstrap intervals, permutation tests, rank correlation; `charts`:
  the PNG charts (`chart_refinement` also for `amari refine`); `tables` and `html`: the self-contained page;
  `stage`: `run`.
"""

from amari.lazy import lazy_exports
from amari.report.config import ReportConfig

__getattr__ = lazy_exports(
    __name__,
    {
        "run": "amari.report.stage:run",
        "ReportResult": "amari.report.stage:ReportResult",
        "chart_refinement": "amari.report.charts:chart_refinement",
    },
)

__all__ = ["ReportConfig", "ReportResult", "chart_refinement", "run"]
