"""Textual Inversion of several groups in one run: `amari train DIR DIR ... --out OUT`, and a study's default.

The frozen model (text encoder, UNet, VAE) is loaded once and shared. Each step is one forward and one
backward pass over a batch that holds every unfinished group's samples, each row conditioned on its
own group's vectors (`amari.train.tokens.GroupedPlaceholders`); the loss is the sum of the groups' own
mean losses. Nothing else is shared: the model is frozen and a sample's loss depends only on its own
group's vectors, so each group's gradient is the one it gets alone, and each group keeps its data and
draws, its parameter group in one AdamW (its learning rate and schedule), its folder, metrics,
checkpoints, samples and files. A group's result equals training it alone within float tolerance
(batched kernels add in another order), and its checkpoints are a lone run's, so either way of
training resumes the other's.

What cannot go together trains one group after another: LoRA and pivotal tuning (they
change weights every group shares), groups whose settings differ where the batch is shared (the model,
token, templates, resolution, precision), and runs on several processes.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from amari.errors import WorkspaceError
from amari.train import checkpoints as ckpt
from amari.train.config import checkpoint_steps, epoch_at, lr_factor
from amari.train.context import Log, Run, named_log
from amari.train.groups import Group, apart_because
from amari.train.loop import TrainResult, finish, make_batch, predict, train
from amari.train.resume import resume
from amari.train.saving import save_checkpoint
from amari.train.setup import prepare_runs


def train_groups(groups: list[Group], log: Log | None = None, start_over: bool = False) -> dict[str, TrainResult]:
    """Train (or resume) every group: Textual Inversion groups in one run, the rest one after another
    (`start_over`: see `amari.train.loop.train`)."""
    log = log or (lambda message: None)
    reason = apart_because(groups)
    if reason is None:
        runs, optimizer = prepare_runs(groups, log, start_over)
        if runs is not None:
            return _together(groups, runs, optimizer)
        reason = "several processes"
    if len(groups) > 1:
        log(f"training {len(groups)} groups one after another ({reason})")
    return {group.name: train(group.config, group.layout, named_log(log, group.name), start_over) for group in groups}


def _together(groups: list[Group], runs: list[Run], optimizer) -> dict[str, TrainResult]:
    with runs[0].scoring:
        starts = _resume_aligned(runs)
        if any(start < run.config.max_steps for run, start in zip(runs, starts)):
            _train_until(runs, optimizer, starts)
        for run, start in zip(runs, starts):
            if start >= run.config.max_steps:
                run.log(f"already trained to step {start} of {run.config.max_steps}; nothing to do")
        return {group.name: finish(run, start) for group, run, start in zip(groups, runs, starts)}


def _resume_aligned(runs: list[Run]) -> list[int]:
    """Each group's step after loading its checkpoint. A run killed while it wrote one step's checkpoints
    leaves some groups a checkpoint ahead: the unfinished groups resume from the latest step all of them
    reached, so the batches are those of a run that was never killed."""
    latest = [ckpt.latest_checkpoint(run.layout.out, until=run.config.max_steps) for run in runs]
    reached = [found[0] if found else 0 for found in latest]
    unfinished = [step for step, run in zip(reached, runs) if step < run.config.max_steps]
    until = min(unfinished) if unfinished else None
    return [resume(run, None if step >= run.config.max_steps else until) for run, step in zip(runs, reached)]


def _train_until(runs: list[Run], optimizer, starts: list[int]) -> None:
    from amari.progress import progress_bar

    steps = list(starts)
    metrics = [ckpt.MetricsLog(run.layout.metrics) for run in runs]
    stops = [set(checkpoint_steps(run.config.max_steps, run.config.checkpoint_every)) for run in runs]
    remaining = sum(max(0, run.config.max_steps - start) for run, start in zip(runs, starts))
    try:
        with progress_bar(remaining, f"training {len(runs)} groups") as advance:
            while active := [i for i, run in enumerate(runs) if steps[i] < run.config.max_steps]:
                began = time.perf_counter()
                losses, lrs = joint_step(runs, optimizer, active, [steps[i] for i in active])
                seconds = max(time.perf_counter() - began, 1e-9)
                for i, loss, lr in zip(active, losses, lrs):
                    run, done = runs[i], steps[i] + 1
                    steps[i] = done
                    epoch = epoch_at(done, run.samples_per_step, len(run.image_names), run.config.repeats)
                    metrics[i].append(done, epoch, loss, lr, run.samples_per_step / seconds)
                    advance()
                    if not math.isfinite(loss):
                        raise WorkspaceError(
                            f"{run.layout.out.name}: loss became {loss} at step {done}; lower --lr or use "
                            f"--mixed-precision no. Checkpoints so far are kept"
                        )
                    if done in stops[i]:
                        save_checkpoint(run, done, loss, lr, epoch)
                runs[0].scoring.collect()
    finally:
        for log in metrics:
            log.close()


def joint_step(runs: list[Run], optimizer, active: list[int], steps: list[int]) -> tuple[list[float], list[float]]:
    """One optimizer step of the `active` groups, group `active[k]` at its step `steps[k]`: one forward and
    backward pass per micro-batch over all their samples; returns each group's mean loss and learning rate."""
    first = runs[active[0]]
    accelerator, grouped = first.accelerator, next(iter(first.trainables.values()))
    lrs = []
    for i, step in zip(active, steps):
        config = runs[i].config
        lrs.append(runs[i].lr * lr_factor(step, config.lr_schedule, config.lr_warmup_steps, config.max_steps))
        optimizer.param_groups[i]["lr"] = lrs[-1]
    accumulation = first.config.grad_accum
    totals = torch.zeros(len(active), device=accelerator.device)
    for micro in range(accumulation):
        parts = [make_batch(runs[i], step, micro) for i, step in zip(active, steps)]
        sizes = [len(part[0]) for part in parts]
        latents, noise, timesteps = (torch.cat([part[k] for part in parts]) for k in range(3))
        prompt_ids = [torch.cat(ids) for ids in zip(*(part[3] for part in parts))]  # per text encoder
        grouped.rows = torch.repeat_interleave(torch.tensor(active), torch.tensor(sizes))
        with accelerator.autocast():
            prediction, target = predict(first, latents, noise, timesteps, prompt_ids)
        per_sample = F.mse_loss(prediction.float(), target.float(), reduction="none").flatten(1).mean(1)
        losses = torch.stack([chunk.mean() for chunk in per_sample.split(sizes)])
        accelerator.backward(losses.sum() / accumulation)  # each group's vectors see their own loss alone
        totals += losses.detach()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return (totals / accumulation).tolist(), lrs
