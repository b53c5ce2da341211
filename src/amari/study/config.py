"""A whole study as data: the stage configs put together, loaded from one TOML file.

Each table is its stage's own config (`[mine]` is a `MineConfig`, `[train]` a `TrainConfig`, ...), read
with the same keys, types and defaults as the stage has on its own; `[study]` holds what several stages
share (the model, the device, the subject word), which the study hands to each. Every table and key is
checked when the file is read, so a typo fails at once with the table and key named, not hours later
in the step that would have used it. Relative paths are taken from the current folder, as paths given
on the command line are, and stored absolute.

Where a study's defaults differ from a stage's own, `STUDY_DEFAULTS` says so: the miner samples with
the study's settings (DDIM 250 steps), the training images are cropped with a fixed seed, and a
re-run replaces the training groups it picked before.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amari.audit import AuditConfig
from amari.config.defaults import DEFAULT_MODEL
from amari.config.settings import Settings, convert, from_table, plain, read_toml, setting
from amari.errors import UsageError
from amari.evaluate import CONTROL, EvaluateConfig
from amari.execution.devices import check_device
from amari.mine import MineConfig
from amari.prepare import PrepareConfig
from amari.refine import RefineConfig
from amari.report import ReportConfig
from amari.select import NAME, SelectConfig
from amari.storage.layout import StudyLayout
from amari.train import TrainConfig

_WORD = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class StudySettings(Settings):
    name: str = setting("study", "the study's name (letters, digits, '_', '-', '.')")
    out: Path | None = setting(None, "where every step writes (default: a folder named after the study)")
    model: str = setting(
        DEFAULT_MODEL, "the model (SD 1.x, SD 2.x, SDXL or FLUX.1): Hugging Face id, diffusers folder or single file"
    )
    model_config: str | None = setting(None, "a diffusers folder or id giving a single-file model its configs")
    vae: str | None = setting(None, "a replacement VAE for mining, training and evaluation (folder, id or file)")
    biometric_licence: str | None = setting(
        None, "the licence that permits biometric processing with a model whose own forbids it (FLUX.1 [dev])"
    )
    subject: str = setting("amari", "the word in the prompts that stands for the trained identity")
    device: str = setting("auto", "auto, cuda[:N], mps or cpu")
    demo: bool = setting(
        False, "the offline toy study (amari study --demo): its report says the model has random weights"
    )
    identity: int | None = setting(
        None, "with [mine] identities above 1: the identity the study selects, trains and evaluates (default 1)"
    )

    def check(self):
        if self.identity is not None and self.identity < 1:
            raise UsageError(f"identity must be 1 or more, not {self.identity}")
        if not NAME.match(self.name):
            raise UsageError(f"name {self.name!r} must be letters, digits, '_', '-' or '.'")
        if not _WORD.match(self.subject):
            raise UsageError(f"subject {self.subject!r} must be one word (the word the prompts use)")
        if not self.model.strip():
            raise UsageError("model must name a Hugging Face id, a diffusers folder or a model file")
        check_device(self.device)


# The study's own defaults where they differ from a stage's on its own.
STUDY_DEFAULTS: dict[str, dict[str, Any]] = {
    "mine": {"prompt": "a photo of a woman", "preset": "study"},
    "select": {"force": True},
    "prepare": {"seed": 0},
    "refine": {"rounds": 0},  # a study refines only when its [refine] table asks for rounds
}

SECTIONS = {
    "study": StudySettings,
    "mine": MineConfig,
    "audit": AuditConfig,
    "refine": RefineConfig,
    "select": SelectConfig,
    "prepare": PrepareConfig,
    "train": TrainConfig,
    "evaluate": EvaluateConfig,
    "report": ReportConfig,
}


@dataclass(frozen=True)
class StudyConfig:
    study: StudySettings
    mine: MineConfig
    audit: AuditConfig
    refine: RefineConfig
    select: SelectConfig
    prepare: PrepareConfig
    train: TrainConfig
    evaluate: EvaluateConfig
    report: ReportConfig
    source: Path | None = None  # the TOML file it came from

    @property
    def layout(self) -> StudyLayout:
        root = self.study.out or Path(self.study.name).resolve()
        return StudyLayout(root, self.evaluate.results, studied_identity(self.study, self.mine))

    @property
    def evaluated_groups(self) -> tuple[str, ...]:
        return self.evaluate.evaluated_groups

    def to_dict(self) -> dict[str, Any]:
        """Plain values (paths as strings), e.g. for a results manifest."""
        return {name: plain(getattr(self, name)) for name in SECTIONS}


def studied_identity(study: StudySettings, mine: MineConfig) -> int | None:
    """The identity the study trains and evaluates: None when it mines one (its sim-group/)."""
    if mine.identities == 1:
        if study.identity is not None:
            raise UsageError("[study] identity picks one of several identities: set [mine] identities above 1")
        return None
    if study.identity is not None and study.identity > mine.identities:
        raise UsageError(f"[study] identity {study.identity} is more than the {mine.identities} [mine] identities")
    return study.identity or 1


def _shared(name: str, study: StudySettings, built: dict[str, Any], layout: StudyLayout) -> dict[str, Any]:
    """What the study hands to a stage: the values its config marks as the study's to set."""
    model = dict(
        model=study.model, model_config=study.model_config, vae=study.vae, biometric_licence=study.biometric_licence
    )
    if name == "mine":
        return {**model, "device": study.device}
    if name == "audit":
        return {"faces": built["mine"].faces}  # the gallery's faces are found as the miner's were
    if name == "report":
        return {"audit": layout.audit.root if built["audit"].gallery is not None else None}
    if name == "select":
        return {"tolerance": built["mine"].tolerance}  # the miner's tolerance decides who is the identity
    if name == "train":
        identity = studied_identity(study, built["mine"])
        sim_group = (
            built.get("evaluate_sim_group") or dataclasses.replace(layout, identity=identity).workspace.sim_group
        )
        return {**model, "reference_group": sim_group}
    if name == "evaluate":
        return {
            **model,
            "device": study.device,
            "subject": study.subject,
            "study_name": study.name,
            "init_word": built["train"].init_word,
            "training_groups": tuple(g.name for g in built["select"].groups),
            "methods": built["train"].compared_methods(),
            "demo": study.demo,
        }
    return {}


def _build(data: dict[str, Any], base: Path, sections) -> dict[str, Any]:
    """The study's settings and each of `sections`' configs, in SECTIONS' order (later ones share earlier ones')."""
    if not isinstance(data, dict):
        raise UsageError("a study config must be a TOML document of tables")
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise UsageError(f"unknown table(s) {', '.join(unknown)}; a study has {', '.join(SECTIONS)}")
    study = from_table(StudySettings, data.get("study", {}), "study", base)
    if study.out is None:
        study = study.replace(out=(base / study.name).resolve())
    evaluate_table = data.get("evaluate", {})
    built: dict[str, Any] = {"study": study}
    if isinstance(evaluate_table, dict) and "sim_group" in evaluate_table:
        # Training validates against the faces the evaluation scores against.
        built["evaluate_sim_group"] = convert(evaluate_table["sim_group"], Path, "evaluate.sim_group", base)
    layout = StudyLayout(study.out)
    for name, cls in SECTIONS.items():
        if name == "study" or name not in sections:
            continue
        table = data.get(name, {})
        shared = _shared(name, study, built, layout)
        defaults = STUDY_DEFAULTS.get(name, {})
        built[name] = _section(cls, table, name, base, {**defaults, **shared}, set(shared))
    return built


def study_from_dict(data: dict[str, Any], base: str | Path | None = None, source: Path | None = None) -> StudyConfig:
    built = _build(data, Path(base) if base is not None else Path.cwd(), SECTIONS)
    return StudyConfig(**{name: built[name] for name in SECTIONS}, source=source)


@dataclass(frozen=True)
class RefineSettings:
    """What `amari refine` reads of a study config: the tables the rounds use (the others are not checked)."""

    study: StudySettings
    mine: MineConfig
    refine: RefineConfig
    prepare: PrepareConfig
    train: TrainConfig

    @property
    def layout(self) -> StudyLayout:
        return StudyLayout(self.study.out or Path(self.study.name).resolve())


def load_refine(path: str | Path, base: str | Path | None = None) -> RefineSettings:
    """The refinement loop's settings from a study config (its [study], [mine], [refine], [prepare], [train])."""
    names = ("study", "mine", "refine", "prepare", "train")
    built = _build(read_toml(Path(path)), Path(base) if base is not None else Path.cwd(), names)
    return RefineSettings(**{name: built[name] for name in names})


def _section(cls, table: Any, name: str, base: Path, fixed: dict[str, Any], shared: set[str]):
    """A stage's config from its table: the table's values over the study's defaults and shared values."""
    if not isinstance(table, dict):
        raise UsageError(f"{name} must be a table ([{name}])")
    taken = sorted(set(table) & shared)
    if taken:
        where = {"select": "[mine] tolerance", "audit": "[mine] (the miner's face settings)"}.get(name, "[study]")
        raise UsageError(f"[{name}] {', '.join(taken)}: set by the study from {where}, not here")
    values = {k: v for k, v in fixed.items() if k not in table}
    return from_table(cls, table, name, base, defaults=_Defaults(cls, values), in_study=True)


class _Defaults:
    """Field defaults of `cls`, with some values replaced: what a table leaves out."""

    def __init__(self, cls, values: dict[str, Any]):
        self._cls, self._values = cls, values

    def __getattr__(self, name: str):
        if name in self._values:
            return self._values[name]
        item = next(f for f in dataclasses.fields(self._cls) if f.name == name)
        if item.default is not dataclasses.MISSING:
            return item.default
        return item.default_factory()


def load_study(path: str | Path, base: str | Path | None = None) -> StudyConfig:
    """Read a study TOML file; relative paths in it are taken from `base` (default: the current folder)."""
    path = Path(path)
    try:
        data = read_toml(path)
    except UsageError as exc:
        raise UsageError(str(exc).replace("config not found", "study config not found")) from None
    return study_from_dict(data, base=base, source=path.resolve())


def replace(config: StudyConfig, section: str, **changes) -> StudyConfig:
    """A copy with some keys of one section changed (re-checked)."""
    return dataclasses.replace(config, **{section: dataclasses.replace(getattr(config, section), **changes)})


__all__ = [
    "CONTROL",
    "SECTIONS",
    "STUDY_DEFAULTS",
    "StudyConfig",
    "StudySettings",
    "RefineSettings",
    "load_refine",
    "load_study",
    "replace",
    "study_from_dict",
]
