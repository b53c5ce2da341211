"""A running stage's live numbers as a small JSON file, for readers in other processes (`amari serve`).

The writer replaces the file whole at each change (a temporary and a rename, no fsync: it is a display,
made again at the next change), so a reader never sees half of it and the writer pays one small write.
The record names the writing process, so that a reader can tell a live run from one that was killed.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from pathlib import Path

from amari.storage.files import write_atomic


def publish(path: str | os.PathLike, record: dict) -> None:
    """Replace the status file with `record`, the writer's pid and the time; a failed write is skipped
    (a full disk must not stop the work for the sake of a display)."""
    body = {key: _finite(value) for key, value in record.items()}
    body.update(pid=os.getpid(), updated=time.time())
    with contextlib.suppress(OSError):
        write_atomic(path, json.dumps(body, default=str))


def _finite(value):
    """JSON has no NaN: a number that is not finite is written as null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def read(path: str | os.PathLike) -> dict | None:
    """The last record published, or None when there is none (or it is not one)."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def alive(record: dict | None) -> bool:
    """Whether the record says its writer runs and that process still exists (a killed run leaves
    `running` set behind it)."""
    if not record or not record.get("running"):
        return False
    pid = record.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    if os.name != "posix":  # os.kill(pid, 0) is a check only on POSIX
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True
