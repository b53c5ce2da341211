"""The refinement loop's table, `rounds.csv`: one row per round, as `amari refine` writes it and the report
reads it.

Each round mines with the identity learned in the round before (none in the first) and then trains on the
group. Its row: what guided the mining, the candidates it judged and how many joined the group, the group's
and the round's candidates' mean sim-scores, the group's spread of head pose (so that a group collapsing
onto one pose shows), the seconds mining and training held the accelerator and their cost per accepted
image, and the identity the round trained.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from amari.errors import UsageError
from amari.storage.files import write_atomic


@dataclass(frozen=True)
class RoundRecord:
    round: int
    guided_by: str  # the identity the round mined with ("" for the plain prompt)
    method: str
    candidates: int  # judged this round
    accepted: int  # of them, joined the group
    group_size: int  # at the end of the round's mining
    group_mean: float | None  # the group's average member score (lower: tighter)
    fresh_mean: float | None  # the round's candidates' mean sim-score against the group (faces found)
    fresh_faces: int  # candidates with a face
    yaw_sd: float | None  # the group's head-pose spread, degrees
    pitch_sd: float | None
    mine_seconds: float
    train_seconds: float = 0.0
    trained: str = ""  # the identity the round trained ("" when it trained none)
    target_reached: bool = False

    @property
    def acceptance(self) -> float | None:
        return self.accepted / self.candidates if self.candidates else None

    @property
    def seconds_per_accepted(self) -> float | None:
        """Accelerator seconds (the round's mining and training) per image that joined the group."""
        return (self.mine_seconds + self.train_seconds) / self.accepted if self.accepted else None


COLUMNS = [f.name for f in fields(RoundRecord)]
DERIVED = ("acceptance", "seconds_per_accepted")  # written for readers of the file, recomputed when read


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_rounds(path: str | os.PathLike, records: list[RoundRecord]) -> Path:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS + list(DERIVED), lineterminator="\n")
    writer.writeheader()
    for record in records:
        row = {key: _text(value) for key, value in asdict(record).items()}
        row.update({key: _text(getattr(record, key)) for key in DERIVED})
        writer.writerow(row)
    return write_atomic(Path(path), out.getvalue())


def _value(text: str, kind, where: str):
    if text == "":
        return None
    try:
        if kind is bool:
            return text == "yes"
        value = kind(text)
    except ValueError:
        raise UsageError(f"{where}: {text!r} is not a {kind.__name__}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"{where}: {text!r} is not a finite number")
    return value


def read_rounds(path: str | os.PathLike) -> list[RoundRecord]:
    path = Path(path)
    kinds = {"round": int, "candidates": int, "accepted": int, "group_size": int, "fresh_faces": int}
    kinds.update(guided_by=str, method=str, trained=str, target_reached=bool)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    records = []
    for index, row in enumerate(rows, start=2):
        missing = [c for c in COLUMNS if c not in row]
        if missing:
            raise UsageError(f"{path}: not a rounds table (no {', '.join(missing[:3])})")
        values = {c: _value(row[c], kinds.get(c, float), f"{path}:{index} {c}") for c in COLUMNS}
        values.update({c: values[c] or "" for c in ("guided_by", "method", "trained")})
        values.update(train_seconds=values["train_seconds"] or 0.0, target_reached=bool(values["target_reached"]))
        records.append(RoundRecord(**values))
    return records
