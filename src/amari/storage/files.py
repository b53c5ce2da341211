"""Files that appear whole or not at all, and content hashes.

Every file amari writes goes to a hidden temporary name beside its target and is renamed into place
once complete, so a reader (another tool watching the folder, a resumed run) never sees half a file,
and a full disk or a kill loses only the file being written. The temporary is opened with the user's
umask, like any new file.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import secrets
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_CHUNK = 1 << 20


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


@functools.lru_cache(maxsize=64)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)


def sha256_once(path: str | os.PathLike) -> str:
    """A file's SHA-256, computed once per process while the file is unchanged (large model files)."""
    stat = os.stat(path)
    return _sha256_of(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


def safetensors_data_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a safetensors file's tensor data, after its 8-byte length and JSON header: the hash A1111
    and kohya give a LoRA (`Lora hashes`, `sshs_model_hash`), the same whatever the header says."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        handle.seek(8 + length)
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def temporary_name(path: Path) -> Path:
    """A hidden, unique name in the target's folder, without an image suffix (folder scans skip it)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.part")


_TEMPORARY = re.compile(r"\..+\.(\d+)\.[0-9a-f]{8}\.part")


def remove_stale_temporaries(folder: str | os.PathLike, recursive: bool = False) -> int:
    """Delete the temporaries (`temporary_name`) that a killed process left in `folder` (and below it);
    those of a process still running are its own to finish. Returns how many went."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    for path in folder.rglob(".*.part") if recursive else folder.glob(".*.part"):
        found = _TEMPORARY.fullmatch(path.name)
        if found and path.is_file() and not _running(int(found.group(1))):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: running
        return True
    return True


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path` in one rename."""
    path = Path(path)
    temporary = temporary_name(path)
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike, data: bytes | str, encoding: str = "utf-8") -> Path:
    """Write `data` to `path` whole or not at all."""
    path = Path(path)
    with atomic_path(path) as temporary:
        if isinstance(data, str):
            with open(temporary, "x", encoding=encoding, newline="") as handle:
                handle.write(data)
        else:
            with open(temporary, "xb") as handle:
                handle.write(data)
    return path


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator:
    """An open file whose content replaces `path` when the block ends without an error."""
    with atomic_path(path) as temporary, open(temporary, mode.replace("w", "x"), **kwargs) as handle:
        yield handle


# File systems allow 255 bytes a name; names amari gives files stay well under, leaving room for a
# "-N" that keeps two apart, a bound tag, and the hidden temporary a file is written under first.
NAME_BYTES = 200


def fit_name(name: str, limit: int = NAME_BYTES) -> str:
    """`name`, or, when it is longer than `limit` bytes (UTF-8), its stem cut short and ended with a hash
    of the whole name (two long names that begin alike stay apart); the suffix is kept."""
    if len(name.encode()) <= limit:
        return name
    stem, suffix = os.path.splitext(name)
    if len(suffix.encode()) > 16:
        stem, suffix = name, ""
    mark = "~" + hashlib.sha256(name.encode()).hexdigest()[:8]
    room = max(0, limit - len((mark + suffix).encode()))
    return stem.encode()[:room].decode("utf-8", "ignore") + mark + suffix


def free_name(folder: str | os.PathLike, name: str, taken: set[str] | frozenset = frozenset()) -> Path:
    """`folder/name`, or `folder/stem-1.suffix`, `-2`, ... : the first that neither exists nor is taken
    (a name longer than `NAME_BYTES` is cut short first)."""
    folder = Path(folder)
    stem, suffix = os.path.splitext(fit_name(name))
    candidate, i = name, 1
    while candidate in taken or (folder / candidate).exists():
        candidate, i = f"{stem}-{i}{suffix}", i + 1
    return folder / candidate


def same_content(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two files hold the same bytes (False when either cannot be read)."""
    try:
        if os.path.getsize(a) != os.path.getsize(b):
            return False
        return Path(a).read_bytes() == Path(b).read_bytes()
    except OSError:
        return False


MARKER = ".amari"  # in a folder amari writes into: says that it is amari's, and what for


def claim_folder(folder: str | os.PathLike, kind: str, ours=None) -> Path:
    """Make `folder` amari's to write `kind` into: a new or empty folder, one amari marked before, or one
    `ours(folder)` recognises as amari's own from an earlier version. Anything else is refused, so that
    a mistyped path never has its files overwritten or renamed."""
    from amari.errors import UsageError

    folder = Path(folder)
    marker = folder / MARKER
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} is a file, not a folder for {kind}")
    if marker.is_file():
        return folder
    if folder.is_dir():
        present = sorted(p.name for p in folder.iterdir())
        if present and not (ours is not None and ours(folder)):
            shown = ", ".join(present[:3]) + (", ..." if len(present) > 3 else "")
            raise UsageError(
                f"{folder} holds files amari did not write ({shown}); give an empty or new folder for {kind}"
            )
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(marker, f"amari {kind}\n")
    return folder
