"""The grid's cells: which image each is, how it is generated, and how it is scored.

For every cell of a Textual Inversion group the group's embedding is loaded under its own token and the
subject word of the prompt is replaced by that token; a LoRA group loads its LoRA and writes the words it
was trained with (its trigger) for the subject; a pivotal group does both, its embedding under a token of
its own. The control group replaces the subject by the init word and loads nothing.
Every image is generated from its own seeded generator, so any cell can be remade alone, and is then
scored by each scorer: the dlib sim-score (HOG, as the study measured), a second look with dlib's CNN
detector where HOG found no face, and ArcFace when a model is given.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from amari.config.settings import fingerprint
from amari.evaluate.config import CONTROL, Command, EvaluateConfig
from amari.evaluate.scorers import FaceScore, Scorer
from amari.storage.layout import IMAGES
from amari.storage.results import DEFAULT_METHOD, CellResult


@dataclass(frozen=True)
class Cell:
    prompt_index: int
    prompt: str
    command: Command
    group: str
    method: str = DEFAULT_METHOD  # '' for the control group

    @property
    def key(self) -> tuple[int, str, str, str]:
        return (self.prompt_index, self.command.name, self.method, self.group)

    @property
    def unit(self) -> tuple[str, str]:
        return (self.method, self.group)

    @property
    def image(self) -> str:
        """Where the image goes, relative to the results folder (TI's and the control's where they always
        were, other methods' in a folder of their own)."""
        folder = self.group if self.method in (DEFAULT_METHOD, "") else f"{self.method}/{self.group}"
        return f"{IMAGES}/{folder}/p{self.prompt_index + 1}-{slug(self.prompt)}-{self.command.name}.png"


@dataclass(frozen=True)
class UnitFiles:
    """What a unit (method × group) generates with: its embedding and its LoRA, as far as it has them, and
    what its prompts say for the subject (None: the embedding's token); an untrained method's unit, the
    group's training images that an IP-Adapter is conditioned on."""

    embedding: Path | None = None
    lora: Path | None = None
    trigger: str | None = None
    guide: Path | None = None

    @property
    def names(self) -> str:
        return "+".join(path.name for path in (self.embedding, self.lora) if path is not None)


def slug(text: str, limit: int = 48) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:limit] or "prompt"


def plan_cells(config: EvaluateConfig) -> list[Cell]:
    """Every cell in the grid's order: prompt, then command, then method × group."""
    return [
        Cell(i, prompt, command, group, method)
        for i, prompt in enumerate(config.prompts)
        for command in config.commands
        for method, group in config.evaluated_units
    ]


def group_token(subject: str, group: str, method: str = DEFAULT_METHOD) -> str:
    """The token a group's embedding is loaded under (a pivotal group's names its method too); CLIP
    lower-cases prompts, so the token is too."""
    name = group if method == DEFAULT_METHOD else f"{method}-{group}"
    return f"<{subject}-{name}>".lower()


def prompt_for(prompt: str, subject: str, replacement: str) -> str:
    """The prompt with each whole-word occurrence of the subject replaced."""
    return re.sub(rf"\b{re.escape(subject)}\b", replacement, prompt)


def cell_fingerprint(config: EvaluateConfig, prompt_sent: str, seed: int, embedding_sha: str) -> str:
    return fingerprint(
        config.model,
        prompt_sent,
        config.sampler,
        config.steps,
        config.guidance,
        config.width,
        config.height,
        seed,
        embedding_sha,
        *((config.vae,) if config.vae else ()),  # a replaced VAE changes every image; none keeps old fingerprints
    )


# -- generation -------------------------------------------------------------------------------------

STUDY_KEY = "study"  # where a grid image's own record sits inside amari's JSON metadata


def generation_config(config: EvaluateConfig, unit: tuple[str, str], files: UnitFiles | None):
    """How the grid's images of one unit are made: its embedding under its own token and its LoRA, or none."""
    from amari.generate import Embedding, GenerateConfig, Lora

    method, group = unit
    files = files or UnitFiles()
    embeddings = (
        ()
        if files.embedding is None
        else (Embedding(str(files.embedding), group_token(config.subject, group, method)),)
    )
    adapter = None
    if files.guide is not None:
        from amari.generate import IpAdapter

        adapter = IpAdapter(config.ip_adapter, config.ip_adapter_scale, group_guide(files.guide), config.image_encoder)
    return GenerateConfig(
        ip_adapter=adapter,
        model=config.model,
        model_config=config.model_config,
        scheduler=config.sampler,
        steps=config.steps,
        guidance_scale=config.guidance,
        width=config.width,
        height=config.height,
        batch_size=config.batch_size or 1,
        device=config.device,
        vae=config.vae,
        embeddings=embeddings,
        loras=() if files.lora is None else (Lora(str(files.lora)),),
    )


def group_guide(folder: Path):
    """A group's training images as an IP-Adapter's guide: each one's largest face with its surroundings."""
    from amari.errors import ImageError
    from amari.faces.crops import face_crop
    from amari.faces.embeddings import EmbeddingCache, FaceEncoder
    from amari.faces.settings import FaceSettings
    from amari.generate import make_guide
    from amari.storage.files import file_sha256
    from amari.storage.images import image_files

    cache = EmbeddingCache()
    encoder, crops, hashes = FaceEncoder(FaceSettings(), cache), [], []
    try:
        for path in image_files(folder, recursive=False):
            try:
                crops.append(face_crop(path, encoder.faces(path), encoder.settings))
            except ImageError:
                continue
            hashes.append(file_sha256(path))
    finally:
        cache.close()
    return make_guide(crops, hashes)


def read_fingerprint(path: Path) -> str | None:
    """The fingerprint a grid image carries in its metadata (None: none, or unreadable)."""
    from PIL import Image

    from amari.provenance.png import AMARI_KEY

    try:
        with Image.open(path) as image:
            record = json.loads(image.info.get(AMARI_KEY) or "{}").get(STUDY_KEY) or {}
    except (OSError, ValueError, AttributeError):
        return None
    return record.get("fingerprint") if isinstance(record, dict) else None


def generate_cells(
    config: EvaluateConfig,
    files: dict[tuple[str, str], UnitFiles],
    work: list[tuple[Cell, CellResult]],
    results_dir: Path,
    on_start: Callable[[Cell], None],
    on_image: Callable[[Cell, CellResult], None],
    executor=None,
) -> None:
    """Generate the cells' images unit by unit (each image's metadata names only its own embedding and LoRA),
    pass by pass, saving each with its provenance as soon as its pass is back.

    A pass holds one unit's images of one prompt, as many as `config.batch_size` says, or else as many as
    the free memory holds where the model runs (`amari.generate.pass_size`); with a compiled UNet the last
    pass of a prompt is padded to that size, so the UNet compiles for one shape. The passes are the grid's
    whole plan cut the same way every time, and a pass runs whole when any of its cells is wanted (the
    others' images are not kept): an image made again, alone, comes from the very pass that made it first,
    so it is the same to the last bit (batched kernels round as their batch says). A pass is a model step:
    run here (the model loads once), or on a cluster's model actors (`executor`,
    `amari.execution.cluster.ModelPool`), several at once and back in any order; every image has its own
    seeded generator.
    """
    from collections import deque
    from concurrent.futures import FIRST_COMPLETED, wait

    from amari.execution.workers import InlineExecutor
    from amari.faces.descriptors import locate
    from amari.generate import generate_images, pass_size
    from amari.models.compiling import padded
    from amari.provenance.png import check_rgb, save_png

    executor = executor or InlineExecutor()
    plain = generation_config(config, ("", CONTROL), None)
    size, fixed = executor.submit(pass_size, plain, len(config.commands)).result()
    size = config.batch_size or size
    wanted = {cell.key: (cell, fresh) for cell, fresh in work}
    passes: deque = deque()
    configs: dict = {}  # a unit's generation settings, made once (its IP-Adapter guide finds faces)
    for chunk in plan_passes(plan_cells(config), size):
        todo = [wanted.get(cell.key) for cell in chunk]
        if any(todo):
            unit = chunk[0].unit
            if unit not in configs:
                configs[unit] = replace(generation_config(config, unit, files.get(unit)), batch_size=size)
            generation = configs[unit]
            prompt = next(item[1].prompt_sent for item in todo if item)  # one unit and prompt: one text
            passes.append((todo, [prompt] * len(chunk), [cell.command.seed for cell in chunk], generation))
    pending: dict = {}
    while passes or pending:
        while passes and len(pending) < executor.capacity:
            todo, prompts, seeds, generation = passes.popleft()
            for item in filter(None, todo):
                on_start(item[0])
            if fixed:
                prompts, seeds = padded(prompts, size), padded(seeds, size)
            pending[executor.submit(generate_images, prompts, seeds, generation)] = todo
        done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
        for future in done:
            todo = pending.pop(future)
            for item, image in zip(todo, future.result()):
                if item is None:
                    continue  # made only for the pass to be the one that made the others
                cell, fresh = item
                record = {
                    "name": config.study_name,
                    **({"method": cell.method} if cell.method not in ("", DEFAULT_METHOD) else {}),
                    "group": cell.group,
                    "command": cell.command.name,
                    "prompt": cell.prompt,
                    "fingerprint": fresh.fingerprint,
                }
                # The watermark leaves alone every face the primary scorer will find (its settings are
                # the defaults), small ones included.
                faces = locate(check_rgb(image.image))
                save_png(image.image, results_dir / cell.image, {**image.params, STUDY_KEY: record}, faces=faces)
                on_image(cell, fresh)


def plan_passes(cells: list[Cell], size: int) -> list[list[Cell]]:
    """The grid's cells cut into passes, unit by unit (a unit's embedding and LoRA load once), prompt by
    prompt: each unit's cells of one prompt in the plan's order, `size` at a time."""
    passes = []
    for unit in dict.fromkeys(cell.unit for cell in cells):
        for prompt in dict.fromkeys(cell.prompt_index for cell in cells):
            found = [cell for cell in cells if (cell.unit, cell.prompt_index) == (unit, prompt)]
            passes += [found[start : start + size] for start in range(0, len(found), size)]
    return passes


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
        parts = (
            [self.primary.name]
            + ([self.second_pass.name] if self.second_pass else [])
            + [s.name for s in self.extra.values()]
        )
        return "+".join(parts)

    def fit(self, group: list[Path]) -> None:
        self.group_faces = self.primary.fit(group)
        for scorer in ([self.second_pass] if self.second_pass else []) + list(self.extra.values()):
            scorer.fit(group)

    def apply(self, cell: CellResult, path: Path) -> CellResult:
        main = self.primary.score(path)
        values = dict(
            faces=main.faces, sim_score=main.score, yaw=main.yaw, cnn_faces=None, cnn_sim_score=None, cnn_yaw=None
        )
        if self.second_pass is not None and main.faces == 0:
            second: FaceScore = self.second_pass.score(path)
            values.update(cnn_faces=second.faces, cnn_sim_score=second.score, cnn_yaw=second.yaw)
        for column, scorer in self.extra.items():
            values[column] = scorer.score(path).score
        return replace(cell, **values, scorers=self.names)


def default_scorers(config: EvaluateConfig) -> Scorers:
    from amari.evaluate.scorers import ArcFaceScorer, DlibScorer
    from amari.faces.descriptors import FaceSettings
    from amari.faces.embeddings import EmbeddingCache

    cache = EmbeddingCache()
    second = DlibScorer(FaceSettings(detector="cnn"), cache) if config.cnn_second_pass else None
    extra = {}
    if config.arcface_model is not None:
        extra["arcface_similarity"] = ArcFaceScorer(config.arcface_model, cache=cache)
    return Scorers(primary=DlibScorer(FaceSettings(), cache), second_pass=second, extra=extra)


def fresh_result(
    config: EvaluateConfig, cell: Cell, files: dict[tuple[str, str], UnitFiles], file_sha: dict[tuple[str, str], str]
) -> CellResult:
    """A cell's row before scoring: what will be sent to the pipeline, and its fingerprint.

    `file_sha` is each unit's files' hash (a TI group's is its embedding's, as it always was)."""
    subject = config.subject
    if cell.group == CONTROL:
        sent, sha, embedding = prompt_for(cell.prompt, subject, config.init_word), "", ""
    else:
        unit = files[cell.unit]
        word = unit.trigger if unit.embedding is None else group_token(subject, cell.group, cell.method)
        sent = prompt_for(cell.prompt, subject, word)
        sha, embedding = file_sha[cell.unit], unit.names
    return CellResult(
        prompt_index=cell.prompt_index,
        prompt=cell.prompt,
        command=cell.command.name,
        seed=cell.command.seed,
        group=cell.group,
        image=cell.image,
        faces=0,
        prompt_sent=sent,
        embedding=embedding,
        fingerprint=cell_fingerprint(config, sent, cell.command.seed, sha),
        method=cell.method,
    )
