"""`amari study`: every step of a study in order, each skipped when its outputs are already complete.

A step that finishes writes a marker, `OUT/.steps/STEP.json`, holding the fingerprint of the settings
it ran with and of the steps before it. On the next run a step whose marker matches is skipped; one
without a matching marker runs again, and the markers after it are removed first, so a step never
counts as done on top of inputs that changed. Each step is also resumable on its own (the miner,
training and evaluation pick up mid-way), so an interruption costs little.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from amari.errors import UsageError
from amari.fingerprint import create_registry
from amari.study.config import StudyConfig

STEPS = ("mine", "select", "prepare", "train", "evaluate", "report")

Log = Callable[[str], None]


@dataclass
class StudyOutcome:
    steps: dict[str, str] = field(default_factory=dict)  # step -> "ran" | "skipped"
    report: Path | None = None


# -- markers ----------------------------------------------------------------------------------------

def _hash(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def step_fingerprints(config: StudyConfig) -> dict[str, str]:
    """Each step's fingerprint: its own settings and every earlier step's."""
    mine = _hash(config.fingerprint("mine"), config.study.model, str(config.layout.root))
    select = _hash(mine, config.fingerprint("select"))
    prepare = _hash(select, config.fingerprint("prepare"))
    train = _hash(prepare, config.fingerprint("train"), config.study.model)
    evaluate = _hash(train, config.fingerprint("evaluate"), config.study.subject)
    report = _hash(evaluate, config.fingerprint("report"))
    return {"mine": mine, "select": select, "prepare": prepare, "train": train, "evaluate": evaluate,
            "report": report}


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
        tmp = self.path(name).with_suffix(".tmp")
        tmp.write_text(json.dumps({"fingerprint": fingerprint, "finished_at": time.time(), "summary": summary},
                                  indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.path(name))

    def clear_after(self, step: str) -> None:
        """Forget that the steps after `step` were done (per-group markers are `STEP-GROUP`)."""
        later = STEPS[STEPS.index(step) + 1:]
        if not self.folder.is_dir():
            return
        for path in self.folder.glob("*.json"):
            if path.stem.split("-", 1)[0] in later:
                path.unlink(missing_ok=True)


# -- the steps --------------------------------------------------------------------------------------

def mine_config(config: StudyConfig):
    """The miner's settings for the study: its [mine] table on the study's model and device."""
    from amari.mine.policy import PolicyConfig
    from amari.mine.run import MineConfig
    from amari.mine.source import SourceOptions

    settings = config.mine
    extra = {"scheduler": settings.sampler, "steps": settings.steps, "guidance": settings.guidance,
             "width": settings.width, "height": settings.height, "batch_size": settings.images_per_call,
             "device": config.study.device, "enhance": settings.enhance}
    if settings.enhance:
        extra.update(upscaler=settings.upscaler, face_restorer=settings.face_restorer, scale=settings.scale)
    if config.study.model_config:
        extra["model_config"] = config.study.model_config
    options = SourceOptions(prompt=settings.prompt, negative_prompt=settings.negative_prompt,
                            model=config.study.model, preset="study", seed=settings.seed, extra=extra)
    try:
        policy = PolicyConfig(almost_band=settings.almost_band, target=settings.target,
                              stop_average=settings.tolerance)
    except ValueError as exc:
        raise UsageError(f"[mine] {exc}") from None
    return MineConfig(source=settings.source, source_options=options, references=settings.reference,
                      policy=policy, max_batches=settings.max_batches, cpus=settings.cpus)


def run_mine(config: StudyConfig, log: Log) -> str:
    from amari.mine.progress import MiningProgress
    from amari.mine.run import mine

    with MiningProgress(enabled=True) as progress:  # shows only on an interactive stderr
        result = mine(config.layout.workspace, mine_config(config), progress)
    log(f"mine: {result.summary()}")
    return result.summary()


def run_select(config: StudyConfig, log: Log) -> str:
    from amari.select import GroupSpec, SelectConfig, select

    groups = tuple(GroupSpec(g.name, g.images) for g in config.select.groups)
    result = select(config.layout.workspace, config.layout.selected,
                    SelectConfig(groups=groups, by=config.select.by, tolerance=config.mine.tolerance, force=True))
    summary = ", ".join(f"{name} {len(picks)}" for name, picks in result.groups.items())
    log(f"select: {summary}")
    return summary


def run_prepare(config: StudyConfig, group: str, log: Log) -> str:
    from amari.prepare import PrepareConfig, prepare

    destination = config.layout.prepared(group)
    if destination.exists():
        shutil.rmtree(destination)  # an interrupted run's partial output; the seed makes it again exactly
    settings = config.prepare
    result = prepare(config.layout.selected / group, destination,
                     PrepareConfig(size=settings.size, seed=settings.seed, crop=settings.crop))
    if not result.prepared:
        raise UsageError(f"prepare: no readable image in group {group}")
    log(f"prepare: {group}: {len(result.prepared)} images")
    return f"{len(result.prepared)} images"


def run_train(config: StudyConfig, group: str, log: Log) -> str:
    import dataclasses

    from amari.study.evaluate import sim_group_folder
    from amari.train import TrainConfig, train

    values = {f.name: getattr(config.train, f.name) for f in dataclasses.fields(config.train)}
    train_config = TrainConfig(data_dir=config.layout.prepared(group), out_dir=config.layout.trained(group),
                               model=config.study.model, reference_group=sim_group_folder(config), **values)
    result = train(train_config, log=lambda message: log(f"train {group}: {message}"))
    return f"step {result.step}"


def run_evaluate(config: StudyConfig, log: Log) -> str:
    from amari.progress import progress_bar
    from amari.study.evaluate import evaluate, plan_cells

    with progress_bar(len(plan_cells(config)), "evaluating") as advance:
        result = evaluate(config, on_progress=lambda what, _cell: advance() if what != "generate" else None)
    summary = (f"{len(result.cells)} cells: {result.generated} generated, {result.scored} scored, "
               f"{result.kept} kept")
    log(f"evaluate: {summary}")
    return summary


def run_report(config: StudyConfig, log: Log) -> tuple[str, Path]:
    from amari.study.report import ReportOptions, build_report

    result = build_report(config.layout.results, ReportOptions(thumbnail=config.report.thumbnail))
    log(f"report: {result.html}")
    return str(result.html), result.html


# -- the study --------------------------------------------------------------------------------------

def run_study(config: StudyConfig, until: str | None = None, redo: str | None = None,
              log: Log | None = None) -> StudyOutcome:
    """mine → select → prepare → train each group → evaluate → report, skipping completed steps."""
    log = log or (lambda message: None)
    for name in (until, redo):
        if name is not None and name not in STEPS:
            raise UsageError(f"unknown step {name!r}; steps are {', '.join(STEPS)}")
    layout = config.layout
    layout.root.mkdir(parents=True, exist_ok=True)
    create_registry(layout.root)  # the study's fingerprint registry, beside the cache folder's
    markers = Markers(layout.markers)
    fingerprints = step_fingerprints(config)
    outcome = StudyOutcome()
    redo_from = STEPS.index(redo) if redo else len(STEPS)
    last = STEPS.index(until) if until else len(STEPS) - 1
    for index, step in enumerate(STEPS[:last + 1]):
        units = [f"train-{g.name}" for g in config.select.groups] if step == "train" else \
            [f"prepare-{g.name}" for g in config.select.groups] if step == "prepare" else [step]
        ran = False
        for unit in units:
            if index < redo_from and markers.done(unit, fingerprints[step]):
                continue
            markers.clear_after(step)
            summary, report = _run_unit(config, step, unit, log)
            markers.mark(unit, fingerprints[step], summary)
            outcome.report = report or outcome.report
            ran = True
        if not ran:
            log(f"{step}: complete, skipped")
        outcome.steps[step] = "ran" if ran else "skipped"
    if outcome.report is None and (layout.report / "index.html").is_file():
        outcome.report = layout.report / "index.html"
    return outcome


def _run_unit(config: StudyConfig, step: str, unit: str, log: Log) -> tuple[str, Path | None]:
    group = unit.split("-", 1)[1] if "-" in unit else None
    if step == "mine":
        return run_mine(config, log), None
    if step == "select":
        return run_select(config, log), None
    if step == "prepare":
        return run_prepare(config, group, log), None
    if step == "train":
        return run_train(config, group, log), None
    if step == "evaluate":
        return run_evaluate(config, log), None
    summary, html = run_report(config, log)
    return summary, html
