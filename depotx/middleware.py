"""The ASGI middleware that serves stored files at ``<mountpoint>/<storage>/<fileid>``.

Pure ASGI, so streaming stays streaming and nothing is buffered. The middleware
is thin on purpose: it routes a request to a storage and hands every HTTP
decision (validators, preconditions, ranges, disposition) to the pure
functions of :mod:`depotx._http`, which are tested on their own.

Everything else (other paths, websocket and lifespan scopes) goes to the
wrapped app untouched.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
from collections.abc import AsyncIterator
from datetime import datetime
from typing import NamedTuple
from urllib.parse import quote

from starlette.types import ASGIApp, Receive, Scope, Send

from . import _http
from ._exceptions import (
    ConfigurationError,
    InvalidFileIdError,
    StorageNotFoundError,
    StoredFileNotFoundError,
)
from ._exceptions import StoredFileChangedError as _Changed
from ._files import DEFAULT_CHUNK_SIZE, StoredFile, aclose_iterator
from ._ids import is_valid_file_id
from ._manager import DEFAULT_MOUNTPOINT, DepotManager, StorageManager
from .storages.base import FileStorage

__all__ = ["DepotMiddleware"]

logger = logging.getLogger("depotx")

#: How often a file replaced between ``get`` and its first byte is re-opened
#: before giving up with 503; a replace would have to win this race every time.
MAX_ATTEMPTS = 3

# Request headers the middleware reads; everything else is never decoded.
_RANGE = b"range"
_IF_RANGE = b"if-range"
_IF_MATCH = b"if-match"
_IF_NONE_MATCH = b"if-none-match"
_IF_MODIFIED_SINCE = b"if-modified-since"
_IF_UNMODIFIED_SINCE = b"if-unmodified-since"
_WANTED = frozenset(
    {_RANGE, _IF_RANGE, _IF_MATCH, _IF_NONE_MATCH, _IF_MODIFIED_SINCE, _IF_UNMODIFIED_SINCE}
)

_NOSNIFF = (b"x-content-type-options", b"nosniff")
_ACCEPT_RANGES = (b"accept-ranges", b"bytes")
_TEXT = (b"content-type", b"text/plain; charset=utf-8")
_ALLOW = (b"allow", b"GET, HEAD")
_ERRORS: dict[int, bytes] = {
    404: b"Not Found",
    405: b"Method Not Allowed",
    412: b"Precondition Failed",
    416: b"Range Not Satisfiable",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
}
# Characters left alone when a public URL is made header-safe: the URL syntax
# itself and existing escapes.
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~"

Headers = list[tuple[bytes, bytes]]

#: How many files' response headers each middleware keeps ready (a few MiB at most).
HEADER_CACHE_SIZE = 4096


class _FileHeaders(NamedTuple):
    """The headers that depend on the file alone, encoded once per version."""

    etag: str
    etag_header: bytes
    last_modified: bytes
    content_type: str
    content_type_header: bytes
    disposition: bytes


def _file_headers(
    checksum: str, last_modified: datetime, filename: str, content_type: str, inline_active: bool
) -> _FileHeaders:
    etag = _http.make_etag(checksum)
    header_type = _http.header_content_type(content_type)
    attachment = not inline_active and _http.is_active_content(header_type)
    return _FileHeaders(
        etag=etag,
        etag_header=etag.encode(),
        last_modified=_http.format_http_date(last_modified).encode(),
        content_type=header_type,
        content_type_header=header_type.encode(),
        disposition=_http.content_disposition(filename, attachment=attachment).encode(),
    )


def _failure_status(exc: BaseException) -> int:
    """503 when the backend timed out or refused the connection, 502 for anything else."""
    seen: BaseException | None = exc
    for _ in range(8):  # the cause chain of a wrapped error is short
        if seen is None:
            break
        if isinstance(seen, (TimeoutError, ConnectionRefusedError)):
            return 503
        seen = seen.__cause__ or seen.__context__
    return 502


class _Disconnect:
    """Watches ``receive`` for ``http.disconnect`` while the body is streamed.

    Servers before ASGI 2.4 (uvicorn included) do not raise from ``send`` once
    the client is gone, they silently drop the bytes: without this, a
    cancelled 1 GiB download would still be read to the end from the backend.
    """

    __slots__ = ("gone", "task")

    def __init__(self, receive: Receive) -> None:
        self.gone = False
        self.task: asyncio.Task[None] = asyncio.get_running_loop().create_task(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        try:
            while (await receive())["type"] != "http.disconnect":
                pass
        except Exception as exc:  # noqa: BLE001 - a broken receive channel means the client is gone
            logger.debug("depotx: receive() failed while streaming: %s", exc)
        self.gone = True

    def cancel(self) -> None:
        """Stop watching; the task holds nothing but the pending ``receive``."""
        self.task.cancel()


class DepotMiddleware:
    """Serve the files of ``manager`` at ``<mountpoint>/<storage-or-alias>/<fileid>``.

    Usable around any ASGI app, or as
    ``Starlette(middleware=[Middleware(DepotMiddleware, manager=...)])``.

    :param mountpoint: absolute path the files live under; ``manager.url_for``
        returns URLs under it from now on.
    :param cache_max_age: ``max-age`` of ``Cache-Control``, in seconds. Files keep
        their id when replaced, so this is how long a cache may serve an old
        version without revalidating (revalidation is cheap: ``ETag``).
    :param cache_public: ``public`` (shared caches and CDNs may store the files)
        instead of ``private`` (browsers only).
    :param redirect_to_public_url: answer 307 to the storage's public URL (S3, a
        CDN) when it has one; ``False`` proxies those files too.
    :param chunk_size: bytes per read from the backend and per ASGI message.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        manager: StorageManager = DepotManager,
        mountpoint: str = DEFAULT_MOUNTPOINT,
        cache_max_age: int = 3600,
        cache_public: bool = False,
        redirect_to_public_url: bool = True,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        if cache_max_age < 0:
            raise ConfigurationError("cache_max_age must be >= 0")
        if chunk_size <= 0:
            raise ConfigurationError("chunk_size must be positive")
        manager.set_mountpoint(mountpoint)
        self.app = app
        self.manager = manager
        self.mountpoint = manager.mountpoint
        self.cache_max_age = cache_max_age
        self.cache_public = cache_public
        self.redirect_to_public_url = redirect_to_public_url
        self.chunk_size = chunk_size
        self._prefix = self.mountpoint + "/"
        # Per instance, not module-wide: the cache lives and dies with the app.
        # Keyed on everything the headers derive from, so a new version (new
        # checksum, name or date) simply misses.
        self._headers_for = functools.lru_cache(maxsize=HEADER_CACHE_SIZE)(_file_headers)
        visibility = "public" if cache_public else "private"
        self._cache_control = (b"cache-control", f"{visibility}, max-age={cache_max_age}".encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        root_path: str = scope.get("root_path", "")
        if (
            root_path
            and path.startswith(root_path)
            and path[len(root_path) : len(root_path) + 1] == "/"
        ):
            # ASGI servers and Starlette's Mount keep root_path inside path.
            path = path[len(root_path) :]
        if not path.startswith(self._prefix):
            await self.app(scope, receive, send)
            return
        name, slash, file_id = path[len(self._prefix) :].partition("/")
        if not name or not slash or not file_id or "/" in file_id:
            # Not <mountpoint>/<storage>/<fileid>: not ours to answer.
            await self.app(scope, receive, send)
            return
        await self._serve(scope, receive, send, name, file_id)

    # -- routing ---------------------------------------------------------------------

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, name: str, file_id: str
    ) -> None:
        method: str = scope["method"]
        head = method == "HEAD"
        try:
            storage = self.manager.get(name)
        except StorageNotFoundError:
            await _send_error(send, 404, head)
            return
        if not is_valid_file_id(file_id):
            await _send_error(send, 404, head)  # refused before any backend call
            return
        if not head and method != "GET":
            await _send_error(send, 405, head, [_ALLOW])
            return
        if self.redirect_to_public_url:
            try:
                url = storage.public_url(file_id)
            except Exception as exc:  # noqa: BLE001 - any backend failure is a 502, logged
                await self._backend_failure(send, head, storage, file_id, exc)
                return
            if url:
                await _send_redirect(send, url, head)
                return
        request = _request_headers(scope)
        for _ in range(MAX_ATTEMPTS):
            try:
                stored = await storage.get(file_id)
            except (StoredFileNotFoundError, InvalidFileIdError):
                await _send_error(send, 404, head)
                return
            except Exception as exc:  # noqa: BLE001 - any backend failure is a 502, logged
                await self._backend_failure(send, head, storage, file_id, exc)
                return
            try:
                if self.redirect_to_public_url and stored.public_url:
                    await _send_redirect(send, stored.public_url, head)
                    return
                if await self._send_file(scope, receive, send, stored, storage, request, head):
                    return
            finally:
                await _release(stored)
        logger.error(
            "depotx: %s/%s kept changing while it was opened (%d attempts)",
            storage.name,
            file_id,
            MAX_ATTEMPTS,
        )
        await _send_error(send, 503, head)

    async def _backend_failure(
        self, send: Send, head: bool, storage: FileStorage, file_id: str, exc: BaseException
    ) -> None:
        status = _failure_status(exc)
        logger.error(
            "depotx: serving %s/%s failed (%d): %s",
            storage.name,
            file_id,
            status,
            exc,
            exc_info=exc,
        )
        await _send_error(send, status, head)

    # -- one version of one file -------------------------------------------------------

    async def _send_file(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        stored: StoredFile,
        storage: FileStorage,
        request: dict[bytes, bytes],
        head: bool,
    ) -> bool:
        """Answer from ``stored``; ``False`` if it changed before its first byte (retry)."""
        file_headers = self._headers_for(
            stored.checksum,
            stored.last_modified,
            stored.filename,
            stored.content_type,
            storage.inline_active_content is True,
        )
        etag = file_headers.etag
        validators: Headers = [
            (b"etag", file_headers.etag_header),
            (b"last-modified", file_headers.last_modified),
            self._cache_control,
        ]
        outcome = None
        if request:  # most requests carry no conditional or range header at all
            outcome = _http.evaluate_preconditions(
                etag=etag,
                last_modified=stored.last_modified,
                if_match=_text(request, _IF_MATCH),
                if_none_match=_text(request, _IF_NONE_MATCH),
                if_modified_since=_text(request, _IF_MODIFIED_SINCE),
                if_unmodified_since=_text(request, _IF_UNMODIFIED_SINCE),
            )
        if outcome == _http.NOT_MODIFIED:
            # RFC 9110 §15.4.5: the validators and caching headers, no content headers.
            await send({"type": "http.response.start", "status": 304, "headers": validators})
            await send({"type": "http.response.body", "body": b""})
            return True
        if outcome == _http.PRECONDITION_FAILED:
            await _send_error(send, 412, head, validators)
            return True

        length = stored.content_length
        content_type = file_headers.content_type
        headers = validators
        headers.append(_ACCEPT_RANGES)
        headers.append(_NOSNIFF)
        headers.append((b"content-disposition", file_headers.disposition))

        ranges: tuple[tuple[int, int], ...] | None = None
        range_value = _text(request, _RANGE) if request else None
        if range_value is not None and not head:  # RFC 9110 §14.2: Range applies to GET only
            if_range = _text(request, _IF_RANGE)
            if if_range is None or _http.if_range_matches(
                if_range, etag=etag, last_modified=stored.last_modified
            ):
                ranges = _http.parse_range(range_value, length)
        if ranges == ():
            headers.append((b"content-range", f"bytes */{length}".encode()))
            await _send_error(send, 416, head, headers)
            return True

        boundary = ""
        if ranges is None:
            status = 200
            segments: tuple[tuple[int, int], ...] = ((0, length),)
            headers.append((b"content-type", file_headers.content_type_header))
            headers.append((b"content-length", str(length).encode()))
        elif len(ranges) == 1:
            status = 206
            segments = ranges
            start, end = ranges[0]
            headers.append((b"content-type", file_headers.content_type_header))
            headers.append((b"content-range", f"bytes {start}-{end - 1}/{length}".encode()))
            headers.append((b"content-length", str(end - start).encode()))
        else:
            status = 206
            segments = ranges
            boundary = secrets.token_hex(13)
            total = _http.multipart_length(ranges, boundary, content_type, length)
            headers.append((b"content-type", f"multipart/byteranges; boundary={boundary}".encode()))
            headers.append((b"content-length", str(total).encode()))

        if head:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return True

        # Read the first chunk before the headers go out: if the file was
        # replaced since ``get``, nothing is sent yet and the caller re-opens it.
        start, end = segments[0]
        chunks = stored.iter_bytes(start, end, chunk_size=self.chunk_size)
        try:
            first = await anext(chunks, b"")
        except _Changed:
            await aclose_iterator(chunks)
            return False
        except Exception as exc:  # noqa: BLE001 - any backend failure is a 502, logged
            await aclose_iterator(chunks)
            await self._backend_failure(send, head, storage, stored.file_id, exc)
            return True

        await send({"type": "http.response.start", "status": status, "headers": headers})
        if not boundary and len(first) == end - start:
            # The whole body in one chunk (most small files): no watcher, no loop.
            await aclose_iterator(chunks)
            await send({"type": "http.response.body", "body": first})
            return True
        await self._stream(scope, receive, send, stored, storage, segments, boundary, first, chunks)
        return True

    async def _stream(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        stored: StoredFile,
        storage: FileStorage,
        segments: tuple[tuple[int, int], ...],
        boundary: str,
        first: bytes,
        chunks: AsyncIterator[bytes],
    ) -> None:
        """Send the body after the headers; on any failure, stop and leave the response incomplete.

        Once the status line is out there is no honest error response left: the
        server closes the connection on an incomplete body, and the client sees
        a truncated transfer instead of wrong bytes.
        """
        spec: str = scope.get("asgi", {}).get("spec_version", "2.0")
        watcher = _Disconnect(receive) if _needs_watcher(spec) else None
        length = stored.content_length
        content_type = _http.header_content_type(stored.content_type)
        pending: bytes | None = first
        try:
            for index, (start, end) in enumerate(segments):
                if boundary:
                    part = _http.multipart_part_header(boundary, content_type, start, end, length)
                    if not await _send_body(send, part, watcher):
                        return
                if index:
                    await aclose_iterator(chunks)
                    chunks = stored.iter_bytes(start, end, chunk_size=self.chunk_size)
                expected = end - start
                sent = 0
                while True:
                    if pending is not None:
                        chunk, pending = pending, None
                    else:
                        try:
                            chunk = await anext(chunks)
                        except StopAsyncIteration:
                            break
                        except Exception as exc:
                            logger.error(  # noqa: TRY400 - exc_info given explicitly
                                "depotx: reading %s/%s failed after the headers were sent, "
                                "response aborted: %s",
                                storage.name,
                                stored.file_id,
                                exc,
                                exc_info=exc,
                            )
                            return
                    if not chunk:
                        continue
                    sent += len(chunk)
                    if not boundary and sent == expected:
                        await send({"type": "http.response.body", "body": chunk})
                        return
                    if not await _send_body(send, chunk, watcher):
                        return
                if sent != expected:
                    logger.error(
                        "depotx: %s/%s ended after %d of %d bytes, response aborted",
                        storage.name,
                        stored.file_id,
                        sent,
                        expected,
                    )
                    return
                if boundary and not await _send_body(send, b"\r\n", watcher):
                    return
            closing = f"--{boundary}--".encode() if boundary else b""
            await send({"type": "http.response.body", "body": closing})
        except OSError:
            # ASGI 2.4 servers raise from send() once the client is gone.
            logger.debug("depotx: client went away during %s/%s", storage.name, stored.file_id)
        finally:
            if watcher is not None:
                watcher.cancel()
            await aclose_iterator(chunks)


def _needs_watcher(spec_version: str) -> bool:
    """Whether the server predates ASGI 2.4, where ``send`` raises after a disconnect."""
    major, _, minor = spec_version.partition(".")
    try:
        return (int(major), int(minor or 0)) < (2, 4)
    except ValueError:
        return True


async def _send_body(send: Send, body: bytes, watcher: _Disconnect | None) -> bool:
    """Send one body chunk with more to come; ``False`` once the client has gone."""
    await send({"type": "http.response.body", "body": body, "more_body": True})
    return watcher is None or not watcher.gone


def _request_headers(scope: Scope) -> dict[bytes, bytes]:
    """The conditional and range headers of the request; repeated fields joined by commas."""
    found: dict[bytes, bytes] = {}
    for key, value in scope["headers"]:
        if key in _WANTED:
            found[key] = found[key] + b", " + value if key in found else value
    return found


def _text(request: dict[bytes, bytes], key: bytes) -> str | None:
    value = request.get(key)
    return None if value is None else value.decode("latin-1")


async def _send_error(send: Send, status: int, head: bool, extra: Headers | None = None) -> None:
    body = _ERRORS[status]
    headers: Headers = [_TEXT, (b"content-length", str(len(body)).encode()), _NOSNIFF]
    if extra:
        headers.extend(h for h in extra if h[0] not in (b"content-type", b"content-length"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def _send_redirect(send: Send, url: str, head: bool) -> None:
    """307: presigned URLs expire, so the redirect is temporary and never cached."""
    location = quote(url, safe=_URL_SAFE).encode("latin-1")
    headers: Headers = [
        (b"location", location),
        (b"cache-control", b"no-store"),
        (b"content-length", b"0"),
    ]
    await send({"type": "http.response.start", "status": 307, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


async def _release(stored: StoredFile) -> None:
    try:
        await stored.aclose()
    except Exception as exc:
        logger.warning("depotx: closing %r failed: %s", stored, exc, exc_info=exc)
