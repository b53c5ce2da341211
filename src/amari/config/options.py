"""Command-line options made from a config dataclass (`amari.config.settings.setting` says how per field).

`add_options(parser, cls)` adds one option per field, its help text ending in the dataclass's default;
`from_args(cls, args)` builds the config back from the parsed arguments. Nested settings (a stage's
`FaceSettings`) contribute the fields they `include`. Only the command being run builds its options.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable
from typing import Any

from amari.config.settings import UNSET, parse_text, type_hints, unwrap_optional
from amari.errors import UsageError


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's own line breaks; option help is wrapped, never inside a hyphenated word
    (model ids and paths stay whole)."""

    def _split_lines(self, text, width):
        import textwrap

        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


def _flags(item: dataclasses.Field) -> tuple[str, ...]:
    flag = item.metadata.get("flag")
    if flag is None:
        return (f"--{item.name.replace('_', '-')}",)
    return (flag,) if isinstance(flag, str) else tuple(flag)


def _describe(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value)) if value else "none"
    return str(value)


def cli_fields(cls, prefix: str = "", defaults: Any = None):
    """(dest, field, hint, default) of every command-line option of `cls`, nested ones flattened."""
    hints = type_hints(cls)
    for item in dataclasses.fields(cls):
        meta = item.metadata
        if not meta.get("cli", True):
            continue
        default = getattr(defaults, item.name) if defaults is not None else _field_default(item)
        include = meta.get("include")
        if include is not None:
            for sub in cli_fields(hints[item.name], prefix=f"{prefix}{item.name}.", defaults=default):
                if sub[1].name in include:
                    yield sub
            continue
        yield f"{prefix}{item.name}", item, hints[item.name], default


def _field_default(item: dataclasses.Field) -> Any:
    if item.default is not dataclasses.MISSING:
        return item.default
    if item.default_factory is not dataclasses.MISSING:
        return item.default_factory()
    return UNSET


def add_options(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = (), given_only: bool = False) -> None:
    """One option per command-line field of `cls`; help says the default, which is the dataclass's.

    given_only: the options change a config read from a file, so only those given on the command line
    count (see `given`) and none has a default of its own.
    """
    groups: dict[str, Any] = {}
    for dest, item, hint, default in cli_fields(cls):
        if dest in skip:
            continue
        meta = item.metadata
        title = meta.get("group")
        target = parser if title is None else groups.setdefault(title, parser.add_argument_group(title))
        kwargs = _argument(item, hint, None if given_only else default)
        if given_only:
            kwargs["default"] = argparse.SUPPRESS
        target.add_argument(*_flags(item), dest=dest, **kwargs)


def given(cls, args: argparse.Namespace) -> dict[str, Any]:
    """The fields of `cls` that were given on the command line (options added with `given_only`)."""
    return {dest: getattr(args, dest) for dest, *_ in cli_fields(cls) if "." not in dest and hasattr(args, dest)}


def _argument(item: dataclasses.Field, hint: Any, default: Any) -> dict[str, Any]:
    meta = item.metadata
    text = meta.get("help", "")
    inner, _ = unwrap_optional(hint)
    kwargs: dict[str, Any] = {}
    action = meta.get("action")
    flags = _flags(item)
    if action == "const":
        kwargs.update(action="store_const", const=meta.get("const"), default=default)
    elif inner is bool and default is None:
        kwargs.update(action=argparse.BooleanOptionalAction, default=None)
    elif inner is bool and not meta.get("cli_type"):
        negated = flags[0].startswith("--no-")
        kwargs.update(action="store_false" if negated else "store_true", default=default)
    elif action == "append":
        kwargs.update(
            action="append",
            default=None,
            type=_parser(item, typing.get_args(inner)[0] if typing.get_origin(inner) is tuple else inner),
        )
    else:
        item_hint = typing.get_args(inner)[0] if meta.get("nargs") and typing.get_origin(inner) is tuple else hint
        if default is UNSET:
            kwargs.update(required=True, type=_parser(item, item_hint))
            default = None
        else:
            kwargs.update(default=default, type=_parser(item, item_hint))
        if meta.get("nargs"):
            kwargs["nargs"] = meta["nargs"]
            if meta["nargs"] == "?":
                kwargs["const"] = meta.get("const")
    if meta.get("metavar"):
        kwargs["metavar"] = meta["metavar"]
    if meta.get("choices"):
        kwargs["choices"] = meta["choices"]
    shown = default if default is not None and default is not False and default != () else None
    if meta.get("show_default", True) and shown is not None and kwargs.get("action") != "store_false":
        text = f"{text} (default {_describe(shown)})" if text else f"default {_describe(shown)}"
    kwargs["help"] = text.replace("%", "%%")
    return kwargs


def _parser(item: dataclasses.Field, hint: Any) -> Callable[[str], Any]:
    custom = item.metadata.get("cli_type")
    name = _flags(item)[0]

    def parse(text: str):
        try:
            return custom(text) if custom is not None else parse_text(text, hint, name)
        except UsageError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = getattr(unwrap_optional(hint)[0], "__name__", "value")
    return parse


def from_args(cls, args: argparse.Namespace, **fixed):
    """A `cls` from parsed arguments (options this command did not add keep their defaults)."""
    values = dict(fixed)
    nested: dict[str, dict[str, Any]] = {}
    for dest, item, _hint, default in cli_fields(cls):
        if not hasattr(args, dest):
            continue
        value = getattr(args, dest)
        if item.metadata.get("action") == "append":
            value = default if value is None else tuple(value)
        elif isinstance(value, list):
            value = tuple(value)
        owner, _, name = dest.rpartition(".")
        if owner:
            nested.setdefault(owner, {})[name] = value
        elif name not in fixed:
            values[name] = value
    for owner, changes in nested.items():
        base = values.get(owner) or _field_default(next(f for f in dataclasses.fields(cls) if f.name == owner))
        values[owner] = dataclasses.replace(base, **changes)
    return cls(**values)


def defaults_of(cls) -> dict[str, Any]:
    """{dest: default} of every command-line option that has one (nested ones as `field.sub`)."""
    return {dest: default for dest, _item, _hint, default in cli_fields(cls) if default is not UNSET}
