"""The settings of a study that the doctor's timings and estimate read, taken from its config in one place."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class StudyPlan:
    """What a study will run: which model where, what one candidate, step and grid image cost."""

    name: str
    out: Path  # the study's output folder (the workspace)
    model: str
    model_config: str | None
    device: str
    # Mining: one candidate is generated (a batch of images_per_call at a time), enhanced, judged, written.
    source: str
    prompt: str
    sampler: str
    steps: int
    guidance: float
    width: int
    height: int
    images_per_call: int
    enhance: bool
    upscaler: str | None
    face_restorer: str | None
    scale: float
    target: int
    # Training: every training group trains `max_steps` steps, with sample images at each checkpoint.
    groups: int
    train: dict[str, Any] = field(default_factory=dict)  # amari.train.TrainConfig keywords
    # Evaluation: one image per prompt × command × group cell.
    eval_images: int = 0
    eval_sampler: str = "k_lms"
    eval_steps: int = 250
    eval_guidance: float = 7.5
    eval_width: int = 512
    eval_height: int = 512

    @property
    def generates(self) -> bool:
        """True when the miner makes its own candidates (the diffusers source), not another tool."""
        return self.source == "diffusers"

    @property
    def enhances(self) -> bool:
        return self.generates and self.enhance


def _none_word(value) -> str | None:
    return None if value is None or str(value).strip().lower() in ("", "none", "off") else str(value)


def plan_from_study(config) -> StudyPlan:
    """The plan of an amari.study.config.StudyConfig; the only function here that reads one."""
    study, mine, train, ev = config.study, config.mine, config.train, config.evaluate
    cells = len(ev.prompts) * len(ev.commands) * len(config.evaluated_groups)
    return StudyPlan(
        name=study.name, out=Path(config.layout.root), model=study.model, model_config=study.model_config,
        device=study.device, source=mine.source, prompt=mine.prompt, sampler=mine.sampler, steps=mine.steps,
        guidance=mine.guidance, width=mine.width, height=mine.height, images_per_call=mine.images_per_call,
        enhance=mine.enhance, upscaler=_none_word(mine.upscaler), face_restorer=_none_word(mine.face_restorer),
        scale=mine.scale, target=mine.target, groups=len(config.select.groups),
        train={f.name: getattr(train, f.name) for f in dataclasses.fields(train)},
        eval_images=cells, eval_sampler=ev.sampler, eval_steps=ev.steps, eval_guidance=ev.guidance,
        eval_width=ev.width, eval_height=ev.height)
