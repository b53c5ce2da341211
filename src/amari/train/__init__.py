"""Textual Inversion training: `amari train DATA_DIR --out DIR`.

`TrainConfig` holds the settings (the study's by default); `train(config)` runs or resumes a run and
returns a `TrainResult`. The heavy parts (torch, diffusers) load only when `train` is called.
"""

from __future__ import annotations

from amari.train.config import DEFAULT_MODEL, STUDY_SEEDS, TrainConfig, epoch_at, learning_rate


def train(config: TrainConfig, log=None):
    """Run or resume the training described by `config` (see `amari.train.loop.train`)."""
    from amari.train.loop import train as run_training

    return run_training(config, log)


__all__ = ["DEFAULT_MODEL", "STUDY_SEEDS", "TrainConfig", "epoch_at", "learning_rate", "train"]
