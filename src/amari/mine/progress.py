"""Live progress of a mining run on stderr: a rich panel on a terminal, one line per batch elsewhere;
and the same numbers in the workspace's status file for other processes (`amari serve`'s live panel)."""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from amari.storage import status
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
    # The engine: rates since the run started, what waits where, and the generator's idle share.
    generated_per_s: float | None = None  # None: no batch has finished yet
    judged_per_s: float = 0.0
    queued: int = 0
    ready: int = 0
    working: int = 0
    generator_wait: float = 0.0
    target: int = 0  # the group size the run stops at
    running: bool = True


class MiningProgress:
    """Call `update(**fields)` as things happen, `batch_done(**fields)` after each batch, `note(text)` to warn."""

    def __init__(self, enabled: bool = True, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.snapshot = Snapshot()
        self.started = time.monotonic()
        self._live = None
        self._status: Path | None = None

    def publish_to(self, path: Path) -> None:
        """From now on, every change is also written to the status file at `path`."""
        self._status = path
        self._publish()

    def _publish(self) -> None:
        if self._status is not None:
            status.publish(self._status, {**asdict(self.snapshot), "acceptance": self.acceptance_rate})

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
        self._publish()
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

    @property
    def pipeline(self) -> str:
        """The engine's rates, queue depths and how long the generator waited ('' before the first batch)."""
        s = self.snapshot
        if s.generated_per_s is None:
            return ""
        return (
            f"{s.generated_per_s:.2f} generated/s, {s.judged_per_s:.2f} judged/s; queued {s.queued} "
            f"(ready {s.ready}), steps under way {s.working}; generator waited {s.generator_wait:.0%}"
        )

    def line(self) -> str:
        s = self.snapshot
        return (
            f"batch {s.batch} (n={s.batch_size}): group {s.group_size} avg {s.avg:.4f} hi {s.hi:.4f}, "
            f"almost {s.almost_size}, unknown {s.unknown_size}; accepted {self.acceptance_rate:.0%} "
            f"of {s.judged}, {self.images_per_minute:.1f} images/min; {s.event}"
            + (f" | {self.pipeline}" if self.pipeline else "")
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
        if self.pipeline:
            table.add_row("pipeline", self.pipeline)
        return table
