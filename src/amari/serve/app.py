"""The workbench's web app, built by `create_app(config, layout, token)`: pages, files and a small JSON API.

Pages are rendered on the server (Jinja, every value escaped); the page's own script (static/) only
sends curation requests and swaps in fragments the server rendered. Every request passes the token
gate first (`amari.serve.security`).

    GET  /gallery/FOLDER[?page=N]   a folder's images, best sim-score first   (?part=grid: the grid alone)
    GET  /files/PATH, /thumbs/PATH   an image of the workspace or the study's results, or its thumbnail
    GET  /study, /study/report       the study's grids and its report;  GET /verify  a page to drop images on
    GET  /api/images?folder=NAME     that folder's images: name, folder, score and the other numbers
    GET  /api/status                 the live record;  GET /api/events  the same as server-sent events
    POST /api/move {"name", "to"[, "from"]}   move an image to a folder or to "trash"
    POST /api/restore {"name", "from"}        put an image from trash/FOLDER back into FOLDER
    POST /api/trash/empty                     delete the trash's images for good
    POST /api/verify  (body: the image)       `amari verify --json` on it
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from pathlib import Path
from urllib.parse import unquote

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from amari.errors import AmariError, ImageError
from amari.mine import WorkspaceView
from amari.serve import chart, study
from amari.serve.config import ServeConfig
from amari.serve.curation import Curator, Refused
from amari.serve.gallery import Galleries, Tile
from amari.serve.live import Live
from amari.serve.security import PathRefused, TokenGate, csrf_token, parts_of, regular_file_inside
from amari.serve.thumbnails import Thumbnails
from amari.storage.images import IMAGE_EXTENSIONS
from amari.storage.layout import SIM_GROUP, TRASH, ServeLayout

STATIC = Path(__file__).parent / "static"
KEEPALIVE_SECONDS = 15.0
RESULTS = "results"  # /files/results/... : the study's results folder
# The report is amari's own self-contained page (inline style and script): it runs sandboxed, in an origin
# of its own, so that nothing on it could act with the workbench's cookie.
REPORT_POLICY = (
    "sandbox allow-scripts; default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline'; frame-ancestors 'none'"
)


class Workbench:
    """What the routes share: the layout, the galleries, the curator, the live record, the templates."""

    def __init__(self, config: ServeConfig, layout: ServeLayout, token: str):
        self.config, self.layout = config, layout
        self.csrf = csrf_token(token)
        self.galleries = Galleries(layout.workspace, WorkspaceView(layout.workspace))
        self.curator = Curator(layout.workspace)
        self.live = Live(layout.workspace, self.galleries)
        self.thumbnails = Thumbnails(layout.thumbnails, config.thumbnail)
        self.stopping = threading.Event()  # set when the server stops: event streams end
        self.templates = Environment(
            loader=PackageLoader("amari.serve", "templates"), autoescape=select_autoescape(default=True)
        )
        self.templates.filters["score"] = _score

    # -- pages ------------------------------------------------------------------------------------

    def render(self, template: str, **context) -> str:
        folders = self.galleries.folders
        return self.templates.get_template(template).render(
            csrf=self.csrf,
            folders=folders,
            workspace=self.layout.workspace.root.name,
            has_study=self.layout.study is not None,
            thumb=self.thumb_url,
            **context,
        )

    def thumb_url(self, tile_path: str) -> str:
        return f"/thumbs/{_quoted(tile_path)}"

    def home(self, request: Request):
        return RedirectResponse(f"/gallery/{_quoted(self.galleries.folders[0])}", status_code=303)

    def gallery(self, request: Request):
        folder = request.path_params["folder"]
        if folder != TRASH and folder not in self.galleries.folders:
            raise PathRefused(folder)
        tiles = self.tiles(folder)
        size = self.config.page_size
        pages = max(1, math.ceil(len(tiles) / size))
        page = min(max(_int(request.query_params.get("page"), 1), 1), pages)
        context = dict(
            current=folder,
            tiles=tiles[(page - 1) * size : page * size],
            total=len(tiles),
            page=page,
            pages=pages,
            targets=[f for f in self.galleries.folders if f != folder] + ([TRASH] if folder != TRASH else []),
            summary=self.summary(),
            live=self.live.record(),
        )
        if request.query_params.get("part") == "grid":
            return HTMLResponse(self.render("_gallery.html", **context))
        return HTMLResponse(self.render("gallery.html", title=folder, **context))

    def tiles(self, folder: str) -> list[Tile]:
        if folder == TRASH:
            scored = self.galleries.scored().tiles
            return [tile for name, found in scored.items() if name.startswith(f"{TRASH}/") for tile in found]
        return self.galleries.tiles(folder)

    def summary(self) -> dict:
        scored = self.galleries.scored()
        view = self.galleries.view
        members = [t.score for t in scored.tiles.get(SIM_GROUP, []) if t.score is not None]
        return dict(
            size=scored.group_size,
            faces=scored.group_faces,
            average_now=sum(members) / len(members) if members else None,
            state=view.state(),
            curve=chart.curve(view.analyses()),
        )

    def study_page(self, request: Request):
        if self.layout.study is None:
            raise PathRefused("study")
        context = dict(
            report=study.report_file(self.layout) is not None, grids=study.grids(self.layout), live=self.live.record()
        )
        return HTMLResponse(self.render("study.html", title="study", current="study", **context))

    def report(self, request: Request):
        path = study.report_file(self.layout)
        if path is None:
            raise PathRefused("report")
        return FileResponse(path, media_type="text/html", headers={"content-security-policy": REPORT_POLICY})

    def verify_page(self, request: Request):
        limit = self.config.max_upload
        return HTMLResponse(
            self.render("verify.html", title="verify", current="verify", limit=limit, live=self.live.record())
        )

    # -- files --------------------------------------------------------------------------------------

    def resolve(self, path: str) -> Path:
        """A served image: in a workspace folder, its trash, or the study's results; anything else is refused."""
        parts = parts_of(path)
        if Path(parts[-1]).suffix.lower() not in IMAGE_EXTENSIONS:
            raise PathRefused(path)
        if parts[0] in self.galleries.folders and len(parts) == 2:
            return regular_file_inside(self.layout.workspace.root, parts)
        if parts[0] == TRASH and len(parts) == 3:
            return regular_file_inside(self.layout.workspace.root, parts)
        if parts[0] == RESULTS and self.layout.study is not None and len(parts) > 1:
            return regular_file_inside(self.layout.study.results.root, parts[1:])
        raise PathRefused(path)

    def file(self, request: Request):
        return FileResponse(self.resolve(request.path_params["path"]))

    def thumbnail(self, request: Request):
        thumb = self.thumbnails.get(self.resolve(request.path_params["path"]))
        if thumb is None:
            raise PathRefused("unreadable image")
        # The URL names the image's place; its content may change there, so the browser asks again.
        return FileResponse(thumb, media_type="image/jpeg", headers={"cache-control": "private, no-cache"})

    # -- the API ------------------------------------------------------------------------------------

    def api_images(self, request: Request):
        folder = request.query_params.get("folder", "")
        if folder != TRASH and folder not in self.galleries.folders:
            raise Refused(400, f"folder must be one of {', '.join(self.galleries.folders)} or {TRASH}")
        return JSONResponse({"folder": folder, "images": [t.as_json() for t in self.tiles(folder)]})

    def api_status(self, request: Request):
        return JSONResponse(self.live.record())

    async def api_events(self, request: Request):
        with_panel = request.query_params.get("panel") == "1"
        return StreamingResponse(
            self.events(with_panel),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    async def events(self, with_panel: bool):
        """A `progress` event whenever something the panel shows changed (and at once), a comment now
        and then to keep the connection open; ends when the server stops."""
        last, quiet, number = None, 0.0, 0
        while not self.stopping.is_set():
            signature = await run_in_threadpool(self.live.signature)
            if signature != last:
                record = await run_in_threadpool(self.live.record)
                if with_panel:
                    record["html"] = self.render("_live.html", live=record)
                last, quiet, number = signature, 0.0, number + 1
                yield f"event: progress\nid: {number}\ndata: {json.dumps(record)}\n\n"
            elif quiet >= KEEPALIVE_SECONDS:
                quiet = 0.0
                yield ": keepalive\n\n"
            await asyncio.sleep(self.config.poll)
            quiet += self.config.poll

    async def api_move(self, request: Request):
        body = await _json(request)
        moved = await run_in_threadpool(self.curator.move, body.get("name"), body.get("to"), body.get("from"))
        return JSONResponse({"moved": moved.as_json()})

    async def api_restore(self, request: Request):
        body = await _json(request)
        moved = await run_in_threadpool(self.curator.restore, body.get("name"), body.get("from"))
        return JSONResponse({"moved": moved.as_json()})

    async def api_empty_trash(self, request: Request):
        return JSONResponse({"deleted": await run_in_threadpool(self.curator.empty_trash)})

    async def api_verify(self, request: Request):
        limit = self.config.max_upload * 1024 * 1024
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > limit:
                raise Refused(413, f"the image is larger than {self.config.max_upload} MB (--max-upload)")
        if not data:
            raise Refused(400, "send the image as the request's body")
        name = unquote(request.headers.get("x-filename", "upload.png")).replace("/", "_") or "upload.png"
        try:
            found = await run_in_threadpool(study.verify, self.layout, bytes(data), name)
        except ImageError as exc:
            raise Refused(422, f"{name}: {exc.reason}") from None
        return JSONResponse(found)


def create_app(config: ServeConfig, layout: ServeLayout, token: str) -> Starlette:
    """The app: every route behind the token gate. `app.state.workbench` is what the routes share."""
    bench = Workbench(config, layout, token)
    routes = [
        Route("/", bench.home),
        Route("/gallery/{folder:path}", bench.gallery),
        Route("/files/{path:path}", bench.file),
        Route("/thumbs/{path:path}", bench.thumbnail),
        Route("/study", bench.study_page),
        Route("/study/report", bench.report),
        Route("/verify", bench.verify_page),
        Route("/api/images", bench.api_images),
        Route("/api/status", bench.api_status),
        Route("/api/events", bench.api_events),
        Route("/api/move", bench.api_move, methods=["POST"]),
        Route("/api/restore", bench.api_restore, methods=["POST"]),
        Route("/api/trash/empty", bench.api_empty_trash, methods=["POST"]),
        Route("/api/verify", bench.api_verify, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    handlers = {Refused: _refused, PathRefused: _not_found, AmariError: _failed}
    app = Starlette(routes=routes, middleware=[Middleware(TokenGate, token=token)], exception_handlers=handlers)
    app.state.workbench = bench
    return app


async def _json(request: Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        raise Refused(400, "the body must be JSON") from None
    if not isinstance(body, dict):
        raise Refused(400, 'the body must be a JSON object, e.g. {"name": "x.png", "to": "almost-sim"}')
    return body


def _answer(request: Request, status: int, text: str):
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": text}, status_code=status)
    return PlainTextResponse(f"amari serve: {text}\n", status_code=status)


async def _refused(request: Request, exc: Refused):
    return _answer(request, exc.status, str(exc))


async def _not_found(request: Request, exc: PathRefused):
    return _answer(request, 404, "not found")  # never saying why a path was refused


async def _failed(request: Request, exc: AmariError):
    return _answer(request, 500, str(exc))


def _quoted(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="/")


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


def _score(value) -> str:
    return "—" if value is None else f"{value:.4f}"
