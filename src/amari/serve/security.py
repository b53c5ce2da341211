"""Who may ask, and for what: the token on every request, same-origin state changes, safe paths.

The workbench has one secret, a random token printed with its URL. A request carries it in one of three
ways: `Authorization: Bearer TOKEN` (scripts), a cookie (the browser; set from `?token=` on the first
visit, which then redirects to the same page without it), or that first `?token=` itself. Without it a
request gets 401, with a wrong one 403, before any route runs.

A request that changes something (any method but GET and HEAD) is refused when the browser says it comes
from another site (`Sec-Fetch-Site`) or another origin (`Origin`), and, when the token came from the
cookie, unless it carries the page's CSRF token in a header: a page on another site can make the browser
send the cookie, but it can neither read the CSRF token nor set a custom header without a CORS
preflight, which this server never grants. Scripts with a Bearer token need no CSRF token: a browser
never adds that header by itself.

Paths come from URLs, so each part is checked before it touches the disk: no empty, `.` or `..` part,
no separators or NUL inside a part, no hidden names; and the file found must be a regular file (not a
symbolic link) whose real path is inside the folder it was asked from.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

SAFE_METHODS = ("GET", "HEAD")
CSRF_HEADER = "x-amari-csrf"
SAME_SITE_FETCHES = ("same-origin", "none")  # `none`: the user typed the URL or followed a bookmark

# Pages load nothing from elsewhere: scripts, styles and images come from this server alone.
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
_COMMON_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)


def derived(token: str, purpose: str) -> str:
    """A value made from the token for one purpose (the cookie's name, the CSRF token)."""
    return hmac.new(token.encode(), purpose.encode(), hashlib.sha256).hexdigest()[:32]


def cookie_name(token: str) -> str:
    """Named after the token, so two workbenches on one host (cookies ignore ports) keep theirs apart."""
    return f"amari-{derived(token, 'cookie')[:12]}"


def csrf_token(token: str) -> str:
    return derived(token, "csrf")


class TokenGate:
    """ASGI middleware: every HTTP request needs the token; state changes need the same origin."""

    def __init__(self, app, token: str):
        self.app, self.token = app, token
        self.cookie = cookie_name(token)
        self.csrf = csrf_token(token)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        method = scope["method"]
        given, how = self._credentials(scope, headers, method)
        if given is None:
            await _refuse(send, 401, "a token is needed: open the URL that `amari serve` printed")
            return
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            await _refuse(send, 403, "wrong token")
            return
        if how == "query":
            await self._set_cookie_and_redirect(scope, send)
            return
        if method not in SAFE_METHODS:
            problem = self._cross_origin(headers, how)
            if problem:
                await _refuse(send, 403, problem)
                return
        await self.app(scope, receive, _with_headers(send))

    def _credentials(self, scope, headers: dict[str, str], method: str) -> tuple[str | None, str]:
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            return auth[7:].strip(), "bearer"
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == self.cookie:
                return value, "cookie"
        if method in SAFE_METHODS:
            for name, value in parse_qsl(scope.get("query_string", b"").decode("latin-1")):
                if name == "token":
                    return value, "query"
        return None, ""

    def _cross_origin(self, headers: dict[str, str], how: str) -> str | None:
        site = headers.get("sec-fetch-site")
        if site is not None and site not in SAME_SITE_FETCHES:
            return f"refused: a {site} request may not change anything"
        origin = headers.get("origin")
        if origin is not None and origin != f"http://{headers.get('host', '')}":
            return f"refused: a request from {origin} may not change anything"
        if how == "cookie" and not hmac.compare_digest(headers.get(CSRF_HEADER, "").encode(), self.csrf.encode()):
            return f"refused: the {CSRF_HEADER} header is missing or wrong (send the page's CSRF token)"
        return None

    async def _set_cookie_and_redirect(self, scope, send) -> None:
        """The token moves from the URL to a cookie, and the address bar loses it."""
        kept = [(k, v) for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1")) if k != "token"]
        path = scope.get("raw_path") or scope["path"].encode("utf-8")
        location = b"/" + path.lstrip(b"/")  # never `//host/...`: that would send the browser elsewhere
        if kept:
            location += b"?" + urlencode(kept).encode("latin-1")
        cookie = f"{self.cookie}={self.token}; Path=/; HttpOnly; SameSite=Strict"
        await send(
            {
                "type": "http.response.start",
                "status": 303,
                "headers": [
                    (b"location", location),
                    (b"set-cookie", cookie.encode()),
                    (b"cache-control", b"no-store"),
                    *_COMMON_HEADERS,
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})


def _headers(scope) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, value in scope.get("headers", []):
        name = key.decode("latin-1").lower()
        text = value.decode("latin-1")
        found[name] = f"{found[name]}; {text}" if name == "cookie" and name in found else text
    return found


def _with_headers(send):
    """Every response gets the common security headers; a page without its own policy gets PAGE_POLICY,
    one without its own caching rule is not stored."""

    async def wrapped(message):
        if message["type"] == "http.response.start":
            present = {key.lower() for key, _ in message.get("headers", [])}
            extra = [pair for pair in _COMMON_HEADERS if pair[0] not in present]
            if b"content-security-policy" not in present:
                extra.append((b"content-security-policy", PAGE_POLICY.encode()))
            if b"cache-control" not in present:
                extra.append((b"cache-control", b"no-store"))
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return wrapped


async def _refuse(send, status: int, text: str) -> None:
    body = f"amari serve: {text}\n".encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="amari serve"'))
    await send({"type": "http.response.start", "status": status, "headers": [*headers, *_COMMON_HEADERS]})
    await send({"type": "http.response.body", "body": body})


# -- paths ----------------------------------------------------------------------------------------------


class PathRefused(Exception):
    """A path that may not be served or changed (the app answers 404, never saying why to the client)."""


def plain_name(name: str) -> str:
    """A file name alone: no folder parts, nothing hidden, no `..`."""
    if (
        not isinstance(name, str)
        or not name
        or name in (".", "..")
        or name.startswith(".")
        or any(c in name for c in "/\\\0")
        or len(name.encode("utf-8", "surrogateescape")) > 255
    ):
        raise PathRefused(f"not a plain file name: {name!r}")
    return name


def parts_of(path: str) -> list[str]:
    """The parts of a '/'-separated relative path, each a plain name."""
    return [plain_name(part) for part in path.split("/")]


def regular_file_inside(root: Path, parts: list[str]) -> Path:
    """`root/parts...` when it is a regular file (not a link) whose real path is inside `root`."""
    path = root.joinpath(*parts)
    try:
        info = os.lstat(path)
    except OSError:
        raise PathRefused(f"no such file: {'/'.join(parts)}") from None
    if not stat.S_ISREG(info.st_mode):
        raise PathRefused(f"not a regular file: {'/'.join(parts)}")
    real, base = path.resolve(), root.resolve()
    if real != base and base not in real.parents:
        raise PathRefused(f"outside the served folders: {'/'.join(parts)}")
    return path
