"""The web server of ``fars view``: Starlette routes over the served folders, live streams as server-sent events.

Routes (GET and HEAD only; any other method is answered 405 before routing, so nothing can be written):

  /                                the runs and sweeps
  /run/KEY                         a run, live
  /run/KEY/project/ID              a project
  /sweep/KEY, /compare?run=A&run=B  a sweep's jobs or chosen runs side by side (``fars compare``'s numbers)
  /files/KEY/PATH                  a file of a run folder (confined to it; see ``fars.view.folders``)
  /live/...                        the live stream of a page (server-sent events of changed sections)
  /api/runs, /api/run/KEY          the same as JSON (the run's RunRecord, built live while it runs)

Every response carries a Content-Security-Policy that allows nothing but this origin, so a page can
never fetch from another host; files a model wrote are served sandboxed, as text or images only.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fars.view.folders import NotServed, RunFolder, ServedFolders, open_served
from fars.view.pages import (
    BadQuery,
    Page,
    compare_page,
    make_environment,
    project_page,
    run_page,
    run_row,
    runs_generation,
    runs_page,
)
from fars.view.reader import Readers, change_stamp

log = logging.getLogger("fars.view")

PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "frame-src 'self'; object-src 'none'; connect-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'self'"
)
# files written by a run (a model may have written them): no script runs, nothing else loads
FILE_POLICY = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; frame-ancestors 'self'; sandbox"
PDF_POLICY = (
    "frame-ancestors 'self'"  # only who may frame it: Chromium's PDF viewer opens no document restricted further
)
IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".svg": "image/svg+xml",
}
TEXT_SUFFIXES = {
    ".md",
    ".txt",
    ".tex",
    ".json",
    ".jsonl",
    ".log",
    ".py",
    ".yaml",
    ".yml",
    ".csv",
    ".bib",
    ".sh",
    ".toml",
    ".cfg",
    ".ini",
    ".out",
    ".err",
    ".diff",
    ".patch",
    "",
}
READ_METHODS = ("GET", "HEAD")
WARM_RUNS = 8  # runs summarised in the background at start, the most recently written first
SECURITY_HEADERS = (
    (b"content-security-policy", PAGE_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"SAMEORIGIN"),
    (b"cross-origin-resource-policy", b"same-origin"),  # no other site may embed what the view serves
)


class ReadOnlyHeaders:
    """ASGI middleware: refuses every method but GET and HEAD, and sets the security headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] not in READ_METHODS:
            response = PlainTextResponse(
                "fars view is read-only: only GET and HEAD are served", status_code=405, headers={"Allow": "GET, HEAD"}
            )
            await response(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                own = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in own]  # a route may set its own
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class OpenFileResponse(Response):
    """A file already opened safely (``open_served``: no link followed, not a FIFO or device), streamed from
    its descriptor, which is closed whatever happens; at most the size it had when opened is sent."""

    chunk_size = 256 * 1024

    def __init__(self, fd: int, info: os.stat_result, media_type: str, headers: dict[str, str]) -> None:
        self.fd = fd
        self.size = info.st_size
        super().__init__(None, media_type=media_type, headers={**headers, "content-length": str(info.st_size)})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            left, ended = (0 if scope.get("method") == "HEAD" else self.size), False
            while left > 0:
                chunk = await run_in_threadpool(os.read, self.fd, min(self.chunk_size, left))
                if not chunk:
                    break  # it shrank since it was opened: the body falls short and the connection is closed
                left -= len(chunk)
                ended = left <= 0
                await send({"type": "http.response.body", "body": chunk, "more_body": not ended})
            if not ended:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            os.close(self.fd)


class ViewApp:
    """The view's state (served folders, readers, templates) and its route handlers."""

    def __init__(self, roots: list[Path], poll_s: float = 0.5) -> None:
        self.served = ServedFolders(roots)
        self.readers = Readers(self.served)
        self.env = make_environment()
        self.poll_s = poll_s

    def prepare(self) -> None:
        """Before the first request: find the runs and compile every template (a first page is then not slow)."""
        self.served.scan(force=True)
        for name in self.env.list_templates():
            self.env.get_template(name)

    def warm(self, runs: int = WARM_RUNS) -> None:
        """Summarise the most recently active runs in the background, so their pages open at once."""
        # a missing file's time is None: counted as 0, so runs with and without a ledger sort together
        folders = sorted(self.served.runs.values(), key=lambda f: [t or 0 for t in change_stamp(f.path)], reverse=True)
        for folder in folders[:runs]:
            try:
                self.readers.get(folder.key).snapshot()
            except Exception:  # a run that cannot be read says so when its page is opened
                log.debug("warming %s failed", folder.path, exc_info=True)

    # -- rendering ----------------------------------------------------------------------------
    def _context(self, page: Page) -> dict[str, Any]:
        now = time.time()
        return {"now": now, "server_now": now, **page.context, "page": page}

    def render(self, page: Page, status: int = 200) -> HTMLResponse:
        """A whole page."""
        html = self.env.get_template(page.template).render(self._context(page))
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})

    def sections(self, page: Page) -> dict[str, str]:
        """Each live section of a page, rendered alone (what the stream sends)."""
        context = self._context(page)
        return {sid: self.env.get_template(template).render(context) for sid, template in page.sections.items()}

    def error(self, status: int, message: str) -> HTMLResponse:
        """An error page that says what was asked for and why it is not there."""
        titles = {404: "Not found", 400: "Bad request", 500: "The view could not read this"}
        page = Page(title=titles.get(status, "Error"), template="error.html", context={"message": message})
        return self.render(page, status)

    # -- pages --------------------------------------------------------------------------------
    async def runs(self, request: Request) -> Response:
        """The Runs page."""
        page = await run_in_threadpool(runs_page, self.served, self.readers)
        return self.render(page)

    def _run_page(self, key: str) -> Page:
        return run_page(self.readers.get(key).snapshot())

    async def run(self, request: Request) -> Response:
        """A run's page."""
        page = await run_in_threadpool(self._run_page, request.path_params["key"])
        return self.render(page)

    def _project_page(self, key: str, project_id: str) -> Page:
        reader = self.readers.get(key)
        snap = reader.snapshot()
        generation = reader.poll()
        detail = reader.project(project_id)
        if detail is None:
            raise NotServed(f"run {snap.folder.label} has no project {project_id!r}")
        return project_page(snap, detail, self.served, generation)

    async def project(self, request: Request) -> Response:
        """A project's page."""
        page = await run_in_threadpool(self._project_page, request.path_params["key"], request.path_params["pid"])
        return self.render(page)

    def _settings(self, request: Request) -> dict[str, Any]:
        settings: dict[str, Any] = {}
        for name, kind in (("margin", float), ("confidence", float), ("metric", str)):
            if name in request.query_params:
                try:
                    settings[name] = kind(request.query_params[name])
                except ValueError:
                    raise BadQuery(f"{name}={request.query_params[name]!r} is not a {kind.__name__}") from None
        return settings

    async def sweep(self, request: Request) -> Response:
        """A sweep's jobs side by side, every job against job 0."""
        sweep = self.served.sweep(request.path_params["key"])
        folders = [self.served.run(k) for k in sweep.jobs]
        page = await run_in_threadpool(
            lambda: compare_page(folders, self.readers, f"Sweep {sweep.label}", sweep, **self._settings(request))
        )
        return self.render(page)

    async def compare(self, request: Request) -> Response:
        """Chosen runs side by side (``?run=KEY&run=KEY``), each against the first."""
        keys = request.query_params.getlist("run")
        if len(keys) < 2:
            return self.error(
                400, "check two or more runs on the Runs page to compare them (the first is the baseline)"
            )
        folders: list[RunFolder] = [self.served.run(k) for k in keys]
        page = await run_in_threadpool(
            lambda: compare_page(folders, self.readers, "Compare runs", None, **self._settings(request))
        )
        return self.render(page)

    async def files(self, request: Request) -> Response:
        """A file of a run folder: served only from inside it, text and images sandboxed, others as downloads."""
        folder = self.served.run(request.path_params["key"])
        fd, info, path = await run_in_threadpool(open_served, folder, request.path_params["path"], self.served)
        suffix = path.suffix.lower()  # of the file itself, not of a link's name
        headers = {"Cache-Control": "no-cache", "Content-Security-Policy": FILE_POLICY}
        media_type = "application/octet-stream"
        if suffix == ".pdf":
            headers["Content-Security-Policy"] = PDF_POLICY
            media_type = "application/pdf"
        elif suffix in IMAGE_TYPES:
            media_type = IMAGE_TYPES[suffix]
        elif suffix in TEXT_SUFFIXES:
            media_type = "text/plain; charset=utf-8"
        else:
            headers["Content-Disposition"] = f"attachment; filename*=utf-8''{quote(path.name)}"
        try:
            return OpenFileResponse(fd, info, media_type, headers)
        except BaseException:
            os.close(fd)
            raise

    # -- JSON ---------------------------------------------------------------------------------
    async def api_runs(self, request: Request) -> Response:
        """Every run as JSON: key, label, sweep, status, papers, papers per hour, tokens, cost, mean score."""

        def rows() -> list[dict[str, Any]]:
            self.served.scan()
            out = []
            for folder in sorted(self.served.runs.values(), key=lambda f: f.label):
                row = run_row(folder, self.readers)
                r = row.record
                out.append(
                    {
                        "key": folder.key,
                        "label": folder.label,
                        "path": str(folder.path),
                        "sweep": folder.sweep,
                        "status": r.status if r else None,
                        "papers": r.papers if r else None,
                        "projects": row.projects,
                        "papers_per_hour": r.papers_per_hour if r else None,
                        "tokens": r.totals.overall.total_tokens if r else None,
                        "cost_usd": r.totals.overall.cost_usd if r else None,
                        "mean_score": r.mean_score if r else None,
                        "problem": row.problem,
                        "error": "; ".join(row.refused) or None,
                    }
                )
            return out

        return JSONResponse(await run_in_threadpool(rows))

    async def api_run(self, request: Request) -> Response:
        """A run's RunRecord as JSON (built from the ledger while the run goes on)."""
        snap = await run_in_threadpool(lambda: self.readers.get(request.path_params["key"]).snapshot())
        if snap.record is None:
            return JSONResponse({"error": snap.problem or "no RunRecord yet"}, status_code=404)
        return Response(snap.record.model_dump_json(), media_type="application/json")

    # -- live streams -------------------------------------------------------------------------
    def _stream(self, request: Request, generation: Callable[[], str], build: Callable[[], Page]) -> Response:
        """Server-sent events: the sections of the page that changed, each time its run changes."""
        shown = request.headers.get("last-event-id") or request.query_params.get("gen", "")

        async def events() -> AsyncIterator[dict[str, Any]]:
            last: dict[str, str] | None = None
            sent = shown
            while True:
                current = await run_in_threadpool(generation)
                if last is None or current != sent:
                    page = await run_in_threadpool(build)
                    sections = await run_in_threadpool(self.sections, page)
                    if last is None and page.generation == sent:
                        last = sections  # what the page already shows
                    else:
                        changed = {k: v for k, v in sections.items() if last is None or last.get(k) != v}
                        last, sent = sections, page.generation
                        if changed:
                            payload = {"gen": page.generation, "now": time.time(), "sections": changed}
                            yield {"event": "sections", "id": page.generation, "data": json.dumps(payload)}
                await asyncio.sleep(self.poll_s)

        return EventSourceResponse(events(), ping=15, headers={"Cache-Control": "no-store"})

    async def live_runs(self, request: Request) -> Response:
        """The Runs page's stream."""
        return self._stream(request, lambda: runs_generation(self.served), lambda: runs_page(self.served, self.readers))

    async def live_run(self, request: Request) -> Response:
        """A run page's stream."""
        key = request.path_params["key"]
        reader = self.readers.get(key)
        return self._stream(request, lambda: str(reader.snapshot().generation), lambda: self._run_page(key))

    async def live_project(self, request: Request) -> Response:
        """A project page's stream."""
        key, pid = request.path_params["key"], request.path_params["pid"]
        reader = self.readers.get(key)
        return self._stream(request, lambda: str(reader.poll()), lambda: self._project_page(key, pid))

    # -- errors -------------------------------------------------------------------------------
    async def not_served(self, request: Request, exc: Exception) -> Response:
        """404 for anything outside the served folders or not there."""
        return self.error(404, str(exc))

    async def bad_request(self, request: Request, exc: Exception) -> Response:
        """400 for a query the view cannot use (a bad compare setting)."""
        return self.error(400, str(exc))

    async def failed(self, request: Request, exc: Exception) -> Response:
        """500 naming what went wrong, instead of a bare traceback."""
        log.exception("fars view: %s failed", request.url.path)
        return self.error(500, f"{request.url.path}: {type(exc).__name__}: {str(exc)[:500]}")


FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#1f5fbf"/>'
    '<path d="M4 3h8v2H6v2h5v2H6v4H4z" fill="#fff"/></svg>'
)


async def favicon(request: Request) -> Response:
    """The view's icon (browsers ask for /favicon.ico by themselves)."""
    # a sandboxed file (an opaque origin) asks for it too: the icon alone may be loaded cross-origin
    headers = {"Cache-Control": "max-age=86400", "Cross-Origin-Resource-Policy": "cross-origin"}
    return Response(FAVICON, media_type="image/svg+xml", headers=headers)


def allowed_hosts(host: str) -> list[str]:
    """Host names the server answers to: loopback names when bound to loopback (a page on another site
    that rebinds its name to 127.0.0.1 gets 400), anything otherwise."""
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = host == "localhost"
    return ["127.0.0.1", "localhost", "::1", "[::1]"] if loopback else ["*"]


def create_app(roots: list[Path], host: str = "127.0.0.1", poll_s: float = 0.5) -> Starlette:
    """The view's ASGI app over these folders."""
    view = ViewApp(roots, poll_s)
    get = ["GET"]  # Starlette adds HEAD
    routes = [
        Route("/", view.runs, methods=get),
        Route("/run/{key}", view.run, methods=get),
        Route("/run/{key}/project/{pid}", view.project, methods=get),
        Route("/sweep/{key}", view.sweep, methods=get),
        Route("/compare", view.compare, methods=get),
        Route("/files/{key}/{path:path}", view.files, methods=get),
        Route("/live/runs", view.live_runs, methods=get),
        Route("/live/run/{key}", view.live_run, methods=get),
        Route("/live/project/{key}/{pid}", view.live_project, methods=get),
        Route("/api/runs", view.api_runs, methods=get),
        Route("/api/run/{key}", view.api_run, methods=get),
        Route("/favicon.ico", favicon, methods=get),
        Mount("/static", StaticFiles(packages=[("fars.view", "static")]), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(view.prepare)
        threading.Thread(target=view.warm, name="fars-view-warm", daemon=True).start()
        yield
        view.readers.close()

    app = Starlette(
        routes=routes,
        middleware=[Middleware(ReadOnlyHeaders), Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(host))],
        exception_handlers={NotServed: view.not_served, BadQuery: view.bad_request, Exception: view.failed},
        lifespan=lifespan,
    )
    app.state.view = view
    return app


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one); OSError when it cannot be had."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    """The http URL a listening socket answers at."""
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = socket.gethostname()
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"


def serve(app: Starlette, sock: socket.socket) -> str | None:
    """Serve the app on the socket until SIGINT or SIGTERM (uvicorn; open live streams are closed).

    Returns the name of the signal that stopped it. uvicorn raises the signal again once it has shut
    down; the handlers set here take it, so stopping the view is a clean exit, not a death by signal.
    """
    import uvicorn

    stopped_by: list[str] = []

    def note(signum: int, _frame: object) -> None:
        stopped_by.append(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=2, ws="none"
        )
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return stopped_by[0] if stopped_by else None
