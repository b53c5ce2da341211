"""Settings: one frozen dataclass per stage, the single source of its defaults, TOML keys and CLI options.

A field is declared with `setting(default, "what it does", ...)`. From the dataclass alone:

- `from_table(cls, table, where, base)` reads a TOML table: unknown keys, wrong types and non-finite
  numbers are errors naming the table and key; relative paths are taken from `base`;
- `amari.config.options.add_options(parser, cls)` adds one command-line option per field, help text and default
  included, and `amari.config.options.from_args(cls, args)` builds the config from what argparse parsed;
- `fingerprint(config)` is a short hash of its values: a stage's output is stale when it changes.

Every `Settings` subclass rejects NaN and infinities in its number fields, turns strings into `Path`s
and lists into tuples where the field says so, and then runs its own `check()`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from amari.errors import UsageError

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

UNSET = object()


def setting(
    default: Any = UNSET,
    help: str = "",
    *,
    flag: str | tuple[str, ...] | None = None,
    cli: bool = True,
    toml: bool = True,
    study: bool = False,
    metavar: str | None = None,
    choices: tuple | None = None,
    group: str | None = None,
    cli_type: Callable | None = None,
    toml_type: Callable | None = None,
    nargs: str | None = None,
    action: str | None = None,
    const: Any = None,
    include: tuple[str, ...] | None = None,
    show_default: bool = True,
    default_factory: Callable | None = None,
    runtime: bool = False,
):
    """A dataclass field with what the CLI and the TOML loader need to know about it.

    flag: the option string(s); default `--field-name`. cli/toml: whether the field is a command-line
    option / a TOML key. study: the study fills it in from its own settings (model, device, ...), so a
    study's section may not set it. cli_type/toml_type: parse a command-line string / a TOML value
    (`toml_type(value, where, base)`). include: for a nested Settings field, which of its fields become
    options and keys of this one. action: "append" (repeatable), "const" (the flag sets `const`).
    runtime: how the stage runs (processes, a cluster), not what it makes: left out of fingerprints, so
    changing it never redoes a study's step.
    """
    metadata = dict(
        help=help,
        flag=flag,
        cli=cli,
        toml=toml,
        study=study,
        metavar=metavar,
        choices=choices,
        group=group,
        cli_type=cli_type,
        toml_type=toml_type,
        nargs=nargs,
        action=action,
        const=const,
        include=include,
        show_default=show_default,
        runtime=runtime,
    )
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    if default is UNSET:
        return dataclasses.field(metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


class Settings:
    """Base of every stage's frozen config dataclass (see the module docstring)."""

    def __post_init__(self):
        hints = type_hints(type(self))
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            fixed = _coerce(value, hints[item.name])
            if fixed is not value:
                object.__setattr__(self, item.name, fixed)
            check_finite(item.name, fixed)
        self.check()

    def check(self) -> None:
        """Values that cannot work; raise UsageError naming the setting."""

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


@functools.cache
def type_hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def unwrap_optional(hint) -> tuple[Any, bool]:
    """(the type inside Optional[...], whether None is allowed)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return (args[0] if len(args) == 1 else hint), type(None) in typing.get_args(hint)
    return hint, False


def _coerce(value: Any, hint: Any) -> Any:
    inner, _ = unwrap_optional(hint)
    if value is None:
        return value
    if inner is Path and isinstance(value, str):
        return Path(value)
    if typing.get_origin(inner) is tuple and isinstance(value, list):
        return tuple(value)
    return value


def check_finite(name: str, value: Any) -> None:
    """NaN or an infinity in a number setting is always a mistake (a typo, a division by zero)."""
    values = value if isinstance(value, (tuple, list)) else (value,)
    for item in values:
        if isinstance(item, float) and not math.isfinite(item):
            raise UsageError(f"{name} must be a finite number, not {item}")


def check_positive(**values) -> None:
    """Each value (when given) must be above zero."""
    for name, value in values.items():
        if value is not None and not value > 0:
            raise UsageError(f"{name} must be positive, not {value}")


def check_cpus(value: int) -> None:
    if value == 0 or value < -1:
        raise UsageError(f"cpus must be -1 (all cores) or at least 1, not {value}")


def check_choice(name: str, value: Any, choices) -> None:
    if value not in choices:
        raise UsageError(f"unknown {name} {value!r}: use one of {', '.join(map(str, choices))}")


# -- TOML ---------------------------------------------------------------------------------------------


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"config not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read config {path}: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}") from None


def toml_keys(cls, in_study: bool = False) -> list[str]:
    keys = []
    for item in dataclasses.fields(cls):
        meta = item.metadata
        if not meta.get("toml", True) or (in_study and meta.get("study")):
            continue
        keys.append(item.name)
    return keys


def from_table(cls, table: dict[str, Any], where: str, base: Path, defaults=None, in_study: bool = False):
    """A `cls` from a TOML table; `defaults` (an instance) supplies what the table leaves out."""
    if not isinstance(table, dict):
        raise UsageError(f"{where} must be a table ([{where}])")
    known = toml_keys(cls, in_study)
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise UsageError(f"[{where}] unknown key(s) {', '.join(unknown)}; known keys: {', '.join(known)}")
    hints = type_hints(cls)
    values = {}
    for item in dataclasses.fields(cls):
        if item.name in table:
            converter = item.metadata.get("toml_type")
            key = f"{where}.{item.name}"
            if converter is not None:
                values[item.name] = converter(table[item.name], key, base)
            elif item.metadata.get("include") is not None:
                values[item.name] = from_table(
                    hints[item.name], table[item.name], key, base, defaults=getattr(defaults, item.name, None)
                )
            else:
                values[item.name] = convert(table[item.name], hints[item.name], key, base)
        elif defaults is not None:
            values[item.name] = getattr(defaults, item.name)
        elif item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING:
            raise UsageError(f"[{where}] missing key(s) {item.name}")
    try:
        return cls(**values)
    except UsageError as exc:
        text = str(exc)
        raise UsageError(text if text.startswith("[") else f"[{where}] {text}") from None


def convert(value: Any, hint: Any, where: str, base: Path) -> Any:
    """A TOML value checked against a type hint (bool, int, float, str, Path, tuples, dataclasses)."""
    inner, optional = unwrap_optional(hint)
    if optional and (value is None or (isinstance(value, str) and value.strip().lower() == "none")):
        return None  # TOML has no null: "none" stands for it where a setting may be left out
    origin = typing.get_origin(inner)
    if origin is tuple:
        if not isinstance(value, list):
            raise UsageError(f"{where} must be a list, not {value!r}")
        item_hint = typing.get_args(inner)[0]
        return tuple(convert(v, item_hint, f"{where}[{i}]", base) for i, v in enumerate(value))
    if dataclasses.is_dataclass(inner):
        if not isinstance(value, dict):
            raise UsageError(f"{where} must be a table, not {value!r}")
        return from_table(inner, value, where, base)
    if inner is bool:
        if not isinstance(value, bool):
            raise UsageError(f"{where} must be true or false, not {value!r}")
        return value
    if inner is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"{where} must be a whole number, not {value!r}")
        return value
    if inner is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"{where} must be a number, not {value!r}")
        if not math.isfinite(value):
            raise UsageError(f"{where} must be a finite number, not {value}")
        return float(value)
    if inner is str:
        if not isinstance(value, str):
            raise UsageError(f"{where} must be a string, not {value!r}")
        return value
    if inner is Path:
        if not isinstance(value, str) or not value:
            raise UsageError(f"{where} must be a path (a non-empty string), not {value!r}")
        return resolve_path(value, base)
    raise TypeError(f"no converter for {where}: {hint}")  # pragma: no cover - a programming error


def resolve_path(value: str | Path, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (Path(base) / path).resolve()


def parse_text(text: str, hint: Any, name: str) -> Any:
    """A command-line or KEY=VALUE string as the type a field declares."""
    inner, optional = unwrap_optional(hint)
    if optional and text.strip().lower() in ("none", "off", ""):
        return None
    if inner is bool:
        word = text.strip().lower()
        if word in ("1", "true", "yes", "on"):
            return True
        if word in ("0", "false", "no", "off"):
            return False
        raise UsageError(f"{name} expects true or false, not {text!r}")
    if typing.get_origin(inner) is tuple:
        item = typing.get_args(inner)[0]
        return tuple(parse_text(part, item, name) for part in text.replace(",", " ").split())
    try:
        value = inner(text)
    except (TypeError, ValueError):
        kind = {int: "int (a whole number)", float: "float (a number)"}.get(
            inner, getattr(inner, "__name__", "a value")
        )
        raise UsageError(f"{name} expects {kind}, not {text!r}") from None
    check_finite(name, value)
    return value


# -- values -------------------------------------------------------------------------------------------


def plain(value: Any, runtime: bool = True) -> Any:
    """JSON-ready values: dataclasses as dicts, tuples as lists, paths as strings; without the settings
    marked `runtime` when `runtime` is False."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: plain(getattr(value, f.name), runtime)
            for f in dataclasses.fields(value)
            if runtime or not f.metadata.get("runtime")
        }
    if isinstance(value, (tuple, list)):
        return [plain(v, runtime) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v, runtime) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def fingerprint(*values: Any) -> str:
    """A short hash of settings (and anything else JSON can hold): same values, same fingerprint. How a
    stage runs (settings marked `runtime`) does not count."""
    text = json.dumps([plain(v, runtime=False) for v in values], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
