"""Settings of a training run (Textual Inversion, LoRA or pivotal tuning), with the study's values as
defaults, and the arithmetic on them.

Nothing here imports torch: the CLI builds a `TrainConfig` and the numbers (learning rate, epochs,
learning-rate schedule) are pure functions that tests check without a model.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from amari.config.defaults import DEFAULT_MODEL, STUDY_SEEDS
from amari.config.limits import MAX_COUNT, MAX_DENOISING_STEPS, MAX_STEPS, check_at_most, check_image_size
from amari.config.settings import Settings, setting
from amari.errors import UsageError

# ti: the token's vectors alone; lora: a LoRA on the UNet's attention (the token is plain text);
# pivotal: the token's vectors and the LoRA together, each with its own learning rate.
METHODS = ("ti", "lora", "pivotal")
# A study may compare these with the trained ones: nothing is trained, the evaluation conditions on each group.
UNTRAINED_METHODS = ("ip-adapter",)
STUDY_METHODS = METHODS + UNTRAINED_METHODS
METHOD_NAMES = {
    "ti": "Textual Inversion",
    "lora": "LoRA",
    "pivotal": "pivotal tuning (token + LoRA)",
    "ip-adapter": "IP-Adapter (no training)",
}
UNET_ATTENTION = ("to_q", "to_k", "to_v", "to_out.0")
TEXT_ENCODER_ATTENTION = ("q_proj", "k_proj", "v_proj", "out_proj")
LR_SCHEDULES = ("constant", "constant_with_warmup", "linear", "cosine")
MIXED_PRECISION = ("auto", "no", "fp16", "bf16")
# Characters every file system accepts in a file name; the A1111-style file is named after the embedding.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Settings that change what a checkpoint means; a run can only resume when they are unchanged.
RESUME_KEYS = (
    "model",
    "token",
    "init_word",
    "num_vectors",
    "templates",
    "resolution",
    "center_crop",
    "repeats",
    "flip_p",
    "batch_size",
    "grad_accum",
    "base_lr",
    "scale_lr",
    "lr_schedule",
    "lr_warmup_steps",
    "adam_beta1",
    "adam_beta2",
    "adam_epsilon",
    "weight_decay",
    "seed",
    "mixed_precision",
)
# ... and those of a run that trains a LoRA (recorded only then, so a TI run's record stays as it was).
LORA_RESUME_KEYS = ("method", "lora_rank", "lora_alpha", "lora_targets", "text_encoder_lora", "unet_lr")


def read_templates(path: str | Path) -> tuple[str, ...]:
    """One template per non-empty line; lines starting with '#' are comments."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read templates file {path}: {exc}") from None
    templates = tuple(line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))
    if not templates:
        raise UsageError(f"templates file {path} holds no template")
    check_templates(templates)
    return templates


_LEARNED, _DATA, _OPTIMISATION, _CHECKPOINTS = ("what is learned", "data", "optimisation", "checkpoints and validation")
_LORA = "LoRA (--method lora or pivotal)"


@dataclass(frozen=True)
class TrainConfig(Settings):
    """One training run, with the study's settings as defaults (where it reads and writes is its
    `TrainLayout`)."""

    model: str = setting(
        DEFAULT_MODEL,
        "the model (SD 1.x, SD 2.x, SDXL or FLUX.1): diffusers folder, Hugging Face id or .safetensors/.ckpt file",
        study=True,
    )
    model_config: str | None = setting(
        None,
        "a diffusers folder or Hugging Face id that gives a single-file model its component configs (needed offline)",
        metavar="DIR_OR_ID",
        study=True,
    )
    vae: str | None = setting(
        None,
        "a replacement VAE for encoding the images and the samples (folder, Hugging Face id or file)",
        metavar="DIR_ID_OR_FILE",
        study=True,
    )
    biometric_licence: str | None = setting(
        None,
        "the licence that permits scoring samples (--reference-group) of a model whose own forbids it (FLUX.1 [dev])",
        metavar="TEXT",
        study=True,
    )
    method: str = setting(
        "ti",
        "what learns the identity: ti (the token's vectors; SDXL: one vector in each of its two text encoders; "
        "not offered for FLUX.1), lora (a LoRA on the UNet's or FLUX.1 transformer's attention, the token "
        "written as plain text), pivotal (the token's vectors and the LoRA together)",
        choices=METHODS,
        group=_LEARNED,
    )
    methods: tuple[str, ...] | None = setting(
        None,
        "a study compares these methods on every group (default: method alone); ip-adapter trains nothing",
        cli=False,
    )
    token: str = setting("*", "placeholder written in prompts", group=_LEARNED)
    warm_start: Path | None = setting(
        None,
        "a finished run's folder to begin from: its token's vectors and its LoRA instead of the init word and a "
        "fresh LoRA (default: a cold start)",
        metavar="DIR",
        group=_LEARNED,
    )
    init_word: str = setting("woman", "word whose embedding starts the vectors", group=_LEARNED)
    num_vectors: int = setting(1, "vectors per token", flag="--vectors", group=_LEARNED)
    name: str | None = setting(
        None,
        "name of the A1111-style file and prompt word there (default: the token "
        "if it is a valid file name, else 'amari')",
        group=_LEARNED,
    )
    templates: tuple[str, ...] | None = setting(
        None,
        "prompt templates, one per line, '{}' marks the token (default: ImageNet object templates)",
        metavar="FILE",
        cli_type=read_templates,
        group=_LEARNED,
    )
    resolution: int | None = setting(
        None, "training image side in pixels (default: the model's native size, 512 for SD 1.x)", group=_DATA
    )
    center_crop: bool = setting(
        True,
        "squash non-square images to a square instead of centre-cropping them",
        flag="--no-center-crop",
        group=_DATA,
    )
    repeats: int = setting(100, "times each image appears per epoch", group=_DATA)
    flip_p: float = setting(
        0.5,
        "no random horizontal flips (flip_p: the share flipped)",
        flag="--no-flip",
        action="const",
        const=0.0,
        show_default=False,
        group=_DATA,
    )
    batch_size: int = setting(1, "images per step per process", group=_OPTIMISATION)
    grad_accum: int = setting(1, "gradient accumulation steps", group=_OPTIMISATION)
    base_lr: float = setting(0.005, "base learning rate", flag="--lr", group=_OPTIMISATION)
    scale_lr: bool = setting(
        True,
        "use --lr as is instead of scaling it by processes x batch x accumulation",
        flag="--no-scale-lr",
        group=_OPTIMISATION,
    )
    lr_schedule: str = setting("constant", "learning-rate schedule", choices=LR_SCHEDULES, group=_OPTIMISATION)
    lr_warmup_steps: int = setting(0, "steps of linear warm-up", group=_OPTIMISATION)
    adam_beta1: float = setting(0.9, "AdamW beta1", cli=False)
    adam_beta2: float = setting(0.999, "AdamW beta2", cli=False)
    adam_epsilon: float = setting(1e-8, "AdamW epsilon", cli=False)
    weight_decay: float = setting(0.01, "AdamW weight decay (its default, as the original trainer used)", cli=False)
    max_steps: int = setting(15_500, "optimizer steps", flag="--steps", group=_OPTIMISATION)
    seed: int = setting(23, "random seed of the run (the original trainer's)", group=_OPTIMISATION)
    mixed_precision: str = setting(
        "auto", "auto: bf16 (or fp16) on a GPU, none on the CPU", choices=MIXED_PRECISION, group=_OPTIMISATION
    )
    gradient_checkpointing: bool | None = setting(
        None,
        "trade compute for memory (default: on a GPU only when a step would not fit in its free memory)",
        group=_OPTIMISATION,
    )
    cpu: bool = setting(False, "train on the CPU even when a GPU is present", group=_OPTIMISATION)
    deterministic: bool = setting(
        False,
        "deterministic GPU kernels only, so a resumed run repeats an unbroken one bit for bit there too "
        "(slower; on the CPU runs repeat anyway)",
        group=_OPTIMISATION,
    )
    lora_rank: int = setting(4, "rank of each LoRA update", group=_LORA)
    lora_alpha: float | None = setting(
        None, "LoRA alpha: updates are scaled by alpha / rank (default: the rank, a scale of 1)", group=_LORA
    )
    lora_targets: tuple[str, ...] = setting(
        UNET_ATTENTION,
        "UNet modules that get a LoRA, by name (the attention projections)",
        metavar="NAME,NAME,...",
        group=_LORA,
    )
    text_encoder_lora: bool = setting(
        False,
        "also put a LoRA on the CLIP text encoders' attention projections (q, k, v, out; SDXL: both encoders)",
        group=_LORA,
    )
    unet_lr: float = setting(
        1e-4, "learning rate of the LoRA weights, scaled like --lr (the token keeps --lr)", group=_LORA
    )
    checkpoint_every: int = setting(500, "steps between checkpoints", group=_CHECKPOINTS)
    reference_group: Path | None = setting(
        None,
        "images of the identity: score the samples and mark the best checkpoint",
        metavar="DIR",
        study=True,
        group=_CHECKPOINTS,
    )
    sample_prompts: tuple[str, ...] = setting(
        ("a photo of {}",),
        "sample prompt with '{}' for the token (repeatable)",
        flag="--sample-prompt",
        action="append",
        metavar="TEXT",
        group=_CHECKPOINTS,
    )
    sample_seeds: tuple[int, ...] = setting(
        STUDY_SEEDS, "seeds of the samples (the study's five; '' for no samples)", metavar="N,N,...", group=_CHECKPOINTS
    )
    sample_steps: int | None = setting(
        None, "denoising steps of the samples (default: the family's, 50 for SD 1.x)", group=_CHECKPOINTS
    )
    guidance_scale: float | None = setting(
        None, "CFG of the samples (default: the family's, 7.5 for SD 1.x)", group=_CHECKPOINTS
    )

    def check(self) -> None:
        self._check()

    def _check(self) -> None:
        if self.method not in METHODS:
            raise UsageError(f"unknown method {self.method!r}: use one of {', '.join(METHODS)}")
        for method in self.methods or ():
            if method not in STUDY_METHODS:
                raise UsageError(f"unknown method {method!r}: use some of {', '.join(STUDY_METHODS)}")
        if self.methods is not None and (not self.methods or len(set(self.methods)) != len(self.methods)):
            raise UsageError(f"methods must list each method once, not {list(self.methods)}")
        self._check_lora()
        if not self.token.strip() or any(c.isspace() for c in self.token):
            raise UsageError(f"--token must be one word without spaces, not {self.token!r}")
        if not self.init_word.strip():
            raise UsageError("--init-word must not be empty")
        if self.name is not None and not _SAFE_NAME.match(self.name):
            raise UsageError(f"--name {self.name!r} must be letters, digits, '_', '-' or '.' (it is a file name)")
        _at_least(
            1,
            num_vectors=self.num_vectors,
            repeats=self.repeats,
            batch_size=self.batch_size,
            grad_accum=self.grad_accum,
            max_steps=self.max_steps,
            checkpoint_every=self.checkpoint_every,
            **({"resolution": self.resolution} if self.resolution is not None else {}),
            **({"sample_steps": self.sample_steps} if self.sample_steps is not None else {}),
        )
        if self.resolution is not None and self.resolution % 8:
            raise UsageError(f"--resolution must be a multiple of 8, not {self.resolution}")
        if self.guidance_scale is not None and not (self.guidance_scale >= 0 and math.isfinite(self.guidance_scale)):
            raise UsageError(f"--guidance-scale must be a number >= 0, not {self.guidance_scale}")
        self._check_limits()
        if not 0.0 <= self.flip_p <= 1.0:
            raise UsageError(f"flip probability must be between 0 and 1, not {self.flip_p}")
        if not (self.base_lr > 0 and math.isfinite(self.base_lr)):
            raise UsageError(f"--lr must be a positive number, not {self.base_lr}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise UsageError(f"unknown --lr-schedule {self.lr_schedule!r}: use one of {', '.join(LR_SCHEDULES)}")
        if self.lr_warmup_steps < 0:
            raise UsageError("--lr-warmup-steps must not be negative")
        if self.mixed_precision not in MIXED_PRECISION:
            raise UsageError(
                f"unknown --mixed-precision {self.mixed_precision!r}: use one of {', '.join(MIXED_PRECISION)}"
            )
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
        self._check_family()

    def _check_family(self) -> None:
        from amari.models.families.registry import guess
        from amari.models.licences import check_biometric_use

        family = guess(self.model)
        taken = [method for method in self.study_methods() if method in ("ti", "pivotal")]
        if taken and family.no_token_training:
            raise UsageError(f"--method {taken[0]}: {family.no_token_training}")
        if self.resolution is not None and self.resolution % family.size_multiple:
            raise UsageError(f"--resolution must be a multiple of {family.size_multiple} for {family.label}")
        if self.reference_group is not None:
            check_biometric_use(self.model, self.biometric_licence, "amari train --reference-group")

    def _check_limits(self) -> None:
        steps = dict(max_steps=self.max_steps, checkpoint_every=self.checkpoint_every)
        check_at_most(MAX_STEPS, "years of a GPU's time", **steps)
        check_at_most(MAX_DENOISING_STEPS, "the schedulers' training timesteps", sample_steps=self.sample_steps)
        check_at_most(MAX_COUNT, "each is counted one by one", repeats=self.repeats, grad_accum=self.grad_accum)
        check_image_size(self.resolution, self.resolution, self.batch_size, "training on images", ("resolution",) * 2)

    def _check_lora(self) -> None:
        _at_least(1, lora_rank=self.lora_rank)
        if self.lora_alpha is not None and not self.lora_alpha > 0:
            raise UsageError(f"--lora-alpha must be positive, not {self.lora_alpha}")
        if not self.lora_targets or not all(re.fullmatch(r"[A-Za-z_][\w.]*", t) for t in self.lora_targets):
            raise UsageError(f"--lora-targets must name modules, e.g. {','.join(UNET_ATTENTION)}")
        if not (self.unet_lr > 0 and math.isfinite(self.unet_lr)):
            raise UsageError(f"--unet-lr must be a positive number, not {self.unet_lr}")

    @property
    def trains_token(self) -> bool:
        """Whether the run learns the placeholder's vectors (ti, pivotal)."""
        return self.method in ("ti", "pivotal")

    @property
    def trains_lora(self) -> bool:
        """Whether the run learns a LoRA (lora, pivotal)."""
        return self.method in ("lora", "pivotal")

    @property
    def alpha(self) -> float:
        """The LoRA's alpha: --lora-alpha, else the rank (updates at a scale of 1)."""
        return float(self.lora_rank if self.lora_alpha is None else self.lora_alpha)

    @property
    def trigger(self) -> str:
        """What a LoRA-only run writes for the identity: the token as plain words and the init word after
        it ("amari woman"), an identifier and its class as DreamBooth prompts them."""
        return f"{self.token} {self.init_word}"

    def study_methods(self) -> tuple[str, ...]:
        """The methods a study trains each group with."""
        return tuple(m for m in self.compared_methods() if m in METHODS)

    def compared_methods(self) -> tuple[str, ...]:
        """The methods a study evaluates on each group: those it trains, and those that need no training."""
        return self.methods or (self.method,)

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
        keys = RESUME_KEYS + (LORA_RESUME_KEYS if self.trains_lora else ()) + (("vae",) if self.vae else ())
        settings = {key: _jsonable(values[key]) for key in keys}
        if self.warm_start is not None:  # what it began from, by content (a record names no local folder)
            from amari.train.warm import warm_digest

            settings["warm_start"] = warm_digest(self.warm_start, self.trains_token, self.trains_lora)
        return settings


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


def learning_rate(config: TrainConfig, processes: int, base: float | None = None) -> float:
    """The study's rule: base rate × processes × batch × accumulation (0.005 × 2 GPUs × 1 = 0.01).

    `base` is another base rate under the same rule (the LoRA's `unet_lr`); default the token's.
    """
    base = config.base_lr if base is None else base
    if not config.scale_lr:
        return base
    return base * processes * config.batch_size * config.grad_accum


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


def is_checkpoint_step(step: int, max_steps: int, every: int) -> bool:
    """Whether a checkpoint is written after `step`: every `every` steps, and always the last step."""
    return step % every == 0 or step == max_steps


def checkpoint_steps(max_steps: int, every: int) -> list[int]:
    """Steps at which a checkpoint is written: every `every` steps, and always the last step."""
    steps = list(range(every, max_steps + 1, every))
    if not steps or steps[-1] != max_steps:
        steps.append(max_steps)
    return steps
