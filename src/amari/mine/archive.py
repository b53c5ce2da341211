"""The workspace's `archive.csv`: one row per batch, the mining curve, a mirror of the `batches` table.

The table is the truth; the CSV is appended after each committed batch and rewritten at start-up when a
run killed between the two left it behind.
"""

from __future__ import annotations

import csv
import io
import os
import time
from pathlib import Path

ARCHIVE_COLUMNS = ("time", "group_size", "almost_size", "avg", "hi", "batch", "until_gsa", "n", "event")


def archive_row(row) -> list[str]:
    """A `batches` row (or the dict about to become one) as the CSV's cells."""
    return [
        time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(row["finished_at"])),
        str(row["group_size"]),
        str(row["almost_size"]),
        f"{row['avg']:.6f}",
        f"{row['hi']:.6f}",
        str(row["number"]),
        str(row["until_gsa"]),
        str(row["n"]),
        row["event"],
    ]


def append_archive(path: Path, row: dict) -> None:
    new_file = not path.exists()
    with open(path, "a", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        if new_file:
            writer.writerow(ARCHIVE_COLUMNS)
        writer.writerow(archive_row(row))


def rewrite_archive_if_stale(path: Path, rows: list) -> None:
    """Make the CSV hold exactly `rows` (the batches table), when it does not already."""
    expected = [list(ARCHIVE_COLUMNS)] + [archive_row(r) for r in rows]
    try:
        current = list(csv.reader(io.StringIO(path.read_text())))
    except FileNotFoundError:
        current = None
    if current == expected or (current is None and not rows):
        return
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(expected)
    partial = path.with_name(f".{path.name}.part")
    partial.write_text(buffer.getvalue(), newline="")
    os.replace(partial, path)
