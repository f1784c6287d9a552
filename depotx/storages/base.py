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
import asyncio
import builtins
import contextlib
import math
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from .._checksums import DEFAULT_ALGORITHM
from .._content import Upload, prepare_upload
from .._exceptions import BackendError, ConfigurationError, DepotError, StoredFileNotFoundError
from .._files import StoredFile
from .._ids import MAX_FILE_ID_BYTES, new_file_id, validate_file_id

__all__ = [
    "DEFAULT_TEMP_MAX_AGE",
    "FileStorage",
    "WriteMode",
    "commit_or_cancel",
    "fold_listing",
    "staged_expiry",
    "utcnow",
]

if TYPE_CHECKING:
    from .._manager import StorageManager
    from ..uploads._direct import DirectTarget, UploadGrant, UploadTicket

_T = TypeVar("_T")

#: How a write treats an id that exists (or not) at the moment it commits:
#: ``"create"`` needs it absent (else :class:`~depotx.StoredFileExistsError`),
#: ``"replace"`` needs it present (else :class:`~depotx.StoredFileNotFoundError`:
#: a delete that lands first wins), ``"put"`` takes either.
WriteMode = Literal["create", "replace", "put"]

#: Temporaries of writes older than this are a crashed writer's and may be swept.
DEFAULT_TEMP_MAX_AGE = timedelta(days=1)


def staged_expiry(name: str) -> float:
    """The expiry written at the start of a name (``<expiry>-<random>``), in Unix seconds;
    never-expiring if unreadable. Staged direct uploads and local storage's pathsend
    links are named so, and every cleanup reads them here."""
    stamp = name.split("-", 1)[0]
    return float(stamp) if stamp.isdigit() else math.inf


def utcnow() -> datetime:
    """Now, timezone-aware, truncated to whole seconds as HTTP dates and filedepot are."""
    return datetime.now(timezone.utc).replace(microsecond=0)


async def fold_listing(
    ids: AsyncIterable[str] | Iterable[str],
    prefix: str,
    start_after: str | None,
    delimiter: str | None,
) -> AsyncIterator[str]:
    """Apply ``list()``'s rules to ids already in code point order, all under ``prefix``.

    One implementation for every backend: skip what is not after ``start_after``
    (and, when it names a folder, everything in that folder, so a listing
    resumed after a folder does not yield it again); with a delimiter, yield
    each folder once in place of its ids.
    """
    skip_folder = start_after if start_after is not None and start_after.endswith("/") else None
    last_folder: str | None = None
    async for file_id in _aiter(ids):
        if start_after is not None and file_id <= start_after:
            continue
        if skip_folder is not None and file_id.startswith(skip_folder):
            continue
        if delimiter is not None:
            cut = file_id.find(delimiter, len(prefix))
            if cut >= 0:
                folder = file_id[: cut + 1]
                if folder != last_folder:
                    last_folder = folder
                    yield folder
                continue
        yield file_id


async def _aiter(ids: AsyncIterable[str] | Iterable[str]) -> AsyncIterator[str]:
    if isinstance(ids, AsyncIterable):
        async for file_id in ids:
            yield file_id
    else:
        for file_id in ids:
            yield file_id


async def commit_or_cancel(step: Awaitable[_T]) -> _T:
    """Run the step that makes a write visible so it is never both cancelled and done.

    Cancelling a task cannot stop a thread renaming files or a request the server
    already acted on. So the step runs to its end whatever happens to the caller:
    if it committed, the call returns normally (the cancellation came too late for
    it) and the cancellation is requested again for the caller's next ``await``;
    if it failed, the caller sees the cancellation it asked for. A caller
    therefore never gets ``CancelledError`` for a write that took place, and a
    task that was cancelled still stops.
    """
    task = asyncio.ensure_future(step)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        while not task.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([task])
        if task.cancelled() or task.exception() is not None:
            raise
        # Committed: this call returns normally, and the cancellation is delivered
        # again at the caller's next await, so a loop of writes (or a timeout around
        # one) still stops instead of losing the request.
        caller = asyncio.current_task()
        if caller is not None:
            uncancel = getattr(caller, "uncancel", None)  # Python 3.11+
            if uncancel is not None:
                uncancel()
            asyncio.get_running_loop().call_soon(caller.cancel)
        return task.result()


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
    #: Whether every request for this storage's files must be signed (``url_for(...,
    #: expires_in=...)``) or allowed by an ``authorize`` hook; set with the
    #: ``depot.private`` option, accepted by every backend.
    private: bool = False
    #: ``authorize(scope, storage_name, file_id) -> bool`` (sync or async) deciding
    #: for unsigned requests; ``depot.authorize = "myapp.auth:can_read"``.
    authorize: Callable[..., Any] | None = None
    #: Whether a redirect to the public URL needs the file opened first: its URL
    #: then depends on the file's metadata (S3's presigned URLs carry the
    #: disposition rule), so ``StoredFile.public_url`` is used, not :meth:`public_url`.
    redirect_after_open: bool = False
    #: Leftovers of writes older than this are swept by :meth:`cleanup`.
    temp_max_age: timedelta = DEFAULT_TEMP_MAX_AGE
    #: The hash of ``StoredFile.checksum``: ``sha256`` (bare hex), or ``blake3``
    #: (``blake3:<hex>``); set with the ``depot.checksum`` option of every backend.
    checksum_algorithm: str = DEFAULT_ALGORITHM
    #: The manager the storage was added to (its secret signs upload tickets).
    _manager: StorageManager | None = None

    # -- primitives for backends -----------------------------------------------

    def _new_id(self) -> str:
        """A fresh file id; uuid4 strings unless the backend has its own format."""
        return new_file_id()

    @abc.abstractmethod
    async def _get(self, file_id: str) -> StoredFile:
        """Return the file, its content pinned to the metadata's version.

        Raise :class:`~depotx.StoredFileNotFoundError` when there is no such file.
        The returned file's reads must yield bytes of the version its metadata
        describes, or raise :class:`~depotx.StoredFileChangedError` before the
        first byte of another one.
        """

    async def _head(self, file_id: str) -> StoredFile:
        """:meth:`_get` for when the bytes will probably not be read.

        Backends whose ``_get`` fetches content with the metadata (S3's one-request
        ``GetObject``) override it with a metadata-only request.
        """
        return await self._get(file_id)

    #: Whether ``_get`` starts sending the content: callers that know they will not
    #: read it (HEAD, conditional and range requests) then pass ``metadata_only``.
    reads_with_metadata: bool = False

    @abc.abstractmethod
    async def _store(self, file_id: str, upload: Upload, *, mode: WriteMode) -> None:
        """Write ``upload`` under ``file_id``, visible to readers only once complete.

        ``mode`` says what must hold when the write commits (see :data:`WriteMode`):
        ``"create"`` raises :class:`~depotx.StoredFileExistsError` if the id is
        taken, ``"replace"`` raises :class:`~depotx.StoredFileNotFoundError` if
        the id is gone (deleted while the content was uploading), ``"put"``
        takes either. Checked atomically with the commit where the service can.

        Until the commit the old version (if any) stays readable; a failure or
        a cancellation before it leaves the old version intact, nothing
        half-written, and removes only what this call wrote. Run the commit
        itself through :func:`commit_or_cancel`.
        """

    @abc.abstractmethod
    async def _delete(self, file_id: str) -> None:
        """Delete the file; a missing file is not an error.

        Must not fail because a write to the same id is in flight: that write
        either committed before (and is deleted) or fails with not-found.
        """

    @abc.abstractmethod
    async def _exists(self, file_id: str) -> bool:
        """Whether ``file_id`` names a complete, readable file."""

    @abc.abstractmethod
    def _list(
        self, prefix: str, start_after: str | None, delimiter: str | None
    ) -> AsyncIterator[str]:
        """Yield the ids of the complete files under ``prefix``, in code point order.

        Every id starting with ``prefix`` and greater than ``start_after`` (when
        given), each once, never a temporary of a write, in lexicographic order of
        code points (UTF-8 byte order), streamed. With ``delimiter`` (``"/"``), an
        id with a ``/`` after the prefix is folded into its "folder", the prefix up
        to and including that ``/``, yielded once in its place in the order.
        """

    async def _cleanup(self, older_than: timedelta) -> int:
        """Remove what crashed writes left behind that is older than ``older_than``.

        Return how many leftovers were removed. Storages whose writes leave
        nothing behind keep this default.
        """
        return 0

    def _translate_error(
        self, exc: Exception, action: str, file_id: str | None
    ) -> DepotError | None:
        """Map a backend failure onto the error tree; ``None`` lets ``exc`` through as is.

        The one place a backend says what its client library's errors mean: every
        public method (and a backend's own reads) go through :meth:`_translating`,
        which calls this. The default wraps ``OSError`` in :class:`~depotx.BackendError`;
        a backend adds its library's exceptions (botocore, pymongo, ...).
        """
        if isinstance(exc, OSError):
            return self._failure(action, file_id, exc)
        return None

    @contextlib.contextmanager
    def _translating(
        self, action: str, file_id: str | None, upload: Upload | None = None
    ) -> Iterator[None]:
        """Re-raise failures inside as depotx errors, cause chained.

        depotx's own errors pass unchanged, and so does anything the caller's
        content raised (a client that disconnected mid-upload is not the
        storage's failure).
        """
        try:
            yield
        except Exception as exc:
            error = self._translated(exc, action, file_id, upload)
            if error is exc:
                raise
            raise error from exc

    def _translated(
        self, exc: Exception, action: str, file_id: str | None, upload: Upload | None = None
    ) -> Exception:
        """What to raise for ``exc``: itself, or the depotx error it stands for."""
        if isinstance(exc, DepotError) or (upload is not None and exc is upload.source_error):
            return exc
        error = self._translate_error(exc, action, file_id)
        return exc if error is None else error

    def _validate_id(self, file_id: object) -> str:
        """Return ``file_id`` if this storage could hold it, else raise ``InvalidFileIdError``.

        Every public method goes through here before any I/O. A backend with an id
        format of its own (GridFS: ObjectIds) refines it, once, for all of them.
        """
        return validate_file_id(file_id)

    @property
    def max_id_bytes(self) -> int:
        """The longest id this storage holds, in UTF-8 bytes (S3: less its key prefix)."""
        return MAX_FILE_ID_BYTES

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

    #: Set ``True`` in the body of a storage class whose files never have a URL of
    #: their own (local, memory, GridFS). Read from that class only: a subclass
    #: may add URLs (a CDN in front), and is asked again.
    _without_urls: bool = False

    def _may_redirect(self) -> bool:
        """Whether a request for a file of this storage may be answered by a redirect.

        The middleware asks this once a request: it then looks for a public or
        temporary URL, and at ``StoredFile.public_url``. A storage class that set
        ``_without_urls`` (not one of its subclasses) is served without looking.
        """
        return not type(self).__dict__.get("_without_urls", False)

    def temporary_url(
        self, stored: StoredFile, *, expires_in: int, download: bool, filename: str | None
    ) -> str | None:
        """A URL valid ``expires_in`` seconds serving ``stored`` directly, or ``None``.

        Used to redirect a signed or private request without giving away a lasting
        URL: an object store presigns one (S3), with the disposition rule and the
        request's overrides; storages that cannot keep the default and are proxied.
        """
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
        file_id: str | None = None,
    ) -> str:
        """Store ``content`` as a new file and return its id.

        ``content`` may be bytes, a binary or async file, an async iterator of
        bytes, an ``UploadFile``, a :class:`~depotx.FileIntent` or a
        :class:`~depotx.StoredFile` (a copy from any storage). It is streamed;
        nothing becomes visible unless the whole content was written.

        ``file_id`` chooses the id, a key such as ``"uploads/2026/report.pdf"``
        (see :mod:`depotx._ids` for the rules); otherwise one is generated. The
        create is create-only and atomic: if the id is taken,
        :class:`~depotx.StoredFileExistsError` is raised and the existing file is
        left alone; of concurrent creates of one id exactly one wins.
        """
        file_id = self._new_id() if file_id is None else self._validate_id(file_id)
        upload = await prepare_upload(content, filename, content_type, metadata)
        await self._write(file_id, upload, mode="create")
        return file_id

    async def put(
        self,
        file_id: str,
        content: Any,
        filename: str | None = None,
        content_type: str | None = None,
        *,
        metadata: Mapping[str, str] | None = None,
    ) -> str:
        """Store ``content`` at ``file_id``: create it if absent, else replace it.

        The "write at this path" call. An existing file is replaced with the
        guarantees of :meth:`replace` (readers see one version; a failure keeps
        the old one), except that an omitted ``filename`` is the new content's
        own, not the old file's. Returns ``file_id``.
        """
        file_id = self._validate_id(file_id)
        upload = await prepare_upload(content, filename, content_type, metadata)
        await self._write(file_id, upload, mode="put")
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

        A missing id raises :class:`~depotx.StoredFileNotFoundError`, and so does
        an id deleted while the new content was uploading: the delete wins, the
        file does not come back. The exception is filedepot's backup pattern
        ``backup.replace(stored, stored)``: a ``StoredFile`` from another
        storage is stored here under its own id, whether or not it exists.
        """
        file_id = self._file_id_of(file_or_id)
        old: StoredFile | None
        mode: WriteMode = "replace"
        try:
            old = await self.get(file_id, metadata_only=True)
        except StoredFileNotFoundError:
            foreign = isinstance(file_or_id, StoredFile) and file_or_id.storage is not self
            if not foreign:
                raise
            old = None
            mode = "put"
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
        await self._write(file_id, upload, mode=mode)
        return file_id

    async def _write_copy(
        self,
        file_id: str,
        stored: StoredFile,
        *,
        mode: WriteMode,
        chunks: AsyncIterator[bytes] | None = None,
    ) -> None:
        """Store ``stored`` under ``file_id`` as it is: name, type, metadata and date kept.

        What a migration and a mirror write: a copy that is the same file, not a new
        upload of its bytes (``chunks`` replaces its content stream, to tee it).
        """
        upload = await prepare_upload(
            stored.iter_bytes() if chunks is None else chunks,
            stored.filename,
            stored.content_type,
            dict(stored.metadata),
        )
        upload.last_modified = stored.last_modified
        await self._write(file_id, upload, mode=mode)

    async def _copy_within(
        self, source: FileStorage, stored: StoredFile, file_id: str, *, mode: WriteMode
    ) -> bool:
        """Copy ``stored`` from ``source`` inside the service, when both are its storages.

        ``True`` when done (the bytes never left the service: S3's ``CopyObject``);
        ``False`` when the bytes must be streamed through the app. The copy keeps
        what :meth:`_write_copy` keeps, obeys ``mode``, and fails with
        :class:`~depotx.StoredFileChangedError` if the source changed since it was opened.
        """
        return False

    async def _compose(
        self,
        file_id: str,
        source: FileStorage,
        pieces: Sequence[StoredFile],
        upload: Upload,
        *,
        mode: WriteMode,
    ) -> bool:
        """Store the concatenation of ``pieces`` (files of ``source``) inside the service.

        ``True`` when done without the bytes passing through the app (S3: a multipart
        upload made of ``UploadPartCopy`` parts); ``False`` when they must be streamed.
        ``upload`` gives the name, type and metadata (its chunks are not read). The
        write obeys ``mode``, and appears whole or not at all. A resumable upload's
        chunks become its file this way.
        """
        return False

    # -- direct uploads (see depotx.uploads._direct) -------------------------------------

    def _presigns_uploads(self) -> bool:
        """Whether :meth:`_open_direct_upload` sends the browser to the service itself.

        ``False`` (the default) means through the app's ``/.upload`` route; a storage
        that presigns says ``True`` when it has what it signs with.
        """
        return False

    async def _open_direct_upload(
        self, grant: UploadGrant
    ) -> tuple[UploadGrant, DirectTarget | None]:
        """Prepare where the browser sends a direct upload; ``None``: through the app.

        A storage that can presign (S3) returns the staging key it chose (in the
        grant) and the presigned target; the default stages through the
        middleware into the manager's upload staging storage.
        """
        return grant, None

    async def _finalize_direct_upload(self, grant: UploadGrant) -> str:
        """Make a file of the staged upload ``grant`` names; return its id."""
        from ..uploads import _direct

        return await _direct.finalize_staged(self, grant)

    async def _presign_upload_parts(self, grant: UploadGrant, numbers: list[int]) -> dict[int, str]:
        raise ConfigurationError(
            f"{self._label()}: direct uploads go through the app, not in parts"
        )

    async def _abort_direct_upload(self, grant: UploadGrant) -> None:
        assert self._manager is not None
        await self._manager.upload_staging.delete(grant.staged)

    def _bind(self, resolve: Callable[[str], FileStorage]) -> None:  # noqa: B027 - optional hook
        """Called by the manager when the storage is added; ``resolve`` finds others by name.

        A storage made of other storages (a mirror) looks them up here, once.
        """

    async def _write(self, file_id: str, upload: Upload, *, mode: WriteMode) -> None:
        try:
            with self._translating("replace" if mode == "replace" else "create", file_id, upload):
                await self._store(file_id, upload, mode=mode)
        finally:
            await upload.aclose()

    async def get(self, file_id: str, *, metadata_only: bool = False) -> StoredFile:
        """Open the file ``file_id``; close the returned :class:`StoredFile` when done.

        ``metadata_only=True`` says the bytes will probably not be read (an HTTP
        ``HEAD``, a conditional request, a redirect): an object store then asks
        for the metadata alone (S3 ``HeadObject``) instead of starting to send the
        content with it. Reading such a file still works, with one more request.
        """
        file_id = self._validate_id(file_id)
        # The serving hot path: a plain try costs nothing, a context manager ~1.5 µs.
        try:
            if metadata_only:
                return await self._head(file_id)
            return await self._get(file_id)
        except Exception as exc:
            error = self._translated(exc, "get", file_id)
            if error is exc:
                raise
            raise error from exc

    async def delete(self, file_or_id: StoredFile | str) -> None:
        """Delete a file. Deleting a file that does not exist is not an error."""
        file_id = self._file_id_of(file_or_id)
        with self._translating("delete", file_id):
            await self._delete(file_id)

    async def exists(self, file_or_id: StoredFile | str) -> bool:
        """Whether the id names a stored file."""
        file_id = self._file_id_of(file_or_id)
        with self._translating("exists", file_id):
            return await self._exists(file_id)

    async def list(
        self, prefix: str = "", *, start_after: str | None = None, delimiter: str | None = None
    ) -> AsyncIterator[str]:
        """Iterate over the ids of the files under ``prefix``, in code point order.

        Streamed, so it suits millions of files; ``start_after=<the last id seen>``
        resumes a listing where it stopped. ``delimiter="/"`` yields each "folder"
        below the prefix once (``"uploads/2026/"``, always ending with ``/``)
        instead of every id in it, for file-browser pages.
        """
        if not isinstance(prefix, str) or (
            start_after is not None and not isinstance(start_after, str)
        ):
            raise TypeError("prefix and start_after are strings")
        if delimiter not in (None, "/"):
            raise ValueError(f"the only delimiter is '/', not {delimiter!r}")
        with self._translating("list", None):
            async for file_id in self._list(prefix, start_after, delimiter):
                yield file_id

    async def cleanup(self, older_than: timedelta | float | None = None) -> int:
        """Remove what crashed or killed writers left behind; return how many leftovers.

        A process killed mid-upload cannot clean up after itself: its temporary
        data stays, invisible to ``list`` and ``get``. This removes such leftovers
        older than ``older_than`` (a ``timedelta`` or seconds; default: the
        storage's ``temp_max_age`` if it has one, else one day). Younger ones may
        belong to uploads still running and are kept. Safe to run while the
        storage is in use, from any number of processes.
        """
        if older_than is None:
            older_than = self.temp_max_age
        if not isinstance(older_than, timedelta):
            older_than = timedelta(seconds=float(older_than))
        if older_than < timedelta(0):
            raise ValueError("older_than must not be negative")
        with self._translating("cleanup", None):
            removed = await self._cleanup(older_than)
        from ..uploads import _direct

        return removed + await _direct.sweep_staged(self)

    async def prepare_upload(
        self,
        filename: str,
        content_type: str | None = None,
        *,
        max_size: int,
        expires_in: timedelta | float = timedelta(minutes=15),
        metadata: Mapping[str, str] | None = None,
        size: int | None = None,
    ) -> UploadTicket:
        """A ticket for a browser to upload one file directly (see "Direct uploads").

        S3 presigns a ``POST`` to the bucket (a policy limited to ``max_size``
        bytes and ``content_type``), or a multipart upload when ``size`` is large;
        other storages take the same form at the middleware. The upload lands in
        a staging place and becomes a file only through :meth:`finalize_upload`.
        The ticket's token is signed with the manager's secret and expires after
        ``expires_in`` (15 minutes by default; finalize before then).
        """
        from ..uploads import _direct

        return await _direct.prepare(
            self,
            filename,
            content_type,
            max_size=max_size,
            expires_in=expires_in,
            metadata=metadata,
            size=size,
        )

    async def finalize_upload(self, token: str) -> str:
        """Make a file of a direct upload; return its id (the same id every time).

        Checks the token (:class:`~depotx.UploadTokenError` if tampered with,
        expired or for another storage), that something was uploaded and is at
        most ``max_size`` bytes (else it is deleted and
        :class:`~depotx.ValidationError` raised), detects its type from its first
        bytes (a claim of ``image/png`` for HTML gets ``text/html``), records its
        checksum and filedepot's metadata, and removes the staged upload.
        """
        from ..uploads import _direct

        return await _direct.finalize(self, token)

    async def presign_upload_parts(self, token: str, part_numbers: Iterable[int]) -> dict[int, str]:
        """Presigned ``PUT`` URLs for parts of a multipart direct upload (S3), by number."""
        from ..uploads import _direct

        return await _direct.presign_parts(self, token, part_numbers)

    async def abort_upload(self, token: str) -> None:
        """Give up a direct upload: its staged bytes or parts are deleted now."""
        from ..uploads import _direct

        await _direct.abort(self, token)

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
