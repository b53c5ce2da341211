"""The study a doctor checks, and what its timings and estimate read from it, taken in one place.

The generation and enhancement settings are the miner's own (`MineConfig.generate_config()` and
`enhance_config()`), a grid image's are the evaluation's (`amari.evaluate.grid.generation_config`), and
a training step is the study's `TrainConfig` with each of its methods: the doctor times exactly what the
study would run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from amari.enhance import EnhanceConfig
from amari.faces.settings import FaceSettings
from amari.generate import GenerateConfig
from amari.train import TrainConfig

STUDY_2022 = Path("configs") / "amari-2022.toml"
# A study names its evaluation grid; the grid decides no model, so the default settings borrow this one.
ANY_GRID = {"evaluate": {"prompts": ["a photo of amari"], "commands": [{"name": "sd1", "seed": 1}]}}


@dataclass(frozen=True)
class StudyPlan:
    """What a study will run: one candidate through the miner, a training step per method, a grid image."""

    name: str
    out: Path  # the study's output folder (the workspace)
    device: str
    # Mining: a candidate is generated (a batch at a time), enhanced, its faces found, written.
    source: str  # diffusers, or folder:PATH (another tool draws)
    prompt: str
    generate: GenerateConfig | None  # None: the folder source
    enhance: EnhanceConfig | None  # None: not enhanced
    faces: FaceSettings
    target: int
    workers: int  # the streaming engine's CPU worker processes beside the generator; 0: the serial engine
    batch_by_memory: bool  # the generator's batch is what a GPU's free memory holds (no batch set)
    # Training: every group trains `train.max_steps` steps with each method, with sample images at each checkpoint.
    groups: int
    train: TrainConfig
    # Evaluation: one image per prompt × command × (method × group) cell.
    evaluate: GenerateConfig
    eval_images: int
    eval_batch: int | None  # images of a prompt per pass; None: what the free memory holds
    commands: int  # the grid's commands: a prompt's images, the most a pass holds

    @property
    def generates(self) -> bool:
        """True when the miner makes its own candidates (the diffusers source), not another tool."""
        return self.generate is not None

    @property
    def enhances(self) -> bool:
        return self.enhance is not None

    @property
    def methods(self) -> tuple[str, ...]:
        """The training methods; every group trains once with each."""
        return self.train.study_methods()

    @property
    def together(self) -> bool:
        """Whether the study trains its Textual Inversion groups in one run (one batch of every group's
        samples a step)."""
        if self.groups < 2 or "ti" not in self.methods:
            return False
        from amari.storage.layout import TrainLayout
        from amari.train.groups import Group, apart_because

        config = self.train.replace(method="ti", methods=None)
        return apart_because([Group(name, config, TrainLayout(".", ".")) for name in "ab"]) is None


def plan_from_study(config) -> StudyPlan:
    """The plan of an amari.study.config.StudyConfig; the only function here that reads one."""
    from amari.evaluate import CONTROL, plan_cells
    from amari.evaluate.grid import generation_config

    mine = config.mine
    generates = mine.folder is None
    return StudyPlan(
        name=config.study.name,
        out=config.layout.root,
        device=config.study.device,
        source=mine.source,
        prompt=mine.prompt,
        generate=mine.generate_config() if generates else None,
        enhance=mine.enhance_config() if generates else None,
        faces=mine.faces,
        target=mine.target,
        workers=mine.worker_processes if mine.engine == "streaming" else 0,
        batch_by_memory=mine.images_per_call is None,
        groups=len(config.select.groups),
        train=config.train,
        evaluate=generation_config(config.evaluate, ("", CONTROL), None),  # the plain model, as the control group
        eval_images=len(plan_cells(config.evaluate)),
        eval_batch=config.evaluate.batch_size,
        commands=len(config.evaluate.commands),
    )


def default_study_file() -> Path | None:
    """The 2022 study's config: in the current folder's configs/, else beside amari's source checkout."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[3]):
        if (base / STUDY_2022).is_file():
            return base / STUDY_2022
    return None


def find_study(path: str | Path | None = None):
    """(config, what it is, whether a file gave it): the study at `path`, else configs/amari-2022.toml
    when it can be found, else a study of the default settings (whose models are the defaults')."""
    from amari.study.config import load_study, study_from_dict

    path = path or default_study_file()
    if path is not None:
        return load_study(path), str(path), True
    return study_from_dict(ANY_GRID), "the default settings", False
