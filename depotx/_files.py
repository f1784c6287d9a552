"""Files handed back by storages (:class:`StoredFile`) and handed in (:class:`FileIntent`).

One ``StoredFile`` class for every backend: a backend supplies only ``_iter_range``
(and ``_release``), so reading, ranges and closing behave the same everywhere.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._exceptions import BackendError, DepotError

if TYPE_CHECKING:
    from .storages.base import FileStorage

__all__ = ["DEFAULT_CHUNK_SIZE", "FileIntent", "StoredFile", "aclose_iterator"]

#: Chunk size for streamed reads and writes. Large enough that thread hops
#: (disk) and round trips (network) stay cheap, small enough that memory stays flat.
DEFAULT_CHUNK_SIZE = 1024 * 1024


async def aclose_iterator(chunks: AsyncIterator[Any]) -> None:
    """Close an async iterator early, releasing what it holds (a file, a connection).

    Async generators have ``aclose``; a plain async iterator may not, and then
    there is nothing to release.
    """
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()


@dataclass(frozen=True)
class FileIntent:
    """Content together with the filename and content type it should be stored under.

    The filedepot way of saying "store these bytes as ``report.pdf``, type
    ``application/pdf``" without detection guessing either.
    """

    content: Any
    filename: str | None = None
    content_type: str | None = None


class StoredFile(abc.ABC):
    """A file in a storage: its metadata, and a stream of its content.

    Metadata and content are one version: a backend opens (or pins) the content
    when it builds the ``StoredFile``, so a concurrent ``replace`` never gives a
    reader new headers with old bytes. Use it as an async context manager, or call
    :meth:`aclose`, to release the underlying handle.
    """

    #: Whether reading may fail with I/O errors (wrapped in ``BackendError``);
    #: files already in memory skip that wrapper on the serving path.
    _does_io = True
    #: How many ranges one HTTP request may ask of this file before it is sent
    #: whole instead. Each range of a remote file is a request to its service,
    #: so object stores keep this small (a request for 100 ranges must not turn
    #: into 100 requests to S3).
    max_ranges: int = 100

    def __init__(
        self,
        file_id: str,
        *,
        filename: str,
        content_type: str,
        content_length: int,
        last_modified: datetime,
        checksum: str,
        metadata: Mapping[str, str] | None = None,
        public_url: str | None = None,
        storage: FileStorage | None = None,
    ) -> None:
        if last_modified.tzinfo is None:
            raise ValueError("last_modified must be timezone-aware")
        self.file_id = file_id
        self.filename = filename
        self.content_type = content_type
        self.content_length = content_length
        self.last_modified = last_modified
        self.checksum = checksum
        self.metadata: dict[str, str] = dict(metadata or {})
        self.public_url = public_url
        #: The storage this file was read from (``None`` for detached files).
        self.storage = storage
        self._position = 0
        self._sequential: AsyncIterator[bytes] | None = None
        self._buffer = b""
        self._closed = False

    # -- filedepot compatibility -------------------------------------------------

    @property
    def name(self) -> str:
        """The original filename (filedepot's ``StoredFile.name``)."""
        return self.filename

    @property
    def closed(self) -> bool:
        return self._closed

    # -- reading -----------------------------------------------------------------

    @abc.abstractmethod
    def _iter_range(self, start: int, end: int, chunk_size: int) -> AsyncIterator[bytes]:
        """Yield the bytes ``[start, end)`` of this version of the content.

        ``0 <= start <= end <= content_length`` holds when this is called.
        Backends read only that part (a seek, a ranged GET), never more.
        """

    async def _release(self) -> None:  # noqa: B027 - optional hook
        """Release the backend's handle; called once by :meth:`aclose`."""

    def _in_memory(self) -> bytes | None:
        """The whole content when it is already in memory (a cached small file), else
        ``None``: the serving path then sends it without a read loop."""
        return None

    def iter_bytes(
        self, start: int = 0, end: int | None = None, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncIterator[bytes]:
        """Stream bytes ``start`` up to (not including) ``end``, as for an HTTP range.

        ``end=None`` means to the end of the file; bounds are clamped to the file,
        like slicing. Independent of :meth:`read`'s position.
        """
        self._check_open()
        if start < 0 or (end is not None and end < 0):
            raise ValueError("iter_bytes() takes non-negative offsets")
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        stop = self.content_length if end is None else min(end, self.content_length)
        begin = min(start, stop)
        chunks = self._iter_range(begin, stop, chunk_size)
        return self._guarded(chunks) if self._does_io else chunks

    async def _guarded(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Backend I/O errors while reading become ``BackendError``, cause chained."""
        try:
            async for chunk in chunks:
                yield chunk
        except DepotError:
            raise
        except OSError as exc:
            where = f" from {self.storage.name!r}" if self.storage and self.storage.name else ""
            raise BackendError(f"reading {self.file_id!r}{where} failed: {exc}") from exc
        finally:
            await aclose_iterator(chunks)

    async def read(self, n: int = -1) -> bytes:
        """Read up to ``n`` bytes from the current position (all that is left if ``n < 0``)."""
        self._check_open()
        if n == 0:
            return b""
        if self._sequential is None:
            self._sequential = self.iter_bytes(self._position)
        parts = [self._buffer] if self._buffer else []
        have = len(self._buffer)
        while n < 0 or have < n:
            chunk = await anext(self._sequential, None)
            if chunk is None:
                break
            parts.append(chunk)
            have += len(chunk)
        data = b"".join(parts)
        if n >= 0 and len(data) > n:
            data, self._buffer = data[:n], data[n:]
        else:
            self._buffer = b""
        self._position += len(data)
        return data

    def tell(self) -> int:
        return self._position

    async def __aiter__(self) -> AsyncIterator[bytes]:
        """Iterate over the rest of the content in chunks."""
        while chunk := await self.read(DEFAULT_CHUNK_SIZE):
            yield chunk

    # -- lifecycle ---------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"I/O operation on closed file {self.file_id!r}")

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        sequential, self._sequential = self._sequential, None
        if sequential is not None and hasattr(sequential, "aclose"):
            await sequential.aclose()
        await self._release()

    async def __aenter__(self) -> StoredFile:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.file_id!r} filename={self.filename!r} "
            f"content_type={self.content_type!r} length={self.content_length}>"
        )


class BytesStoredFile(StoredFile):
    """A ``StoredFile`` over an immutable ``bytes`` value (memory backend, caches, tests)."""

    _does_io = False

    def __init__(self, file_id: str, data: bytes, **kwargs: Any) -> None:
        super().__init__(file_id, content_length=len(data), **kwargs)
        self._data = data

    def _in_memory(self) -> bytes | None:
        # A subclass that reads otherwise (one that counts its reads) is read its way.
        return self._data if type(self)._iter_range is BytesStoredFile._iter_range else None

    async def _iter_range(self, start: int, end: int, chunk_size: int) -> AsyncIterator[bytes]:
        view = memoryview(self._data)
        for offset in range(start, end, chunk_size):
            yield bytes(view[offset : min(offset + chunk_size, end)])
