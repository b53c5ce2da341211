"""Downloading one model file: bounded in time, never followed to a host nobody named, never half-kept.

- A download that receives less than `STALL_BYTES` in any `timeout` seconds is abandoned (a server that
  trickles a byte now and then never trips a socket timeout, which counts each byte as life). The
  transfer runs on a thread of its own and this one watches it, so a stall anywhere (the connection,
  the headers, the body) ends within the timeout.
- Redirects are followed within the same host; to another host only where an official source keeps its
  files there (GitHub's releases, on githubusercontent.com), and never from https to http.
- The file is written under a hidden temporary name (`amari.storage.files.temporary_name`) and renamed
  into place by the caller once its checksum passed; a temporary a killed process left is removed by
  the next download into the same folder.
"""

from __future__ import annotations

import hashlib
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

from amari.errors import ModelError

STALL_BYTES = 64 * 1024
DEFAULT_TIMEOUT_S = 30.0
_CHUNK = 1 << 16
# Hosts an official source redirects its downloads to: GitHub serves release assets from these.
_TRUSTED_REDIRECTS = {"github.com": ("githubusercontent.com",)}


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        old, new = urllib.parse.urlsplit(req.full_url), urllib.parse.urlsplit(newurl)
        if old.scheme == "https" and new.scheme != "https":
            raise ModelError(f"{req.full_url} redirects to {newurl}, which is not https; refused")
        if new.hostname != old.hostname and not _trusted(old.hostname or "", new.hostname or ""):
            raise ModelError(
                f"{req.full_url} redirects to another host ({new.hostname}); refused: give the address "
                "the file is really at (--mirror) if you trust it"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _trusted(old: str, new: str) -> bool:
    return any(new == host or new.endswith("." + host) for host in _TRUSTED_REDIRECTS.get(old, ()))


class _Transfer(threading.Thread):
    """Streams a URL into a file on its own thread; `received` grows as bytes arrive."""

    def __init__(self, url: str, partial: Path, timeout: float):
        super().__init__(name="amari-download", daemon=True)
        self.url, self.partial, self.timeout = url, partial, timeout
        self.received, self.total = 0, None
        self.digest = hashlib.sha256()
        self.error: BaseException | None = None
        self.abandoned = False

    def run(self) -> None:
        opener = urllib.request.build_opener(_SameHostRedirects)
        try:
            with opener.open(self.url, timeout=self.timeout) as response, open(self.partial, "xb") as out:
                self.total = int(response.headers.get("Content-Length") or 0) or None
                read = getattr(response, "read1", response.read)
                while not self.abandoned:
                    chunk = read(_CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    self.digest.update(chunk)
                    self.received += len(chunk)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread, which decides
            self.error = exc


def download(url: str, partial: Path, timeout: float, on_bytes=lambda n: None) -> str:
    """Stream `url` into the new file `partial`; returns its SHA-256. Raises ModelError when the transfer
    stalls (less than STALL_BYTES in `timeout` seconds); network errors as urllib raises them."""
    transfer = _Transfer(url, partial, timeout)
    transfer.start()
    shown = 0
    window_start, window_bytes = time.monotonic(), 0
    while transfer.is_alive():
        transfer.join(min(0.2, timeout))
        received = transfer.received
        on_bytes(received - shown)
        window_bytes += received - shown
        shown = received
        now = time.monotonic()
        if window_bytes >= STALL_BYTES:
            window_start, window_bytes = now, 0
        elif now - window_start >= timeout and transfer.is_alive():
            transfer.abandoned = True  # its socket times out or the next byte ends it; nothing waits for it
            raise ModelError(
                f"{url}: the download stalled ({window_bytes} bytes in the last {timeout:g} s, fewer than "
                f"{STALL_BYTES // 1024} kB); try again later or another --mirror (--timeout sets the wait)"
            )
    if transfer.error is not None:
        raise transfer.error
    return transfer.digest.hexdigest()
