"""A warm start: a run that begins from another run's final files instead of the init word and a fresh LoRA.

The token's vectors come from the earlier run's `learned_embeds.safetensors`, the LoRA's weights from its
`pytorch_lora_weights.safetensors`; each must fit this run (vectors, width, rank and modules), or the run
refuses to start. Everything else (the optimizer, the step count) starts afresh: the earlier run is where
the weights begin, not a checkpoint to continue. The refinement loop warm-starts each round from the last.
"""

from __future__ import annotations

from pathlib import Path

from amari.errors import UsageError
from amari.storage.files import file_sha256
from amari.storage.layout import TrainLayout


def warm_files(folder: Path, token: bool, lora: bool) -> dict[str, Path]:
    """The files a warm start reads from a finished run's folder; refuses one that lacks them."""
    layout = TrainLayout(folder, folder)
    wanted = {"embedding": layout.embedding} if token else {}
    wanted.update({"lora": layout.lora} if lora else {})
    missing = [path.name for path in wanted.values() if not path.is_file()]
    if missing:
        raise UsageError(f"--warm-start {folder}: no {' or '.join(missing)} there (a finished run of this method?)")
    return wanted


def warm_digest(folder: Path, token: bool, lora: bool) -> str:
    """What a run record keeps of its warm start: the files' content, never their folder."""
    return "+".join(file_sha256(path) for path in warm_files(folder, token, lora).values())


def warm_vectors(folder: Path, num_vectors: int, width: int):
    """The earlier run's token vectors, float32 [num_vectors, width]."""
    from amari.train.formats import load_embedding

    path = warm_files(folder, True, False)["embedding"]
    vectors = load_embedding(path).vectors
    if tuple(vectors.shape) != (num_vectors, width):
        raise UsageError(
            f"--warm-start {path}: vectors of shape {tuple(vectors.shape)}, this run trains ({num_vectors}, {width})"
        )
    return vectors


def warm_lora(components, spec, folder: Path) -> None:
    """Set the run's (fresh) LoRA adapters to the earlier run's weights."""
    from safetensors.torch import load_file

    from amari.train.lora import load_lora_state

    load_lora_state(components, spec, load_file(str(warm_files(folder, False, True)["lora"])))
