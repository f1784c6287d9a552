"""``depotx serve``: a small file server to upload, list and download files.

The app is plain Starlette: a page at ``/`` with an upload form and the list
of files, a streaming upload endpoint (``POST /files``, multipart), a JSON
listing (``GET /files``) and :class:`~depotx.DepotMiddleware` at ``/depot``
for downloads. It serves the manager's default storage. :func:`create_app`
builds it (to embed or test); :func:`serve` runs it under uvicorn.
"""

from __future__ import annotations

import contextlib
import errno
import html
import importlib.util
import logging
import secrets
import socket
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._exceptions import (
    BackendError,
    ConfigurationError,
    DepotError,
    InvalidFileIdError,
    MissingDependencyError,
    StorageNotFoundError,
    StoredFileNotFoundError,
    UploadTokenError,
    ValidationError,
)
from ._files import StoredFile
from ._ids import split_path
from ._manager import DEFAULT_MOUNTPOINT, StorageManager
from ._serving import send_small
from ._units import human_size, too_large_message
from .middleware import DepotMiddleware
from .storages.base import FileStorage
from .uploads import TusApp, receive_upload
from .uploads._direct import presigns

__all__ = ["create_app", "serve"]

logger = logging.getLogger("depotx.server")

#: Room for the multipart framing (boundaries, part headers, a filename)
#: around the file itself, when the request body is checked against the limit.
_MULTIPART_SLACK = 64 * 1024
#: The page's own script and style, and the vendored tus-js-client.
STATIC = Path(__file__).parent / "static"
#: Files per page of the page at ``/`` and of ``GET /files``.
PAGE_SIZE = 100
#: Host names every ``depotx serve`` answers to, besides the one it is bound to.
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


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
                _printable(scope["method"]),
                _printable(scope["path"]),
                status,
                sent,
                (time.perf_counter() - started) * 1000,
            )


def _printable(text: str) -> str:
    """``text`` with control characters, quotes and backslashes escaped, for one log line.

    A path is decoded from the URL, so ``%0a`` would otherwise forge a second line.
    """
    out: list[str] = []
    for char in text:
        if char.isprintable() and char not in '"\\':
            out.append(char)
        elif ord(char) < 0x100:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(f"\\u{ord(char):04x}")
    return "".join(out)


class _HostGuard:
    """Refuse requests for other host names, and cross-site posts.

    ``depotx serve`` has no authentication. A page on another site could post
    files to it from a visitor's browser, or reach it through a DNS name that
    resolves to 127.0.0.1 (DNS rebinding). Requests must name an allowed host
    (``Host``), and a ``POST`` that carries an ``Origin`` must come from the
    same host.
    """

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str] | None) -> None:
        self.app = app
        self.allowed = None if allowed_hosts is None else {_hostname(h) for h in allowed_hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {
            key.decode(): value.decode("latin-1")
            for key, value in scope["headers"]
            if key in (b"host", b"origin")
        }
        host = headers.get("host", "")
        if self.allowed is not None and _hostname(host) not in self.allowed:
            await _refuse(send, 400, f"unknown host {host!r}: add it with --allowed-host")
            return
        origin = headers.get("origin")
        cross_site = origin is not None and (
            origin == "null" or urlsplit(origin).netloc.lower() != host.lower()
        )
        if cross_site and scope["method"] not in ("GET", "HEAD"):
            await _refuse(send, 403, "cross-site request refused")
            return
        await self.app(scope, receive, send)


def _hostname(host: str) -> str:
    """The name part of a ``Host`` value or a bare host: no port, no brackets, lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        return host.partition(":")[0]
    return host


async def _refuse(send: Send, status: int, message: str) -> None:
    await send_small(send, status, message.encode())


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse({"error": too_large_message(limit)}, status_code=413)


def _is_disk_full(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen = seen.__cause__
    return False


def _check_multipart() -> None:
    if importlib.util.find_spec("python_multipart") is None and (
        importlib.util.find_spec("multipart") is None
    ):
        raise MissingDependencyError("server", "python-multipart")


#: The size limit of direct-upload tickets when the server has none: S3's largest object.
_NO_LIMIT = 5 * 1024**4
#: Signed links of private storages on the page live this long.
_PRIVATE_LINK_SECONDS = 3600
#: The page runs only its own scripts; thumbnails may come from a bucket's URLs.
_PAGE_CSP = (
    "default-src 'self'; img-src 'self' https: data: blob:; style-src 'self'; "
    "script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
#: Types the page shows a thumbnail of: images a browser renders and that run nothing.
_THUMBNAIL_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "image/bmp"}
)

_PAGE = """<!doctype html>
<html lang="en" class="no-js">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>depotx &middot; {storage}</title>
<link rel="stylesheet" href="{root}/static/page.css">
</head>
<body data-root="{root}" data-storage="{storage}" data-max-size="{max_size}"
 data-limit="{limit_text}" data-direct="{direct}">
<header>
<h1>depotx</h1>
{switcher}
</header>
<section id="drop" class="drop">
<form id="upload" method="post" action="{action}" enctype="multipart/form-data">
<p class="hint">Drop files here, or
<label class="pick">choose files<input id="file" type="file" name="file" required></label>
<button id="submit" type="submit">Upload</button></p>
<p class="meta">Into storage <strong>{storage}</strong>{limit}. Uploads resume after a
network drop.</p>
</form>
<ul id="uploads" aria-live="polite"></ul>
</section>
<p id="notice" role="alert" hidden></p>
<h2>Files</h2>
<div id="listing">
{listing}
</div>
<script src="{root}/static/vendor/tus.min.js"></script>
<script src="{root}/static/depotx-upload.js"></script>
<script src="{root}/static/page.js"></script>
</body>
</html>
"""


def _storage_query(storage_name: str, default: str) -> str:
    """``storage=<name>&`` for a query string, or nothing for the default storage."""
    return "" if storage_name == default else f"storage={quote(storage_name, safe='')}&"


def _page_link(root: str, query: str, page: int, order: str, rel: str) -> str:
    href = html.escape(f"{root}/?{query}page={page}&sort={order}")
    return f'<a id="{rel}" rel="{rel}" href="{href}">{rel}</a>'


def _row(item: dict[str, Any]) -> str:
    url = html.escape(item["url"])
    name = html.escape(item["filename"])
    thumbnail = (
        f'<img src="{url}" alt="" loading="lazy" width="48" height="48">'
        if item["url"] and item["content_type"] in _THUMBNAIL_TYPES
        else ""
    )
    link = f'<a href="{url}">{name}</a>' if item["url"] else name
    stamp = item["last_modified"]
    shown = stamp[:16].replace("T", " ") + " UTC"
    return (
        f'<tr data-id="{html.escape(item["id"])}" data-url="{url}">'
        f'<td class="thumb">{thumbnail}</td><td class="name">{link}</td>'
        f"<td>{html.escape(item['content_type'])}</td>"
        f'<td class="size">{html.escape(human_size(item["size"]))}</td>'
        f'<td><time datetime="{html.escape(stamp)}">{html.escape(shown)}</time></td>'
        '<td class="actions"><button type="button" class="copy">Copy link</button> '
        '<button type="button" class="delete">Delete</button></td></tr>'
    )


def render_page(
    *,
    root: str,
    storage_name: str,
    storages: list[str],
    result: dict[str, Any],
    max_upload_size: int | None,
    default: str | None = None,
    direct: bool = False,
) -> str:
    """The page at ``/``: the upload area and one page of ``result``'s files.

    Server-rendered, so it works without JavaScript (the form posts to ``POST
    /files``); ``static/page.js`` adds drag and drop, several files at once and
    resumable uploads through ``/tus/`` with tus-js-client (or, with ``direct``,
    straight to the bucket with ``depotx-upload.js``), and refreshes the listing
    by fetching this page again.
    """
    files = result["files"]
    if files:
        rows = "\n".join(_row(item) for item in files)
        table = (
            '<table id="files"><thead><tr><th></th><th>Name</th><th>Type</th>'
            '<th class="size">Size</th><th>Modified</th><th></th></tr></thead>'
            f"<tbody>\n{rows}\n</tbody></table>"
        )
    else:
        table = '<p id="files">No files yet.</p>'
    query = _storage_query(storage_name, storages[0] if default is None else default)
    eroot = html.escape(root)
    page, pages, order = result["page"], result["pages"], result["sort"]
    links = []
    if page > 1:
        links.append(_page_link(root, query, page - 1, order, "previous"))
    if page < pages:
        links.append(_page_link(root, query, page + 1, order, "next"))
    other = "name" if order == "newest" else "newest"
    first = (page - 1) * PAGE_SIZE + 1 if files else 0
    last = first + len(files) - 1 if files else 0
    shown = "newest first" if order == "newest" else "by name"
    switch = "by name" if other == "name" else "newest first"
    sort_href = html.escape(f"{root}/?{query}sort={other}")
    summary = (
        f'<p id="count">{first}&ndash;{last} of {result["total"]} files, {shown} '
        f'&middot; <a href="{sort_href}">sort {switch}</a> {" ".join(links)}</p>'
        if result["total"]
        else ""
    )
    switcher = ""
    if len(storages) > 1:
        options = "".join(
            f'<option value="{html.escape(name)}"{" selected" if name == storage_name else ""}>'
            f"{html.escape(name)}</option>"
            for name in storages
        )
        switcher = (
            f'<form id="switch" method="get" action="{eroot}/"><label>Storage '
            f'<select id="storage" name="storage">{options}</select></label>'
            '<button type="submit">Show</button></form>'
        )
    limit_text = human_size(max_upload_size) if max_upload_size is not None else ""
    return _PAGE.format(
        root=eroot,
        storage=html.escape(storage_name),
        max_size="" if max_upload_size is None else max_upload_size,
        limit_text=html.escape(limit_text),
        limit=f", up to {html.escape(limit_text)} a file" if limit_text else "",
        switcher=switcher,
        action=html.escape(f"{root}/files?{query}next=page"),
        listing=summary + table,
        direct="1" if direct else "",
    )


def create_app(
    manager: StorageManager,
    *,
    max_upload_size: int | None = None,
    mountpoint: str = DEFAULT_MOUNTPOINT,
    allowed_hosts: Iterable[str] | None = None,
    tus_staging: str | FileStorage | None = None,
) -> Starlette:
    """The ``depotx serve`` app over ``manager``'s default storage.

    Uploads arrive by ``POST /files`` (multipart, streamed) or resumably by tus at
    ``/tus/`` (a :class:`~depotx.TusApp` whose partial uploads are kept in
    ``tus_staging``: a storage name, a storage, or by default local storage in
    :func:`~depotx.uploads._staging.default_staging_path`); a tus client may pick any
    configured storage with the ``storage`` metadata key.
    ``max_upload_size`` (bytes) refuses larger uploads with 413 before anything
    is stored. ``allowed_hosts`` are the host names it answers to (others get
    400: no DNS rebinding); ``None`` accepts any, for an app embedded behind
    routing of its own. A ``POST`` from another origin is always refused.
    Shutting the app down (ASGI lifespan) closes the manager's clients.
    """
    _check_multipart()
    if max_upload_size is not None and max_upload_size < 0:
        raise ConfigurationError("max_upload_size must be >= 0")
    manager.set_mountpoint(mountpoint)
    manager.get_default()  # fail now, not on the first request
    if manager.signing_keys is None:
        # Direct-upload tickets are signed: without a configured secret, one for this
        # process (tickets then do not survive a restart, which is fine for 15 minutes).
        manager.set_secret_key(secrets.token_urlsafe(32))
    tus = TusApp(
        manager,
        allowed_storages=manager.names,
        staging=tus_staging,
        max_size=max_upload_size,
    )

    def chosen(request: Request) -> str:
        """The storage a request is about: ``?storage=<name>``, else the default."""
        name = request.query_params.get("storage") or manager.get_default()
        if name not in manager.names:
            raise StorageNotFoundError(name, manager.names)
        return name

    def file_url(request: Request, path: str) -> str:
        """An absolute URL of the file; signed for an hour when its storage is private."""
        storage = manager.get(split_path(path)[0])
        expires = _PRIVATE_LINK_SECONDS if storage.private and manager.signing_keys else None
        try:
            url = manager.url_for(path, expires_in=expires)
        except ConfigurationError:
            return ""  # private with no secret to sign with: no link
        if url.startswith("/"):
            root = request.scope.get("root_path", "")
            url = f"{request.url.scheme}://{request.url.netloc}{root}{url}"
        return url

    def describe(request: Request, storage_name: str, stored: StoredFile) -> dict[str, Any]:
        file_id = stored.file_id
        path = f"{storage_name}/{file_id}"
        return {
            "id": file_id,
            "path": path,
            "url": file_url(request, path),
            "filename": stored.filename,
            "content_type": stored.content_type,
            "size": stored.content_length,
            "last_modified": stored.last_modified.isoformat(),
        }

    async def listing(request: Request, storage_name: str) -> dict[str, Any]:
        """One page of the files, by name or newest first, with the total count.

        By name needs only the ids (every id is listed, then the page's files are
        opened), so a new file is always on its page. Newest first must open
        every file to learn its date: fine for the stores ``depotx serve`` is for.
        """
        storage = manager.get(storage_name)
        order = request.query_params.get("sort", "newest")
        if order not in ("newest", "name"):
            order = "newest"
        try:
            page = max(1, int(request.query_params.get("page", "1")))
        except ValueError:
            page = 1
        ids = sorted([file_id async for file_id in storage.list()])
        found: list[dict[str, Any]] = []
        if order == "name":
            for file_id in ids[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]:
                item = await _describe_id(request, storage_name, file_id)
                if item is not None:
                    found.append(item)
        else:
            for file_id in ids:
                item = await _describe_id(request, storage_name, file_id)
                if item is not None:
                    found.append(item)
            found.sort(key=lambda item: (item["last_modified"], item["id"]), reverse=True)
            found = found[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        return {
            "files": found,
            "total": len(ids),
            "page": page,
            "pages": max(1, -(-len(ids) // PAGE_SIZE)),
            "sort": order,
        }

    async def _describe_id(
        request: Request, storage_name: str, file_id: str
    ) -> dict[str, Any] | None:
        try:
            async with await manager.get(storage_name).get(file_id) as stored:
                return describe(request, storage_name, stored)
        except StoredFileNotFoundError:
            return None  # deleted since it was listed
        except DepotError as exc:
            logger.warning("depotx: skipping %s/%s in the listing: %s", storage_name, file_id, exc)
            return None

    async def index(request: Request) -> Response:
        try:
            storage_name = chosen(request)
        except StorageNotFoundError as exc:
            return HTMLResponse(
                f"<!doctype html><title>depotx</title><p>{html.escape(str(exc))}</p>",
                status_code=404,
                headers={"Cache-Control": "no-store"},
            )
        result = await listing(request, storage_name)
        root = request.scope.get("root_path", "")
        direct = presigns(manager.get(storage_name))
        page_html = render_page(
            root=root,
            storage_name=storage_name,
            storages=manager.names,
            result=result,
            max_upload_size=max_upload_size,
            default=manager.get_default(),
            direct=direct,
        )
        # A page uploading straight to a bucket must be allowed to reach it.
        csp = _PAGE_CSP + ("; connect-src 'self' https: http:" if direct else "")
        return HTMLResponse(
            page_html, headers={"Cache-Control": "no-store", "Content-Security-Policy": csp}
        )

    async def ticket(request: Request) -> Response:
        """``POST /uploads/ticket`` ``{filename, content_type, size}``: a direct-upload ticket."""
        try:
            storage_name = chosen(request)
            asked = await request.json()
            issued = await manager.get(storage_name).prepare_upload(
                str(asked.get("filename") or "unnamed"),
                asked.get("content_type") or None,
                max_size=max_upload_size if max_upload_size is not None else _NO_LIMIT,
                size=asked.get("size") if isinstance(asked.get("size"), int) else None,
            )
        except StorageNotFoundError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        except ValueError as exc:  # a malformed body, or ValidationError (a rule)
            limit = isinstance(exc, ValidationError) and exc.rule == "max_size"
            if limit and max_upload_size is not None:
                return _too_large(max_upload_size)
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(issued.to_dict(), headers={"Cache-Control": "no-store"})

    async def ticket_parts(request: Request) -> Response:
        """``POST /uploads/parts`` ``{token, parts}``: presigned part URLs of a ticket."""
        try:
            asked = await request.json()
            storage = manager.get(chosen(request))
            urls = await storage.presign_upload_parts(str(asked["token"]), asked["parts"])
        except UploadTokenError as exc:
            return JSONResponse({"error": str(exc)}, status_code=403)
        except (KeyError, TypeError, ValueError, DepotError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"urls": urls}, headers={"Cache-Control": "no-store"})

    async def ticket_finalize(request: Request) -> Response:
        """``POST /uploads/finalize`` ``{token}``: the uploaded file, described (201)."""
        try:
            asked = await request.json()
            path = await manager.finalize_upload(str(asked["token"]))
        except UploadTokenError as exc:
            return JSONResponse({"error": str(exc)}, status_code=403)
        except ValidationError as exc:
            if exc.rule == "max_size" and max_upload_size is not None:
                return _too_large(max_upload_size)
            return JSONResponse({"error": str(exc)}, status_code=422)
        except (KeyError, TypeError, ValueError) as exc:
            return JSONResponse({"error": f'send {{"token": ...}}: {exc}'}, status_code=400)
        storage_name, file_id = split_path(path)
        async with await manager.get(storage_name).get(file_id) as stored:
            described = describe(request, storage_name, stored)
        return JSONResponse(described, status_code=201)

    async def delete_file(request: Request) -> Response:
        """``DELETE /files/<id>?storage=<name>``: 204, or 404 in words."""
        try:
            storage_name = chosen(request)
            storage = manager.get(storage_name)
            file_id = request.path_params["file_id"]
            if not await storage.exists(file_id):
                return JSONResponse(
                    {"error": f"no file {file_id!r} in storage {storage_name!r}"},
                    status_code=404,
                    headers={"Cache-Control": "no-store"},
                )
            await storage.delete(file_id)
        except (StorageNotFoundError, InvalidFileIdError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        except BackendError as exc:
            logger.error("depotx: delete failed: %s", exc)  # noqa: TRY400 - one line
            return JSONResponse({"error": "the storage failed to delete the file"}, status_code=502)
        return Response(status_code=204)

    async def list_files(request: Request) -> Response:
        """A JSON list of one page of files; the paging is in the headers.

        ``X-Total-Count`` (all files), and a ``Link`` header with ``next`` and
        ``prev`` pages (RFC 8288), as GitHub's API pages.
        """
        try:
            storage_name = chosen(request)
        except StorageNotFoundError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        result = await listing(request, storage_name)
        page, order = result["page"], result["sort"]
        query = _storage_query(storage_name, manager.get_default())
        base = f"{request.scope.get('root_path', '')}/files?{query}sort={order}&page="
        links = []
        if page > 1:
            links.append(f'<{base}{page - 1}>; rel="prev"')
        if page < result["pages"]:
            links.append(f'<{base}{page + 1}>; rel="next"')
        headers = {"Cache-Control": "no-store", "X-Total-Count": str(result["total"])}
        if links:
            headers["Link"] = ", ".join(links)
        return JSONResponse(result["files"], headers=headers)

    async def upload(request: Request) -> Response:
        """Stream the file straight into the storage: no temporary file, each byte once."""
        if max_upload_size is not None:
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_upload_size + _MULTIPART_SLACK:
                return _too_large(max_upload_size)  # refused before reading a byte
        try:
            storage_name = chosen(request)
        except StorageNotFoundError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        storage = manager.get(storage_name)
        try:
            received = await receive_upload(
                request, storage, field="file", max_size=max_upload_size, max_fields=10
            )
        except ClientDisconnect:
            # Nothing was stored; the client is not there to read an answer.
            logger.info("depotx: upload abandoned: the client disconnected")
            return Response(status_code=400)
        except ValidationError as exc:
            if exc.rule == "max_size" and max_upload_size is not None:
                return _too_large(max_upload_size)
            logger.warning("depotx: upload refused: %s", exc)
            return JSONResponse({"error": str(exc)}, status_code=400)
        except BackendError as exc:
            full = _is_disk_full(exc)
            status = 507 if full else 502
            # One line, no traceback: a full disk must not flood the log.
            logger.error("depotx: upload failed (%d): %s", status, exc)  # noqa: TRY400
            message = "the storage is full" if full else "the storage failed to store the file"
            return JSONResponse({"error": message}, status_code=status)
        if not received.files:
            return JSONResponse(
                {"error": "send the file as multipart/form-data in a field named 'file'"},
                status_code=400,
            )
        file_id = received.file_ids[0]
        async with await storage.get(file_id) as stored:
            described = describe(request, storage_name, stored)
        if request.query_params.get("next") == "page":
            # The browser form: back to the page, which now lists the file.
            root = request.scope.get("root_path", "")
            query = (
                "" if storage_name == manager.get_default() else f"?storage={quote(storage_name)}"
            )
            return RedirectResponse(f"{root}/{query}", status_code=303)
        return JSONResponse(described, status_code=201, headers={"Location": described["url"]})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await tus.aclose()
            await manager.aclose()

    return Starlette(
        routes=[
            Route("/", index, methods=["GET", "HEAD"]),
            Route("/files", list_files, methods=["GET", "HEAD"]),
            Route("/files", upload, methods=["POST"]),
            Route("/files/{file_id:path}", delete_file, methods=["DELETE"]),
            Route("/uploads/ticket", ticket, methods=["POST"]),
            Route("/uploads/parts", ticket_parts, methods=["POST"]),
            Route("/uploads/finalize", ticket_finalize, methods=["POST"]),
            Mount("/tus", app=tus),
            Mount("/static", app=StaticFiles(directory=STATIC)),
        ],
        middleware=[
            Middleware(_AccessLog),
            Middleware(_HostGuard, allowed_hosts=allowed_hosts),
            Middleware(DepotMiddleware, manager=manager, mountpoint=mountpoint),
        ],
        lifespan=lifespan,
    )


LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def serve(
    manager: StorageManager,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_upload_size: int | None = None,
    log_level: str = "info",
    allowed_hosts: Iterable[str] = (),
    tus_staging: str | FileStorage | None = None,
) -> None:
    """Run the :func:`create_app` app under uvicorn until interrupted.

    It answers to ``host``, the local names (:data:`LOCAL_HOSTS`) and
    ``allowed_hosts``; ``tus_staging`` is :func:`create_app`'s. The socket is
    bound before the URL is printed, so the URL is right even for ``port=0``.
    """
    if log_level.lower() not in LOG_LEVELS:
        raise ConfigurationError(
            f"unknown log level {log_level!r}: use one of {', '.join(LOG_LEVELS)}"
        )
    if not 0 <= port <= 65535:
        raise ConfigurationError(f"port must be between 0 and 65535, not {port}")
    try:
        import uvicorn
    except ImportError as exc:
        raise MissingDependencyError("server", "uvicorn") from exc
    app = create_app(
        manager,
        max_upload_size=max_upload_size,
        allowed_hosts=[host, *LOCAL_HOSTS, *allowed_hosts],
        tus_staging=tus_staging,
    )
    level = getattr(logging, log_level.upper())
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
    config = uvicorn.Config(app, log_level=log_level.lower(), access_log=False)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
