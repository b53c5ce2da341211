"""Resuming: the run record that says which settings a run started with, and loading the latest checkpoint
(step 4 of `amari.train.loop`)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from amari.errors import UsageError, WorkspaceError
from amari.models.diffusion import public_name
from amari.storage.files import remove_stale_temporaries
from amari.storage.layout import TrainLayout
from amari.train import checkpoints as ckpt
from amari.train.config import TrainConfig
from amari.train.context import Run
from amari.train.lora import load_lora_state

_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")  # owner/name, as the Hugging Face hub names models


def resume(run: Run, until: int | None = None) -> int:
    """Load the latest complete checkpoint (of a step up to `until`) into the run; returns its step (0 for a
    fresh run). Checkpoints whose samples a killed run left unscored are scored again."""
    out = run.layout.out
    if run.is_main:
        out.mkdir(parents=True, exist_ok=True)
        ckpt.remove_partials(out)
        remove_stale_temporaries(out)  # files a killed run was writing (exports, logs)
        if not run.layout.run_record.is_file():
            ckpt.write_json(run.layout.run_record, _run_record(run.config, run.image_names, run.processes))
    run.accelerator.wait_for_everyone()
    limit = run.config.max_steps if until is None else min(until, run.config.max_steps)
    latest = ckpt.latest_checkpoint(out, until=limit)
    if run.is_main:
        run.scoring.catch_up(out, run.config, run.token, run.log)
    if latest is None:
        if run.is_main:
            ckpt.MetricsLog(run.layout.metrics).keep_until(0)
        return 0
    step, folder = latest
    state = ckpt.load_training_state(folder)
    if state.get("token", run.token) != run.token:
        raise WorkspaceError(f"{folder} was trained for token {state['token']!r}, this run uses {run.token!r}")
    if run.placeholders:
        run.load_vectors(state["vectors"])
    if run.lora is not None:
        load_lora_state(run.components, run.lora, state["lora"])
    run.optimizer.load_state_dict(state["optimizer"])
    scaler = getattr(run.accelerator, "scaler", None)
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    if run.is_main:
        ckpt.MetricsLog(run.layout.metrics).keep_until(step)
        run.log(f"resuming from {folder.relative_to(out)} (step {step})")
    run.accelerator.wait_for_everyone()
    return int(state["step"])


def check_previous_run(
    config: TrainConfig, layout: TrainLayout, image_names: list[str], processes: int, start_over: bool = False
) -> str | None:
    """Refuse to continue a run in `layout.out` that used other settings, images or process count; with
    `start_over`, say what differs instead (the caller deletes the run, `clear_run`)."""
    out = layout.out
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    previous = layout.run_record
    if not previous.is_file():
        if ckpt.latest_checkpoint(out) is not None:
            raise WorkspaceError(f"{out} holds checkpoints but no {previous.name}; use another --out")
        return None
    before, now = ckpt.read_json(previous), _run_record(config, image_names, processes)
    if isinstance(before.get("settings"), dict) and isinstance(before["settings"].get("model"), str):
        # Records written before the model was kept by its public name held the path as given.
        before["settings"]["model"] = public_name(before["settings"]["model"])
    for key in ("settings", "images", "processes"):
        old, new = before.get(key), now[key]
        if key == "settings" and isinstance(old, dict):
            old, new = _comparable(old), _comparable(new)
        if old != new:
            detail = _difference(old, new) if key == "settings" else f"{key}: {_short(old)} there, {_short(new)} now"
            if start_over:
                return detail
            raise UsageError(
                f"{out} holds a run with other settings ({detail}); resume it with the same "
                f"settings, or train into another --out"
            )
    return None


def clear_run(layout: TrainLayout) -> None:
    """Delete the run in `layout.out`, its record last: a kill part-way leaves a run that is cleared again."""
    for path in layout.out.iterdir():
        if path != layout.run_record:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    layout.run_record.unlink(missing_ok=True)


def _comparable(settings: dict) -> dict:
    """Settings as compared between runs: a model path given relative or absolute, or from another
    folder, names the same model by its last part (a hub id stays as it is)."""
    model = settings.get("model")
    if isinstance(model, str) and (Path(model).expanduser().exists() or not _HUB_ID.fullmatch(model)):
        settings = {**settings, "model": os.path.basename(os.path.normpath(os.path.expanduser(model)))}
    return settings


def _run_record(config: TrainConfig, image_names: list[str], processes: int) -> dict:
    # The model by its public name: the record travels with the run's folder, the user's paths should not
    # (a model moved to another folder of the same name resumes the run).
    return {
        "settings": {**config.resume_settings(), "model": public_name(config.model)},
        "placeholder": config.token,
        "name": config.embedding_name,
        "processes": processes,
        "images": image_names,
    }


def _difference(old, new) -> str:
    if not isinstance(old, dict):
        return "settings"
    # The method first: another method changes several settings at once.
    keys = sorted(set(old) | set(new), key=lambda key: (key != "method", key))
    changed = [key for key in keys if old.get(key) != new.get(key)]
    return ", ".join(f"{key}: {old.get(key)!r} there, {new.get(key)!r} now" for key in changed[:3])


def _short(value) -> str:
    if isinstance(value, list):
        return f"{len(value)} images"
    return repr(value)
