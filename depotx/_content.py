"""Turn whatever a caller hands to ``create``/``replace`` into one async stream of chunks.

Backends then see a single shape (:class:`Upload`): an async iterator of
``bytes`` plus the resolved filename, content type and metadata. Nothing here
reads a whole file into memory; the content type is sniffed from a short
prefix that is then streamed on unchanged.
"""

from __future__ import annotations

import asyncio
import inspect
import io
import os
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ._detect import SNIFF_SIZE, detect_content_type
from ._files import DEFAULT_CHUNK_SIZE, FileIntent, StoredFile, aclose_iterator
from ._formats import DEFAULT_FILENAME

__all__ = ["Upload", "prepare_upload"]


@dataclass
class Upload:
    """Content ready to be written: chunks plus the metadata to store with them."""

    chunks: AsyncIterator[bytes]
    filename: str
    content_type: str
    metadata: dict[str, str] = field(default_factory=dict)
    #: What libmagic made of the first bytes, when they were sniffed: the type to
    #: validate against, whatever the caller claimed.
    sniffed_type: str | None = None
    #: The exception the caller's content raised, if any: a client that went
    #: away is the caller's failure, not the backend's, and is re-raised as is.
    source_error: BaseException | None = None
    #: The modification time to record instead of now (a migration keeps the
    #: source's); backends write ``upload.stamp()``.
    last_modified: datetime | None = None

    def stamp(self) -> datetime:
        """The modification time to record: ``last_modified``, else now (whole seconds)."""
        if self.last_modified is not None:
            return self.last_modified.astimezone(timezone.utc).replace(microsecond=0)
        return datetime.now(timezone.utc).replace(microsecond=0)

    def __post_init__(self) -> None:
        self.chunks = self._tracked(self.chunks)

    async def _tracked(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        try:
            while True:
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    return
                except BaseException as exc:
                    self.source_error = exc
                    raise
                yield chunk
        finally:
            await aclose_iterator(chunks)

    async def aclose(self) -> None:
        """Close the chunk stream (and with it the caller's source) early."""
        await aclose_iterator(self.chunks)


def _check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a mapping of str to str, not {type(metadata).__name__}")
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"metadata must map str to str; got {key!r}: {value!r}")
    return dict(metadata)


def _bytes_chunk(chunk: object) -> bytes:
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, (bytearray, memoryview)):
        return bytes(chunk)
    if isinstance(chunk, str):
        raise TypeError(
            "content yielded str; depotx stores bytes: encode it first (text.encode('utf-8')) "
            "or open files in binary mode ('rb')"
        )
    raise TypeError(f"content must yield bytes, not {type(chunk).__name__}")


async def _from_buffer(data: bytes | bytearray | memoryview) -> AsyncIterator[bytes]:
    view = memoryview(data).cast("B")
    for offset in range(0, len(view), DEFAULT_CHUNK_SIZE):
        yield bytes(view[offset : offset + DEFAULT_CHUNK_SIZE])


async def _from_reader(reader: Any) -> AsyncIterator[bytes]:
    """Chunks from a file-like object whose ``read`` may be sync or async."""
    read = reader.read
    if isinstance(reader, io.BytesIO):  # in memory: a thread hop would cost more than the read
        while chunk := read(DEFAULT_CHUNK_SIZE):
            yield _bytes_chunk(chunk)
    elif inspect.iscoroutinefunction(read):  # aiofiles, UploadFile
        while chunk := await read(DEFAULT_CHUNK_SIZE):
            yield _bytes_chunk(chunk)
    else:  # a real file: never block the event loop on disk or pipe reads
        while True:
            chunk = await asyncio.to_thread(read, DEFAULT_CHUNK_SIZE)
            if inspect.isawaitable(chunk):
                chunk = await chunk
            if not chunk:
                return
            yield _bytes_chunk(chunk)


async def _from_async_iterable(source: AsyncIterable[Any]) -> AsyncIterator[bytes]:
    async for chunk in source:
        if chunk:
            yield _bytes_chunk(chunk)


async def _from_iterable(source: Iterable[Any]) -> AsyncIterator[bytes]:
    for chunk in source:
        if chunk:
            yield _bytes_chunk(chunk)


async def _from_stored(stored: StoredFile) -> AsyncIterator[bytes]:
    async for chunk in stored.iter_bytes():
        yield chunk


def _name_of(content: Any) -> str | None:
    name = getattr(content, "filename", None)  # UploadFile, cgi.FieldStorage
    if not isinstance(name, str) or not name:
        name = getattr(content, "name", None)  # open files, aiofiles
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    if not isinstance(name, str) or not name or name.startswith("<"):
        return None
    # Browsers on Windows may send a full path; keep its last component only.
    return os.path.basename(name.replace("\\", "/")) or None


def _open_chunks(content: Any) -> AsyncIterator[bytes]:
    if isinstance(content, str):
        raise TypeError(
            "content is a str; depotx stores bytes: pass content.encode('utf-8') "
            "or a file opened in binary mode ('rb')"
        )
    if isinstance(content, (bytes, bytearray, memoryview)):
        return _from_buffer(content)
    if isinstance(content, StoredFile):
        return _from_stored(content)
    if hasattr(content, "read"):
        if isinstance(content, io.TextIOBase):
            raise TypeError("content is a text-mode file; open it in binary mode ('rb')")
        return _from_reader(content)
    if isinstance(content, AsyncIterable):
        return _from_async_iterable(content)
    if isinstance(content, Iterable):
        return _from_iterable(content)
    if inspect.iscoroutine(content):
        content.close()
        raise TypeError("content is a coroutine: did you forget await? (e.g. await upload.read())")
    raise TypeError(
        f"cannot store {type(content).__name__}: pass bytes, a binary file, an async file, "
        "an (async) iterator of bytes, an UploadFile, a FileIntent or a StoredFile"
    )


async def _rewind(content: Any) -> None:
    """Seek a seekable file-like source back to its start before it is stored.

    ``await upload.read()`` to check something, then ``create(upload)``, used to
    store 0 bytes without a word; every byte of the file is what a caller means
    to store. Sources that cannot seek (pipes, sockets, request bodies) are
    streamed from where they are, which is the only place they can be read from.
    """
    if not hasattr(content, "read") or isinstance(content, io.TextIOBase):
        return
    seek = getattr(content, "seek", None)
    if seek is None:
        return
    if inspect.iscoroutinefunction(seek):  # UploadFile, aiofiles
        inner = getattr(content, "file", None)  # UploadFile keeps a sync file inside
        if inner is not None and not _seekable(inner):
            return
        try:
            await seek(0)
        except (OSError, ValueError):
            return  # an async pipe: it can only be read from where it is
        return
    if _seekable(content):
        seek(0)


def _seekable(file: Any) -> bool:
    seekable = getattr(file, "seekable", None)
    if seekable is None:
        return False
    try:
        return bool(seekable())
    except (OSError, ValueError):  # closed, or a stream that cannot tell
        return False


async def _peek(
    chunks: AsyncIterator[bytes], size: int
) -> tuple[bytes, bool, AsyncIterator[bytes]]:
    """Read at least ``size`` bytes (or all) and return them with a stream that replays them."""
    head: list[bytes] = []
    have = 0
    exhausted = False
    while have < size:
        chunk = await anext(chunks, None)
        if chunk is None:
            exhausted = True
            break
        head.append(chunk)
        have += len(chunk)

    async def replay() -> AsyncIterator[bytes]:
        try:
            for chunk in head:
                yield chunk
            head.clear()
            if not exhausted:
                async for chunk in chunks:
                    yield chunk
        finally:
            await aclose_iterator(chunks)

    return b"".join(head)[:size], exhausted, replay()


async def prepare_upload(
    content: Any,
    filename: str | None = None,
    content_type: str | None = None,
    metadata: Mapping[str, str] | None = None,
    *,
    default_filename: str | None = None,
    default_metadata: Mapping[str, str] | None = None,
    sniff: bool = False,
) -> Upload:
    """Resolve filename, content type and metadata for ``content`` and open its stream.

    Precedence, highest first: the explicit arguments; what a :class:`FileIntent`
    or :class:`StoredFile` carries; what the object says of itself (its name);
    ``default_filename`` (the old name, on replace); ``"unnamed"``. A content type
    not given is sniffed from the first bytes; ``sniff=True`` sniffs even when one
    is given (to validate a claim), and ``Upload.sniffed_type`` holds the result.
    """
    metadata = _check_metadata(metadata) if metadata is not None else None
    if isinstance(content, FileIntent):
        filename = filename or content.filename
        content_type = content_type or content.content_type
        content = content.content
    if isinstance(content, StoredFile):
        filename = filename or content.filename
        content_type = content_type or content.content_type
        if metadata is None:
            metadata = dict(content.metadata)
    await _rewind(content)
    chunks = _open_chunks(content)
    filename = filename or _name_of(content) or default_filename or DEFAULT_FILENAME
    if metadata is None:
        metadata = dict(default_metadata or {})
    sniffed: str | None = None
    if content_type is None or sniff:
        sample, complete, chunks = await _peek(chunks, SNIFF_SIZE)
        sniffed = await asyncio.to_thread(detect_content_type, sample, filename, complete=complete)
        if content_type is None:
            content_type = sniffed
    return Upload(
        chunks=chunks,
        filename=filename,
        content_type=content_type,
        metadata=metadata,
        sniffed_type=sniffed,
    )
