"""Textual-inversion embeddings loaded into a pipeline by path and token, in every file layout users have.

diffusers (`{token: tensor}`), A1111 / InvokeAI (`string_to_param`, pickled `.pt` or safetensors) and
kohya / invoke-training (`emb_params`) files all reduce to one tensor of shape (vectors, width); SDXL's
files hold one per text encoder (`clip_l`, `clip_g`). The model's family puts them into its encoders
(SDXL: one `load_textual_inversion` call per encoder). Pickled files go through amari's weights-only
loader, so an embedding cannot run code.
"""

from __future__ import annotations

from pathlib import Path

from amari.errors import ModelError


def embedding_tensor(state: dict, path: str | Path):
    """The (vectors, width) tensor in a loaded embedding file, whatever its layout."""
    import torch

    candidates = []
    if isinstance(state.get("string_to_param"), dict):
        candidates = list(state["string_to_param"].values())
    elif "emb_params" in state:
        candidates = [state["emb_params"]]
    else:
        flattened = [value for key, value in state.items() if key.startswith("string_to_param")]
        tensors = [value for value in state.values() if isinstance(value, torch.Tensor)]
        candidates = flattened or (tensors if len(tensors) == 1 else [])
    if len(candidates) != 1 or not isinstance(candidates[0], torch.Tensor):
        keys = ", ".join(sorted(map(str, state))[:8])
        raise ModelError(
            f"{path}: not a textual-inversion embedding (expected one tensor, "
            f"'string_to_param' or 'emb_params'; found keys {keys})"
        )
    tensor = candidates[0].detach().float()
    if tensor.ndim == 1:
        tensor = tensor[None]
    if tensor.ndim != 2:
        raise ModelError(f"{path}: embedding has shape {tuple(tensor.shape)}, expected (vectors, width)")
    return tensor


TWO_ENCODER_KEYS = ("clip_l", "clip_g")


def embedding_vectors(state: dict, path: str | Path) -> dict:
    """{encoder key: (vectors, width)} of a two-encoder file (SDXL's clip_l and clip_g), else {None: tensor}."""
    if any(key in state for key in TWO_ENCODER_KEYS):
        missing = [key for key in TWO_ENCODER_KEYS if key not in state]
        if missing:
            raise ModelError(
                f"{path}: a two-encoder embedding needs {' and '.join(TWO_ENCODER_KEYS)}, lacks {missing[0]}"
            )
        return {key: embedding_tensor({key: state[key]}, path) for key in TWO_ENCODER_KEYS}
    return {None: embedding_tensor(state, path)}


def apply_embeddings(pipe, family, loaded: dict[str, str], wanted) -> None:
    """Make `pipe` hold exactly the `wanted` Embedding(path, token) list; `loaded` maps token -> path.

    Tokens no longer wanted are removed, so a control run after an embedding run sees the plain model.
    """
    from amari.models.files import safe_torch_load

    wanted_paths = {e.token: str(Path(e.path).expanduser().resolve()) for e in wanted}
    stale = [token for token, path in loaded.items() if wanted_paths.get(token) != path]
    if stale:
        family.unload_embeddings(pipe, stale)
        for token in stale:
            del loaded[token]
    for token, path in wanted_paths.items():
        if token in loaded:
            continue
        family.load_embedding(pipe, embedding_vectors(safe_torch_load(path), path), token, path)
        loaded[token] = path
