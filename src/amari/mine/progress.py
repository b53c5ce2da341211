"""Live progress of a mining run on stderr: a rich panel on a terminal, one line per batch elsewhere."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace

from amari.storage.layout import SIM_GROUP


@dataclass(frozen=True)
class Snapshot:
    batch: int = 0
    batch_size: int = 0
    group_size: int = 0
    almost_size: int = 0
    unknown_size: int = 0
    avg: float = 0.5
    hi: float = 0.5
    judged: int = 0  # candidates judged in this run
    joined: int = 0  # of which joined the group
    event: str = "starting"
    source: str = ""
    pipeline: str = ""  # the engine's rates, queue depths and how long the generator waited


class MiningProgress:
    """Call `update(**fields)` as things happen, `batch_done(**fields)` after each batch, `note(text)` to warn."""

    def __init__(self, enabled: bool = True, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.snapshot = Snapshot()
        self.started = time.monotonic()
        self._live = None

    def __enter__(self) -> MiningProgress:
        if self.enabled and self.stream.isatty():
            from rich.console import Console
            from rich.live import Live

            self._live = Live(self.panel(), console=Console(file=self.stream), refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.update(self.panel())
            self._live.__exit__(*exc)
            self._live = None

    def update(self, **fields) -> None:
        self.snapshot = replace(self.snapshot, **fields)
        if self._live is not None:
            self._live.update(self.panel())

    def batch_done(self, **fields) -> None:
        """The end of a batch: on a terminal the panel changes, elsewhere one line is written."""
        self.update(**fields)
        if self.enabled and self._live is None:
            print(self.line(), file=self.stream, flush=True)

    def note(self, text: str) -> None:
        """A line that stays, written even when progress is off (files that could not be used, ...)."""
        if self._live is not None:
            self._live.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.stream, flush=True)

    @property
    def images_per_minute(self) -> float:
        minutes = (time.monotonic() - self.started) / 60
        return self.snapshot.judged / minutes if minutes > 0 else 0.0

    @property
    def acceptance_rate(self) -> float:
        s = self.snapshot
        return s.joined / s.judged if s.judged else 0.0

    def line(self) -> str:
        s = self.snapshot
        return (
            f"batch {s.batch} (n={s.batch_size}): group {s.group_size} avg {s.avg:.4f} hi {s.hi:.4f}, "
            f"almost {s.almost_size}, unknown {s.unknown_size}; accepted {self.acceptance_rate:.0%} "
            f"of {s.judged}, {self.images_per_minute:.1f} images/min; {s.event}"
            + (f" | {s.pipeline}" if s.pipeline else "")
        )

    def panel(self):
        """The rich table the terminal shows: source, batch, sim-group, almost / unknown, acceptance, last event."""
        from rich.table import Table

        s = self.snapshot
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        table.add_row("source", s.source)
        table.add_row("batch", f"{s.batch}  (size {s.batch_size})")
        table.add_row(SIM_GROUP, f"{s.group_size}  average {s.avg:.4f}  upper bound {s.hi:.4f}")
        table.add_row("almost / unknown", f"{s.almost_size} / {s.unknown_size}")
        table.add_row(
            "accepted", f"{self.acceptance_rate:.1%} of {s.judged}  ({self.images_per_minute:.1f} images/min)"
        )
        table.add_row("last event", s.event)
        if s.pipeline:
            table.add_row("pipeline", s.pipeline)
        return table
