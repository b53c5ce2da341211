"""What a run writes: checkpoints (embedding and LoRA files, optimizer state, sample images and their
validation) and the final files."""

from __future__ import annotations

from pathlib import Path

import torch

from amari.models.diffusion import model_base
from amari.train import checkpoints as ckpt
from amari.train.context import Run
from amari.train.exports import lora_record, save_lora, write_record
from amari.train.formats import save_embedding
from amari.train.lora import LoraSpec, lora_state


def current_vectors(run: Run) -> torch.Tensor:
    return run.placeholder.vectors.detach().float().cpu().clone()


def _save_files(run: Run, folder: Path, name: str, step: int, vectors, lora) -> dict[str, Path]:
    """The token's embedding files and the LoRA's files (and lora.json), as far as the run has them."""
    files: dict[str, Path] = {}
    metadata = _embedding_metadata(run, step)
    if vectors is not None:
        files.update(save_embedding(folder, vectors, run.token, name, metadata))
    if lora is not None:
        spec = run.lora or LoraSpec.of(run.config)
        saved = save_lora(
            folder,
            lora,
            spec,
            name,
            {**metadata, "method": run.config.method, "trigger": run.token},
            base=model_base(run.components.text_encoder),
            v_prediction=run.components.noise_scheduler.config.get("prediction_type") == "v_prediction",
        )
        token = run.token if vectors is not None else None
        record = lora_record(run.config.method, name, step, run.token, token, {**files, **saved}, spec)
        files.update(saved, record=write_record(folder, record))
    return files


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
            vectors = current_vectors(run) if run.placeholder is not None else None
            lora = lora_state(run.components, run.lora) if run.lora is not None else None
            # Each checkpoint's A1111 files have their own names, since A1111 and ComfyUI name embeddings and
            # LoRAs by their files.
            name = checkpoint_name(config.embedding_name, step)
            files = _save_files(run, partial, name, step, vectors, lora)
            scaler = getattr(run.accelerator, "scaler", None)
            state = {"step": step, "token": run.token}
            state.update({"vectors": vectors} if vectors is not None else {})
            state.update({"lora": lora} if lora is not None else {})
            state.update(
                optimizer=run.optimizer.state_dict(), scaler=scaler.state_dict() if scaler is not None else None
            )
            ckpt.save_training_state(partial, state)
            samples, validation = _samples_and_validation(run, partial / "samples", step, _named_files(run, files))
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
        best = ckpt.summarize_validation(run.layout.out, until=config.max_steps)
        run.log(_checkpoint_message(step, config.max_steps, epoch, loss, validation, best))
    run.accelerator.wait_for_everyone()
    return folder


def checkpoint_name(name: str, step: int) -> str:
    """The A1111 file name of a checkpoint's embedding: NAME-STEP (the final one is NAME)."""
    return f"{name}-{step}"


def _named_files(run: Run, files: dict[str, Path]) -> dict:
    """What the samples record about the checkpoint's files: its A1111 embedding and kohya LoRA, named as
    generation and evaluation name theirs."""
    from amari.provenance.names import embedding_entry, lora_entry

    named: dict = {}
    if "a1111" in files:
        named["embeddings"] = [embedding_entry(files["a1111"], run.token)]
    if "kohya" in files:
        named["loras"] = [lora_entry(files["kohya"])]
    return named


def _samples_and_validation(run: Run, folder: Path, step: int, files: dict):
    config = run.config
    if not config.sample_seeds:
        return [], None
    from amari.train.validation import generate_samples, sample_pipeline, score_samples

    text_encoder = run.components.text_encoder
    # Sampling runs on this process alone, so it must not go through the distributed wrapper.
    if run.placeholder is not None:
        text_encoder.set_input_embeddings(run.placeholder)
    try:
        pipe = sample_pipeline(run.components, text_encoder)
        with run.accelerator.autocast():  # the text encoder is float32, the UNet may be half precision
            base = model_base(text_encoder)
            samples = generate_samples(pipe, folder, config, run.token, run.components.info, files, step, base)
    finally:
        if run.placeholder is not None:
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
    """Write the last checkpoint's embedding and LoRA files to the output folder's top level."""
    latest = ckpt.latest_checkpoint(run.layout.out, until=run.config.max_steps)
    if latest is None:
        return {}
    step, folder = latest
    state = ckpt.load_training_state(folder)
    return _save_files(run, run.layout.out, run.config.embedding_name, step, state.get("vectors"), state.get("lora"))
