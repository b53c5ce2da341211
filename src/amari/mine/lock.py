"""The workspace's lock: one miner at a time, released however the miner ends (even by SIGKILL)."""

from __future__ import annotations

import os
from pathlib import Path

from amari.errors import WorkspaceError


class WorkspaceLock:
    """An exclusive lock on WORKSPACE/.lock, held until close() or the process ends (even by SIGKILL)."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self._file = open(path, "a+")
        except OSError as exc:
            raise WorkspaceError(
                f"cannot write in the workspace {path.parent} ({exc.strerror}): a miner needs a writable folder; "
                "copy the workspace somewhere writable or fix its permissions"
            ) from None
        try:
            _lock_file(self._file)
        except OSError:
            self._file.seek(0)
            holder = self._file.read().strip() or "unknown"
            self._file.close()
            raise WorkspaceError(
                f"workspace {path.parent} is in use by another miner (pid {holder}); "
                "wait for it to finish or stop it first"
            ) from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(str(os.getpid()))
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


def _lock_file(handle) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        return
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
