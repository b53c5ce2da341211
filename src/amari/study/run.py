"""`amari study`: every stage of a study in order, each skipped when its outputs are already complete.

A stage that finishes writes a marker, `OUT/.steps/STAGE.json` (per group `STAGE-GROUP.json`, per method and
group `STAGE-METHOD-GROUP.json` for a method other than Textual Inversion), holding
its fingerprint: its own config's and every earlier stage's (`amari.study.stages`). On the next run a
stage whose marker matches is skipped; one without a matching marker runs again, and the markers after
it are removed first, so a stage never counts as done on top of inputs that changed. Each stage is also
resumable on its own (the miner, training and evaluation pick up mid-way), so an interruption costs
little.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from amari.errors import UsageError
from amari.provenance.registries import create_registry
from amari.storage.files import remove_stale_temporaries, write_atomic
from amari.study.config import StudyConfig
from amari.study.stages import STAGES, STEPS, Log, report_path, stage_fingerprints, stage_units


@dataclass
class StudyOutcome:
    steps: dict[str, str] = field(default_factory=dict)  # stage -> "ran" | "skipped"
    report: Path | None = None


class Markers:
    def __init__(self, folder: Path):
        self.folder = folder

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.json"

    def done(self, name: str, fingerprint: str) -> bool:
        try:
            data = json.loads(self.path(name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(data, dict) and data.get("fingerprint") == fingerprint

    def mark(self, name: str, fingerprint: str, summary: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        record = {"fingerprint": fingerprint, "finished_at": time.time(), "summary": summary}
        write_atomic(self.path(name), json.dumps(record, indent=2) + "\n")

    def clear_after(self, stage: str) -> None:
        """Forget that the stages after `stage` were done (per-group markers are `STAGE-GROUP`)."""
        later = STEPS[STEPS.index(stage) + 1 :]
        if not self.folder.is_dir():
            return
        for path in self.folder.glob("*.json"):
            if path.stem.split("-", 1)[0] in later:
                path.unlink(missing_ok=True)


def run_study(
    config: StudyConfig, until: str | None = None, redo: str | None = None, log: Log | None = None
) -> StudyOutcome:
    """mine → select → prepare → train each group (with each method) → evaluate → report, skipping completed
    stages."""
    log = log or (lambda message: None)
    for name in (until, redo):
        if name is not None and name not in STEPS:
            raise UsageError(f"unknown step {name!r}; steps are {', '.join(STEPS)}")
    layout = config.layout
    layout.root.mkdir(parents=True, exist_ok=True)
    create_registry(layout.root)  # the study's fingerprint registry, beside the cache folder's
    markers = Markers(layout.markers)
    remove_stale_temporaries(layout.markers)
    fingerprints = stage_fingerprints(config)
    outcome = StudyOutcome()
    redo_from = STEPS.index(redo) if redo else len(STEPS)
    last = STEPS.index(until) if until else len(STEPS) - 1
    for index, stage in enumerate(STAGES[: last + 1]):
        if not stage.wanted(config):
            continue
        pending = [
            (marker, unit)
            for marker, unit in stage_units(stage, config)
            if not (index < redo_from and markers.done(marker, fingerprints[stage.name]))
        ]
        if pending:
            markers.clear_after(stage.name)
        for (marker, _unit), summary in zip(pending, stage.runs(config, [unit for _, unit in pending], log)):
            markers.mark(marker, fingerprints[stage.name], summary)
        if not pending:
            log(f"{stage.name}: complete, skipped")
        outcome.steps[stage.name] = "ran" if pending else "skipped"
    if report_path(config).is_file():
        outcome.report = report_path(config)
    return outcome
