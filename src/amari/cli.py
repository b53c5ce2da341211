"""The `amari` command line: parses arguments and hands them to a stage.

Each sub-command lives in `amari.commands.<name>` and exposes `HELP`, `DESCRIPTION`,
`add_arguments(parser)` and `run(args) -> int`; most options come from the stage's config dataclass
(`amari.config.settings.add_options`). Only the command being run gets its options built, so `amari --help`
imports no stage at all.
"""

from __future__ import annotations

import argparse
import importlib
import sqlite3
import sys

from amari import __version__
from amari.errors import AmariError, describe_failure

COMMANDS = (
    "mine",
    "refine",
    "compare",
    "score",
    "prepare",
    "select",
    "train",
    "evaluate",
    "report",
    "study",
    "verify",
    "mark",
    "keygen",
    "models",
    "doctor",
    "serve",
)


class ArgumentParser(argparse.ArgumentParser):
    """Argument errors are one line too, like every other error (the usage is one --help away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with `only`, the options of that one command alone (the others list
    their names and help, which is all `amari --help` shows)."""
    from amari.config.options import HelpFormatter

    parser = ArgumentParser(
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
    for name in COMMANDS:
        module = importlib.import_module(f"amari.commands.{name}")
        sub = subparsers.add_parser(
            name,
            help=module.HELP,
            description=getattr(module, "DESCRIPTION", module.HELP),
            formatter_class=HelpFormatter,
        )
        sub.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help="show the full traceback on errors"
        )
        if only is None or only == name:
            module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def _command_in(argv: list[str]) -> str | None:
    for word in argv:
        if word in COMMANDS:
            return word
        if not word.startswith("-"):
            return None
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(only=_command_in(argv) or "")
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
    except (OSError, sqlite3.Error) as exc:
        # The environment failed under a stage (a full or read-only disk, a damaged file): one line that
        # names the file and what to do, as for any other error.
        if args.debug:
            raise
        print(f"amari {args.command}: error: {describe_failure(exc)}", file=sys.stderr)
        return 1
