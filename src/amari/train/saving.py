"""What a run writes: checkpoints (embedding and LoRA files, optimizer state, sample images and their
validation) and the final files."""

from __future__ import annotations

from pathlib import Path

from amari.train import checkpoints as ckpt
from amari.train.context import Run
from amari.train.exports import lora_record, save_lora, write_record
from amari.train.formats import save_embedding
from amari.train.lora import LoraSpec, lora_state


def _save_files(run: Run, folder: Path, name: str, step: int, vectors, lora) -> dict[str, Path]:
    """The token's embedding files and the LoRA's files (and lora.json), as far as the run has them."""
    files: dict[str, Path] = {}
    metadata = _embedding_metadata(run, step)
    if vectors is not None:
        files.update(save_embedding(folder, vectors, run.token, name, metadata, run.family))
    if lora is not None:
        spec = run.lora or LoraSpec.of(run.config, run.family)
        extra = {**metadata, "method": run.config.method, "trigger": run.token}
        v_prediction = run.components.noise_scheduler.config.get("prediction_type") == "v_prediction"
        saved = save_lora(folder, lora, spec, name, extra, run.family, v_prediction)
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
        "model_family": run.family.name,
        "trainer": "amari train",
        "synthetic_identity": "true",
    }


def save_checkpoint(run: Run, step: int, loss: float, lr: float, epoch: float) -> Path | None:
    """Write the checkpoint of `step` (main process) while the other processes wait."""
    folder = None
    if run.is_main:
        config = run.config
        with ckpt.writing_checkpoint(run.layout.out, step) as partial:
            vectors = run.current_vectors() if run.placeholders else None
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
            samples = _samples(run, partial / "samples", step, _named_files(run, files))
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
                    "validation": None,  # the samples' score, once it is back (`amari.train.scoring`)
                },
            )
        folder = ckpt.checkpoint_dir(run.layout.out, step)
        run.log(f"step {step}/{config.max_steps}  epoch {epoch:.3f}  loss {loss:.4f}  checkpoint saved")
        run.scoring.submit(
            run.layout.out, step, _in_checkpoint(samples, partial, folder), run.log, until=config.max_steps
        )
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


def _samples(run: Run, folder: Path, step: int, files: dict) -> list:
    config = run.config
    if not config.sample_seeds:
        return []
    from amari.train.validation import generate_samples, sample_pipeline

    encoders = dict(zip((slot.encoder for slot in run.components.slots), run.components.text_encoders))
    # Sampling runs on this process alone, so it must not go through the distributed wrapper (nor, in a
    # run of several groups, through their shared table: the samples are this group's).
    for name, placeholder in run.placeholders.items():
        encoders[name].set_input_embeddings(placeholder)
    try:
        pipe = sample_pipeline(run.components)
        with run.accelerator.autocast():  # the text encoders are float32, the denoiser may be half precision
            return generate_samples(
                pipe, folder, config, run.token, run.components.info, files, step, run.family, run.resolution
            )
    finally:
        for name, trainable in run.trainables.items():
            encoders[name].set_input_embeddings(trainable)


def _in_checkpoint(samples: list, partial: Path, folder: Path) -> list:
    """The samples where they are once the checkpoint's folder has its final name."""
    from dataclasses import replace

    return [replace(sample, path=folder / sample.path.relative_to(partial)) for sample in samples]


def export_final(run: Run) -> dict[str, Path]:
    """Write the last checkpoint's embedding and LoRA files to the output folder's top level."""
    latest = ckpt.latest_checkpoint(run.layout.out, until=run.config.max_steps)
    if latest is None:
        return {}
    step, folder = latest
    state = ckpt.load_training_state(folder)
    return _save_files(run, run.layout.out, run.config.embedding_name, step, state.get("vectors"), state.get("lora"))
