"""Plain tables for the terminal (aligned columns) or for Markdown (the README's stage-time table)."""

from __future__ import annotations

import sys


def table_text(headers: list[str], rows: list[list[str]], markdown: bool = False) -> str:
    cells = [[str(c) for c in row] for row in rows]
    if markdown:
        lines = [_markdown_row(headers), "|" + "---|" * len(headers)] + [_markdown_row(row) for row in cells]
        return "\n".join(lines)
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]

    def fmt(row: list[str]) -> str:
        # The last column is free text: it is not padded, so long details do not widen every line.
        return "  ".join(c.ljust(w) for c, w in zip(row[:-1], widths)) + "  " + row[-1]

    lines = [fmt(headers), fmt(["-" * w for w in widths])] + [fmt(row) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


MODEL_HEADERS = ["model", "state", "role", "where"]


def model_rows(statuses) -> list[list[str]]:
    """The models table's rows for `amari.models.inventory.Status`es: where a file is, or what to do."""
    return [[s.need.name, s.state, s.need.role, s.where or s.detail] for s in statuses]


def _markdown_row(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def print_table(headers: list[str], rows: list[list[str]], markdown: bool = False, file=None) -> None:
    print(table_text(headers, rows, markdown), file=file or sys.stdout, flush=True)


def duration(seconds: float | None) -> str:
    """3.2 ms, 4.1 s, 12 min, 3 h 12 min, 2 d 4 h."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms" if seconds < 0.1 else f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes = seconds / 60
    if minutes < 60:
        return f"{minutes:.0f} min" if minutes >= 10 else f"{minutes:.1f} min"
    hours = int(minutes // 60)
    if hours < 48:
        return f"{hours} h {int(minutes % 60):02d} min"
    return f"{hours // 24} d {hours % 24} h"
