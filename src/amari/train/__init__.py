"""Training on a group's images: `amari train DATA_DIR --out DIR [--method ti|lora|pivotal]`.

Textual Inversion (a token's vectors), a LoRA on the UNet's attention, or pivotal tuning (both at once).

`TrainConfig` holds the settings (the study's by default) and `TrainLayout` where the run reads and
writes; `run(config, layout)` runs or resumes a run and returns a `TrainResult`; `run_groups` trains
several groups, Textual Inversion's in one run. The heavy parts (torch,
diffusers) load only when `run` is called.
"""

from __future__ import annotations

from amari.storage.layout import TrainLayout
from amari.train.config import (
    METHOD_NAMES,
    METHODS,
    STUDY_METHODS,
    UNTRAINED_METHODS,
    TrainConfig,
    epoch_at,
    learning_rate,
)
from amari.train.groups import Group


def run(config: TrainConfig, layout: TrainLayout, log=None, start_over: bool = False):
    """Run (or resume) the training described by `config` (see `amari.train.loop`); `start_over`: a run
    with other settings in the output folder is trained anew instead of refused."""
    from amari.train.loop import train

    return train(config, layout, log, start_over)


def run_groups(groups, log=None, start_over: bool = False):
    """Train (or resume) several groups, each a `Group(name, config, layout)`: Textual Inversion groups in
    one run over one model (`amari.train.together`), the others one after another; {name: TrainResult}.
    `start_over`: as `run`'s."""
    from amari.train.together import train_groups

    return train_groups(list(groups), log, start_over)


def read_lora_record(path):
    """A LoRA run's `lora.json`: its trigger words, the token of a pivotal run's embedding, its files."""
    from amari.train.exports import read_record

    return read_record(path)


__all__ = [
    "METHOD_NAMES",
    "METHODS",
    "STUDY_METHODS",
    "TrainConfig",
    "TrainLayout",
    "UNTRAINED_METHODS",
    "epoch_at",
    "learning_rate",
    "Group",
    "read_lora_record",
    "run",
    "run_groups",
]
