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
