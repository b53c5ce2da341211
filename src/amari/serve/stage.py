"""`amari serve`: the workbench on a port of this machine, reached with a random token printed in its URL."""

from __future__ import annotations

import contextlib
import importlib.util
import ipaddress
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass

from amari.errors import UsageError
from amari.serve.config import LOOPBACK, ServeConfig
from amari.storage.layout import ServeLayout

EXTRA = ("starlette", "uvicorn", "jinja2")


@dataclass(frozen=True)
class ServeResult:
    url: str  # what was printed, token included


def exposure_warning(host: str, port: int) -> str | None:
    """What to say when the workbench listens where other machines can reach it."""
    if host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host.strip("[]")).is_loopback:
            return None
    except ValueError:
        pass  # a host name: not known to stay on this machine
    return (
        f"listening on {host}: other machines can reach the workbench, and its token is its only "
        "protection (whoever has it can move and delete images; the connection is not encrypted). "
        f"From another machine, prefer the default {LOOPBACK} and an SSH tunnel: "
        f"ssh -N -L {port}:{LOOPBACK}:{port} USER@THIS-MACHINE, then open the URL there"
    )


def require_extra() -> None:
    missing = [name for name in EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(f"amari serve needs {', '.join(missing)}: pip install 'amari[serve]'")


def check_layout(layout: ServeLayout) -> None:
    root = layout.workspace.root
    if not root.is_dir():
        raise UsageError(f"no workspace at {root} (`amari mine --workspace {root}` makes one)")
    if layout.study is not None and not layout.study.root.is_dir():
        raise UsageError(f"no study at {layout.study.root}")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, bound before the server starts: a port in use is one clear error, and port 0
    gets a free port whose number goes into the URL."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port") from None
    return sock


class Server:
    """The app on a bound socket. `serve()` blocks until Ctrl-C, SIGTERM or `stop()` (from another thread)."""

    def __init__(self, config: ServeConfig, layout: ServeLayout, token: str | None = None):
        require_extra()
        check_layout(layout)
        import uvicorn

        from amari.serve.app import create_app

        self.token = token or secrets.token_urlsafe(32)
        self.socket = bind(config.host, config.port)
        self.host, self.port = config.host, self.socket.getsockname()[1]
        self.app = create_app(config, layout, self.token)
        stopping = self.app.state.workbench.stopping

        class Uvicorn(uvicorn.Server):
            def handle_exit(self, sig, frame):
                stopping.set()  # the event streams end now instead of holding the shutdown up
                super().handle_exit(sig, frame)

        self.server = Uvicorn(
            uvicorn.Config(
                self.app,
                log_level="warning",
                access_log=False,
                proxy_headers=False,
                server_header=False,
                lifespan="off",
                timeout_graceful_shutdown=3,
            )
        )

    @property
    def base(self) -> str:
        host = self.host if self.host not in ("0.0.0.0", "::") else socket.gethostname()
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/?token={self.token}"

    def serve(self) -> None:
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self.socket.close()

    def stop(self) -> None:
        self.app.state.workbench.stopping.set()
        self.server.should_exit = True


def run(config: ServeConfig, layout: ServeLayout, announce: Callable[[str], None] = print) -> ServeResult:
    """Serve until stopped; `announce` gets the lines to show the user (the URL with its token first)."""
    server = Server(config, layout)
    warning = exposure_warning(config.host, server.port)
    if warning:
        from amari.progress import warn

        warn(warning)
    announce(f"amari serve: the workbench of {layout.workspace.root.name} is at\n    {server.url}")
    announce("Open it in a browser on this machine (the token is needed on every request); Ctrl-C stops it.")
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn stops gracefully on Ctrl-C, then raises it again
        server.serve()
    announce("amari serve: stopped")
    return ServeResult(server.url)
