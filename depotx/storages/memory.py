"""An in-process storage, for tests and demos. Files vanish with the process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from .._checksums import new_hasher
from .._content import Upload
from .._exceptions import StoredFileExistsError, StoredFileNotFoundError
from .._files import BytesStoredFile, StoredFile
from .base import FileStorage, WriteMode, fold_listing

__all__ = ["MemoryFileStorage"]


@dataclass(frozen=True)
class _Entry:
    """One immutable version; a replace swaps in a new entry, readers keep theirs."""

    data: bytes
    filename: str
    content_type: str
    last_modified: datetime
    checksum: str
    metadata: dict[str, str]


class MemoryFileStorage(FileStorage):
    """Keeps files in a dict; every instance is independent."""

    _without_urls = True  # served by the middleware, never redirected

    def __init__(self) -> None:
        self._files: dict[str, _Entry] = {}

    async def _get(self, file_id: str) -> StoredFile:
        entry = self._files.get(file_id)
        if entry is None:
            raise StoredFileNotFoundError(file_id, self.name)
        return BytesStoredFile(
            file_id,
            entry.data,
            filename=entry.filename,
            content_type=entry.content_type,
            last_modified=entry.last_modified,
            checksum=entry.checksum,
            metadata=entry.metadata,
            storage=self,
        )

    async def _store(self, file_id: str, upload: Upload, *, mode: WriteMode) -> None:
        buffer = bytearray()
        digest = new_hasher(self.checksum_algorithm)
        async for chunk in upload.chunks:
            buffer += chunk
            digest.update(chunk)
        # Only a complete upload reaches the dict: a failure above leaves nothing.
        # The check and the commit below run with no await between them, so they
        # are atomic for every other task on the loop.
        if mode == "create" and file_id in self._files:
            raise StoredFileExistsError(file_id, self.name)
        if mode == "replace" and file_id not in self._files:
            raise StoredFileNotFoundError(file_id, self.name)
        self._files[file_id] = _Entry(
            data=bytes(buffer),
            filename=upload.filename,
            content_type=upload.content_type,
            last_modified=upload.stamp(),
            checksum=digest.hexdigest(),
            metadata=dict(upload.metadata),
        )

    async def _delete(self, file_id: str) -> None:
        self._files.pop(file_id, None)

    async def _exists(self, file_id: str) -> bool:
        return file_id in self._files

    async def _list(
        self, prefix: str, start_after: str | None, delimiter: str | None
    ) -> AsyncIterator[str]:
        ids = sorted(file_id for file_id in self._files if file_id.startswith(prefix))
        async for file_id in fold_listing(ids, prefix, start_after, delimiter):
            yield file_id
