"""Stream ``multipart/form-data`` into a storage as it arrives: no temporary file.

Starlette's ``request.form()`` spools every file part to a temporary file before
the endpoint runs, so an upload is written twice (temp, then storage) and a
full ``TMPDIR`` fails it. :func:`receive_upload` instead parses the body with
python-multipart's streaming parser while it is received and hands each file
part's bytes to ``storage.create`` as they come: memory stays at about one
chunk, the size limit stops the upload the moment it is exceeded, and a
failure or a client disconnect leaves nothing stored.

One task does it all, by pulling: the file's chunk iterator asks for the next
parser event, which reads the next ASGI message only when the events of the
last one are used up. Nothing is read ahead of what the storage has taken.
"""

from __future__ import annotations

import importlib
import os
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive, Scope

from .._exceptions import MissingDependencyError, ValidationError
from ..storages.base import FileStorage

__all__ = ["ReceivedFile", "ReceivedUpload", "receive_upload"]

#: Bytes gathered from the parser before they are handed to the storage as one chunk.
CHUNK_SIZE = 256 * 1024
#: Largest text field kept (a text field is held in memory).
MAX_FIELD_SIZE = 64 * 1024


@dataclass(frozen=True)
class ReceivedFile:
    """One file part, stored: its form field, id, and what was recorded."""

    field: str
    file_id: str
    filename: str | None
    size: int


@dataclass(frozen=True)
class ReceivedUpload:
    """What a form carried: the stored files and the text fields beside them."""

    files: list[ReceivedFile] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def file_ids(self) -> list[str]:
        return [received.file_id for received in self.files]


def _parser_module() -> Any:
    # "multipart" is python-multipart's name before 0.0.13.
    for name in ("python_multipart.multipart", "multipart.multipart"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise MissingDependencyError("server", "python-multipart")


_BEGIN, _HEADERS, _DATA, _END = "begin", "headers", "data", "end"


class _Events:
    """Parser events, produced by feeding the parser one ASGI message at a time."""

    def __init__(self, receive: Receive, boundary: bytes) -> None:
        module = _parser_module()
        self._receive = receive
        self._done = False
        self.events: deque[tuple[str, Any]] = deque()
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        callbacks = {
            "on_part_begin": self._on_part_begin,
            "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end,
            "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value,
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
        }
        self._parser = module.MultipartParser(boundary, callbacks)
        self._parse_error = getattr(module, "MultipartParseError", ValueError)

    # -- parser callbacks (synchronous) --

    def _on_part_begin(self) -> None:
        self._headers = {}
        self.events.append((_BEGIN, None))

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        self._headers[bytes(self._header_field).lower()] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def _on_headers_finished(self) -> None:
        self.events.append((_HEADERS, self._headers))

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if end > start:
            self.events.append((_DATA, bytes(data[start:end])))

    def _on_part_end(self) -> None:
        self.events.append((_END, None))

    # -- the pull side --

    async def next(self) -> tuple[str, Any] | None:
        """The next event; ``None`` once the body is over."""
        while not self.events:
            if self._done:
                return None
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            body: bytes = message.get("body", b"")
            try:
                if body:
                    self._parser.write(body)
                if not message.get("more_body", False):
                    self._parser.finalize()
                    self._done = True
            except self._parse_error as exc:
                raise ValidationError("multipart", f"malformed multipart body: {exc}") from exc
        return self.events.popleft()


def _boundary(content_type: str) -> bytes:
    module = _parser_module()
    kind, params = module.parse_options_header(content_type)
    if kind != b"multipart/form-data" or not params.get(b"boundary"):
        raise ValidationError(
            "multipart", "send the upload as multipart/form-data (with a boundary)"
        )
    return bytes(params[b"boundary"])


def _disposition(headers: Mapping[bytes, bytes]) -> tuple[str, str | None]:
    module = _parser_module()
    kind, params = module.parse_options_header(headers.get(b"content-disposition", b""))
    if kind != b"form-data" or b"name" not in params:
        raise ValidationError("multipart", "a part without a form-data name")
    name = params[b"name"].decode("utf-8", "replace")
    raw = params.get(b"filename")
    if raw is None:
        return name, None
    filename = raw.decode("utf-8", "replace").replace("\\", "/")
    # Browsers on Windows may send a full path: keep its last component.
    return name, os.path.basename(filename) or ""


async def receive_upload(
    source: Request | tuple[Scope, Receive],
    storage: FileStorage,
    *,
    field: str | None = "file",
    max_size: int | None = None,
    max_files: int | None = 1,
    max_fields: int = 100,
    metadata: Mapping[str, str] | None = None,
    file_id: str | None = None,
) -> ReceivedUpload:
    """Store the file parts of a ``multipart/form-data`` request as they arrive.

    :param source: a Starlette/FastAPI ``Request`` whose body has not been read,
        or an ASGI ``(scope, receive)`` pair.
    :param field: the form field whose files are stored; ``None`` stores every
        file part. File parts of other fields are refused.
    :param max_size: the largest file, in bytes, checked while streaming: the
        upload stops as soon as it is exceeded (``ValidationError`` with rule
        ``max_size``) and nothing is stored.
    :param max_files: how many files one request may carry (``None``: any).
    :param max_fields: how many text fields (each up to 64 KiB) it may carry.
    :param metadata: custom metadata stored with every file.
    :param file_id: the id to store the file under (a key; with ``max_files=1``),
        create-only as ``storage.create(..., file_id=...)``; else a new id.

    Each file gets its name from the part's ``filename`` and its type from the
    usual detection (the bytes, then the name), exactly as ``storage.create``
    of an ``UploadFile`` would. Returns the stored files and the text fields.
    On any failure (a rule, a malformed body, ``ClientDisconnect``, the storage)
    the files this call stored are deleted and the error is raised.
    """
    if file_id is not None and max_files != 1:
        raise ValueError("file_id names one file: use it with max_files=1")
    if isinstance(source, Request):
        scope, receive = source.scope, source.receive
    else:
        scope, receive = source
    headers = {key.lower(): value for key, value in scope.get("headers", [])}
    boundary = _boundary(headers.get(b"content-type", b"").decode("latin-1"))
    events = _Events(receive, boundary)
    received = ReceivedUpload()
    try:
        while (event := await events.next()) is not None:
            if event[0] != _BEGIN:
                continue
            header_event = await events.next()
            if header_event is None or header_event[0] != _HEADERS:
                raise ValidationError("multipart", "a part ended before its headers")
            name, filename = _disposition(header_event[1])
            if filename is None:
                if len(received.fields) >= max_fields:
                    raise ValidationError("max_fields", f"more than {max_fields} text fields")
                received.fields[name] = await _text(events)
                continue
            if field is not None and name != field:
                raise ValidationError("multipart", f"unexpected file field {name!r}")
            chunks = _file_chunks(events, max_size)
            first = await anext(chunks, None)
            if first is None and not filename:
                continue  # a file input left empty: browsers still send the part
            if max_files is not None and len(received.files) >= max_files:
                await chunks.aclose()
                raise ValidationError("max_files", f"more than {max_files} file(s)")
            size = _Counter()
            stored_id = await storage.create(
                size.counting(first, chunks), filename or None, metadata=metadata, file_id=file_id
            )
            received.files.append(ReceivedFile(name, stored_id, filename or None, size.total))
    except BaseException:
        for stored in received.files:
            await storage.delete(stored.file_id)
        raise
    return received


class _Counter:
    def __init__(self) -> None:
        self.total = 0

    async def counting(
        self, first: bytes | None, rest: AsyncGenerator[bytes, None]
    ) -> AsyncIterator[bytes]:
        try:
            if first is not None:
                self.total += len(first)
                yield first
            async for chunk in rest:
                self.total += len(chunk)
                yield chunk
        finally:
            await rest.aclose()


async def _file_chunks(events: _Events, max_size: int | None) -> AsyncGenerator[bytes, None]:
    """One file part's bytes, in chunks of about :data:`CHUNK_SIZE`, limit enforced."""
    pending: list[bytes] = []
    have = 0
    size = 0
    while True:
        event = await events.next()
        if event is None:
            raise ValidationError("multipart", "the body ended inside a file")
        kind, data = event
        if kind == _END:
            break
        if kind != _DATA:
            continue
        size += len(data)
        if max_size is not None and size > max_size:
            raise ValidationError("max_size", f"the file is larger than {max_size} bytes")
        pending.append(data)
        have += len(data)
        if have >= CHUNK_SIZE:
            yield b"".join(pending)
            pending.clear()
            have = 0
    if pending:
        yield b"".join(pending)


async def _text(events: _Events) -> str:
    parts: list[bytes] = []
    size = 0
    while True:
        event = await events.next()
        if event is None:
            raise ValidationError("multipart", "the body ended inside a field")
        kind, data = event
        if kind == _END:
            return b"".join(parts).decode("utf-8", "replace")
        if kind == _DATA:
            size += len(data)
            if size > MAX_FIELD_SIZE:
                raise ValidationError("max_field_size", f"a text field over {MAX_FIELD_SIZE} bytes")
            parts.append(data)
