"""What a Textual Inversion run writes: checkpoints (embedding files, optimizer state, sample images and
their validation) and the final embedding files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from amari.files import sha256_once
from amari.train import checkpoints as ckpt
from amari.train.formats import save_embedding

if TYPE_CHECKING:
    from amari.train.loop import Run


def current_vectors(run: Run) -> torch.Tensor:
    return run.placeholder.vectors.detach().float().cpu().clone()


def _embedding_metadata(run: Run, step: int) -> dict:
    config = run.config
    return {
        "placeholder": config.token,
        "step": step,
        "init_word": config.init_word,
        "sd_checkpoint_name": run.components.info.name,
        "sd_checkpoint_hash": run.components.info.model_hash,
        "trainer": "amari train",
        "synthetic_identity": "true",
    }


def save_checkpoint(run: Run, step: int, loss: float, lr: float, epoch: float) -> Path | None:
    """Write the checkpoint of `step` (main process) while the other processes wait."""
    folder = None
    if run.is_main:
        config = run.config
        with ckpt.writing_checkpoint(run.layout.out, step) as partial:
            vectors = current_vectors(run)
            # Each checkpoint's A1111 file has its own name, since A1111 and ComfyUI name an embedding by its file.
            name = checkpoint_name(config.embedding_name, step)
            files = save_embedding(partial, vectors, run.token, name, _embedding_metadata(run, step))
            scaler = getattr(run.accelerator, "scaler", None)
            ckpt.save_training_state(
                partial,
                {
                    "step": step,
                    "token": run.token,
                    "vectors": vectors,
                    "optimizer": run.optimizer.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else None,
                },
            )
            a1111 = {"name": name, "path": files["a1111"].name, "hash": sha256_once(files["a1111"])[:12]}
            samples, validation = _samples_and_validation(run, partial / "samples", step, a1111)
            ckpt.write_json(
                partial / ckpt.STATE_FILE,
                {
                    "step": step,
                    "epoch": epoch,
                    "loss": loss,
                    "lr": lr,
                    "token": run.token,
                    "placeholder": config.token,
                    "name": name,
                    "files": {kind: path.name for kind, path in files.items()},
                    "samples": [f"samples/{sample.path.name}" for sample in samples],
                    "validation": validation,
                },
            )
        folder = ckpt.checkpoint_dir(run.layout.out, step)
        best = ckpt.summarize_validation(run.layout.out)
        run.log(_checkpoint_message(step, config.max_steps, epoch, loss, validation, best))
    run.accelerator.wait_for_everyone()
    return folder


def checkpoint_name(name: str, step: int) -> str:
    """The A1111 file name of a checkpoint's embedding: NAME-STEP (the final one is NAME)."""
    return f"{name}-{step}"


def _samples_and_validation(run: Run, folder: Path, step: int, embedding: dict):
    config = run.config
    if not config.sample_seeds:
        return [], None
    from amari.train.validation import generate_samples, sample_pipeline, score_samples

    text_encoder = run.components.text_encoder
    # Sampling runs on this process alone, so it must not go through the distributed wrapper.
    text_encoder.set_input_embeddings(run.placeholder)
    try:
        pipe = sample_pipeline(run.components, text_encoder)
        with run.accelerator.autocast():  # the text encoder is float32, the UNet may be half precision
            samples = generate_samples(pipe, folder, config, run.token, run.components.info, embedding, step)
    finally:
        text_encoder.set_input_embeddings(run.trainable)
    if run.reference is None:
        return samples, None
    validation = score_samples(samples, run.face_encoder, run.reference)
    return samples, validation.as_dict()


def _checkpoint_message(step, max_steps, epoch, loss, validation, best) -> str:
    text = f"step {step}/{max_steps}  epoch {epoch:.3f}  loss {loss:.4f}  checkpoint saved"
    if validation:
        mean = validation["mean_sim_score"]
        text += (
            f"; faces {validation['faces_found']}/{validation['images']}, "
            f"sim-score {'n/a' if mean is None else f'{mean:.3f}'}"
        )
        if best and best["step"] == step:
            text += " (best so far)"
    return text


def export_final(run: Run) -> dict[str, Path]:
    """Copy the last checkpoint's embedding files to the output folder's top level."""
    latest = ckpt.latest_checkpoint(run.layout.out)
    if latest is None:
        return {}
    step, folder = latest
    state = ckpt.load_training_state(folder)
    return save_embedding(
        run.layout.out, state["vectors"], run.token, run.config.embedding_name, _embedding_metadata(run, step)
    )
