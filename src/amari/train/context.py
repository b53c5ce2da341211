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
    # The unwrapped modules holding the trainable vectors, by text encoder (ti, pivotal; SDXL has two) ...
    placeholders: dict
    # ... and the same modules as their text encoders call them (DDP with several processes)
    trainables: dict
    optimizer: object
    token: str  # the token string the tokenizers know, e.g. "<*>" for "*"; a LoRA run's trigger words
    prompt_ids: list  # per text encoder: [templates, length] prompt token ids
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
    denoiser: object = None  # the denoiser and text encoders as the step calls them (DDP-wrapped where they learn)
    text_encoders: list = field(default_factory=list)
    synced: tuple = ()  # the modules whose gradients the processes average
    resolution: int = 512  # the training images' side
    scoring: Scoring = field(default_factory=Scoring)  # the checkpoint samples' scores, made in the background

    @property
    def family(self):
        return self.components.family

    @property
    def placeholder(self):
        """The first text encoder's placeholder (the only one, but for SDXL's two)."""
        return next(iter(self.placeholders.values()), None)

    @property
    def template_ids(self) -> torch.Tensor:
        """The first text encoder's prompt ids."""
        return self.prompt_ids[0]

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
        """Whether anything in a text encoder learns (the vectors, or a LoRA there)."""
        return bool(self.placeholders) or bool(self.lora and self.lora.text_encoder_targets)

    def current_vectors(self):
        """The trained vectors on the CPU: one tensor, or SDXL's {clip_l, clip_g} (the embedding file's keys)."""
        found = {}
        for slot in self.components.slots:
            if slot.encoder in self.placeholders:
                found[slot.embedding_key] = self.placeholders[slot.encoder].vectors.detach().float().cpu().clone()
        return found[None] if list(found) == [None] else found

    def load_vectors(self, saved) -> None:
        """Set the vectors from `current_vectors`' value (a checkpoint's)."""
        for slot in self.components.slots:
            if slot.encoder in self.placeholders:
                value = saved if isinstance(saved, torch.Tensor) else saved[slot.embedding_key]
                vectors = self.placeholders[slot.encoder].vectors
                with torch.no_grad():
                    vectors.copy_(value.to(vectors.device))
