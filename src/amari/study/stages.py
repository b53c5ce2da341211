"""How each stage runs inside a study: its config from the study's, its layout, and its fingerprint.

The study runner (`amari.study.run`) is a loop over `STAGES`. A stage's fingerprint is its own config's
plus every earlier stage's, so a change anywhere makes that stage and the ones after it run again.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from amari.config.settings import fingerprint
from amari.errors import UsageError
from amari.storage.layout import DEFAULT_METHOD
from amari.study.config import StudyConfig

Log = Callable[[str], None]


def mining_source(config):
    """The source a MineConfig names: a folder another tool writes into, or Stable Diffusion."""
    if config.folder is not None:
        from amari.mine import FolderSource

        return FolderSource(config.folder, watch=config.watch, poll_interval=config.poll)
    from amari.generate import DiffusersSource

    return DiffusersSource(
        config.prompt,
        config.generate_config(),
        config.enhance_config(),
        seed=config.seed,
        preset=config.preset,
        batch_by_memory=config.images_per_call is None,
    )


@dataclass(frozen=True)
class Stage:
    name: str
    per_group: bool  # one unit of work (and one marker) per training group
    run: Callable  # (study config, unit or None, log) -> summary line
    per_method: bool = False  # ... and per training method: the unit is (method, group)
    wanted: Callable[[StudyConfig], bool] = lambda _config: True  # a study without it leaves it out
    # (study config, units, log) -> each unit's summary line in order, as each is done: for a stage whose
    # units are cheaper together (training's groups); without it, `run` takes the units one by one.
    run_many: Callable | None = None

    def runs(self, config, units: list, log: Log) -> Iterator[str]:
        if self.run_many is not None:
            return self.run_many(config, units, log)
        return (self.run(config, unit, log) for unit in units)


def stage_units(stage: Stage, config: StudyConfig) -> list[tuple[str | None, object]]:
    """(marker name, unit) of each piece of work of `stage`: STAGE, STAGE-GROUP, or STAGE-METHOD-GROUP (a
    Textual Inversion group keeps the marker STAGE-GROUP it always had)."""
    groups = [g.name for g in config.select.groups]
    if not stage.per_group:
        return [(stage.name, None)]
    if not stage.per_method:
        return [(f"{stage.name}-{group}", group) for group in groups]
    return [
        (f"{stage.name}-{group}" if method == DEFAULT_METHOD else f"{stage.name}-{method}-{group}", (method, group))
        for method in config.train.study_methods()
        for group in groups
    ]


def _mine(config: StudyConfig, _group, log: Log) -> str:
    from amari import mine

    layout = config.layout.workspace
    with mine.MiningProgress(enabled=True) as progress:  # shows only on an interactive stderr
        result = mine.run(config.mine, layout, mining_source(config.mine), progress)
    log(f"mine: {result.summary()}")
    return result.summary()


def _audit(config: StudyConfig, _group, log: Log) -> str:
    """The leakage audit of every mined identity, when the study names a gallery; a flag stops the study
    here, before anything is trained on a real person's face, unless [audit] stop = false."""
    from amari import audit
    from amari.errors import LeakageFound
    from amari.storage.layout import WorkspaceLayout

    workspace = WorkspaceLayout(config.layout.workspace.root)  # every identity, not only the one studied
    result = audit.run(config.audit, workspace, config.layout.audit)
    log(f"audit: {result.summary()}")
    if result.flagged and config.audit.stop:
        raise LeakageFound(f"the audit raised a flag ({config.layout.audit.html}); set [audit] stop = false to go on")
    return result.summary().splitlines()[0]


def refine_rounds(config: StudyConfig, log: Log, progress=None):
    """The refinement loop over the study's workspace, with its [mine], [train] and [prepare] settings."""
    from amari import refine

    return refine.run(
        config.refine, config.layout.refine, config.mine, config.train, config.prepare, progress=progress, log=log
    )


def _refine(config: StudyConfig, _group, log: Log) -> str:
    from amari import mine

    with mine.MiningProgress(enabled=True) as progress:
        result = refine_rounds(config, log, progress)
    log(f"refine: {result.table()}")
    return f"{len(result.rounds)} rounds, {result.stopped}"


def _select(config: StudyConfig, _group, log: Log) -> str:
    from amari import select
    from amari.storage.layout import SelectLayout

    result = select.run(config.select, SelectLayout(config.layout.workspace, config.layout.groups))
    summary = ", ".join(f"{name} {len(picks)}" for name, picks in result.groups.items())
    log(f"select: {summary}")
    return summary


def _prepare(config: StudyConfig, group: str, log: Log) -> str:
    from amari import prepare
    from amari.storage.layout import PrepareLayout

    destination = config.layout.prepared(group)
    if destination.exists():
        shutil.rmtree(destination)  # an interrupted run's partial output; the seed makes it again exactly
    result = prepare.run(config.prepare, PrepareLayout(config.layout.group(group), destination))
    if not result.prepared:
        raise UsageError(f"prepare: no readable image in group {group}")
    log(f"prepare: {group}: {len(result.prepared)} images")
    return f"{len(result.prepared)} images"


def _train(config: StudyConfig, unit: tuple[str, str], log: Log) -> str:
    from amari import train

    method, group = unit
    name = group if method == DEFAULT_METHOD else f"{method} {group}"
    settings = config.train.replace(method=method, methods=None)
    # The study's own folder: a run with other settings (a new seed, schedule, ...) is trained anew.
    result = train.run(
        settings,
        config.layout.train(group, method),
        log=lambda message: log(f"train {name}: {message}"),
        start_over=True,
    )
    return f"step {result.step}"


def _train_units(config: StudyConfig, units: list[tuple[str, str]], log: Log) -> Iterator[str]:
    """Each (method, group)'s training, in order: every Textual Inversion group in one run (the model
    loads once, and each step is one batch of every group's samples), the other methods one at a time."""
    from amari import train

    together = [group for method, group in units if method == DEFAULT_METHOD]
    results: dict = {}
    for method, group in units:
        if method != DEFAULT_METHOD or len(together) < 2:
            yield _train(config, (method, group), log)
            continue
        if not results:
            settings = config.train.replace(method=DEFAULT_METHOD, methods=None)
            groups = [train.Group(name, settings, config.layout.train(name)) for name in together]
            results = train.run_groups(groups, log=lambda message: log(f"train {message}"), start_over=True)
        yield f"step {results[group].step}"


def _evaluate(config: StudyConfig, _group, log: Log) -> str:
    from amari import evaluate
    from amari.models.licences import licence_note
    from amari.progress import progress_bar

    note = licence_note(config.evaluate.model, config.evaluate.biometric_licence)
    if note:
        log(f"evaluate: {note}")
    with progress_bar(len(evaluate.plan_cells(config.evaluate)), "evaluating") as advance:
        result = evaluate.run(
            config.evaluate, config.layout, on_progress=lambda what, _cell: advance() if what != "generate" else None
        )
    summary = f"{len(result.cells)} cells: {result.generated} generated, {result.scored} scored, {result.kept} kept"
    log(f"evaluate: {summary}")
    return summary


def _report(config: StudyConfig, _group, log: Log) -> str:
    from amari import report

    result = report.run(config.report, config.layout.results)
    log(f"report: {result.html}")
    # The marker keeps the page relative to the study: what amari writes names no local folder.
    return Path(os.path.relpath(result.html, config.layout.root)).as_posix()


STAGES = (
    Stage("mine", False, _mine),
    Stage("audit", False, _audit, wanted=lambda config: config.audit.gallery is not None),
    Stage("refine", False, _refine, wanted=lambda config: config.refine.rounds > 0),
    Stage("select", False, _select),
    Stage("prepare", True, _prepare),
    Stage("train", True, _train, per_method=True, run_many=_train_units),
    Stage("evaluate", False, _evaluate),
    Stage("report", False, _report),
)
STEPS = tuple(stage.name for stage in STAGES)


def stage_fingerprints(config: StudyConfig) -> dict[str, str]:
    """Each stage's fingerprint: its own config's, chained to every earlier stage's. The miner's also
    holds where it mines, since a workspace belongs to one place."""
    fingerprints, previous = {}, str(config.layout.root)
    for stage in STAGES:
        if stage.name != "refine" or stage.wanted(config):  # a study without rounds keeps the chain it had
            previous = fingerprint(previous, getattr(config, stage.name))
        fingerprints[stage.name] = previous
    return fingerprints


def report_path(config: StudyConfig) -> Path:
    from amari.storage.layout import REPORT_HTML

    return config.layout.results.report / REPORT_HTML
