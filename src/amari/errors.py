"""One exception family. The CLI turns any of these into one line on stderr and a non-zero exit."""


class AmariError(Exception):
    """Base class of every error a user can cause and fix."""

    exit_code = 1


class UsageError(AmariError):
    """Arguments or configuration that cannot work."""

    exit_code = 2


class ImageError(AmariError):
    """An image file that cannot be read: truncated, corrupt, not an image, or too large."""

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # picklable across worker processes
        return (type(self), (self.path, self.reason))


class ModelError(AmariError):
    """A model file that is missing, of the wrong kind, or unsafe to load."""


class WorkspaceError(AmariError):
    """A workspace that is locked, damaged, or not what a command expected."""


class LeakageFound(AmariError):
    """The leakage audit raised a flag: a mined identity is too near a real person's face."""

    exit_code = 3


_HINTS = {
    "ENOSPC": "the disk is full: free some space and run the same command again (what was written is kept)",
    "EDQUOT": "the disk quota is used up: free some space and run the same command again",
    "EROFS": "the file system is read-only: use a writable folder",
    "EACCES": "permission denied: use a folder you can write to, or change its permissions",
    "EPERM": "operation not permitted: use a folder you can write to",
    "EISDIR": "a folder stands where a file should be: move it away",
    "ENOTDIR": "a file stands where a folder should be: move it away",
    "EIO": "the disk reported an input/output error: check the disk",
}


def describe_failure(exc: BaseException) -> str:
    """One line for an error from the environment (OSError, sqlite3.Error): the file and what to do."""
    import errno
    import sqlite3

    if isinstance(exc, sqlite3.Error):
        text = str(exc)
        if "full" in text:
            return f"database write failed ({text}): {_HINTS['ENOSPC']}"
        if "readonly" in text or "read-only" in text:
            return f"database write failed ({text}): {_HINTS['EROFS']}"
        if "not a database" in text or "malformed" in text:
            return f"the database is damaged ({text}): restore it from a backup, or move it aside to start anew"
        return f"database error ({text}); run the same command again, or restore the database from a backup"
    name = errno.errorcode.get(getattr(exc, "errno", None) or 0, "")
    where = " -> ".join(str(f) for f in (exc.filename, getattr(exc, "filename2", None)) if f) or "a file"
    reason = exc.strerror or str(exc) or type(exc).__name__
    hint = _HINTS.get(name)
    return f"{where}: {reason}" + (f"; {hint}" if hint else "")


class LicenceError(AmariError):
    """Weights whose licence forbids what the command would do with them (biometric processing)."""

    exit_code = 3
