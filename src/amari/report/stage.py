"""`amari report RESULTS_DIR`: the study's charts (PNG), summary.json and one self-contained HTML page.

Every number shown is computed from `results.csv` alone (plus the training metrics, the mining archive
and the refinement rounds the manifest points to, for their charts and table), so the report can be
checked against the CSV. Each training method gets the seed's charts and tables over its groups and the
control group; one chart puts every method's mean sim-score against the groups' sizes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from amari.errors import UsageError
from amari.report.charts import (
    ARCFACE_CHART,
    CHARTS,
    REFINEMENT_CHART,
    chart_arcface,
    chart_dose_response,
    chart_epochs,
    chart_faces_not_found,
    chart_group_scores,
    chart_mining,
    chart_refinement,
    chart_sim_per_prompt,
)
from amari.report.config import ReportConfig
from amari.report.html import Section, audit_html, render_html
from amari.report.stats import Summary, method_cells, read_mining_archive, read_training_metrics, summarise
from amari.report.tables import comparisons_html, correlation_html, refinement_html, tables_html
from amari.storage.files import claim_folder, remove_stale_temporaries, write_atomic
from amari.storage.layout import REPORT_HTML, REPORT_SUMMARY, ResultsLayout
from amari.storage.results import DEFAULT_METHOD, read_manifest, read_results
from amari.storage.rounds import read_rounds


def _earlier_report(folder: Path) -> bool:
    """A report folder written before amari marked its folders."""
    page = folder / REPORT_HTML
    return page.is_file() and "amari study report" in page.read_text(encoding="utf-8", errors="replace")[:4000]


@dataclass
class ReportResult:
    html: Path
    charts: dict[str, Path]
    summary: Summary
    summary_json: Path


def _existing(path: str | Path | None, base: Path) -> Path | None:
    if not path:
        return None
    path = Path(path)
    path = path if path.is_absolute() else base / path
    return path if path.is_file() else None


def run(config: ReportConfig, layout: ResultsLayout) -> ReportResult:
    """Charts, summary.json and index.html for a results folder."""
    results_dir = layout.root
    options = config
    # 1. Read the results and what the manifest says about the study around them.
    if not results_dir.is_dir():
        raise UsageError(f"results folder not found: {results_dir}")
    cells = read_results(layout.csv)
    if not cells:
        raise UsageError(f"{layout.csv} has no rows yet: nothing to report")
    manifest = read_manifest(results_dir)
    report_dir = Path(options.out) if options.out else layout.report
    claim_folder(report_dir, "a report", ours=_earlier_report)
    remove_stale_temporaries(report_dir)  # a killed run's half-written files
    # 2. The numbers.
    summary = summarise(cells, manifest)
    summary_json = write_atomic(
        report_dir / REPORT_SUMMARY, json.dumps(summary.to_json(), indent=2, ensure_ascii=False) + "\n"
    )
    # 3. Training metrics (per unit) and the mining archive, where they can be found.
    metric_paths = dict(options.training_metrics) or dict(manifest.training_metrics if manifest else ())
    metrics = {}
    for unit, path in metric_paths.items():
        found = _existing(path, results_dir)
        if found is not None:
            metrics[unit] = read_training_metrics(found)
    archive_path = options.mining_archive or _existing(manifest.mining_archive if manifest else None, results_dir)
    archive = read_mining_archive(archive_path) if archive_path and Path(archive_path).is_file() else None
    rounds_path = _existing(manifest.refine_rounds if manifest else None, results_dir)
    rounds = read_rounds(rounds_path) if rounds_path else []
    # 4. Each method's charts, tables and grids; then the methods side by side; then the page.
    charts: dict[str, Path] = {}
    sections = [
        _method_section(method, cells, summary, manifest, metrics, report_dir, charts) for method in summary.methods
    ]
    charts["dose_response"] = chart_dose_response(summary, report_dir / CHARTS["dose_response"])
    charts["mining_curve"] = chart_mining(archive, report_dir / CHARTS["mining_curve"])
    across = comparisons_html(summary.comparisons, "methods", summary.groups, "methods-comparisons")
    across += correlation_html(summary.rank_correlation)
    if rounds:
        charts["refinement"] = chart_refinement(rounds, report_dir / REFINEMENT_CHART)
        across += refinement_html(rounds)
    page = render_html(
        summary,
        manifest,
        sections,
        ([charts[name] for name in ("dose_response", "mining_curve", "refinement") if name in charts], across),
        results_dir,
        report_dir,
        options.thumbnail,
        audit_html(options.audit, report_dir),
    )
    html_path = write_atomic(report_dir / REPORT_HTML, page)
    return ReportResult(html=html_path, charts=charts, summary=summary, summary_json=summary_json)


def _method_section(method: str, cells, summary: Summary, manifest, metrics: dict, report_dir: Path, charts) -> Section:
    """One method's charts (written into `charts`, keyed "NAME" for TI as always, else "METHOD/NAME"),
    tables and tests, over its units and the control group."""
    control = summary.control
    mine = method_cells(cells, method, control)
    part = summarise(mine, manifest, tests=False)
    key = (lambda name: name) if method == DEFAULT_METHOD else (lambda name: f"{method}/{name}")
    path = (
        (lambda file: report_dir / file) if method == DEFAULT_METHOD else (lambda file: report_dir / f"{method}-{file}")
    )
    unit_metrics = {unit: metrics[unit] for unit in part.groups if unit in metrics}
    drawn = {
        "faces_not_found": chart_faces_not_found(part, path(CHARTS["faces_not_found"]), control),
        "sim_score_per_prompt": chart_sim_per_prompt(part, path(CHARTS["sim_score_per_prompt"]), control),
        "group_sim_scores": chart_group_scores(part, mine, path(CHARTS["group_sim_scores"]), control),
        "epochs_at_step": chart_epochs(unit_metrics, part.groups, path(CHARTS["epochs_at_step"]), control),
    }
    if part.has_arcface:
        drawn["arcface"] = chart_arcface(part, path(ARCFACE_CHART), control)
    charts.update({key(name): chart for name, chart in drawn.items()})
    prefix = "" if method == DEFAULT_METHOD else f"{method}-"
    tables = tables_html(part, prefix) + comparisons_html(
        summary.comparisons, "groups", part.groups, f"{prefix}comparisons"
    )
    return Section(method=method, summary=part, cells=mine, charts=list(drawn.values()), tables=tables)
