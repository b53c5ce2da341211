"""The workbench for tests: a workspace mined from real photos, and `amari serve`'s server on a loopback port.

`serving(...)` runs the real server (uvicorn, on a socket bound before it starts, so a request made at
once waits in the socket's queue instead of racing the start) in a thread of the test process, and stops
it on leaving. `raw_get` sends a request line exactly as written: no client rewrites `..` or `%2e`.
"""

from __future__ import annotations

import http.client
import json
import shutil
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from amari.serve import ServeConfig, Server
from amari.storage.layout import ServeLayout, StudyLayout, WorkspaceLayout

TOKEN = "test-token-0123456789abcdefghijklmnopqrstuv"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@dataclass(frozen=True)
class Mined:
    workspace: Path  # never changed by a test: copy it first (`copy_workspace`)
    photos: Path  # the folder source it was mined from
    reference: Path
    kinds: dict[str, str]  # photo name -> astronaut / other / noface / broken


def copy_workspace(mined: Mined, destination: Path) -> Path:
    """A copy that keeps every file's size and time, as the miner's database recorded them."""
    shutil.copytree(mined.workspace, destination, symlinks=True)
    return destination


def layout(workspace: Path, study: Path | None = None) -> ServeLayout:
    return ServeLayout(WorkspaceLayout(workspace), StudyLayout(study) if study else None)


@contextmanager
def serving(workspace: Path, study: Path | None = None, **settings):
    settings = {"port": 0, "poll": 0.1, **settings}
    server = Server(ServeConfig(**settings), layout(workspace, study), token=TOKEN)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop()
        thread.join(timeout=15)
        assert not thread.is_alive(), "the server did not stop"


def raw_get(port: int, target: str, headers: dict | None = None) -> tuple[int, bytes]:
    """GET `target` as written on the request line (no normalisation), with the token."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest("GET", target, skip_accept_encoding=True)
        for key, value in {**BEARER, **(headers or {})}.items():
            conn.putheader(key, value)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def read_event(response) -> tuple[str, dict]:
    """The next server-sent event of a streaming response: (its name, its JSON data); comments skipped."""
    name, data = "message", []
    while True:
        line = response.readline()
        if not line:
            raise AssertionError("the event stream ended")
        line = line.decode().rstrip("\r\n")
        if not line:
            if data:
                return name, json.loads("\n".join(data))
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if field == "event":
            name = value.strip()
        elif field == "data":
            data.append(value[1:] if value.startswith(" ") else value)
