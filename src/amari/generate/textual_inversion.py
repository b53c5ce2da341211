"""Textual-inversion embeddings loaded into a pipeline by path and token, in every file layout users have.

diffusers (`{token: tensor}`), A1111 / InvokeAI (`string_to_param`, pickled `.pt` or safetensors) and
kohya / invoke-training (`emb_params`) files all reduce to one tensor of shape (vectors, width). Pickled
files go through amari's weights-only loader, so an embedding cannot run code.
"""

from __future__ import annotations

import re
from pathlib import Path

from amari.errors import ModelError, UsageError


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


def _of_token(name: str, token: str) -> bool:
    return name == token or re.fullmatch(re.escape(token) + r"_\d+", name) is not None


def apply_embeddings(pipe, loaded: dict[str, str], wanted) -> None:
    """Make `pipe` hold exactly the `wanted` Embedding(path, token) list; `loaded` maps token -> path.

    Tokens no longer wanted are removed, so a control run after an embedding run sees the plain model.
    """
    from amari.models.files import safe_torch_load

    wanted_paths = {e.token: str(Path(e.path).expanduser().resolve()) for e in wanted}
    stale = [token for token, path in loaded.items() if wanted_paths.get(token) != path]
    if stale:
        # A multi-vector embedding added `token_1`, `token_2`, ... too; unloading removes only the tokens named.
        vocabulary = pipe.tokenizer.get_vocab()
        pipe.unload_textual_inversion([t for t in vocabulary if any(_of_token(t, token) for token in stale)])
        for token in stale:
            del loaded[token]
    for token, path in wanted_paths.items():
        if token in loaded:
            continue
        tensor = embedding_tensor(safe_torch_load(path), path)
        width = pipe.text_encoder.get_input_embeddings().weight.shape[-1]
        if tensor.shape[-1] != width:
            raise ModelError(
                f"{path}: embedding width {tensor.shape[-1]} does not fit this model's "
                f"text encoder (width {width}); it was trained for another base model"
            )
        try:
            pipe.load_textual_inversion(tensor, token=token)
        except ValueError as exc:  # a token the tokenizer already has, for one
            raise UsageError(f"{path}: cannot load as {token!r}: {str(exc).splitlines()[0]}") from None
        loaded[token] = path
