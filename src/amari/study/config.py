"""A whole study as data: typed, frozen settings loaded from one TOML file.

Every table and key is checked when the file is read, so a typo fails at once with the table and key
named, not hours later in the step that would have used it. Relative paths in the file are taken from
the current folder, as paths given on the command line are, and stored absolute.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amari.errors import UsageError

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CONTROL = "ctrl"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_WORD = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class TrainingGroup:
    """One training group: `images` members of the sim-group, or every member when None."""

    name: str
    images: int | None = None


@dataclass(frozen=True)
class Command:
    """One generation command of the grid (the study's sd1..sd5): a name and its seed."""

    name: str
    seed: int


@dataclass(frozen=True)
class StudySettings:
    name: str = "study"
    out: Path | None = None  # default: a folder named after the study, in the base folder
    model: str = "CompVis/stable-diffusion-v1-4"  # Hugging Face id, diffusers folder or single file
    model_config: str | None = None  # a diffusers folder or id giving a single-file model its configs
    subject: str = "amari"  # the word in the prompts that stands for the trained identity
    device: str = "auto"
    demo: bool = False  # the offline toy study: its report says the model has random weights


@dataclass(frozen=True)
class MineSettings:
    prompt: str = "a photo of a woman"
    negative_prompt: str = ""
    source: str = "diffusers"  # or "folder:PATH": ingest images another tool writes there
    reference: tuple[Path, ...] = ()  # images that seed the group
    target: int = 100  # done when the group holds this many images whose average is within tolerance
    tolerance: float = 0.40
    almost_band: float = 0.10
    max_batches: int | None = None
    sampler: str = "ddim"
    steps: int = 250
    guidance: float = 8.2653
    width: int = 512
    height: int = 512
    images_per_call: int = 4
    seed: int | None = None  # first seed; None: random seeds
    enhance: bool = True  # upscale and restore faces before judging, as the study did
    upscaler: str = "RealESRGAN_x4plus"  # a known model name or a .pth/.safetensors path
    face_restorer: str = "GFPGANv1.4"
    scale: float = 2.0  # the upscaler's ×4 output resized to ×2
    cpus: int = 1  # processes that find faces


@dataclass(frozen=True)
class SelectSettings:
    groups: tuple[TrainingGroup, ...] = (TrainingGroup("a_312"), TrainingGroup("b_11", 11),
                                         TrainingGroup("c_4", 4))
    by: str = "score"  # "score" (the study's) or "diverse"


@dataclass(frozen=True)
class PrepareSettings:
    size: int = 512
    seed: int = 0
    crop: str = "random"


@dataclass(frozen=True)
class TrainSettings:
    """Textual Inversion settings, named as `amari train` names them; the study supplies data and model."""

    token: str = "*"
    init_word: str = "woman"
    num_vectors: int = 1
    templates: tuple[str, ...] | None = None  # None: the ImageNet-style templates
    resolution: int = 512
    repeats: int = 100
    flip_p: float = 0.5
    batch_size: int = 1  # one process: a batch of 2 is the original's two GPUs with a batch of 1
    grad_accum: int = 1
    base_lr: float = 0.005
    scale_lr: bool = True  # learning rate = base × batch × accumulation (× processes)
    lr_schedule: str = "constant"
    max_steps: int = 15500
    checkpoint_every: int = 500
    seed: int = 23
    mixed_precision: str = "auto"
    sample_prompts: tuple[str, ...] = ("a photo of {}",)
    sample_seeds: tuple[int, ...] = (335728730, 691007764, 1295044561, 2565311105, 1995053400)
    sample_steps: int = 50


@dataclass(frozen=True)
class EvaluateSettings:
    prompts: tuple[str, ...] = ()
    commands: tuple[Command, ...] = ()
    sampler: str = "k_lms"
    steps: int = 250
    guidance: float = 7.5
    width: int = 512
    height: int = 512
    batch_size: int = 1  # images per forward pass; each keeps its own seeded generator
    groups: tuple[str, ...] | None = None  # None: every training group
    control: bool = True  # add the ctrl group: the subject word replaced by the init word
    embeddings: tuple[tuple[str, Path], ...] = ()  # group -> embedding file, instead of the trained one
    sim_group: Path | None = None  # the faces every image is scored against (default: the miner's)
    results: Path | None = None  # default: OUT/results
    tolerance: float = 0.40
    cnn_second_pass: bool = True  # look again with dlib's CNN detector where HOG found no face
    arcface_model: Path | None = None  # an ArcFace ONNX model: a second identity score

    def embedding_for(self, group: str) -> Path | None:
        return dict(self.embeddings).get(group)


@dataclass(frozen=True)
class ReportSettings:
    thumbnail: int = 256  # side of the grid images embedded in the HTML report


@dataclass(frozen=True)
class StudyConfig:
    study: StudySettings = StudySettings()
    mine: MineSettings = MineSettings()
    select: SelectSettings = SelectSettings()
    prepare: PrepareSettings = PrepareSettings()
    train: TrainSettings = TrainSettings()
    evaluate: EvaluateSettings = EvaluateSettings()
    report: ReportSettings = ReportSettings()
    source: Path | None = None  # the TOML file it came from

    def __post_init__(self):
        check_study(self)

    @property
    def layout(self) -> "StudyLayout":
        return StudyLayout(self.study.out or Path(self.study.name).resolve(), self.evaluate.results)

    @property
    def evaluated_groups(self) -> tuple[str, ...]:
        """Training groups in the grid, in order, then the control group when enabled."""
        trained = self.evaluate.groups if self.evaluate.groups is not None \
            else tuple(g.name for g in self.select.groups)
        return trained + ((CONTROL,) if self.evaluate.control else ())

    def fingerprint(self, *sections: str) -> str:
        """A short hash of the named sections' values: a step's output is stale when it changes."""
        values = {name: _plain(getattr(self, name)) for name in sections}
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class StudyLayout:
    """Where each step of a study writes, under the study's `out` folder."""

    root: Path
    results_override: Path | None = None

    @property
    def workspace(self) -> Path:
        return self.root / "mine"

    @property
    def selected(self) -> Path:
        return self.root / "groups"

    def prepared(self, group: str) -> Path:
        return self.root / "prepared" / group

    def trained(self, group: str) -> Path:
        return self.root / "train" / group

    @property
    def results(self) -> Path:
        return self.results_override or self.root / "results"

    @property
    def report(self) -> Path:
        return self.results / "report"

    @property
    def markers(self) -> Path:
        return self.root / ".steps"


# -- checks -----------------------------------------------------------------------------------------

def _fail(where: str, message: str) -> UsageError:
    return UsageError(f"[{where}] {message}")


def _positive(where: str, **values) -> None:
    for key, value in values.items():
        if value is not None and value <= 0:
            raise _fail(where, f"{key} must be positive, not {value}")


def check_study(config: StudyConfig) -> None:
    """Values that parse but cannot work together."""
    study, mine, select, ev, train = config.study, config.mine, config.select, config.evaluate, config.train
    if not _NAME.match(study.name):
        raise _fail("study", f"name {study.name!r} must be letters, digits, '_', '-' or '.'")
    if not _WORD.match(study.subject):
        raise _fail("study", f"subject {study.subject!r} must be one word (the word the prompts use)")
    if not study.model.strip():
        raise _fail("study", "model must name a Hugging Face id, a diffusers folder or a model file")
    _positive("mine", target=mine.target, max_batches=mine.max_batches, steps=mine.steps,
              guidance=mine.guidance, width=mine.width, height=mine.height,
              images_per_call=mine.images_per_call, tolerance=mine.tolerance, scale=mine.scale)
    if mine.source != "diffusers" and not mine.source.startswith("folder:"):
        raise _fail("mine", f"source must be 'diffusers' or 'folder:PATH', not {mine.source!r}")
    if not 0 < mine.almost_band < 1:
        raise _fail("mine", f"almost_band must be in (0, 1), not {mine.almost_band}")
    if mine.target < 2:
        raise _fail("mine", f"target must be at least 2 images, not {mine.target}")
    if mine.source == "diffusers" and not mine.prompt.strip():
        raise _fail("mine", "the diffusers source needs a prompt")
    if not select.groups:
        raise _fail("select", "no training groups: add [[select.groups]] tables")
    names = [g.name for g in select.groups]
    for group in select.groups:
        if not _NAME.match(group.name):
            raise _fail("select", f"group name {group.name!r} must be letters, digits, '_', '-' or '.'")
        if group.name == CONTROL:
            raise _fail("select", f"{CONTROL!r} is the control group's name; name the training group otherwise")
        _positive("select", images=group.images)
    if len(set(names)) != len(names):
        raise _fail("select", "two training groups have the same name")
    if select.by not in ("score", "diverse"):
        raise _fail("select", f"by must be 'score' or 'diverse', not {select.by!r}")
    if config.prepare.size < 8:
        raise _fail("prepare", f"size must be at least 8 pixels, not {config.prepare.size}")
    if config.prepare.crop not in ("random", "face"):
        raise _fail("prepare", f"crop must be 'random' or 'face', not {config.prepare.crop!r}")
    _positive("train", num_vectors=train.num_vectors, base_lr=train.base_lr, batch_size=train.batch_size,
              grad_accum=train.grad_accum, resolution=train.resolution, repeats=train.repeats,
              max_steps=train.max_steps, checkpoint_every=train.checkpoint_every, sample_steps=train.sample_steps)
    if not _WORD.match(train.init_word):
        raise _fail("train", f"init_word {train.init_word!r} must be one word")
    _check_train(train)
    _check_evaluate(ev, names, study.subject)


def _check_train(train: TrainSettings) -> None:
    """Let the training stage judge its own values now, not after mining."""
    try:
        from amari.train.config import TrainConfig
    except ImportError:  # pragma: no cover - the training stage is part of the package
        return
    try:
        TrainConfig(data_dir=Path("."), out_dir=Path("."), **_plain_fields(train))
    except UsageError as exc:
        raise _fail("train", str(exc)) from None


def _plain_fields(settings) -> dict[str, Any]:
    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}


def _check_evaluate(ev: EvaluateSettings, group_names: list[str], subject: str) -> None:
    if not ev.prompts:
        raise _fail("evaluate", "no prompts")
    word = re.compile(rf"\b{re.escape(subject)}\b")
    for prompt in ev.prompts:
        if not word.search(prompt):
            raise _fail("evaluate", f"prompt {prompt!r} does not contain the subject word {subject!r}")
    if len(set(ev.prompts)) != len(ev.prompts):
        raise _fail("evaluate", "a prompt is listed twice")
    if not ev.commands:
        raise _fail("evaluate", "no commands: add [[evaluate.commands]] tables with a name and a seed")
    command_names = [c.name for c in ev.commands]
    if len(set(command_names)) != len(command_names):
        raise _fail("evaluate", "two commands have the same name")
    for command in ev.commands:
        if not _NAME.match(command.name):
            raise _fail("evaluate", f"command name {command.name!r} must be letters, digits, '_', '-' or '.'")
        if not 0 <= command.seed < 2**64:
            raise _fail("evaluate", f"command {command.name}: seed must be in [0, 2^64), not {command.seed}")
    _positive("evaluate", steps=ev.steps, guidance=ev.guidance, width=ev.width, height=ev.height,
              batch_size=ev.batch_size, tolerance=ev.tolerance)
    from amari.generate.schedulers import SAMPLERS

    if ev.sampler not in SAMPLERS:
        raise _fail("evaluate", f"unknown sampler {ev.sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if ev.width % 8 or ev.height % 8:
        raise _fail("evaluate", f"width and height must be multiples of 8, not {ev.width}×{ev.height}")
    if ev.groups is not None:
        unknown = [g for g in ev.groups if g not in group_names]
        if unknown:
            raise _fail("evaluate", f"groups {unknown} are not training groups ({', '.join(group_names)})")
    for group, _path in ev.embeddings:
        if group not in group_names:
            raise _fail("evaluate", f"embedding given for {group!r}, which is not a training group")
    if ev.groups == () and not ev.control:
        raise _fail("evaluate", "nothing to evaluate: no groups and no control")


# -- loading ----------------------------------------------------------------------------------------

_SECTIONS = {"study": StudySettings, "mine": MineSettings, "select": SelectSettings,
             "prepare": PrepareSettings, "train": TrainSettings, "evaluate": EvaluateSettings,
             "report": ReportSettings}


def load_study(path: str | Path, base: str | Path | None = None) -> StudyConfig:
    """Read a study TOML file; relative paths in it are taken from `base` (default: the current folder)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"study config not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read study config {path}: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}") from None
    return study_from_dict(data, base=base, source=path.resolve())


def study_from_dict(data: dict[str, Any], base: str | Path | None = None,
                    source: Path | None = None) -> StudyConfig:
    base = Path(base) if base is not None else Path.cwd()
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        raise UsageError(f"unknown table(s) {', '.join(unknown)}; a study has {', '.join(_SECTIONS)}")
    values = {}
    for section, cls in _SECTIONS.items():
        table = data.get(section, {})
        if not isinstance(table, dict):
            raise UsageError(f"{section} must be a table ([{section}])")
        values[section] = _build(cls, dict(table), section, base)
    if values["study"].out is None:
        values["study"] = dataclasses.replace(values["study"], out=_resolve(values["study"].name, base))
    return StudyConfig(**values, source=source)


def _build(cls, table: dict[str, Any], section: str, base: Path):
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(table) - set(names))
    if unknown:
        raise _fail(section, f"unknown key(s) {', '.join(unknown)}; known keys: {', '.join(names)}")
    special = {"commands": _commands, "groups": _groups if cls is SelectSettings else None,
               "embeddings": _embeddings, "source": _source if cls is MineSettings else None}
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in table
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise _fail(section, f"missing key(s) {', '.join(missing)}")
    kwargs = {}
    for key, value in table.items():
        where = f"{section}.{key}"
        converter = special.get(key)
        if converter is not None:
            kwargs[key] = converter(value, where, base)
        else:
            kwargs[key] = _convert(value, hints[key], where, base)
    return cls(**kwargs)


def _convert(value: Any, hint: Any, where: str, base: Path) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(value, options[0], where, base)
    if origin is tuple:
        if not isinstance(value, list):
            raise UsageError(f"{where} must be a list, not {value!r}")
        item_hint = typing.get_args(hint)[0]
        return tuple(_convert(v, item_hint, f"{where}[{i}]", base) for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise UsageError(f"{where} must be true or false, not {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"{where} must be a whole number, not {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"{where} must be a number, not {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise UsageError(f"{where} must be a string, not {value!r}")
        return value
    if hint is Path:
        if not isinstance(value, str) or not value:
            raise UsageError(f"{where} must be a path (a non-empty string), not {value!r}")
        return _resolve(value, base)
    raise TypeError(f"no converter for {where}: {hint}")  # pragma: no cover - a programming error


def _resolve(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def _commands(value: Any, where: str, base: Path) -> tuple[Command, ...]:
    if not isinstance(value, list):
        raise UsageError(f"{where} must be a list of tables ([[evaluate.commands]] with name and seed)")
    commands = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise UsageError(f"{where}[{i}] must be a table with name and seed")
        commands.append(_build(Command, item, f"{where}[{i}]", base))
    return tuple(commands)


def _groups(value: Any, where: str, base: Path) -> tuple[TrainingGroup, ...]:
    if not isinstance(value, list):
        raise UsageError(f"{where} must be a list of tables ([[select.groups]] with name and images)")
    groups = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise UsageError(f"{where}[{i}] must be a table with name and images")
        item = dict(item)
        images = item.get("images")
        if images == "all":
            item.pop("images")
        elif images is not None and (isinstance(images, bool) or not isinstance(images, int)):
            raise UsageError(f"{where}[{i}].images must be a whole number or \"all\", not {images!r}")
        groups.append(_build(TrainingGroup, item, f"{where}[{i}]", base))
    return tuple(groups)


def _source(value: Any, where: str, base: Path) -> str:
    text = _convert(value, str, where, base)
    kind, sep, folder = text.partition(":")
    if kind == "folder" and sep and folder:
        return f"folder:{_resolve(folder, base)}"
    return text


def _embeddings(value: Any, where: str, base: Path) -> tuple[tuple[str, Path], ...]:
    if not isinstance(value, dict):
        raise UsageError(f"{where} must be a table of group = \"path\"")
    return tuple((group, _convert(path, Path, f"{where}.{group}", base)) for group, path in value.items())


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def to_dict(config: StudyConfig) -> dict[str, Any]:
    """Plain values (paths as strings), e.g. for a results manifest."""
    return {name: _plain(getattr(config, name)) for name in _SECTIONS}


def replace(config: StudyConfig, section: str, **changes) -> StudyConfig:
    """A copy with some keys of one section changed (re-checked)."""
    return dataclasses.replace(config, **{section: dataclasses.replace(getattr(config, section), **changes)})


__all__ = ["CONTROL", "Command", "EvaluateSettings", "MineSettings", "PrepareSettings", "ReportSettings",
           "SelectSettings", "StudyConfig", "StudyLayout", "StudySettings", "TrainSettings",
           "TrainingGroup", "load_study", "replace", "study_from_dict", "to_dict"]
