"""`amari evaluate`: the study's grid of prompt × command × group images, each scored against the sim-group.

For every cell the trained group's embedding is loaded under its own token and the subject word of the
prompt is replaced by that token; the control group replaces it by the init word and loads nothing.
Every image is generated from its own seeded generator, so any cell can be remade alone, and is then
scored by each scorer: the dlib sim-score (HOG, as the study measured), a second look with dlib's CNN
detector where HOG found no face, and ArcFace when a model is given.

The run is resumable: `results.csv` is rewritten after every cell, and a cell whose image exists with
the same generation fingerprint is not generated again; only scorers it has not seen yet are run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from amari.errors import ImageError, UsageError, WorkspaceError
from amari.images import image_files
from amari.study.config import CONTROL, Command, StudyConfig
from amari.study.results import (IMAGES, RESULTS_CSV, CellResult, ResultsManifest, read_results,
                                 write_manifest, write_results)
from amari.study.scorers import FaceScore, Scorer

EMBEDDING_FILE = "learned_embeds.safetensors"


@dataclass(frozen=True)
class Cell:
    prompt_index: int
    prompt: str
    command: Command
    group: str

    @property
    def key(self) -> tuple[int, str, str]:
        return (self.prompt_index, self.command.name, self.group)

    @property
    def image(self) -> str:
        """Where the image goes, relative to the results folder."""
        return f"{IMAGES}/{self.group}/p{self.prompt_index + 1}-{slug(self.prompt)}-{self.command.name}.png"


def slug(text: str, limit: int = 48) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:limit] or "prompt"


def plan_cells(config: StudyConfig) -> list[Cell]:
    """Every cell in the grid's order: prompt, then command, then group."""
    return [Cell(i, prompt, command, group)
            for i, prompt in enumerate(config.evaluate.prompts)
            for command in config.evaluate.commands
            for group in config.evaluated_groups]


def group_token(subject: str, group: str) -> str:
    """The token a group's embedding is loaded under; CLIP lower-cases prompts, so the token is too."""
    return f"<{subject}-{group}>".lower()


def prompt_for(prompt: str, subject: str, replacement: str) -> str:
    """The prompt with each whole-word occurrence of the subject replaced."""
    return re.sub(rf"\b{re.escape(subject)}\b", replacement, prompt)


def embedding_path(config: StudyConfig, group: str) -> Path:
    """The group's embedding: the config's, else the final one its training wrote."""
    return config.evaluate.embedding_for(group) or config.layout.trained(group) / EMBEDDING_FILE


def sim_group_folder(config: StudyConfig) -> Path:
    from amari.select import SIM_GROUP

    return config.evaluate.sim_group or config.layout.workspace / SIM_GROUP


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cell_fingerprint(config: StudyConfig, prompt_sent: str, seed: int, embedding_sha: str) -> str:
    ev = config.evaluate
    values = [config.study.model, prompt_sent, ev.sampler, ev.steps, ev.guidance, ev.width, ev.height, seed,
              embedding_sha]
    return hashlib.sha256(json.dumps(values).encode()).hexdigest()[:16]


# -- generation -------------------------------------------------------------------------------------

STUDY_KEY = "study"  # where a grid image's own record sits inside amari's JSON metadata


def generation_config(config: StudyConfig, group: str, embedding: Path | None):
    """How the grid's images of one group are made: the group's embedding under its own token, or none."""
    from amari.generate import Embedding, GenerateConfig

    ev = config.evaluate
    embeddings = () if embedding is None else (Embedding(str(embedding), group_token(config.study.subject, group)),)
    return GenerateConfig(
        model=config.study.model, model_config=config.study.model_config, scheduler=ev.sampler,
        steps=ev.steps, guidance_scale=ev.guidance, width=ev.width, height=ev.height,
        batch_size=ev.batch_size, device=config.study.device, embeddings=embeddings)


def read_fingerprint(path: Path) -> str | None:
    """The fingerprint a grid image carries in its metadata (None: none, or unreadable)."""
    from PIL import Image

    from amari.provenance import AMARI_KEY

    try:
        with Image.open(path) as image:
            record = json.loads(image.info.get(AMARI_KEY) or "{}").get(STUDY_KEY) or {}
    except (OSError, ValueError, AttributeError):
        return None
    return record.get("fingerprint") if isinstance(record, dict) else None


def generate_cells(config: StudyConfig, embeddings: dict[str, Path], work: list[tuple["Cell", CellResult]],
                   results_dir: Path, on_start: Callable[["Cell"], None],
                   on_image: Callable[["Cell", CellResult], None]) -> None:
    """Generate the cells' images group by group (each image's metadata names only its own embedding),
    pass by pass, saving each with its provenance as soon as it exists. The model loads once."""
    from amari.generate import generate
    from amari.provenance import save_png

    size = config.evaluate.batch_size
    for group in dict.fromkeys(cell.group for cell, _ in work):
        generation = generation_config(config, group, embeddings.get(group))
        cells = [item for item in work if item[0].group == group]
        for start in range(0, len(cells), size):
            chunk = cells[start:start + size]
            for cell, _ in chunk:
                on_start(cell)
            made = generate([fresh.prompt_sent for _, fresh in chunk], seeds=[cell.command.seed for cell, _ in chunk],
                            config=generation, progress=False)
            for (cell, fresh), image in zip(chunk, made.images):
                record = {"name": config.study.name, "group": cell.group, "command": cell.command.name,
                          "prompt": cell.prompt, "fingerprint": fresh.fingerprint}
                save_png(image.image, results_dir / cell.image, {**image.params, STUDY_KEY: record})
                on_image(cell, fresh)


# -- scoring ----------------------------------------------------------------------------------------

@dataclass
class Scorers:
    """The scorers of a study, fitted on its sim-group when first needed."""

    primary: Scorer
    second_pass: Scorer | None = None  # only for images where the primary found no face
    extra: dict[str, Scorer] = field(default_factory=dict)  # column name -> scorer
    group_faces: int = 0

    @property
    def names(self) -> str:
        parts = [self.primary.name] + ([self.second_pass.name] if self.second_pass else []) + \
            [s.name for s in self.extra.values()]
        return "+".join(parts)

    def fit(self, group: list[Path]) -> None:
        self.group_faces = self.primary.fit(group)
        for scorer in ([self.second_pass] if self.second_pass else []) + list(self.extra.values()):
            scorer.fit(group)

    def apply(self, cell: CellResult, path: Path) -> CellResult:
        main = self.primary.score(path)
        values = dict(faces=main.faces, sim_score=main.score, yaw=main.yaw,
                      cnn_faces=None, cnn_sim_score=None, cnn_yaw=None)
        if self.second_pass is not None and main.faces == 0:
            second: FaceScore = self.second_pass.score(path)
            values.update(cnn_faces=second.faces, cnn_sim_score=second.score, cnn_yaw=second.yaw)
        for column, scorer in self.extra.items():
            values[column] = scorer.score(path).score
        return replace(cell, **values, scorers=self.names)


def default_scorers(config: StudyConfig) -> Scorers:
    from amari.embeddings import EmbeddingCache
    from amari.faces import FaceSettings
    from amari.study.scorers import ArcFaceScorer, DlibScorer

    cache = EmbeddingCache()
    second = DlibScorer(FaceSettings(detector="cnn"), cache) if config.evaluate.cnn_second_pass else None
    extra = {}
    if config.evaluate.arcface_model is not None:
        extra["arcface_similarity"] = ArcFaceScorer(config.evaluate.arcface_model, cache=cache)
    return Scorers(primary=DlibScorer(FaceSettings(), cache), second_pass=second, extra=extra)


# -- the stage --------------------------------------------------------------------------------------

@dataclass
class EvaluateResult:
    results_dir: Path
    cells: list[CellResult]
    generated: int = 0
    scored: int = 0
    kept: int = 0

    @property
    def csv(self) -> Path:
        return self.results_dir / RESULTS_CSV


def check_inputs(config: StudyConfig) -> tuple[list[Path], dict[str, Path]]:
    """The sim-group's images and each trained group's embedding file, or a clear error."""
    folder = sim_group_folder(config)
    if not folder.is_dir():
        raise WorkspaceError(f"sim-group folder not found: {folder} (mine first, or set evaluate.sim_group)")
    group_images = image_files(folder)
    if not group_images:
        raise WorkspaceError(f"{folder} holds no images to score against")
    embeddings = {}
    for group in config.evaluated_groups:
        if group == CONTROL:
            continue
        path = embedding_path(config, group)
        if not path.is_file():
            raise UsageError(f"no embedding for group {group}: {path} not found (train it first, "
                             f"or set [evaluate.embeddings] {group} = \"PATH\")")
        embeddings[group] = path
    return group_images, embeddings


def _previous(results_dir: Path) -> dict[tuple[int, str, str], CellResult]:
    path = results_dir / RESULTS_CSV
    if not path.is_file():
        return {}
    try:
        return {cell.key: cell for cell in read_results(path)}
    except UsageError:
        # A damaged results file loses only its scores: images are kept and scored again.
        os.replace(path, path.with_suffix(".damaged.csv"))
        return {}


def build_manifest(config: StudyConfig, scorers: Scorers, group_faces: int) -> ResultsManifest:
    from amari.mine.workspace import ARCHIVE
    from amari.train.checkpoints import METRICS_FILE

    layout, ev = config.layout, config.evaluate
    metrics = []
    for group in config.evaluated_groups:
        if group != CONTROL and ev.embedding_for(group) is None:
            metrics.append((group, str(layout.trained(group) / METRICS_FILE)))
    return ResultsManifest(
        study=config.study.name, subject=config.study.subject, prompts=ev.prompts,
        commands=tuple((c.name, c.seed) for c in ev.commands), groups=config.evaluated_groups,
        control=CONTROL if ev.control else None, tolerance=ev.tolerance, model=config.study.model,
        sampler=ev.sampler, steps=ev.steps, guidance=ev.guidance, width=ev.width, height=ev.height,
        sim_group=str(sim_group_folder(config)), sim_group_faces=group_faces,
        scorers=tuple(scorers.names.split("+")), training_metrics=tuple(metrics),
        mining_archive=str(layout.workspace / ARCHIVE), extra={"demo": True} if config.study.demo else {})


def evaluate(config: StudyConfig, *, scorers: Scorers | None = None,
             on_progress: Callable[[str, Cell], None] | None = None) -> EvaluateResult:
    """Generate and score every missing cell of the grid; returns every cell's result.

    `on_progress(event, cell)` hears "keep" for a finished cell, "generate" before a cell's image is
    made and "score" once its row is written.
    """
    progress = on_progress or (lambda _what, _cell: None)
    results_dir = config.layout.results
    # 1. Check the inputs before any model loads.
    group_images, embeddings = check_inputs(config)
    embedding_sha = {group: file_sha256(path) for group, path in embeddings.items()}
    scorers = scorers or default_scorers(config)
    results_dir.mkdir(parents=True, exist_ok=True)
    previous = _previous(results_dir)
    # 2. Decide per cell: keep, score again, or generate.
    cells = plan_cells(config)
    done: dict[tuple[int, str, str], CellResult] = {}
    to_score: list[tuple[Cell, CellResult]] = []
    to_generate: list[tuple[Cell, CellResult]] = []
    for cell in cells:
        fresh = fresh_result(config, cell, embeddings, embedding_sha)
        old = previous.get(cell.key)
        image_ok = (results_dir / cell.image).is_file()
        if old is not None and image_ok and old.fingerprint == fresh.fingerprint and old.scorers == scorers.names:
            done[cell.key] = replace(old, image=cell.image)
            progress("keep", cell)
        elif image_ok and (old.fingerprint if old is not None else read_fingerprint(results_dir / cell.image)) \
                == fresh.fingerprint:
            to_score.append((cell, fresh))  # made already; its row is missing or lacks a scorer
        else:
            to_generate.append((cell, fresh))
    result = EvaluateResult(results_dir=results_dir, cells=[], kept=len(done),
                            generated=0, scored=0)

    def finish(cell: Cell, fresh: CellResult) -> None:
        done[cell.key] = scorers.apply(fresh, results_dir / cell.image)
        result.scored += 1
        write_results(results_dir / RESULTS_CSV, [done[c.key] for c in cells if c.key in done])
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
        generate_cells(config, embeddings, to_generate, results_dir, lambda cell: progress("generate", cell),
                       generated)
    # 4. The complete CSV and the manifest the report reads.
    result.cells = [done[c.key] for c in cells]
    write_results(results_dir / RESULTS_CSV, result.cells)
    group_faces = scorers.group_faces or _previous_group_faces(results_dir)
    write_manifest(results_dir, build_manifest(config, scorers, group_faces))
    return result


def fresh_result(config: StudyConfig, cell: Cell, embeddings: dict[str, Path],
                 embedding_sha: dict[str, str]) -> CellResult:
    """A cell's row before scoring: what will be sent to the pipeline, and its fingerprint."""
    subject = config.study.subject
    if cell.group == CONTROL:
        sent, sha, embedding = prompt_for(cell.prompt, subject, config.train.init_word), "", ""
    else:
        sent = prompt_for(cell.prompt, subject, group_token(subject, cell.group))
        sha, embedding = embedding_sha[cell.group], str(embeddings[cell.group])
    return CellResult(prompt_index=cell.prompt_index, prompt=cell.prompt, command=cell.command.name,
                      seed=cell.command.seed, group=cell.group, image=cell.image, faces=0, prompt_sent=sent,
                      embedding=embedding, fingerprint=cell_fingerprint(config, sent, cell.command.seed, sha))


def _previous_group_faces(results_dir: Path) -> int:
    from amari.study.results import read_manifest

    try:
        manifest = read_manifest(results_dir)
    except UsageError:
        return 0
    return manifest.sim_group_faces if manifest else 0
