"""`--option KEY=VALUE` of `amari mine` (and `options` in a study's [mine] table): any generation or
enhancement setting by name, typed by the field it names; a few names stand for the miner's own."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from amari.config.settings import parse_text, type_hints
from amari.errors import UsageError

# --option names that stand for another setting's name.
OPTION_ALIASES = {
    "guidance": "guidance",
    "cfg": "guidance",
    "scheduler": "sampler",
    "batch_size": "images_per_call",
    "enhance_device": "enhance.device",
}
# The miner's own fields an --option may set (the others are not generation or enhancement settings).
_OPTION_FIELDS = (
    "sampler",
    "steps",
    "guidance",
    "width",
    "height",
    "images_per_call",
    "device",
    "model_config",
    "enhance",
    "enhancement",
    "upscaler",
    "face_restorer",
    "scale",
    "early_reject",
    "reject_margin",
)


def key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"expected KEY=VALUE, not {text!r}")
    return key.strip(), value.strip()


def options_table(value: Any, where: str, base: Path) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise UsageError(f"{where} must be a table of KEY = value")
    return tuple((key, str(item).lower() if isinstance(item, bool) else str(item)) for key, item in value.items())


def resolve_option(key: str, text: str, mine_types: dict) -> tuple[str, str, Any]:
    """(where it goes: mine, generate or enhance; the field's name; its typed value)."""
    from amari.enhance import EnhanceConfig
    from amari.generate import GenerateConfig

    generate_fields = {f.name for f in dataclasses.fields(GenerateConfig)} - {"embeddings", "model"}
    enhance_fields = {f.name for f in dataclasses.fields(EnhanceConfig)}
    name = OPTION_ALIASES.get(key, key)
    if name in _OPTION_FIELDS:
        return "mine", name, parse_text(text, mine_types[name], f"option {key}")
    if name in generate_fields:
        return "generate", name, parse_text(text, type_hints(GenerateConfig)[name], f"option {key}")
    if name.removeprefix("enhance.") in enhance_fields:
        field = name.removeprefix("enhance.")
        return "enhance", field, parse_text(text, type_hints(EnhanceConfig)[field], f"option {key}")
    known = sorted({*_OPTION_FIELDS, *OPTION_ALIASES, *generate_fields, *enhance_fields} - {"device"})
    raise UsageError(f"unknown source option {key!r}; known: {', '.join(known)}")
