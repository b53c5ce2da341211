"""The placeholder: new tokenizer entries and the only trainable tensor of a run.

The text encoder's token table is never touched. `PlaceholderEmbedding` looks every token up in the
frozen table and takes the placeholder's rows from a small trainable tensor instead, so the optimizer
sees `num_vectors × width` numbers (not the 49,408 × 768 table) and every original row stays
bit-identical by construction.
"""

from __future__ import annotations

import torch
from torch import nn

from amari.errors import UsageError


def training_token(token: str, vocabulary) -> str:
    """The token string added to the tokenizer for `token`.

    A string the tokenizer already knows (CLIP knows `*`) cannot become a new entry without taking over
    an existing row, so it is trained under the first free alias `<token>`, `<token>-1`, ...
    """
    if _free(token, vocabulary):
        return token
    candidate, n = f"<{token}>", 0
    while not _free(candidate, vocabulary):
        n += 1
        candidate = f"<{token}>-{n}"
    return candidate


def _free(token: str, vocabulary) -> bool:
    return token not in vocabulary and f"{token}_1" not in vocabulary


def vector_tokens(token: str, num_vectors: int) -> list[str]:
    """diffusers' naming of a multi-vector token: token, token_1, token_2, ..."""
    return [token] + [f"{token}_{i}" for i in range(1, num_vectors)]


def add_placeholder(tokenizer, token: str, num_vectors: int) -> list[int]:
    """Add the vector tokens to the tokenizer; returns their ids (all new, above the original vocabulary)."""
    names = vector_tokens(token, num_vectors)
    before = len(tokenizer)
    added = tokenizer.add_tokens(names)
    ids = tokenizer.convert_tokens_to_ids(names)
    if added != num_vectors or min(ids) < before or ids != list(range(ids[0], ids[0] + num_vectors)):
        raise UsageError(f"token {token!r} is already known to the tokenizer; choose another --token")
    return ids


def init_vectors(tokenizer, table: torch.Tensor, init_word: str, num_vectors: int) -> torch.Tensor:
    """Starting vectors: the init word's token embeddings spread over the vectors (all the same vector
    when the word is one token, as `woman` is)."""
    ids = tokenizer(init_word, add_special_tokens=False).input_ids
    if not ids:
        raise UsageError(f"--init-word {init_word!r} gives no token")
    unknown = getattr(tokenizer, "unk_token_id", None)
    if unknown is not None and unknown in ids and len(ids) == 1:
        raise UsageError(f"--init-word {init_word!r} is not in the tokenizer's vocabulary")
    rows = [ids[i * len(ids) // num_vectors] for i in range(num_vectors)]
    return table[rows].detach().clone().float()


class PlaceholderEmbedding(nn.Module):
    """A token table whose placeholder rows (consecutive ids) are the trainable `vectors`; all other rows
    come from the frozen table."""

    def __init__(self, table: nn.Embedding, placeholder_ids: list[int], vectors: torch.Tensor):
        super().__init__()
        if list(placeholder_ids) != list(range(placeholder_ids[0], placeholder_ids[0] + len(placeholder_ids))):
            raise ValueError("placeholder ids must be consecutive")
        if len(placeholder_ids) != vectors.shape[0]:
            raise ValueError("one vector per placeholder id is needed")
        self.table = table
        self.table.weight.requires_grad_(False)
        self.vectors = nn.Parameter(vectors.detach().clone().float())
        self.first_id = placeholder_ids[0]
        self.placeholder_ids = list(placeholder_ids)

    @property
    def weight(self) -> torch.Tensor:
        # Code that inspects the input embeddings (dtype, width) sees the frozen table.
        return self.table.weight

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        slot = input_ids - self.first_id
        is_placeholder = (slot >= 0) & (slot < self.vectors.shape[0])
        frozen = self.table(torch.where(is_placeholder, 0, input_ids))
        learned = self.vectors.to(frozen.dtype)[torch.where(is_placeholder, slot, 0)]
        return torch.where(is_placeholder.unsqueeze(-1), learned, frozen)


def splice(text_encoder, placeholder_ids: list[int], vectors: torch.Tensor) -> PlaceholderEmbedding:
    """Put a `PlaceholderEmbedding` in place of the text encoder's token table and return it."""
    table = text_encoder.get_input_embeddings()
    if isinstance(table, PlaceholderEmbedding):
        table = table.table
    module = PlaceholderEmbedding(table, placeholder_ids, vectors.to(table.weight.device))
    text_encoder.set_input_embeddings(module)
    return module


class GroupedPlaceholders(nn.Module):
    """Several groups' placeholders in one token table, all under the same token ids: row r of a batch
    takes the placeholder's vectors from group `rows[r]`, every other token from the frozen table.

    Each group keeps its own `PlaceholderEmbedding` (its `vectors` are what its optimizer state, its
    checkpoints and its samples use); this module only routes each row to its group's, so a row's
    output and the gradient its group gets are what the group's own module would give it.
    """

    def __init__(self, members: list[PlaceholderEmbedding]):
        super().__init__()
        first = members[0]
        if any(m.placeholder_ids != first.placeholder_ids or m.table is not first.table for m in members):
            raise ValueError("grouped placeholders must share the token table and the token ids")
        self.members = nn.ModuleList(members)
        self.table, self.first_id, self.placeholder_ids = first.table, first.first_id, first.placeholder_ids
        self.rows: torch.Tensor | None = None  # the group of each batch row, set before each forward pass

    @property
    def weight(self) -> torch.Tensor:
        return self.table.weight

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.rows is None or len(self.rows) != len(input_ids):
            raise RuntimeError("say which group each of the batch's rows belongs to (`rows`) before encoding")
        slot = input_ids - self.first_id
        is_placeholder = (slot >= 0) & (slot < len(self.placeholder_ids))
        frozen = self.table(torch.where(is_placeholder, 0, input_ids))
        # Only the groups in the batch take part: a group left out gets no gradient, not a zero one (which
        # AdamW would still step with).
        present = torch.unique(self.rows)
        vectors = torch.stack([self.members[int(i)].vectors for i in present]).to(frozen.dtype)  # [groups, n, width]
        rows = torch.searchsorted(present, self.rows).to(input_ids.device)[:, None].expand_as(input_ids)
        learned = vectors[rows, torch.where(is_placeholder, slot, 0)]
        return torch.where(is_placeholder.unsqueeze(-1), learned, frozen)
