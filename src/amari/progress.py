"""Progress bars on stderr (rich), silent when stderr is not a terminal; the libraries' own output kept off it."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def progress_bar(total: int | None, description: str, unit: str = "items") -> Iterator:
    """Yield an `advance(n=1)` function; the bar shows only on an interactive stderr.

    unit: "items" counts as N/M; "bytes" shows sizes and a transfer rate (downloads)."""
    if not sys.stderr.isatty():
        yield lambda n=1: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    if unit == "bytes":
        columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    else:
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)


def warn(message: str) -> None:
    print(f"WARNING: {message}", file=sys.stderr)


# What the libraries under amari print for their own maintainers: notes on internals, deprecations, their
# bars ("Writing model shards"), each set through the variables they read when imported.
_LIBRARY_ENVIRONMENT = {
    "DIFFUSERS_VERBOSITY": "error",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}
_LIBRARY_WARNINGS = r"(diffusers|transformers|huggingface_hub|accelerate|peft|torch|torchvision|spandrel)(\.|$)"


@contextmanager
def quiet_libraries(debug: bool = False) -> Iterator[None]:
    """Keep diffusers', transformers' and huggingface_hub's notes, warnings and progress bars, and the
    deprecation warnings of the libraries amari uses, off the terminal while a command runs: they speak of
    the libraries' internals, not of the user's work, and amari reports what matters in its own words.
    With `debug` they all show."""
    if debug:
        yield
        return
    before = {name: os.environ.get(name) for name in _LIBRARY_ENVIRONMENT}
    for name, value in _LIBRARY_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    restore = [_quiet_logging(sys.modules[name]) for name in ("diffusers", "transformers") if name in sys.modules]
    try:
        with warnings.catch_warnings():
            for category in (FutureWarning, DeprecationWarning, UserWarning):
                warnings.filterwarnings("ignore", category=category, module=_LIBRARY_WARNINGS)
            warnings.filterwarnings("ignore", category=FutureWarning)  # raised on behalf of amari's call
            yield
    finally:
        for undo in restore:
            undo()
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _quiet_logging(library):
    """A library imported before the command ran: its level and bars set now, and put back afterwards."""
    logging = library.utils.logging
    level, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()

    def undo() -> None:
        logging.set_verbosity(level)
        if bars:
            logging.enable_progress_bar()

    return undo
