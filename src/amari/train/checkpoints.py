"""Checkpoints written whole or not at all, and the run's CSV logs.

A checkpoint is built in `checkpoints/.step-NNNNNN.partial/` and renamed to `checkpoints/step-NNNNNN/`
once every file is on disk, so a folder with a final name is always complete; a run killed mid-write
leaves only a partial folder, which the next start removes. `metrics.csv` is append-only during a run
and cut back to the checkpoint's step on resume, so no step appears twice.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from amari.errors import WorkspaceError, describe_failure
from amari.storage.files import atomic_open, write_atomic
from amari.storage.layout import BEST_JSON, CHECKPOINTS, VALIDATION_CSV

STATE_FILE = "state.json"
TRAINING_STATE_FILE = "training_state.pt"
METRIC_FIELDS = ("step", "epoch", "loss", "lr", "images_per_s")
VALIDATION_FIELDS = ("step", "mean_sim_score", "faces_found", "images", "faces_found_rate", "score", "best")
_STEP_DIR = re.compile(r"^step-(\d+)$")


def checkpoint_dir(out_dir: Path, step: int) -> Path:
    return Path(out_dir) / CHECKPOINTS / f"step-{step:06d}"


def complete_checkpoints(out_dir: Path, until: int | None = None) -> list[tuple[int, Path]]:
    """(step, folder) of every complete checkpoint, oldest first; with `until`, those of steps up to it
    (a run whose length was lowered leaves the later ones where they are, and never uses them)."""
    root = Path(out_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for folder in root.iterdir():
        match = _STEP_DIR.match(folder.name)
        if match and folder.is_dir() and (folder / STATE_FILE).is_file():
            found.append((int(match.group(1)), folder))
    return sorted(entry for entry in found if until is None or entry[0] <= until)


def latest_checkpoint(out_dir: Path, until: int | None = None) -> tuple[int, Path] | None:
    found = complete_checkpoints(out_dir, until)
    return found[-1] if found else None


def remove_partials(out_dir: Path) -> None:
    root = Path(out_dir) / CHECKPOINTS
    if root.is_dir():
        for folder in root.glob(".*.partial"):
            shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def writing_checkpoint(out_dir: Path, step: int) -> Iterator[Path]:
    """Yield an empty folder to fill; on success it becomes the checkpoint of `step` in one rename."""
    final = checkpoint_dir(out_dir, step)
    partial = final.with_name(f".{final.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        yield partial
        _fsync_tree(partial)
        if final.exists():  # only after the user deleted later checkpoints and went back
            shutil.rmtree(final)
        os.replace(partial, final)
        _fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def write_json(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WorkspaceError(f"cannot read {path}: {exc}") from None


def save_training_state(folder: Path, state: dict) -> None:
    import torch

    path = Path(folder) / TRAINING_STATE_FILE
    try:
        torch.save(state, path)
    except (OSError, RuntimeError) as exc:  # torch reports a full disk as a RuntimeError of its zip writer
        if isinstance(exc, OSError):
            raise WorkspaceError(f"cannot write checkpoint {describe_failure(exc)}") from None
        raise WorkspaceError(f"cannot write checkpoint {path}: {_first_line(exc)}; {_disk_hint(path)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _disk_hint(path: Path) -> str:
    """What to do when torch failed to write `path`: a full disk is the usual cause; say so when it is."""
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    if free is not None and free < (64 << 20):
        return "the disk is full: free some space and run the same command again (earlier checkpoints are kept)"
    return "check the disk, then run the same command again (earlier checkpoints are kept)"


def load_training_state(folder: Path) -> dict:
    import torch

    path = Path(folder) / TRAINING_STATE_FILE
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WorkspaceError(f"cannot read checkpoint {path}: {exc}") from None


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


class MetricsLog:
    """`metrics.csv`: one row per optimizer step, appended and flushed as the run goes."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._handle = None

    def rows(self) -> list[dict]:
        return read_csv(self.path, METRIC_FIELDS)

    def keep_until(self, step: int) -> None:
        """Drop rows after `step` (written after the checkpoint a run resumes from)."""
        kept = [row for row in self.rows() if int(row["step"]) <= step]
        write_csv(self.path, METRIC_FIELDS, kept)

    def append(self, step: int, epoch: float, loss: float, lr: float, images_per_s: float) -> None:
        if self._handle is None:
            new = not self.path.exists() or self.path.stat().st_size == 0
            self._handle = open(self.path, "a", newline="", encoding="utf-8")
            if new:
                csv.writer(self._handle).writerow(METRIC_FIELDS)
        csv.writer(self._handle).writerow((step, _number(epoch), _number(loss), _number(lr), f"{images_per_s:.3f}"))
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def _number(value: float) -> str:
    # repr round-trips exactly, so a resumed run's rows can be compared bit for bit.
    return repr(float(value))


def read_csv(path: Path, fields) -> list[dict]:
    """Rows of a CSV with the given header; a line cut short by a kill is skipped."""
    if not Path(path).is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [row for row in rows if len(row) == len(fields) and None not in row.values() and _is_int(row["step"])]


def _is_int(value) -> bool:
    try:
        int(value)
    except (TypeError, ValueError):
        return False
    return True


def write_csv(path: Path, fields, rows: list[dict]) -> None:
    with atomic_open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def summarize_validation(out_dir: Path, until: int | None = None) -> dict | None:
    """Rebuild `validation.csv` and `best.json` from the complete checkpoints (up to step `until`); returns
    the best entry.

    The best checkpoint has the lowest score: the mean sim-score of its samples where a sample without
    a face counts as 1.0 (an unrelated face), so a checkpoint cannot win by drawing no faces.
    """
    entries = []
    for step, folder in complete_checkpoints(out_dir, until):
        validation = read_json(folder / STATE_FILE).get("validation")
        if validation and validation.get("score") is not None:
            entries.append((step, folder, validation))
    best = min(entries, key=lambda entry: (entry[2]["score"], entry[0])) if entries else None
    rows = [
        {
            "step": step,
            "mean_sim_score": _blank(v.get("mean_sim_score")),
            "faces_found": v["faces_found"],
            "images": v["images"],
            "faces_found_rate": _blank(v.get("faces_found_rate")),
            "score": _blank(v["score"]),
            "best": int(best is not None and step == best[0]),
        }
        for step, _folder, v in entries
    ]
    out_dir = Path(out_dir)
    if not entries:  # none validated (up to `until`): what an earlier, longer run summarised does not hold
        for path in (out_dir / VALIDATION_CSV, out_dir / BEST_JSON):
            path.unlink(missing_ok=True)
        return None
    write_csv(out_dir / VALIDATION_CSV, VALIDATION_FIELDS, rows)
    step, folder, validation = best
    summary = {"step": step, "checkpoint": str(folder.relative_to(out_dir)), **validation}
    write_json(out_dir / BEST_JSON, summary)
    return summary


def _blank(value):
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else value
