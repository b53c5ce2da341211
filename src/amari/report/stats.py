"""The report's numbers, computed from `results.csv` alone (plus the training metrics and the mining
archive for their charts), so every figure can be checked against the CSV.

A study's columns are units: a training group with a method (`a_312` for Textual Inversion, `lora/a_312`,
`pivotal/a_312`) and the control group. Every mean comes with its bootstrap 95% interval; pairs of units
are compared with permutation tests (`amari.report.inference` says exactly how).
"""

from __future__ import annotations

import csv
import os
import re
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

from amari.errors import UsageError
from amari.report.inference import bootstrap_interval, compare, procedures, rank_correlation
from amari.storage.results import DEFAULT_METHOD, CellResult, ResultsManifest, unit_name

METRICS = {"sim_score": "sim-score", "arcface_similarity": "ArcFace similarity"}


@dataclass(frozen=True)
class CellStats:
    """Aggregates of a set of cells (one prompt and group, one group, or one prompt)."""

    images: int
    not_found: int  # HOG found no face
    cnn_checked: int  # of those, how many the CNN second pass looked at
    cnn_found: int  # of those, how many it found a face in
    scored: int  # images with a sim-score
    mean_sim: float | None
    min_sim: float | None
    max_sim: float | None
    within_tolerance: int  # sim-score ≤ tolerance
    arcface_scored: int
    mean_arcface: float | None
    sim_ci: tuple[float, float] | None = None  # bootstrap 95% interval of mean_sim
    arcface_ci: tuple[float, float] | None = None


def cell_stats(cells: list[CellResult], tolerance: float) -> CellStats:
    scores = [c.sim_score for c in cells if c.sim_score is not None]
    missed = [c for c in cells if not c.face_found]
    checked = [c for c in missed if c.cnn_faces is not None]
    arcface = [c.arcface_similarity for c in cells if c.arcface_similarity is not None]
    return CellStats(
        images=len(cells),
        not_found=len(missed),
        cnn_checked=len(checked),
        cnn_found=sum(1 for c in checked if c.cnn_faces > 0),
        scored=len(scores),
        mean_sim=statistics.fmean(scores) if scores else None,
        min_sim=min(scores) if scores else None,
        max_sim=max(scores) if scores else None,
        within_tolerance=sum(1 for s in scores if s <= tolerance),
        arcface_scored=len(arcface),
        mean_arcface=statistics.fmean(arcface) if arcface else None,
        sim_ci=bootstrap_interval(scores),
        arcface_ci=bootstrap_interval(arcface),
    )


@dataclass
class Summary:
    prompts: list[str]
    commands: list[str]
    groups: list[str]  # the units, in the grid's order, the control group last
    tolerance: float
    by_prompt_group: dict[tuple[str, str], CellStats] = field(default_factory=dict)
    by_prompt: dict[str, CellStats] = field(default_factory=dict)
    by_group: dict[str, CellStats] = field(default_factory=dict)
    total: CellStats | None = None
    methods: list[str] = field(default_factory=lambda: [DEFAULT_METHOD])
    control: str | None = None
    comparisons: list[dict] = field(default_factory=list)  # permutation tests between pairs of units
    dose_response: list[dict] = field(default_factory=list)  # mean sim-score per method and group size
    rank_correlation: dict = field(default_factory=dict)  # "all" and per method, when ArcFace scored

    @property
    def has_arcface(self) -> bool:
        return bool(self.total and self.total.arcface_scored)

    @property
    def has_cnn(self) -> bool:
        return bool(self.total and self.total.cnn_checked)

    def to_json(self) -> dict:
        return {
            "prompts": self.prompts,
            "commands": self.commands,
            "groups": self.groups,
            "tolerance": self.tolerance,
            "total": asdict(self.total) if self.total else None,
            "by_group": {g: asdict(s) for g, s in self.by_group.items()},
            "by_prompt": {p: asdict(s) for p, s in self.by_prompt.items()},
            "by_prompt_group": [{"prompt": p, "group": g, **asdict(s)} for (p, g), s in self.by_prompt_group.items()],
            "methods": self.methods,
            "statistics": procedures(),
            "comparisons": self.comparisons,
            "dose_response": self.dose_response,
            "rank_correlation": self.rank_correlation or None,
        }


def _ordered(values) -> list:
    return list(dict.fromkeys(values))


def _manifest_units(manifest: ResultsManifest) -> list[str]:
    trained = [g for g in manifest.groups if g != manifest.control]
    units = [unit_name(m, g) for m in manifest.methods for g in trained]
    return units + [g for g in manifest.groups if g == manifest.control]


def summarise(cells: list[CellResult], manifest: ResultsManifest | None = None, tests: bool = True) -> Summary:
    """Every aggregate the report shows, in the study's order (the manifest's, else the CSV's); with
    `tests`, also the comparisons, the dose-response points and the rank correlation."""
    by_index = sorted(cells, key=lambda c: c.prompt_index)
    prompts = _ordered(c.prompt for c in by_index)
    commands = _ordered(c.command for c in cells)
    groups = _ordered(c.unit for c in cells)
    methods = _ordered(c.method for c in cells if c.method)
    if manifest is not None:
        prompts = [p for p in manifest.prompts if p in prompts] + [p for p in prompts if p not in manifest.prompts]
        names = [n for n, _ in manifest.commands]
        commands = [c for c in names if c in commands] + [c for c in commands if c not in names]
        order = _manifest_units(manifest)
        groups = [g for g in order if g in groups] + [g for g in groups if g not in order]
        methods = [m for m in manifest.methods if m in methods] + [m for m in methods if m not in manifest.methods]
    tolerance = manifest.tolerance if manifest is not None else 0.40
    control = manifest.control if manifest is not None else "ctrl"
    summary = Summary(
        prompts=prompts,
        commands=commands,
        groups=groups,
        tolerance=tolerance,
        methods=methods or [DEFAULT_METHOD],
        control=control,
    )
    for prompt in prompts:
        for group in groups:
            subset = [c for c in cells if c.prompt == prompt and c.unit == group]
            summary.by_prompt_group[(prompt, group)] = cell_stats(subset, tolerance)
        summary.by_prompt[prompt] = cell_stats([c for c in cells if c.prompt == prompt], tolerance)
    for group in groups:
        summary.by_group[group] = cell_stats([c for c in cells if c.unit == group], tolerance)
    summary.total = cell_stats(cells, tolerance)
    if tests:
        summary.comparisons = comparisons(cells, summary)
        summary.dose_response = dose_response(cells, summary, dict(manifest.group_sizes) if manifest else {})
        summary.rank_correlation = correlations(cells, summary)
    return summary


def method_cells(cells: list[CellResult], method: str, control: str | None) -> list[CellResult]:
    """A method's cells and the control group's: what one method's charts and tables show."""
    return [c for c in cells if c.method == method or (control is not None and c.group == control)]


def _scores(cells: list[CellResult], metric: str) -> list[float]:
    return [getattr(c, metric) for c in cells if getattr(c, metric) is not None]


def comparisons(cells: list[CellResult], summary: Summary) -> list[dict]:
    """Permutation tests of each metric's mean between every pair of a method's units (its groups and the
    control group), and between every pair of methods on the same group."""
    metrics = ["sim_score"] + (["arcface_similarity"] if summary.has_arcface else [])
    by_unit = {unit: [c for c in cells if c.unit == unit] for unit in summary.groups}
    pairs = []
    for method in summary.methods:
        units = [u for u in summary.groups if _method_of(u, by_unit) in (method, "")]
        pairs += [("groups", a, b) for i, a in enumerate(units) for b in units[i + 1 :]]
    trained = _ordered(c.group for c in cells if c.group != summary.control)
    for group in trained:
        units = [unit_name(m, group) for m in summary.methods if unit_name(m, group) in by_unit]
        pairs += [("methods", a, b) for i, a in enumerate(units) for b in units[i + 1 :]]
    found = []
    for metric in metrics:
        for kind, a, b in pairs:
            result = compare(a, _scores(by_unit[a], metric), b, _scores(by_unit[b], metric))
            if result is not None:
                found.append({"metric": metric, "kind": kind, **result.as_dict()})
    return found


def _method_of(unit: str, by_unit: dict[str, list[CellResult]]) -> str:
    cells = by_unit.get(unit) or []
    return cells[0].method if cells else ""


def group_size(group: str, sizes: dict[str, int]) -> int | None:
    """A group's number of training images: the manifest's count, else the number its name ends with."""
    if group in sizes:
        return int(sizes[group])
    match = re.search(r"(\d+)$", group)
    return int(match.group(1)) if match else None


def dose_response(cells: list[CellResult], summary: Summary, sizes: dict[str, int]) -> list[dict]:
    """Mean sim-score (over every prompt) with its interval, per method and group, at the group's size."""
    points = []
    for unit in summary.groups:
        unit_cells = [c for c in cells if c.unit == unit]
        if not unit_cells:
            continue
        first = unit_cells[0]
        stats = summary.by_group[unit]
        points.append(
            {
                "method": first.method,
                "group": first.group,
                "size": None if first.group == summary.control else group_size(first.group, sizes),
                "scored": stats.scored,
                "mean_sim": stats.mean_sim,
                "sim_ci": stats.sim_ci,
            }
        )
    return points


def correlations(cells: list[CellResult], summary: Summary) -> dict:
    """Spearman's ρ between the sim-score and the ArcFace similarity, over all images and per method."""
    if not summary.has_arcface:
        return {}
    found = {"all": rank_correlation((c.sim_score, c.arcface_similarity) for c in cells)}
    for method in summary.methods:
        found[method] = rank_correlation((c.sim_score, c.arcface_similarity) for c in cells if c.method == method)
    return found


# -- other inputs -----------------------------------------------------------------------------------


def _pick_column(header: list[str], candidates: tuple[str, ...]) -> str | None:
    lowered = {h.strip().lower().replace(" ", "_").replace("-", "_"): h for h in header}
    for name in candidates:
        if name in lowered:
            return lowered[name]
    return None


def _numeric_columns(path: Path, wanted: dict[str, tuple[str, ...]]) -> dict[str, list[float]]:
    """Named numeric series from a CSV, each column found by its first matching candidate name."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        columns = {key: _pick_column(header, names) for key, names in wanted.items()}
        lost = [key for key, column in columns.items() if column is None]
        if lost:
            raise UsageError(f"{path}: no column for {', '.join(lost)} (columns: {', '.join(header)})")
        series: dict[str, list[float]] = {key: [] for key in wanted}
        for row in reader:
            try:
                values = {key: float(row[column]) for key, column in columns.items()}
            except (TypeError, ValueError):
                continue  # a half-written last line of a running job
            for key, value in values.items():
                series[key].append(value)
    return series


def read_training_metrics(path: str | os.PathLike) -> tuple[list[float], list[float]]:
    """(global steps, epochs) from a training metrics CSV."""
    series = _numeric_columns(Path(path), {"step": ("global_step", "step"), "epoch": ("epoch", "epochs")})
    return series["step"], series["epoch"]


def read_mining_archive(path: str | os.PathLike) -> dict[str, list[float]]:
    """Per batch: number, group size, group average and upper bound, from the miner's archive CSV."""
    return _numeric_columns(
        Path(path),
        {
            "batch": ("batch", "batch_number", "batch_no"),
            "size": ("group_size", "sim_group_size", "sim_group", "group", "size"),
            "avg": ("avg", "average", "group_avg", "group_average"),
            "hi": ("hi", "upper_bound", "upper", "bound"),
        },
    )
