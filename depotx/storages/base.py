"""The storage contract every backend implements.

:class:`FileStorage` holds the public, async API (``create``, ``get``,
``replace``, ``delete``, ``exists``, ``list``) and does everything that is the
same for every backend: id validation before any I/O, resolving filename and
content type, the replace rules, and wrapping backend failures in
:class:`~depotx.BackendError`. A backend implements the ``_``-prefixed
primitives only, so those rules cannot drift between backends.
"""

from __future__ import annotations

import abc
import builtins
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timezone
from types import TracebackType
from typing import Any

from .._content import Upload, prepare_upload
from .._exceptions import BackendError, DepotError, StoredFileNotFoundError
from .._files import StoredFile
from .._ids import new_file_id, validate_file_id

__all__ = ["FileStorage", "utcnow"]


def utcnow() -> datetime:
    """Now, timezone-aware, truncated to whole seconds as HTTP dates and filedepot are."""
    return datetime.now(timezone.utc).replace(microsecond=0)


class FileStorage(abc.ABC):
    """Abstract base class of every storage backend.

    Constructors take keyword options (the ``depot.<option>`` keys of a config)
    and must not do I/O; clients are opened lazily and released by
    :meth:`aclose`. Subclasses implement :meth:`_get`, :meth:`_store`,
    :meth:`_delete`, :meth:`_exists` and :meth:`_list`.
    """

    #: A short label for error messages; the manager sets the configured name.
    name: str | None = None
    #: Whether the middleware may serve active content (HTML, SVG, XML,
    #: JavaScript) inline. Off by default: such files from users are served as
    #: attachments, so they cannot run scripts on the app's origin. Set with the
    #: ``depot.inline_active_content`` option, accepted by every backend.
    inline_active_content: bool = False

    # -- primitives for backends -----------------------------------------------

    def _new_id(self) -> str:
        """A fresh file id; uuid4 strings unless the backend has its own format."""
        return new_file_id()

    @abc.abstractmethod
    async def _get(self, file_id: str) -> StoredFile:
        """Return the file, its content pinned to the metadata's version.

        Raise ``StoredFileNotFoundError`` when there is no such file.
        """

    @abc.abstractmethod
    async def _store(self, file_id: str, upload: Upload, *, replace: bool) -> None:
        """Write ``upload`` under ``file_id``, visible to readers only once complete.

        With ``replace=True`` the id may already exist and must stay readable
        (old version) until the new one takes its place; a failure or a
        cancellation leaves the old version intact and nothing half-written.
        """

    @abc.abstractmethod
    async def _delete(self, file_id: str) -> None:
        """Delete the file; a missing file is not an error."""

    @abc.abstractmethod
    async def _exists(self, file_id: str) -> bool: ...

    @abc.abstractmethod
    def _list(self) -> AsyncIterator[str]: ...

    def _validate_id(self, file_id: object) -> str:
        """Return ``file_id`` if this storage could hold it, else raise ``InvalidFileIdError``.

        Every public method goes through here before any I/O. A backend with an id
        format of its own (GridFS: ObjectIds) refines it, once, for all of them.
        """
        return validate_file_id(file_id)

    def _file_id_of(self, file_or_id: StoredFile | str) -> str:
        file_id = file_or_id.file_id if isinstance(file_or_id, StoredFile) else file_or_id
        return self._validate_id(file_id)

    def public_url(self, file_id: str) -> str | None:
        """The URL a client can fetch ``file_id`` from directly, or ``None``.

        Synchronous and free of I/O so that ``url_for`` stays cheap; a storage
        answers only where the URL will actually serve the file.
        """
        self._validate_id(file_id)
        return None

    async def aclose(self) -> None:  # noqa: B027 - optional hook, not an abstract method
        """Release clients and connections; the storage may reopen them lazily later."""

    # -- the public API ----------------------------------------------------------

    def _label(self) -> str:
        return self.name or type(self).__name__

    def _failure(self, action: str, file_id: str | None, exc: Exception) -> BackendError:
        what = f" {file_id!r}" if file_id else ""
        return BackendError(f"{self._label()}: {action}{what} failed: {exc}")

    async def create(
        self,
        content: Any,
        filename: str | None = None,
        content_type: str | None = None,
        *,
        metadata: Mapping[str, str] | None = None,
    ) -> str:
        """Store ``content`` as a new file and return its id.

        ``content`` may be bytes, a binary or async file, an async iterator of
        bytes, an ``UploadFile``, a :class:`~depotx.FileIntent` or a
        :class:`~depotx.StoredFile` (a copy from any storage). It is streamed;
        nothing becomes visible unless the whole content was written.
        """
        upload = await prepare_upload(content, filename, content_type, metadata)
        file_id = self._new_id()
        await self._write(file_id, upload, replace=False)
        return file_id

    async def replace(
        self,
        file_or_id: StoredFile | str,
        content: Any,
        filename: str | None = None,
        content_type: str | None = None,
        *,
        metadata: Mapping[str, str] | None = None,
    ) -> str:
        """Replace the content of an existing file, keeping its id.

        An omitted ``filename`` (or ``metadata``) keeps the old one; an omitted
        ``content_type`` is detected from the new content. Readers see the old
        version or the new one, never a mix or a gap; if the replace fails or is
        cancelled, the old version stays.

        A missing id raises :class:`~depotx.StoredFileNotFoundError`, except for
        filedepot's backup pattern ``backup.replace(stored, stored)``: a
        ``StoredFile`` from another storage is stored here under its own id.
        """
        file_id = self._file_id_of(file_or_id)
        old: StoredFile | None
        try:
            old = await self.get(file_id)
        except StoredFileNotFoundError:
            foreign = isinstance(file_or_id, StoredFile) and file_or_id.storage is not self
            if not foreign:
                raise
            old = None
        try:
            upload = await prepare_upload(
                content,
                filename,
                content_type,
                metadata,
                default_filename=old.filename if old else None,
                default_metadata=old.metadata if old else None,
            )
        finally:
            if old is not None:
                await old.aclose()
        await self._write(file_id, upload, replace=True)
        return file_id

    async def _write(self, file_id: str, upload: Upload, *, replace: bool) -> None:
        try:
            await self._store(file_id, upload, replace=replace)
        except DepotError:
            raise
        except OSError as exc:
            if exc is upload.source_error:
                raise  # the caller's content failed (e.g. a client disconnect), not the storage
            raise self._failure("replace" if replace else "create", file_id, exc) from exc
        finally:
            await upload.aclose()

    async def get(self, file_id: str) -> StoredFile:
        """Open the file ``file_id``; close the returned :class:`StoredFile` when done."""
        file_id = self._validate_id(file_id)
        try:
            return await self._get(file_id)
        except DepotError:
            raise
        except OSError as exc:
            raise self._failure("get", file_id, exc) from exc

    async def delete(self, file_or_id: StoredFile | str) -> None:
        """Delete a file. Deleting a file that does not exist is not an error."""
        file_id = self._file_id_of(file_or_id)
        try:
            await self._delete(file_id)
        except DepotError:
            raise
        except OSError as exc:
            raise self._failure("delete", file_id, exc) from exc

    async def exists(self, file_or_id: StoredFile | str) -> bool:
        file_id = self._file_id_of(file_or_id)
        try:
            return await self._exists(file_id)
        except DepotError:
            raise
        except OSError as exc:
            raise self._failure("exists", file_id, exc) from exc

    async def list(self) -> AsyncIterator[str]:
        """Iterate over the ids of every file in the storage (order unspecified)."""
        try:
            async for file_id in self._list():
                yield file_id
        except DepotError:
            raise
        except OSError as exc:
            raise self._failure("list", None, exc) from exc

    async def __aenter__(self) -> FileStorage:
        return self

    async def __aexit__(
        self,
        exc_type: builtins.type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>" if self.name else f"<{type(self).__name__}>"
