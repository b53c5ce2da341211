"""Groups of a study trained together: what a group is, when groups can share one run, and a group's share of
the run's optimizer (no torch at import; the run itself is `amari.train.together`)."""

from __future__ import annotations

from dataclasses import dataclass

from amari.storage.layout import TrainLayout
from amari.train.config import TrainConfig

# Settings that shape the shared batch and model: groups train together only when these are equal.
SHARED = (
    "model",
    "model_config",
    "vae",
    "token",
    "init_word",
    "num_vectors",
    "templates",
    "resolution",
    "center_crop",
    "grad_accum",
    "mixed_precision",
    "gradient_checkpointing",
    "cpu",
    "deterministic",
)


@dataclass(frozen=True)
class Group:
    """One group of a run: its name (in messages), its settings and its folders."""

    name: str
    config: TrainConfig
    layout: TrainLayout


def apart_because(groups: list[Group]) -> str | None:
    """Why these groups cannot train in one run (None: they can)."""
    if len(groups) < 2:
        return "one group"
    methods = sorted({group.config.method for group in groups} - {"ti"})
    if methods:
        return f"{methods[0]} changes weights every group shares"
    first = groups[0].config
    differ = [key for key in SHARED if any(getattr(g.config, key) != getattr(first, key) for g in groups)]
    if differ:
        return f"their {differ[0].replace('_', ' ')} differs"
    if any(group.config.warm_start is not None for group in groups):
        return "a warm start"
    from amari.models.families.registry import guess

    family = guess(first.model)
    learners = sum(slot.learns_token for slot in family.text_encoders)
    if learners != 1:  # SDXL learns the token in two text encoders; FLUX.1 has no Textual Inversion
        return f"{family.label} learns the token in {learners} text encoders"
    return None


class GroupOptimizer:
    """One group's share of the shared AdamW, read and written as the optimizer of a run of that group
    alone: a checkpoint written together resumes a lone run, and the other way round."""

    def __init__(self, optimizer, index: int):
        self.optimizer, self.index = optimizer, index

    def _alone(self):
        group = self.optimizer.param_groups[self.index]
        alone = type(self.optimizer)([dict(group)])
        for parameter in group["params"]:
            if parameter in self.optimizer.state:
                alone.state[parameter] = self.optimizer.state[parameter]
        return alone

    def state_dict(self) -> dict:
        return self._alone().state_dict()

    def load_state_dict(self, saved: dict) -> None:
        alone = self._alone()
        alone.load_state_dict(saved)
        group = self.optimizer.param_groups[self.index]
        group.update({key: value for key, value in alone.param_groups[0].items() if key != "params"})
        for parameter in group["params"]:
            if parameter in alone.state:
                self.optimizer.state[parameter] = alone.state[parameter]
