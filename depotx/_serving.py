"""Send one stored file as the answer to an ASGI request: the one implementation.

:func:`depotx._http.plan_response` decides the answer (status, headers, which
bytes); this module sends it: a short answer (errors, 304, HEAD) in two
messages, a body streamed from the backend chunk by chunk with flat memory,
stopping as soon as the client is gone. The middleware and
:class:`~depotx.StoredFileResponse` both answer through :func:`send_stored`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any

from starlette.types import Receive, Scope, Send

from . import _http
from ._exceptions import InvalidFileIdError, StoredFileChangedError, StoredFileNotFoundError
from ._files import StoredFile, aclose_iterator

__all__ = [
    "DEFAULT_SERVE_CHUNK_SIZE",
    "MAX_ATTEMPTS",
    "HeadersFor",
    "failure_status",
    "request_fields",
    "send_plan",
    "send_stored",
    "serve_file",
]

#: How often a file replaced between opening and its first byte is opened again
#: before giving up with 503; a replace would have to win this race every time.
MAX_ATTEMPTS = 3

logger = logging.getLogger("depotx")

#: Bytes per read from the backend and per ASGI message when serving. A client
#: that stops reading leaves about four copies of one chunk in the server (ours,
#: the HTTP layer's, the transport's buffer): measured under uvicorn, 505 KiB per
#: stalled download with 128 KiB chunks, 1 MiB with 256 KiB, 3.1 MiB with 1 MiB.
DEFAULT_SERVE_CHUNK_SIZE = 128 * 1024

# The request fields the planner reads; nothing else is ever decoded.
_WANTED = frozenset(
    {
        b"range",
        b"if-range",
        b"if-match",
        b"if-none-match",
        b"if-modified-since",
        b"if-unmodified-since",
    }
)

#: Builds (or finds cached) the headers of one file version, as :func:`_http.file_headers`.
HeadersFor = Callable[[str, datetime, str, str, bool, bool], _http.FileHeaders]
#: Given an open file, the header that makes the front server send it (offload), or
#: ``None`` to send it here.
Handoff = Callable[[StoredFile], "tuple[bytes, bytes] | None"]


def request_fields(scope: Scope) -> dict[bytes, bytes]:
    """The conditional and range fields of the request; repeated fields joined by commas."""
    found: dict[bytes, bytes] = {}
    for key, value in scope["headers"]:
        if key in _WANTED:
            found[key] = found[key] + b", " + value if key in found else value
    return found


def failure_status(exc: BaseException) -> int:
    """503 when the backend timed out or refused the connection, 502 for anything else."""
    seen: BaseException | None = exc
    for _ in range(8):  # the cause chain of a wrapped error is short
        if seen is None:
            break
        # botocore's ConnectTimeoutError/ReadTimeoutError are no TimeoutError.
        if isinstance(seen, (TimeoutError, ConnectionRefusedError)) or type(seen).__name__.endswith(
            ("TimeoutError", "Timeout")
        ):
            return 503
        seen = seen.__cause__ or seen.__context__
    return 502


async def send_small(
    send: Send,
    status: int,
    body: bytes = b"",
    *,
    content_type: bytes = b"text/plain; charset=utf-8",
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """A whole answer whose body is in hand (an error, a protocol answer): never cached.

    The one way the apps around the middleware (``depotx serve``'s guard, the tus
    app, the direct-upload route) answer by hand: length given, ``no-store``.
    """
    raw = list(headers)
    if body:
        raw.append((b"content-type", content_type))
    raw.append((b"content-length", str(len(body)).encode()))
    raw.append((b"cache-control", b"no-store"))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def send_plan(send: Send, plan: _http.Plan) -> None:
    """Send an answer whose body is fixed (an error, a 304, any answer to HEAD)."""
    await send({"type": "http.response.start", "status": plan.status, "headers": plan.headers})
    await send({"type": "http.response.body", "body": plan.body if plan.send_body else b""})


async def serve_file(
    open_file: Callable[[], Awaitable[StoredFile]],
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    label: str,
    first: StoredFile | None = None,
    before_send: Callable[[StoredFile], Awaitable[bool]] | None = None,
    **options: Any,
) -> None:
    """Answer with a file, opening it again when it changed before its first byte.

    The one retry loop: ``first`` (an already open file, closed here) or
    ``open_file()`` gives the file; ``before_send`` may answer instead (a
    redirect) by returning ``True``; else :func:`send_stored` answers with
    ``options``. A missing file is a 404, a failing backend a 502/503 (logged
    with its cause, naming ``label``), a file that keeps changing a 503.
    """
    head = scope["method"] == "HEAD"
    stored = first
    for _ in range(MAX_ATTEMPTS):
        if stored is None:
            try:
                stored = await open_file()
            except (StoredFileNotFoundError, InvalidFileIdError):
                await send_plan(send, _http.error_plan(404, head=head))
                return
            except StoredFileChangedError:
                break  # it cannot be opened again: as if it kept changing
            except Exception as exc:  # any backend failure is a 502/503, logged
                status = failure_status(exc)
                logger.error(  # noqa: TRY400 - exc_info given explicitly
                    "depotx: serving %s failed (%d): %s", label, status, exc, exc_info=exc
                )
                await send_plan(send, _http.error_plan(status, head=head))
                return
        try:
            if before_send is not None and await before_send(stored):
                return
            if await send_stored(stored, scope, receive, send, **options):
                return
        finally:
            await _release(stored)
        stored = None  # replaced since it was opened, and nothing sent yet: again
    logger.error("depotx: %s kept changing while it was opened (%d attempts)", label, MAX_ATTEMPTS)
    await send_plan(send, _http.error_plan(503, head=head))


async def _release(stored: StoredFile) -> None:
    try:
        await stored.aclose()
    except Exception as exc:
        logger.warning("depotx: closing %r failed: %s", stored, exc, exc_info=exc)


async def send_stored(
    stored: StoredFile,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    cache_control: tuple[bytes, bytes],
    headers_for: HeadersFor = _http.file_headers,
    inline_active: bool = False,
    download: bool = False,
    filename: str | None = None,
    chunk_size: int = DEFAULT_SERVE_CHUNK_SIZE,
    handoff: Handoff | None = None,
    pathsend: Callable[[StoredFile], str | None] | None = None,
) -> bool:
    """Answer a GET or HEAD from ``stored``; ``False`` if it changed before its first byte.

    Nothing has been sent when ``False`` is returned: the caller opens the file
    again and retries, so headers always describe the bytes that follow. With
    ``handoff``, a body is not sent but left to the front server (after the
    preconditions, which are answered here): its header names the file, and the
    front server applies the request's ``Range`` itself. With ``pathsend`` (the
    ASGI server offers ``http.response.pathsend``), a whole-file answer is a path
    the server sends itself, when ``pathsend`` gives one for ``stored``.
    """
    head = scope["method"] == "HEAD"
    file = headers_for(
        stored.checksum,
        stored.last_modified,
        filename or stored.filename,
        stored.content_type,
        inline_active,
        download,
    )
    plan = _http.plan_response(
        file,
        stored.content_length,
        request_fields(scope),
        head=head,
        cache_control=cache_control,
        max_ranges=stored.max_ranges,
    )
    if not plan.send_body or not plan.segments:
        await send_plan(send, plan)
        return True
    if handoff is not None:
        header = handoff(stored)
        if header is not None:
            await _send_handoff(send, stored, plan, header)
            return True
    if pathsend is not None and plan.status == 200:
        path = pathsend(stored)
        if path is not None:
            await send({"type": "http.response.start", "status": 200, "headers": plan.headers})
            await send({"type": "http.response.pathsend", "path": path})
            return True

    start, end = plan.segments[0]
    data = stored._in_memory()
    if data is not None and not plan.boundary and end - start <= chunk_size:
        # Already in memory (hot small files): one slice, no read loop, nothing to wait for.
        await send({"type": "http.response.start", "status": plan.status, "headers": plan.headers})
        body = data if start == 0 and end == len(data) else data[start:end]
        await send({"type": "http.response.body", "body": body})
        return True

    # Read the first chunk before the headers go out: if the file was replaced
    # since ``get``, nothing is sent yet and the caller re-opens it.
    chunks = stored.iter_bytes(start, end, chunk_size=chunk_size)
    try:
        first = await anext(chunks, b"")
    except StoredFileChangedError:
        await aclose_iterator(chunks)
        return False
    except Exception as exc:
        await aclose_iterator(chunks)
        status = failure_status(exc)
        logger.error(  # noqa: TRY400 - exc_info given explicitly
            "depotx: reading %s failed (%d): %s", _label(stored), status, exc, exc_info=exc
        )
        await send_plan(send, _http.error_plan(status, head=head))
        return True

    await send({"type": "http.response.start", "status": plan.status, "headers": plan.headers})
    if not plan.boundary and len(first) == end - start:
        # The whole body in one chunk (most small files): no watcher, no loop.
        await aclose_iterator(chunks)
        await send({"type": "http.response.body", "body": first})
        return True
    await _stream(scope, receive, send, stored, plan, first, chunks, chunk_size)
    return True


async def _send_handoff(
    send: Send,
    stored: StoredFile,
    plan: _http.Plan,
    header: tuple[bytes, bytes],
) -> None:
    """The file's headers and ``header``, no body: the front server sends the bytes.

    Always a 200 without ``Content-Length``: the front server answers the range,
    if any, and counts the bytes it sends.
    """
    # The front server counts the bytes, answers ranges and says it does.
    dropped = {b"content-length", b"content-range", b"accept-ranges"}
    headers = [(k, v) for k, v in plan.headers if k not in dropped]
    if plan.boundary or plan.status == 206:
        # The plan was for ranges: the whole file's type, not multipart/byteranges.
        headers = [(k, v) for k, v in headers if k != b"content-type"]
        headers.append((b"content-type", _http.header_content_type(stored.content_type).encode()))
    headers.append(header)
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def _label(stored: StoredFile) -> str:
    storage = stored.storage.name if stored.storage is not None else None
    return f"{storage}/{stored.file_id}" if storage else stored.file_id


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


async def _stream(
    scope: Scope,
    receive: Receive,
    send: Send,
    stored: StoredFile,
    plan: _http.Plan,
    first: bytes,
    chunks: AsyncIterator[bytes],
    chunk_size: int,
) -> None:
    """Send the body after the headers; on any failure, stop and leave the response incomplete.

    Once the status line is out there is no honest error response left: the
    server closes the connection on an incomplete body, and the client sees
    a truncated transfer instead of wrong bytes.
    """
    spec: str = scope.get("asgi", {}).get("spec_version", "2.0")
    watcher = _Disconnect(receive) if _needs_watcher(spec) else None
    boundary = plan.boundary
    length = stored.content_length
    content_type = _http.header_content_type(stored.content_type)
    pending: bytes | None = first
    try:
        for index, (start, end) in enumerate(plan.segments):
            if boundary:
                part = _http.multipart_part_header(boundary, content_type, start, end, length)
                if not await _send_body(send, part, watcher):
                    return
            if index:
                await aclose_iterator(chunks)
                chunks = stored.iter_bytes(start, end, chunk_size=chunk_size)
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
                            "depotx: reading %s failed after the headers were sent, "
                            "response aborted: %s",
                            _label(stored),
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
                    "depotx: %s ended after %d of %d bytes, response aborted",
                    _label(stored),
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
        logger.debug("depotx: client went away during %s", _label(stored))
    finally:
        if watcher is not None:
            watcher.cancel()
        await aclose_iterator(chunks)
