"""The training loop: only the placeholder's vectors (ti), a LoRA (lora) or both (pivotal) learn; everything
else is frozen.

`train(config)` runs or resumes a whole run:

1. check the data, templates and reference group (before any model is loaded);
2. load the model, freeze it, put the LoRA adapters into it and splice the placeholder's trainable
   vectors into the text encoder, as the method asks (`amari.train.setup`);
3. encode every training image (and its mirror image) with the VAE once;
4. resume from the latest complete checkpoint, if the output folder has one (`amari.train.resume`);
5. step: noise a latent at a random timestep, predict the noise from the placeholder prompt, MSE;
6. every `checkpoint_every` steps: embedding and LoRA files, optimizer state, sample images and
   validation (`amari.train.saving`).

Several processes (`accelerate launch -m amari train ...`) each take their own samples and average the
trainable weights' gradients; the learning rates are scaled by processes × batch × accumulation as in
the study.
"""

from __future__ import annotations

import math
import time
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from amari.errors import WorkspaceError
from amari.storage.layout import TrainLayout
from amari.train import checkpoints as ckpt
from amari.train.config import TrainConfig, epoch_at, is_checkpoint_step, lr_factor
from amari.train.context import Log, Run
from amari.train.data import draw, sample_index, seed_for
from amari.train.resume import check_previous_run, resume
from amari.train.saving import export_final, save_checkpoint
from amari.train.setup import encode_images, prepare_run

_NOISE_STREAM = 2

__all__ = ["Run", "TrainResult", "check_previous_run", "encode_images", "prepare_run", "train", "train_step"]


@dataclass(frozen=True)
class TrainResult:
    out_dir: Path
    step: int  # the last step reached
    resumed_from: int  # 0 for a fresh run
    token: str
    embedding_files: dict[str, Path]  # the token's files (ti, pivotal)
    checkpoints: list[Path]
    best: dict | None  # best.json's content, when a reference group was given
    lora_files: dict[str, Path] = field(default_factory=dict)  # the LoRA's files and lora.json (lora, pivotal)


def train(config: TrainConfig, layout: TrainLayout, log: Log | None = None, start_over: bool = False) -> TrainResult:
    """Run (or resume) the training described by `config`; see the module docstring for the steps.

    start_over: a run in `layout.out` with other settings is deleted and trained anew (a study's step,
    whose folder is the study's own), instead of refused.
    """
    run = prepare_run(config, layout, log, start_over=start_over)
    with run.scoring:
        start = resume(run)
        if start >= config.max_steps:
            run.log(f"already trained to step {start} of {config.max_steps}; nothing to do")
        else:
            _train_until(run, start)
        return finish(run, start)


def finish(run: Run, start: int) -> TrainResult:
    """Wait for the samples' scores, write the final files, and say what the run made."""
    config, layout = run.config, run.layout
    run.scoring.wait()
    files = {}
    if run.is_main:
        # Also after a kill between the last checkpoint and its summary: the summary follows the checkpoints.
        ckpt.summarize_validation(layout.out, until=config.max_steps)
        files = export_final(run)
    run.accelerator.wait_for_everyone()
    lora_kinds = ("lora", "kohya", "record")
    best = ckpt.read_json(layout.best) if layout.best.is_file() else None
    return TrainResult(
        out_dir=layout.out,
        step=config.max_steps,
        resumed_from=start,
        token=run.token,
        embedding_files={kind: path for kind, path in files.items() if kind not in lora_kinds},
        checkpoints=[path for _step, path in ckpt.complete_checkpoints(layout.out, until=config.max_steps)],
        best=best,
        lora_files={kind: path for kind, path in files.items() if kind in lora_kinds},
    )


def _train_until(run: Run, start: int) -> None:
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
                if is_checkpoint_step(done, config.max_steps, config.checkpoint_every):
                    save_checkpoint(run, done, loss, lr, epoch)
                run.scoring.collect()
    finally:
        if metrics is not None:
            metrics.close()


# 5. -----------------------------------------------------------------------------------------------


def train_step(run: Run, step: int) -> tuple[float, float]:
    """One optimizer step (all micro-batches of all processes); returns (mean loss, learning rate)."""
    config, accelerator = run.config, run.accelerator
    factor = lr_factor(step, config.lr_schedule, config.lr_warmup_steps, config.max_steps)
    lr = run.lr * factor
    for group, base in zip(run.optimizer.param_groups, run.lrs or (run.lr,)):
        group["lr"] = base * factor
    total = torch.zeros((), device=accelerator.device)
    for micro in range(config.grad_accum):
        last = micro == config.grad_accum - 1
        with ExitStack() as unsynced:
            if not last:  # gradients are averaged across processes once, at the last micro-batch
                for module in run.synced:
                    unsynced.enter_context(accelerator.no_sync(module))
            with accelerator.autocast():
                loss = diffusion_loss(run, *make_batch(run, step, micro))
            accelerator.backward(loss / config.grad_accum)
        total += loss.detach().float()
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    mean = accelerator.reduce(total / config.grad_accum, reduction="mean")
    return float(mean), lr


def make_batch(run: Run, step: int, micro: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list]:
    """(latents, noise, timesteps, prompt ids per text encoder) of this process's share of `step`, on the device."""
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
        prompts.append(sample.template)
    device = run.accelerator.device
    return (
        run.family.scale_latents(run.components.vae, torch.stack(latents).to(device)),
        torch.stack(noises).to(device),
        torch.cat(timesteps).to(device),
        [ids[prompts].to(device) for ids in run.prompt_ids],
    )


def diffusion_loss(run: Run, latents, noise, timesteps, prompt_ids) -> torch.Tensor:
    """The family's objective: MSE between the denoiser's prediction and its target (the noise, the velocity,
    or FLUX.1's flow)."""
    prediction, target = predict(run, latents, noise, timesteps, prompt_ids)
    return F.mse_loss(prediction.float(), target.float(), reduction="mean")


def predict(run: Run, latents, noise, timesteps, prompt_ids) -> tuple[torch.Tensor, torch.Tensor]:
    """The denoiser's prediction for the noised latents, and what it should have predicted."""
    family = run.family
    noisy, time, target = family.noisy_input(run.components.noise_scheduler, latents, noise, timesteps)
    encoders = run.text_encoders or run.components.text_encoders
    with nullcontext() if run.trains_text else torch.no_grad():  # frozen text encoders need no graph
        conditioning = family.encode_text(encoders, prompt_ids)
    denoiser = run.denoiser or run.components.denoiser
    return family.predict(denoiser, noisy, time, conditioning, run.weight_dtype, run.resolution), target
