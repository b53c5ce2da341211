"""The `amari` command line: parses arguments and hands them to a stage.

Each sub-command lives in `amari.commands.<name>` and exposes `HELP`, `add_arguments(parser)` and
`run(args) -> int`. Those modules import nothing heavy at module level, so `amari --help` is instant;
a stage whose module is not installed simply has no sub-command.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from amari import __version__
from amari.errors import AmariError

COMMANDS = (
    "mine",
    "compare",
    "score",
    "prepare",
    "select",
    "train",
    "evaluate",
    "report",
    "study",
    "verify",
    "models",
    "doctor",
)


def _command_modules():
    for name in COMMANDS:
        module_name = f"amari.commands.{name}"
        if importlib.util.find_spec(module_name) is not None:
            yield name, importlib.import_module(module_name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="amari",
        description=(
            "Mine a consistent synthetic identity with Stable Diffusion, train Textual Inversion "
            "embeddings on it and measure how well they learned it. Every image amari writes is "
            "watermarked and tagged as synthetic."
        ),
    )
    parser.add_argument("--version", action="version", version=f"amari {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in _command_modules():
        sub = subparsers.add_parser(
            name,
            help=module.HELP,
            description=getattr(module, "DESCRIPTION", module.HELP),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                         help="show the full traceback on errors")
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except AmariError as exc:
        if args.debug:
            raise
        print(f"amari {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"amari {args.command}: interrupted", file=sys.stderr)
        return 130
