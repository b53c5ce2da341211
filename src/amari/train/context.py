"""A training run as every step sees it: the checked settings, the frozen model with what learns put into
it, the optimizer. `amari.train.setup` builds it; the loop, resuming and saving read it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from amari.storage.layout import TrainLayout
from amari.train.config import TrainConfig, samples_per_step
from amari.train.lora import LoraSpec
from amari.train.model import Components
from amari.train.scoring import Scoring
from amari.train.tokens import PlaceholderEmbedding

Log = Callable[[str], None]


def named_log(log: Log, name: str) -> Log:
    """`log` with each message said of `name` (a group of a run of several)."""
    return lambda message: log(f"{name}: {message}")


@dataclass
class Run:
    """Everything a training step needs, built once by `prepare_run`."""

    config: TrainConfig
    layout: TrainLayout
    accelerator: object
    components: Components
    placeholder: PlaceholderEmbedding | None  # the unwrapped module holding the trainable vectors (ti, pivotal)
    trainable: torch.nn.Module | None  # the same module as the text encoder calls it (DDP with several processes)
    optimizer: object
    token: str  # the token string the tokenizer knows, e.g. "<*>" for "*"; a LoRA run's trigger words
    placeholder_ids: list[int]
    template_ids: torch.Tensor  # [templates, 77] prompt token ids
    latent_mean: torch.Tensor  # [images, 2 (plain, mirrored), C, h, w]
    latent_std: torch.Tensor
    image_names: list[str]
    weight_dtype: torch.dtype
    lr: float  # the first parameter group's learning rate: the token's, or the LoRA's in a lora run
    reference: object = None  # the reference group's faces (a FaceGroup), main process only
    face_encoder: object = None
    log: Log = field(default=lambda message: None)
    lrs: tuple[float, ...] = ()  # every parameter group's learning rate, in the optimizer's order
    lora: LoraSpec | None = None  # the LoRA being trained (lora, pivotal)
    unet: object = None  # the UNet and text encoder as the step calls them (DDP-wrapped where they learn)
    text_encoder: object = None
    synced: tuple = ()  # the modules whose gradients the processes average
    scoring: Scoring = field(default_factory=Scoring)  # the checkpoint samples' scores, made in the background

    @property
    def processes(self) -> int:
        return self.accelerator.num_processes

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def samples_per_step(self) -> int:
        return samples_per_step(self.config, self.processes)

    @property
    def trains_text(self) -> bool:
        """Whether anything in the text encoder learns (the vectors, or a LoRA there)."""
        return self.placeholder is not None or bool(self.lora and self.lora.text_encoder_targets)
