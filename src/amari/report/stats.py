"""The report's numbers, computed from `results.csv` alone (plus the training metrics and the mining
archive for their charts), so every figure can be checked against the CSV."""

from __future__ import annotations

import csv
import os
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

from amari.errors import UsageError
from amari.results import CellResult, ResultsManifest


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
    )


@dataclass
class Summary:
    prompts: list[str]
    commands: list[str]
    groups: list[str]
    tolerance: float
    by_prompt_group: dict[tuple[str, str], CellStats] = field(default_factory=dict)
    by_prompt: dict[str, CellStats] = field(default_factory=dict)
    by_group: dict[str, CellStats] = field(default_factory=dict)
    total: CellStats | None = None

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
        }


def _ordered(values) -> list:
    return list(dict.fromkeys(values))


def summarise(cells: list[CellResult], manifest: ResultsManifest | None = None) -> Summary:
    """Every aggregate the report shows, in the study's order (the manifest's, else the CSV's)."""
    by_index = sorted(cells, key=lambda c: c.prompt_index)
    prompts = _ordered(c.prompt for c in by_index)
    commands = _ordered(c.command for c in cells)
    groups = _ordered(c.group for c in cells)
    if manifest is not None:
        prompts = [p for p in manifest.prompts if p in prompts] + [p for p in prompts if p not in manifest.prompts]
        names = [n for n, _ in manifest.commands]
        commands = [c for c in names if c in commands] + [c for c in commands if c not in names]
        groups = [g for g in manifest.groups if g in groups] + [g for g in groups if g not in manifest.groups]
    tolerance = manifest.tolerance if manifest is not None else 0.40
    summary = Summary(prompts=prompts, commands=commands, groups=groups, tolerance=tolerance)
    for prompt in prompts:
        for group in groups:
            subset = [c for c in cells if c.prompt == prompt and c.group == group]
            summary.by_prompt_group[(prompt, group)] = cell_stats(subset, tolerance)
        summary.by_prompt[prompt] = cell_stats([c for c in cells if c.prompt == prompt], tolerance)
    for group in groups:
        summary.by_group[group] = cell_stats([c for c in cells if c.group == group], tolerance)
    summary.total = cell_stats(cells, tolerance)
    return summary


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
