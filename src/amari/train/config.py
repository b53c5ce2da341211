"""Settings of a Textual Inversion run, with the study's values as defaults, and the arithmetic on them.

Nothing here imports torch: the CLI builds a `TrainConfig` and the numbers (learning rate, epochs,
learning-rate schedule) are pure functions that tests check without a model.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from amari.errors import UsageError

DEFAULT_MODEL = "CompVis/stable-diffusion-v1-4"
# The evaluation seeds of the study (sd1..sd5), reused so that checkpoint samples are comparable to it.
STUDY_SEEDS = (335728730, 691007764, 1295044561, 2565311105, 1995053400)
LR_SCHEDULES = ("constant", "constant_with_warmup", "linear", "cosine")
MIXED_PRECISION = ("auto", "no", "fp16", "bf16")
# Characters every file system accepts in a file name; the A1111-style file is named after the embedding.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Settings that change what a checkpoint means; a run can only resume when they are unchanged.
RESUME_KEYS = ("model", "token", "init_word", "num_vectors", "templates", "resolution", "center_crop",
               "repeats", "flip_p", "batch_size", "grad_accum", "base_lr", "scale_lr", "lr_schedule",
               "lr_warmup_steps", "adam_beta1", "adam_beta2", "adam_epsilon", "weight_decay", "seed",
               "mixed_precision")


@dataclass(frozen=True)
class TrainConfig:
    """One Textual Inversion run. Paths are where the data is read and everything is written."""

    data_dir: Path
    out_dir: Path
    model: str = DEFAULT_MODEL  # diffusers folder, Hugging Face id, or single .ckpt/.safetensors file
    token: str = "*"  # the placeholder as written in prompts
    init_word: str = "woman"  # the placeholder's vectors start as this word's embedding
    num_vectors: int = 1
    name: str | None = None  # file name (and prompt word) of the A1111-style file; default: see embedding_name
    templates: tuple[str, ...] | None = None  # None: the ImageNet-style object templates; "{}" marks the token
    resolution: int = 512
    center_crop: bool = True  # square centre crop before the resize (no effect on square images)
    repeats: int = 100  # each image appears this many times per epoch
    flip_p: float = 0.5  # probability of a horizontal flip
    batch_size: int = 1  # per process
    grad_accum: int = 1
    base_lr: float = 0.005
    scale_lr: bool = True  # learning rate = base × processes × batch × accumulation
    lr_schedule: str = "constant"
    lr_warmup_steps: int = 0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    weight_decay: float = 0.01  # AdamW's default, as the original trainer used
    max_steps: int = 15_500
    checkpoint_every: int = 500
    seed: int = 23  # the original trainer's default seed
    mixed_precision: str = "auto"  # auto: bf16 (fp16 where bf16 is missing) on CUDA, none on CPU
    gradient_checkpointing: bool | None = None  # None: on for CUDA, off for CPU
    cpu: bool = False  # train on the CPU even when a GPU is present
    # Sample images and identity validation at every checkpoint.
    sample_prompts: tuple[str, ...] = ("a photo of {}",)
    sample_seeds: tuple[int, ...] = STUDY_SEEDS
    sample_steps: int = 50
    guidance_scale: float = 7.5
    reference_group: Path | None = None  # folder of the identity's images; enables sim-score validation

    def __post_init__(self):
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        if self.reference_group is not None:
            object.__setattr__(self, "reference_group", Path(self.reference_group))
        if self.templates is not None:
            object.__setattr__(self, "templates", tuple(self.templates))
        object.__setattr__(self, "sample_prompts", tuple(self.sample_prompts))
        object.__setattr__(self, "sample_seeds", tuple(int(s) for s in self.sample_seeds))
        self._check()

    def _check(self) -> None:
        if not self.token.strip() or any(c.isspace() for c in self.token):
            raise UsageError(f"--token must be one word without spaces, not {self.token!r}")
        if not self.init_word.strip():
            raise UsageError("--init-word must not be empty")
        if self.name is not None and not _SAFE_NAME.match(self.name):
            raise UsageError(f"--name {self.name!r} must be letters, digits, '_', '-' or '.' (it is a file name)")
        _at_least(1, num_vectors=self.num_vectors, resolution=self.resolution, repeats=self.repeats,
                  batch_size=self.batch_size, grad_accum=self.grad_accum, max_steps=self.max_steps,
                  checkpoint_every=self.checkpoint_every, sample_steps=self.sample_steps)
        if self.resolution % 8:
            raise UsageError(f"--resolution must be a multiple of 8, not {self.resolution}")
        if not 0.0 <= self.flip_p <= 1.0:
            raise UsageError(f"flip probability must be between 0 and 1, not {self.flip_p}")
        if not (self.base_lr > 0 and math.isfinite(self.base_lr)):
            raise UsageError(f"--lr must be a positive number, not {self.base_lr}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise UsageError(f"unknown --lr-schedule {self.lr_schedule!r}: use one of {', '.join(LR_SCHEDULES)}")
        if self.lr_warmup_steps < 0:
            raise UsageError("--lr-warmup-steps must not be negative")
        if self.mixed_precision not in MIXED_PRECISION:
            raise UsageError(f"unknown --mixed-precision {self.mixed_precision!r}: "
                             f"use one of {', '.join(MIXED_PRECISION)}")
        if self.seed < 0:
            raise UsageError(f"--seed must not be negative, not {self.seed}")
        if self.templates is not None:
            check_templates(self.templates)
        for prompt in self.sample_prompts:
            if "{}" not in prompt:
                raise UsageError(f"sample prompt {prompt!r} has no '{{}}' for the token")
        if self.reference_group is not None and not self.sample_seeds:
            raise UsageError("--reference-group scores the sample images; give --sample-seeds too")
        if self.num_vectors > 75:
            raise UsageError("--vectors must leave room in CLIP's 77-token prompt (at most 75)")

    @property
    def embedding_name(self) -> str:
        """The A1111 / ComfyUI / InvokeAI file name: --name, else the token when it is a valid file name,
        else "amari" (the study's prompt word)."""
        if self.name:
            return self.name
        return self.token if _SAFE_NAME.match(self.token) else "amari"

    def resume_settings(self) -> dict:
        """The settings that must match for a run to continue from another run's checkpoint."""
        values = asdict(self)
        return {key: _jsonable(values[key]) for key in RESUME_KEYS}


def _at_least(minimum: int, **values: int) -> None:
    for name, value in values.items():
        if int(value) != value or value < minimum:
            raise UsageError(f"{name.replace('_', ' ')} must be an integer >= {minimum}, not {value}")


def _jsonable(value):
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return value


def check_templates(templates) -> None:
    if not templates:
        raise UsageError("the template list is empty")
    for template in templates:
        if template.count("{}") != 1:
            raise UsageError(f"template {template!r} must contain '{{}}' exactly once (it marks the token)")


def learning_rate(config: TrainConfig, processes: int) -> float:
    """The study's rule: base rate × processes × batch × accumulation (0.005 × 2 GPUs × 1 = 0.01)."""
    if not config.scale_lr:
        return config.base_lr
    return config.base_lr * processes * config.batch_size * config.grad_accum


def samples_per_step(config: TrainConfig, processes: int) -> int:
    return config.batch_size * processes * config.grad_accum


def epoch_at(step: int, samples_per_step: int, images: int, repeats: int) -> float:
    """Epochs done after `step` optimizer steps: samples seen ÷ (images × repeats).

    For 312 images × 100 repeats on 2 processes with batch 1, step 15,600 is epoch 1.0; for 4 images,
    step 15,500 is epoch 77.5 (the study's "total epochs at global step").
    """
    return step * samples_per_step / (images * repeats)


def lr_factor(step: int, schedule: str, warmup_steps: int, total_steps: int) -> float:
    """Multiplier of the learning rate for the optimizer step that follows `step` completed steps."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule in ("constant", "constant_with_warmup"):
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))  # cosine


def checkpoint_steps(max_steps: int, every: int) -> list[int]:
    """Steps at which a checkpoint is written: every `every` steps, and always the last step."""
    steps = list(range(every, max_steps + 1, every))
    if not steps or steps[-1] != max_steps:
        steps.append(max_steps)
    return steps
