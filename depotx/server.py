"""``depotx serve``: a small file server to upload, list and download files.

The app is plain Starlette: a page at ``/`` with an upload form and the list
of files, a streaming upload endpoint (``POST /files``, multipart), a JSON
listing (``GET /files``) and :class:`~depotx.DepotMiddleware` at ``/depot``
for downloads. It serves the manager's default storage. :func:`create_app`
builds it (to embed or test); :func:`serve` runs it under uvicorn.
"""

from __future__ import annotations

import contextlib
import html
import importlib.util
import logging
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._exceptions import ConfigurationError, MissingDependencyError, StoredFileNotFoundError
from ._files import StoredFile
from ._manager import DEFAULT_MOUNTPOINT, StorageManager
from .middleware import DepotMiddleware

__all__ = ["create_app", "serve"]

logger = logging.getLogger("depotx.server")

#: Room for the multipart framing (boundaries, part headers, a filename)
#: around the file itself, when the request body is checked against the limit.
_MULTIPART_SLACK = 64 * 1024
#: The page and ``GET /files`` list at most this many files.
_LIST_LIMIT = 1000


class _TooLarge(Exception):
    """The request body went past the upload limit while it was being read."""


class _AccessLog:
    """One log line per request: client, method, path, status, bytes sent, time."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        sent = 0

        async def logged_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, logged_send)
        finally:
            client = scope.get("client")
            logger.info(
                '%s "%s %s" %d %dB %.1fms',
                f"{client[0]}:{client[1]}" if client else "-",
                scope["method"],
                scope["path"],
                status,
                sent,
                (time.perf_counter() - started) * 1000,
            )


def _limited(receive: Receive, limit: int) -> Receive:
    """``receive`` that raises :class:`_TooLarge` once the body exceeds ``limit`` bytes.

    Checked while the body streams in, so a client without ``Content-Length``
    (chunked) cannot push more than ``limit`` bytes to the disk either.
    """
    received = 0

    async def limited_receive() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise _TooLarge
        return message

    return limited_receive


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse(
        {"error": f"the file is larger than the upload limit of {limit} bytes"}, status_code=413
    )


def _check_multipart() -> None:
    if importlib.util.find_spec("python_multipart") is None and (
        importlib.util.find_spec("multipart") is None
    ):
        raise MissingDependencyError("server", "python-multipart")


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover - the loop always returns


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>depotx</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; padding: 0 1rem; }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ text-align: left; padding: .3rem .6rem; border-bottom: 1px solid #ddd; }}
td.size {{ text-align: right; white-space: nowrap; }}
</style>
</head>
<body>
<h1>depotx</h1>
<p>Storage <strong>{storage}</strong>{limit}</p>
<form id="upload" method="post" action="{action}" enctype="multipart/form-data">
<input id="file" type="file" name="file" required>
<button id="submit" type="submit">Upload</button>
</form>
<h2>Files</h2>
{files}
</body>
</html>
"""


def create_app(
    manager: StorageManager,
    *,
    max_upload_size: int | None = None,
    mountpoint: str = DEFAULT_MOUNTPOINT,
) -> Starlette:
    """The ``depotx serve`` app over ``manager``'s default storage.

    ``max_upload_size`` (bytes) refuses larger uploads with 413 before anything
    is stored. Shutting the app down (ASGI lifespan) closes the manager's clients.
    """
    _check_multipart()
    if max_upload_size is not None and max_upload_size < 0:
        raise ConfigurationError("max_upload_size must be >= 0")
    manager.set_mountpoint(mountpoint)
    storage_name = manager.get_default()  # fail now, not on the first request

    def describe(request: Request, stored: StoredFile) -> dict[str, Any]:
        file_id = stored.file_id
        path = f"{storage_name}/{file_id}"
        url = manager.url_for(path)
        if url.startswith("/"):
            root = request.scope.get("root_path", "")
            url = f"{request.url.scheme}://{request.url.netloc}{root}{url}"
        return {
            "id": file_id,
            "path": path,
            "url": url,
            "filename": stored.filename,
            "content_type": stored.content_type,
            "size": stored.content_length,
            "last_modified": stored.last_modified.isoformat(),
        }

    async def listing(request: Request) -> list[dict[str, Any]]:
        storage = manager.get(storage_name)
        found: list[dict[str, Any]] = []
        async for file_id in storage.list():
            try:
                async with await storage.get(file_id) as stored:
                    found.append(describe(request, stored))
            except StoredFileNotFoundError:
                continue  # deleted since it was listed
            if len(found) >= _LIST_LIMIT:
                break
        found.sort(key=lambda item: (item["last_modified"], item["id"]), reverse=True)
        return found

    async def index(request: Request) -> Response:
        files = await listing(request)
        if files:
            rows = "\n".join(
                '<tr><td><a href="{url}">{name}</a></td><td>{type}</td>'
                '<td class="size">{size}</td></tr>'.format(
                    url=html.escape(item["url"]),
                    name=html.escape(item["filename"]),
                    type=html.escape(item["content_type"]),
                    size=html.escape(_human(item["size"])),
                )
                for item in files
            )
            table = (
                '<table id="files"><thead><tr><th>Name</th><th>Type</th><th>Size</th></tr>'
                f"</thead><tbody>\n{rows}\n</tbody></table>"
            )
        else:
            table = '<p id="files">No files yet.</p>'
        limit = (
            f" &middot; uploads up to {html.escape(_human(max_upload_size))}"
            if max_upload_size is not None
            else ""
        )
        root = html.escape(request.scope.get("root_path", ""))
        page = _PAGE.format(
            storage=html.escape(storage_name),
            limit=limit,
            action=f"{root}/files?next=page",
            files=table,
        )
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    async def list_files(request: Request) -> Response:
        return JSONResponse(await listing(request))

    async def upload(request: Request) -> Response:
        if max_upload_size is not None:
            body_limit = max_upload_size + _MULTIPART_SLACK
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > body_limit:
                return _too_large(max_upload_size)  # refused before reading a byte
            request = Request(request.scope, _limited(request.receive, body_limit))
        try:
            async with request.form(max_files=1, max_fields=10) as form:
                field = form.get("file")
                if not isinstance(field, UploadFile):
                    return JSONResponse(
                        {"error": "send the file as multipart/form-data in a field named 'file'"},
                        status_code=400,
                    )
                if max_upload_size is not None and (field.size or 0) > max_upload_size:
                    return _too_large(max_upload_size)
                storage = manager.get(storage_name)
                file_id = await storage.create(field)
        except _TooLarge:
            assert max_upload_size is not None
            return _too_large(max_upload_size)
        except HTTPException as exc:  # malformed multipart, too many fields
            return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
        async with await storage.get(file_id) as stored:
            described = describe(request, stored)
        if request.query_params.get("next") == "page":
            # The browser form: back to the page, which now lists the file.
            root = request.scope.get("root_path", "")
            return RedirectResponse(f"{root}/", status_code=303)
        return JSONResponse(described, status_code=201, headers={"Location": described["url"]})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await manager.aclose()

    return Starlette(
        routes=[
            Route("/", index, methods=["GET", "HEAD"]),
            Route("/files", list_files, methods=["GET", "HEAD"]),
            Route("/files", upload, methods=["POST"]),
        ],
        middleware=[
            Middleware(_AccessLog),
            Middleware(DepotMiddleware, manager=manager, mountpoint=mountpoint),
        ],
        lifespan=lifespan,
    )


def serve(
    manager: StorageManager,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_upload_size: int | None = None,
    log_level: str = "info",
) -> None:
    """Run the :func:`create_app` app under uvicorn until interrupted.

    The socket is bound before the URL is printed, so the URL is right even
    for ``port=0`` (any free port).
    """
    try:
        import uvicorn
    except ImportError as exc:
        raise MissingDependencyError("server", "uvicorn") from exc
    app = create_app(manager, max_upload_size=max_upload_size)
    level = getattr(logging, log_level.upper(), logging.INFO)
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("depotx").setLevel(level)

    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    bound_port = sock.getsockname()[1]
    shown_host = f"[{host}]" if ":" in host else host
    print(
        f"depotx: serving storage {manager.get_default()!r} at http://{shown_host}:{bound_port}/ "
        "(Ctrl+C to stop)",
        flush=True,
    )
    config = uvicorn.Config(app, log_level=log_level, access_log=False)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
