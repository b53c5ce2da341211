"""The report's settings (light: the command line builds its options from it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from amari.config.settings import Settings, setting
from amari.errors import UsageError


def metrics_pair(text: str) -> tuple[str, Path]:
    """--metrics GROUP=CSV: the file must be there."""
    group, sep, path = text.partition("=")
    if not sep or not group or not path:
        raise UsageError(f"--metrics {text!r} is not GROUP=CSV")
    if not Path(path).is_file():
        raise UsageError(f"--metrics {group}: file not found: {path}")
    return group, Path(path)


def existing_file(text: str) -> Path:
    if not Path(text).is_file():
        raise UsageError(f"file not found: {text}")
    return Path(text)


@dataclass(frozen=True)
class ReportConfig(Settings):
    thumbnail: int = setting(256, "side of the grid images embedded in the page", metavar="PX")
    out: Path | None = setting(None, "where the report goes (default: RESULTS_DIR/report)", metavar="DIR", toml=False)
    training_metrics: tuple[tuple[str, Path], ...] = setting(
        (),
        "a group's training metrics CSV, instead of the manifest's (repeatable; lora/GROUP, pivotal/GROUP for "
        "the other methods' groups)",
        flag="--metrics",
        action="append",
        cli_type=metrics_pair,
        metavar="GROUP=CSV",
        toml=False,
    )
    mining_archive: Path | None = setting(
        None,
        "the miner's archive.csv, instead of the manifest's",
        flag="--archive",
        metavar="CSV",
        cli_type=existing_file,
        toml=False,
    )

    audit: Path | None = setting(
        None,
        "an audit folder (`amari audit`'s output) whose result the report shows",
        metavar="DIR",
        toml=False,
        study=True,
    )

    def check(self):
        if not 16 <= self.thumbnail <= 2048:
            raise UsageError(f"thumbnail side must be in [16, 2048] pixels, not {self.thumbnail}")
