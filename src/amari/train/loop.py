"""The Textual Inversion loop: only the placeholder's vectors learn, everything else is frozen.

`train(config)` runs or resumes a whole run:

1. check the data, templates and reference group (before any model is loaded);
2. load the model, freeze it and splice the placeholder's trainable vectors into the text encoder;
3. encode every training image (and its mirror image) with the VAE once;
4. resume from the latest complete checkpoint, if the output folder has one;
5. step: noise a latent at a random timestep, predict the noise from the placeholder prompt, MSE;
6. every `checkpoint_every` steps: embedding files, optimizer state, sample images and validation.

Several processes (`accelerate launch -m amari train ...`) each take their own samples and average the
vectors' gradients; the learning rate is scaled by processes × batch × accumulation as in the study.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from amari.errors import AmariError, UsageError, WorkspaceError
from amari.layout import TrainLayout
from amari.train import checkpoints as ckpt
from amari.train.config import TrainConfig, checkpoint_steps, epoch_at, learning_rate, lr_factor, samples_per_step
from amari.train.data import (
    OBJECT_TEMPLATES,
    draw,
    load_training_images,
    placeholder_prompt,
    sample_index,
    seed_for,
    to_pixels,
)
from amari.train.model import Components, freeze, load_components
from amari.train.saving import export_final, save_checkpoint
from amari.train.tokens import (
    PlaceholderEmbedding,
    add_placeholder,
    init_vectors,
    splice,
    training_token,
    vector_tokens,
)

_NOISE_STREAM = 2

Log = Callable[[str], None]


@dataclass
class Run:
    """Everything a training step needs, built once by `prepare_run`."""

    config: TrainConfig
    layout: TrainLayout
    accelerator: object
    components: Components
    placeholder: PlaceholderEmbedding  # the unwrapped module holding the trainable vectors
    trainable: torch.nn.Module  # the same module as the accelerator prepared it (DDP with several processes)
    optimizer: object
    token: str  # the token string the tokenizer knows, e.g. "<*>" for the placeholder "*"
    placeholder_ids: list[int]
    template_ids: torch.Tensor  # [templates, 77] prompt token ids
    latent_mean: torch.Tensor  # [images, 2 (plain, mirrored), C, h, w]
    latent_std: torch.Tensor
    image_names: list[str]
    weight_dtype: torch.dtype
    lr: float
    reference: object = None  # the reference group's faces (a FaceGroup), main process only
    face_encoder: object = None
    log: Log = field(default=lambda message: None)

    @property
    def processes(self) -> int:
        return self.accelerator.num_processes

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def samples_per_step(self) -> int:
        return samples_per_step(self.config, self.processes)


@dataclass(frozen=True)
class TrainResult:
    out_dir: Path
    step: int  # the last step reached
    resumed_from: int  # 0 for a fresh run
    token: str
    embedding_files: dict[str, Path]
    checkpoints: list[Path]
    best: dict | None  # best.json's content, when a reference group was given


def train(config: TrainConfig, layout: TrainLayout, log: Log | None = None) -> TrainResult:
    """Run (or resume) the training described by `config`; see the module docstring for the steps."""
    run = prepare_run(config, layout, log)
    start = resume(run)
    stops = [s for s in checkpoint_steps(config.max_steps, config.checkpoint_every) if s > start]
    if start >= config.max_steps:
        run.log(f"already trained to step {start} of {config.max_steps}; nothing to do")
    else:
        _train_until(run, start, stops)
    files = export_final(run) if run.is_main else {}
    run.accelerator.wait_for_everyone()
    best = ckpt.read_json(layout.best) if layout.best.is_file() else None
    return TrainResult(
        out_dir=layout.out,
        step=max(start, config.max_steps),
        resumed_from=start,
        token=run.token,
        embedding_files=files,
        checkpoints=[path for _step, path in ckpt.complete_checkpoints(layout.out)],
        best=best,
    )


def _train_until(run: Run, start: int, stops: list[int]) -> None:
    from amari.progress import progress_bar

    config = run.config
    metrics = ckpt.MetricsLog(run.layout.metrics) if run.is_main else None
    images = len(run.image_names)
    bar = progress_bar(config.max_steps - start, "training") if run.is_main else nullcontext(lambda n=1: None)
    try:
        with bar as advance:
            for step in range(start, config.max_steps):
                began = time.perf_counter()
                loss, lr = train_step(run, step)
                done = step + 1
                epoch = epoch_at(done, run.samples_per_step, images, config.repeats)
                if metrics is not None:
                    rate = run.samples_per_step / max(time.perf_counter() - began, 1e-9)
                    metrics.append(done, epoch, loss, lr, rate)
                advance()
                if not math.isfinite(loss):
                    raise WorkspaceError(
                        f"loss became {loss} at step {done}; lower --lr or use "
                        f"--mixed-precision no. Checkpoints so far are kept"
                    )
                if done in stops:
                    save_checkpoint(run, done, loss, lr, epoch)
    finally:
        if metrics is not None:
            metrics.close()


# 1-3. ---------------------------------------------------------------------------------------------


def prepare_run(config: TrainConfig, layout: TrainLayout, log: Log | None = None) -> Run:
    """Check the inputs, load and freeze the model, splice in the placeholder, encode the images."""
    # 1. Inputs, checked before the model loads.
    accelerator = _accelerator(config)
    say = log if (log is not None and accelerator.is_main_process) else (lambda message: None)
    names, images = load_training_images(layout.data, config.resolution, config.center_crop)
    image_names = [path.name for path in names]
    check_previous_run(config, layout, image_names, accelerator.num_processes)
    templates = config.templates or OBJECT_TEMPLATES
    reference, face_encoder = _reference_group(config, accelerator)
    torch.manual_seed(config.seed)  # nothing should draw from it; this keeps any stray draw repeatable

    # 2. The frozen model, with the placeholder's vectors spliced into the text encoder.
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)
    components = load_components(config.model, config.model_config, weight_dtype, log=say)
    freeze(components, accelerator.device)
    if _gradient_checkpointing(config, accelerator):
        components.unet.enable_gradient_checkpointing()

    tokenizer = components.tokenizer
    token = training_token(config.token, tokenizer.get_vocab())
    table = components.text_encoder.get_input_embeddings().weight
    vectors = init_vectors(tokenizer, table, config.init_word, config.num_vectors)
    ids = add_placeholder(tokenizer, token, config.num_vectors)
    placeholder = splice(components.text_encoder, ids, vectors)
    template_ids = _tokenize_templates(
        tokenizer, components.text_encoder, templates, vector_tokens(token, config.num_vectors)
    )

    # 3. The images' latent distributions, and the optimizer of the vectors.
    mean, std = encode_images(components.vae, images, accelerator.device, weight_dtype)
    lr = learning_rate(config, accelerator.num_processes)
    optimizer = torch.optim.AdamW(
        [placeholder.vectors],
        lr=lr,
        betas=(config.adam_beta1, config.adam_beta2),
        eps=config.adam_epsilon,
        weight_decay=config.weight_decay,
    )
    trainable, optimizer = accelerator.prepare(placeholder, optimizer)
    components.text_encoder.set_input_embeddings(trainable)
    say(
        f"{len(images)} images × {config.repeats} repeats, {len(templates)} templates, token {token!r} "
        f"({config.num_vectors} vector{'s' * (config.num_vectors > 1)}, from {config.init_word!r}); "
        f"lr {lr:g} on {accelerator.num_processes} process(es) [{accelerator.device}, "
        f"{accelerator.mixed_precision} mixed precision]"
    )
    return Run(
        config=config,
        layout=layout,
        accelerator=accelerator,
        components=components,
        placeholder=placeholder,
        trainable=trainable,
        optimizer=optimizer,
        token=token,
        placeholder_ids=ids,
        template_ids=template_ids,
        latent_mean=mean,
        latent_std=std,
        image_names=image_names,
        weight_dtype=weight_dtype,
        lr=lr,
        reference=reference,
        face_encoder=face_encoder,
        log=say,
    )


def _reference_group(config: TrainConfig, accelerator):
    """The reference group's face descriptors and a face encoder, on the main process only (which alone
    scores samples); a group that cannot be used stops every process, not only the main one."""
    if config.reference_group is None:
        return None, None
    encoder = reference = failure = None
    if accelerator.is_main_process:
        from amari.embeddings import EmbeddingCache, FaceEncoder
        from amari.train.validation import reference_group

        try:
            encoder = FaceEncoder(cache=EmbeddingCache())
            reference = reference_group(config.reference_group, encoder)
        except AmariError as exc:
            failure = exc
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        message = broadcast_object_list([None if failure is None else str(failure)])[0]
        if message is not None and failure is None:
            raise UsageError(message)
    if failure is not None:
        raise failure
    return reference, encoder


def _accelerator(config: TrainConfig):
    from accelerate import Accelerator

    on_cuda = torch.cuda.is_available() and not config.cpu
    precision = config.mixed_precision
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if on_cuda else "no"
    if precision == "fp16" and not on_cuda:
        raise UsageError("--mixed-precision fp16 needs a CUDA GPU; use bf16 or no on the CPU")
    # One process may run several trainings (a whole study) with different precisions, and accelerate
    # keeps process-wide state that refuses such a change; the distributed setup itself is kept.
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state()
    GradientState._reset_state()
    return Accelerator(mixed_precision=precision, cpu=not on_cuda)


def _gradient_checkpointing(config: TrainConfig, accelerator) -> bool:
    if config.gradient_checkpointing is None:
        return accelerator.device.type == "cuda"
    return config.gradient_checkpointing


def _tokenize_templates(tokenizer, text_encoder, templates, tokens: list[str]) -> torch.Tensor:
    prompts = [placeholder_prompt(template, tokens) for template in templates]
    length = min(tokenizer.model_max_length, text_encoder.config.max_position_embeddings)
    encoded = tokenizer(prompts, padding="max_length", max_length=length, truncation=True, return_tensors="pt")
    return encoded.input_ids


@torch.no_grad()
def encode_images(vae, images, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The VAE's latent distribution (mean, std) of every image and its mirror image, computed once.

    The encoder is deterministic, so drawing `mean + std × noise` per sample is exactly what encoding
    the image at every step would give, without running the encoder 15,500 times.
    """
    means, stds = [], []
    for rgb in images:
        pair_mean, pair_std = [], []
        for flip in (False, True):
            pixels = to_pixels(rgb, flip).unsqueeze(0).to(device=device, dtype=dtype)
            distribution = vae.encode(pixels).latent_dist
            pair_mean.append(distribution.mean[0].float())
            pair_std.append(distribution.std[0].float())
        means.append(torch.stack(pair_mean))
        stds.append(torch.stack(pair_std))
    return torch.stack(means), torch.stack(stds)


# 4. -----------------------------------------------------------------------------------------------


def resume(run: Run) -> int:
    """Load the latest complete checkpoint into the run; returns its step (0 for a fresh run)."""
    out = run.layout.out
    if run.is_main:
        out.mkdir(parents=True, exist_ok=True)
        ckpt.remove_partials(out)
        if not run.layout.run_record.is_file():
            ckpt.write_json(run.layout.run_record, _run_record(run.config, run.image_names, run.processes))
    run.accelerator.wait_for_everyone()
    latest = ckpt.latest_checkpoint(out)
    if latest is None:
        if run.is_main:
            ckpt.MetricsLog(run.layout.metrics).keep_until(0)
        return 0
    step, folder = latest
    state = ckpt.load_training_state(folder)
    if state.get("token", run.token) != run.token:
        raise WorkspaceError(f"{folder} was trained for token {state['token']!r}, this run uses {run.token!r}")
    with torch.no_grad():
        run.placeholder.vectors.copy_(state["vectors"].to(run.placeholder.vectors.device))
    run.optimizer.load_state_dict(state["optimizer"])
    scaler = getattr(run.accelerator, "scaler", None)
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    if run.is_main:
        ckpt.MetricsLog(run.layout.metrics).keep_until(step)
        run.log(f"resuming from {folder.relative_to(out)} (step {step})")
    run.accelerator.wait_for_everyone()
    return int(state["step"])


def check_previous_run(config: TrainConfig, layout: TrainLayout, image_names: list[str], processes: int) -> None:
    """Refuse to continue a run in `layout.out` that used other settings, images or process count."""
    out = layout.out
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    previous = layout.run_record
    if not previous.is_file():
        if ckpt.latest_checkpoint(out) is not None:
            raise WorkspaceError(f"{out} holds checkpoints but no {previous.name}; use another --out")
        return
    before, now = ckpt.read_json(previous), _run_record(config, image_names, processes)
    for key in ("settings", "images", "processes"):
        if before.get(key) != now[key]:
            detail = (
                _difference(before.get(key), now[key])
                if key == "settings"
                else f"{key}: {_short(before.get(key))} there, {_short(now[key])} now"
            )
            raise UsageError(
                f"{out} holds a run with other settings ({detail}); resume it with the same "
                f"settings, or train into another --out"
            )


def _run_record(config: TrainConfig, image_names: list[str], processes: int) -> dict:
    return {
        "settings": config.resume_settings(),
        "placeholder": config.token,
        "name": config.embedding_name,
        "processes": processes,
        "images": image_names,
    }


def _difference(old, new) -> str:
    if not isinstance(old, dict):
        return "settings"
    changed = [key for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
    return ", ".join(f"{key}: {old.get(key)!r} there, {new.get(key)!r} now" for key in changed[:3])


def _short(value) -> str:
    if isinstance(value, list):
        return f"{len(value)} images"
    return repr(value)


# 5. -----------------------------------------------------------------------------------------------


def train_step(run: Run, step: int) -> tuple[float, float]:
    """One optimizer step (all micro-batches of all processes); returns (mean loss, learning rate)."""
    config, accelerator = run.config, run.accelerator
    lr = run.lr * lr_factor(step, config.lr_schedule, config.lr_warmup_steps, config.max_steps)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    total = torch.zeros((), device=accelerator.device)
    for micro in range(config.grad_accum):
        last = micro == config.grad_accum - 1
        with nullcontext() if last else accelerator.no_sync(run.trainable):
            with accelerator.autocast():
                loss = diffusion_loss(run, *make_batch(run, step, micro))
            accelerator.backward(loss / config.grad_accum)
        total += loss.detach().float()
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    mean = accelerator.reduce(total / config.grad_accum, reduction="mean")
    return float(mean), lr


def make_batch(run: Run, step: int, micro: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(latents, noise, timesteps, prompt ids) of this process's share of `step`, all on the device."""
    config = run.config
    timesteps_total = run.components.noise_scheduler.config.num_train_timesteps
    shape = run.latent_mean.shape[2:]
    latents, noises, timesteps, prompts = [], [], [], []
    for slot in range(config.batch_size):
        index = sample_index(
            step, micro, run.accelerator.process_index, slot, run.processes, config.batch_size, config.grad_accum
        )
        sample = draw(config.seed, index, len(run.image_names), config.repeats, len(run.template_ids), config.flip_p)
        generator = torch.Generator().manual_seed(seed_for(config.seed, _NOISE_STREAM, index))
        timesteps.append(torch.randint(timesteps_total, (1,), generator=generator))
        latent_noise = torch.randn(shape, generator=generator)
        noises.append(torch.randn(shape, generator=generator))
        side = int(sample.flip)
        mean, std = run.latent_mean[sample.image, side], run.latent_std[sample.image, side]
        latents.append(mean + std * latent_noise.to(mean.device))
        prompts.append(run.template_ids[sample.template])
    device = run.accelerator.device
    scale = run.components.vae.config.scaling_factor
    return (
        torch.stack(latents).to(device) * scale,
        torch.stack(noises).to(device),
        torch.cat(timesteps).to(device),
        torch.stack(prompts).to(device),
    )


def diffusion_loss(run: Run, latents, noise, timesteps, prompt_ids) -> torch.Tensor:
    """The latent diffusion objective: MSE between the UNet's prediction and its target."""
    scheduler = run.components.noise_scheduler
    noisy = scheduler.add_noise(latents, noise, timesteps)
    text = run.components.text_encoder(prompt_ids)[0]
    prediction = run.components.unet(noisy.to(run.weight_dtype), timesteps, text.to(run.weight_dtype)).sample
    if scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(latents, noise, timesteps)
    else:
        target = noise
    return F.mse_loss(prediction.float(), target.float(), reduction="mean")
