"""The `amari` command line: parses arguments and hands them to a stage.

Each sub-command lives in `amari.commands.<name>` and exposes `HELP`, `DESCRIPTION`,
`add_arguments(parser)` and `run(args) -> int`; most options come from the stage's config dataclass
(`amari.config.settings.add_options`). Only the command being run gets its options built, so `amari --help`
imports no stage at all.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sqlite3
import sys
import threading

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
    "audit",
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
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback on errors, and the libraries' own warnings"
    )
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
            "--debug",
            action="store_true",
            default=argparse.SUPPRESS,
            help="show the full traceback on errors, and the libraries' own warnings",
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


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like Ctrl-C, so that every step closes what it holds (databases, worker
    pools, a Ray cluster) before the process ends by the signal."""


def _terminate(signum, frame) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(only=_command_in(argv) or "")
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        return _run(args)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def _run(args) -> int:
    from amari.progress import quiet_libraries

    try:
        with quiet_libraries(args.debug):
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
    except Terminated:
        print(f"amari {args.command}: stopped by SIGTERM; run the same command again to go on", file=sys.stderr)
        sys.stderr.flush()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)  # end by the signal, as a caller waiting for this process expects
        return 143
    except RuntimeError as exc:
        # A process pool's worker was killed (the module is loaded once a pool ran: no import here).
        broken = getattr(sys.modules.get("concurrent.futures.process"), "BrokenProcessPool", ())
        if args.debug or not isinstance(exc, broken):
            raise
        print(
            f"amari {args.command}: error: a worker process ended abruptly (killed, or out of memory?); "
            "what was finished is kept: run the same command again to go on",
            file=sys.stderr,
        )
        return 1
    except (OSError, sqlite3.Error) as exc:
        # The environment failed under a stage (a full or read-only disk, a damaged file): one line that
        # names the file and what to do, as for any other error.
        if args.debug:
            raise
        print(f"amari {args.command}: error: {describe_failure(exc)}", file=sys.stderr)
        return 1
