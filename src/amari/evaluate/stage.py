"""`amari evaluate`: the study's grid of prompt × command × (method × group) images, each scored against the
sim-group.

The run is resumable: `results.csv` is rewritten after every cell, and a cell whose image exists with
the same generation fingerprint is not generated again; only scorers it has not seen yet are run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

from amari.errors import ImageError, UsageError, WorkspaceError
from amari.evaluate.config import CONTROL, EvaluateConfig
from amari.evaluate.grid import (
    Cell,
    Scorers,
    UnitFiles,
    default_scorers,
    fresh_result,
    generate_cells,
    plan_cells,
    read_fingerprint,
)
from amari.storage.files import claim_folder, file_sha256, remove_stale_temporaries
from amari.storage.images import image_files
from amari.storage.layout import StudyLayout
from amari.storage.results import (
    DEFAULT_METHOD,
    CellResult,
    ResultsManifest,
    has_results_header,
    read_manifest,
    read_results,
    unit_name,
    write_manifest,
    write_results,
)
from amari.train import UNTRAINED_METHODS


@dataclass
class EvaluateResult:
    results_dir: Path
    cells: list[CellResult]
    generated: int = 0
    scored: int = 0
    kept: int = 0

    @property
    def csv(self) -> Path:
        from amari.storage.layout import ResultsLayout

        return ResultsLayout(self.results_dir).csv


def sim_group_folder(config: EvaluateConfig, layout: StudyLayout) -> Path:
    return config.sim_group or layout.workspace.sim_group


def embedding_path(config: EvaluateConfig, layout: StudyLayout, group: str) -> Path:
    """The group's embedding: the config's, else the final one its training wrote."""
    return config.embedding_for(group) or layout.train(group).embedding


def unit_files(config: EvaluateConfig, layout: StudyLayout, method: str, group: str) -> UnitFiles:
    """What a trained unit generates with: a TI group's embedding; a LoRA group's LoRA and its trigger words
    (from the run's lora.json); a pivotal group's embedding and LoRA. Refuses files that are not there."""
    if method in UNTRAINED_METHODS:  # conditioned on the group's training images; the subject is the init word
        images = layout.prepared(group)
        if not image_files(images, recursive=False):
            raise UsageError(f"no training images for group {group} in {images} (prepare it first)")
        return UnitFiles(trigger=config.init_word, guide=images)
    if method == DEFAULT_METHOD:
        path = embedding_path(config, layout, group)
        if not path.is_file():
            raise UsageError(
                f"no embedding for group {group}: {path} not found (train it first, "
                f'or set [evaluate.embeddings] {group} = "PATH")'
            )
        return UnitFiles(embedding=path)
    from amari.train import read_lora_record

    train = layout.train(group, method)
    needed = [train.lora, train.lora_record] + ([train.embedding] if method == "pivotal" else [])
    missing = [path for path in needed if not path.is_file()]
    if missing:
        raise UsageError(f"no {method} training for group {group}: {missing[0]} not found (train it first)")
    record = read_lora_record(train.lora_record)
    if method == "pivotal":
        return UnitFiles(embedding=train.embedding, lora=train.lora)
    return UnitFiles(lora=train.lora, trigger=record["trigger"])


def check_inputs(config: EvaluateConfig, layout: StudyLayout) -> tuple[list[Path], dict[tuple[str, str], UnitFiles]]:
    """The sim-group's images and each trained unit's files, or a clear error."""
    folder = sim_group_folder(config, layout)
    if not folder.is_dir():
        raise WorkspaceError(f"sim-group folder not found: {folder} (mine first, or set evaluate.sim_group)")
    group_images = image_files(folder)
    if not group_images:
        raise WorkspaceError(f"{folder} holds no images to score against")
    files = {
        (method, group): unit_files(config, layout, method, group)
        for method, group in config.evaluated_units
        if group != CONTROL
    }
    return group_images, files


def _units_sha(config: EvaluateConfig, files: dict[tuple[str, str], UnitFiles]) -> dict[tuple[str, str], str]:
    """Each unit's files' hash: a TI group's embedding's (what its fingerprint always held), else both joined;
    an untrained unit's, its guide images' and its adapter's settings."""
    return {
        unit: _guide_sha(config, found.guide)
        if found.guide is not None
        else "+".join(file_sha256(path) if path is not None else "" for path in (found.embedding, found.lora))
        if found.lora is not None
        else file_sha256(found.embedding)
        for unit, found in files.items()
    }


def _guide_sha(config: EvaluateConfig, folder: Path) -> str:
    from amari.config.settings import fingerprint

    images = [file_sha256(path) for path in image_files(folder, recursive=False)]
    return fingerprint(config.ip_adapter, config.ip_adapter_scale, config.image_encoder, *images)


def _previous(csv: Path) -> dict[tuple[int, str, str, str], CellResult]:
    if not csv.is_file():
        return {}
    try:
        return {cell.key: cell for cell in read_results(csv)}
    except UsageError:
        # A damaged results file loses only its scores: images are kept and scored again.
        os.replace(csv, _damaged(csv))
        return {}


def _damaged(csv: Path) -> Path:
    return csv.with_suffix(".damaged.csv")


def _earlier_results(folder: Path) -> bool:
    """A results folder written before amari marked its folders: nothing in it but what evaluate and report
    write, and a CSV with amari's header (an empty or foreign one is someone else's) that reads whole."""
    from amari.storage.layout import ResultsLayout

    layout = ResultsLayout(folder)
    written = {layout.csv.name, layout.manifest.name, layout.images.name, layout.report.name, _damaged(layout.csv).name}
    if any(not p.name.startswith(".") and p.name not in written for p in folder.iterdir()):
        return False
    if not has_results_header(layout.csv):
        return False
    try:
        read_results(layout.csv)
        read_manifest(folder)
    except UsageError:
        return False
    return True


def _relative(path: Path, start: Path) -> str:
    """Paths in the manifest are relative to the results folder: outputs name no local folder."""
    return Path(os.path.relpath(Path(path).resolve(), Path(start).resolve())).as_posix()


def build_manifest(config: EvaluateConfig, layout: StudyLayout, scorers: Scorers, group_faces: int) -> ResultsManifest:
    from amari.models.diffusion import describe
    from amari.models.families.registry import guess

    root = layout.results.root
    metrics, sizes = [], []
    for method, group in config.evaluated_units:
        if group == CONTROL or method in UNTRAINED_METHODS:
            continue
        if method == DEFAULT_METHOD and config.embedding_for(group) is not None:
            continue
        metrics.append((unit_name(method, group), _relative(layout.train(group, method).metrics, root)))
    for group in config.evaluated_groups:
        prepared = layout.prepared(group)
        if group != CONTROL and prepared.is_dir():
            sizes.append((group, len(image_files(prepared, recursive=False))))
    return ResultsManifest(
        study=config.study_name,
        subject=config.subject,
        prompts=config.prompts,
        commands=tuple((c.name, c.seed) for c in config.commands),
        groups=config.evaluated_groups,
        control=CONTROL if config.control else None,
        methods=config.methods,
        group_sizes=tuple(sizes),
        tolerance=config.tolerance,
        model=describe(config.model).name,
        family=guess(config.model).label,
        sampler=config.sampler,
        steps=config.steps,
        guidance=config.guidance,
        width=config.width,
        height=config.height,
        sim_group=_relative(sim_group_folder(config, layout), root),
        sim_group_faces=group_faces,
        scorers=tuple(scorers.names.split("+")),
        training_metrics=tuple(metrics),
        mining_archive=_relative(layout.workspace.archive, root),
        refine_rounds=_relative(layout.refine.rounds_csv, root) if layout.refine.rounds_csv.is_file() else "",
        extra={"demo": True} if config.demo else {},
    )


def run(
    config: EvaluateConfig,
    layout: StudyLayout,
    *,
    scorers: Scorers | None = None,
    on_progress: Callable[[str, Cell], None] | None = None,
) -> EvaluateResult:
    """Generate and score every missing cell of the grid; returns every cell's result.

    `on_progress(event, cell)` hears "keep" for a finished cell, "generate" before a cell's image is
    made and "score" once its row is written.
    """
    progress = on_progress or (lambda _what, _cell: None)
    results = layout.results
    # 1. Check the inputs before any model loads.
    group_images, files = check_inputs(config, layout)
    files_sha = _units_sha(config, files)
    scorers = scorers or default_scorers(config)
    claim_folder(results.root, "evaluation results", ours=_earlier_results)
    remove_stale_temporaries(results.root, recursive=True)  # a killed run's half-written files, images too
    previous = _previous(results.csv)
    # 2. Decide per cell: keep, score again, or generate.
    cells = plan_cells(config)
    done: dict[tuple[int, str, str, str], CellResult] = {}
    to_score: list[tuple[Cell, CellResult]] = []
    to_generate: list[tuple[Cell, CellResult]] = []
    for cell in cells:
        fresh = fresh_result(config, cell, files, files_sha)
        old = previous.get(cell.key)
        image = results.root / cell.image
        image_ok = image.is_file()
        if old is not None and image_ok and old.fingerprint == fresh.fingerprint and old.scorers == scorers.names:
            done[cell.key] = replace(old, image=cell.image)
            progress("keep", cell)
        elif image_ok and (old.fingerprint if old is not None else read_fingerprint(image)) == fresh.fingerprint:
            to_score.append((cell, fresh))  # made already; its row is missing or lacks a scorer
        else:
            to_generate.append((cell, fresh))
    result = EvaluateResult(results_dir=results.root, cells=[], kept=len(done))

    def finish(cell: Cell, fresh: CellResult) -> None:
        done[cell.key] = scorers.apply(fresh, results.root / cell.image)
        result.scored += 1
        write_results(results.csv, [done[c.key] for c in cells if c.key in done])
        progress("score", cell)

    def generated(cell: Cell, fresh: CellResult) -> None:
        result.generated += 1
        try:
            finish(cell, fresh)
        except ImageError as exc:
            raise WorkspaceError(f"cannot read the grid image just written, {exc.path}: {exc.reason}") from None

    # 3. Fit the scorers, score what exists, then generate the rest, saving the CSV after each cell.
    if to_score or to_generate:
        scorers.fit(group_images)
    for cell, fresh in to_score:
        try:
            finish(cell, fresh)
        except ImageError:
            to_generate.append((cell, fresh))  # damaged (a copy cut short?): make it again
    if to_generate:
        with ExitStack() as stack:
            generate_cells(
                config,
                files,
                to_generate,
                results.root,
                lambda cell: progress("generate", cell),
                generated,
                executor=_model_actors(config, stack) if config.ray is not None else None,
            )
    # 4. The complete CSV and the manifest the report reads.
    result.cells = [done[c.key] for c in cells]
    write_results(results.csv, result.cells)
    group_faces = scorers.group_faces or _previous_group_faces(results.root)
    write_manifest(results.root, build_manifest(config, layout, scorers, group_faces))
    return result


def _model_actors(config: EvaluateConfig, stack: ExitStack):
    """The grid's passes on a Ray cluster's model actors (`--ray`), gone again when the grid is done."""
    from amari.execution.cluster import Cluster, ModelPool

    pool = ModelPool(stack.enter_context(Cluster(config.ray)), config.ray_actors, config.device)
    stack.callback(pool.shutdown)
    pool.wait_placed()
    return pool


def _previous_group_faces(results_dir: Path) -> int:
    try:
        manifest = read_manifest(results_dir)
    except UsageError:
        return 0
    return manifest.sim_group_faces if manifest else 0
