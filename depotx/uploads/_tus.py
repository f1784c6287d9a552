"""Resumable uploads: the tus 1.0.0 protocol as a mountable ASGI app.

https://tus.io/protocols/resumable-upload: a client creates an upload
(``POST``), sends its bytes in any number of ``PATCH`` requests, each starting
at the offset the server has *stored*, and after a network drop asks where to
resume (``HEAD``). :class:`TusApp` implements the core protocol and the
creation, creation-with-upload, creation-defer-length, termination, expiration
and checksum extensions.

How an upload is kept, so that it survives a restart and races stay harmless:

- Each upload is a folder of keys in a *staging* storage (any depotx storage:
  local by default, S3 or GridFS for several servers): ``<id>/info`` (length,
  metadata, target), and one file per ``PATCH``, ``<id>/chunks/<offset>``,
  named by the offset it starts at (20 digits, so names sort as numbers).
- A ``PATCH`` is stored with the staging storage's create-only ``create``: the
  chunk appears whole or not at all. The upload's offset is the end of its last
  stored chunk, so it is what is durably stored, never what was received.
- Two ``PATCH`` requests at one offset write the same chunk name: exactly one
  create wins, the other answers 409. A stale offset always names a chunk that
  exists, so a client can never write a hole or an overlap.
- A client that disconnects mid-``PATCH`` keeps what it sent: the chunk is
  stored with the bytes received, and the offset moves to its end. With
  ``Upload-Checksum`` the partial chunk cannot be verified and is dropped; a
  chunk whose checksum does not match is dropped too (460).
- When the last byte is stored, the chunks are streamed, in order, into
  ``create`` of the target storage under a file id chosen when the upload was
  created: finishing twice (a crash, two ``HEAD`` requests) creates it once.
  Only then is it a file; the chunks are deleted.

The responses that finish an upload (and ``HEAD`` of a finished one) carry the
stored file in ``Depot-File-Id``, ``Depot-File-Path`` (``"<storage>/<id>"``,
for :meth:`~depotx.StorageManager.get_file`) and, for public storages,
``Depot-File-Url``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import format_datetime
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive, Scope, Send

from .._content import Upload, prepare_upload
from .._exceptions import (
    ConfigurationError,
    DepotError,
    StoredFileExistsError,
    StoredFileNotFoundError,
)
from .._files import FileIntent, StoredFile
from .._manager import DepotManager, StorageManager
from .._serving import send_small
from .._units import too_large_message
from ..storages.base import FileStorage, utcnow
from ._staging import default_staging_path

__all__ = [
    "CHECKSUM_ALGORITHMS",
    "TUS_EXTENSIONS",
    "TUS_VERSION",
    "TusApp",
    "TusUpload",
]

logger = logging.getLogger("depotx.tus")

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = (
    "creation",
    "creation-with-upload",
    "creation-defer-length",
    "termination",
    "expiration",
    "checksum",
)
#: ``Upload-Checksum`` algorithms, by their tus names.
CHECKSUM_ALGORITHMS: Mapping[str, Callable[[], Any]] = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "md5": hashlib.md5,
}
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
#: The headers a browser client must be allowed to send and to read (CORS).
ALLOW_HEADERS = (
    "Authorization, Content-Type, Tus-Resumable, Upload-Length, Upload-Defer-Length, "
    "Upload-Metadata, Upload-Offset, Upload-Checksum, Upload-Concat, X-HTTP-Method-Override, "
    "X-Requested-With"
)
EXPOSE_HEADERS = (
    "Location, Tus-Resumable, Tus-Version, Tus-Extension, Tus-Max-Size, "
    "Tus-Checksum-Algorithm, Upload-Offset, Upload-Length, Upload-Defer-Length, "
    "Upload-Metadata, Upload-Expires, Depot-File-Id, Depot-File-Path, Depot-File-Url"
)
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
_DIGITS = re.compile(r"[0-9]{1,19}")
_METADATA_KEY = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_CHECKSUM_MISMATCH = 460
_MAX_METADATA = 8 * 1024


@dataclass(frozen=True)
class TusUpload:
    """One upload, as recorded when it was created."""

    #: The id in the upload's URL.
    upload_id: str
    #: Total size in bytes; ``None`` while deferred (``Upload-Defer-Length``).
    length: int | None
    #: ``Upload-Metadata``, decoded (values as UTF-8 text; ``None`` for a key alone).
    metadata: Mapping[str, str | None]
    #: The storage the file goes to, and the id it gets there.
    storage: str
    file_id: str
    created: datetime

    @property
    def filename(self) -> str | None:
        """The name the client gave (``filename``, or ``name`` as Uppy sends it)."""
        return self.metadata.get("filename") or self.metadata.get("name") or None

    @property
    def path(self) -> str:
        """``"<storage>/<file_id>"`` of the file once the upload is complete."""
        return f"{self.storage}/{self.file_id}"


@dataclass
class _State:
    upload: TusUpload
    raw_metadata: str
    offset: int
    #: The time the upload last received bytes (or was created): expiry counts from it.
    active: datetime
    done: bool


class _Answer(Exception):
    """Stop handling the request and answer ``status`` (with ``message`` as the body)."""

    def __init__(
        self, status: int, message: str = "", headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


class _ChecksumMismatch(Exception):
    """The ``PATCH`` body does not match its ``Upload-Checksum``: its chunk is dropped."""


class _TooLarge(Exception):
    """The ``PATCH`` body goes past the upload's length or the size limit."""


class TusApp:
    """An ASGI app serving tus 1.0.0 resumable uploads into a depotx storage.

    Mount it where clients upload (``Mount("/tus", TusApp())`` in Starlette,
    ``app.mount("/tus", TusApp())`` in FastAPI); the upload URLs are below it.

    :param manager: where storages are looked up (the global
        :data:`~depotx.DepotManager` by default).
    :param storage: the storage finished files go to (default: the manager's
        default storage, looked up at each upload so it follows ``set_default``).
    :param allowed_storages: names a client may pick with the ``storage``
        metadata key (``Upload-Metadata: storage <base64>``); without it, the
        client cannot choose.
    :param staging: where partial uploads are kept: a storage of the manager
        (by name) or a :class:`~depotx.FileStorage`. Default: local storage in
        :func:`default_staging_path` (``tus``). Use a shared one (S3, GridFS) when
        several servers take uploads.
    :param max_size: the largest upload in bytes (``Tus-Max-Size``): a larger
        ``Upload-Length`` is refused with 413, and so are bytes past it.
    :param expires_after: an unfinished upload idle this long expires
        (``Upload-Expires``): it answers 410 and :meth:`cleanup` deletes it.
    :param cors_origins: origins allowed to upload from a browser (``"*"``
        for any); their responses carry the CORS headers tus clients need.
    :param on_complete: ``await on_complete(upload)`` once the file is stored,
        to record :attr:`TusUpload.path` in the app's database. It runs once
        per upload; if it raises, the client gets 500 and the error is logged.
    """

    def __init__(
        self,
        manager: StorageManager = DepotManager,
        storage: str | None = None,
        *,
        allowed_storages: Collection[str] | None = None,
        staging: str | FileStorage | None = None,
        max_size: int | None = None,
        expires_after: timedelta = timedelta(days=1),
        cors_origins: Sequence[str] = (),
        on_complete: Callable[[TusUpload], Awaitable[None]] | None = None,
    ) -> None:
        if max_size is not None and max_size < 0:
            raise ConfigurationError("max_size must be >= 0")
        if not isinstance(expires_after, timedelta) or expires_after <= timedelta(0):
            raise ConfigurationError("expires_after must be a positive timedelta")
        self.manager = manager
        self.storage = storage
        self.allowed_storages = None if allowed_storages is None else frozenset(allowed_storages)
        self.max_size = max_size
        self.expires_after = expires_after
        self.cors_origins = tuple(cors_origins)
        self.on_complete = on_complete
        self._staging_option = staging
        self._staging: FileStorage | None = staging if isinstance(staging, FileStorage) else None
        #: Uploads a request of this process is writing or finishing: a second one
        #: for the same upload answers 409 at once instead of after its body.
        self._busy: set[str] = set()
        self._sweeper: asyncio.Task[int] | None = None
        self._last_sweep = 0.0

    # -- the staging storage -------------------------------------------------------

    @property
    def staging(self) -> FileStorage:
        """The storage partial uploads are kept in."""
        if self._staging is None:
            if isinstance(self._staging_option, str):
                self._staging = self.manager.get(self._staging_option)
            else:
                from ..storages.local import LocalFileStorage

                self._staging = LocalFileStorage(default_staging_path("tus"))
                self._staging.name = "tus-staging"
        return self._staging

    async def aclose(self) -> None:
        """Stop a running sweep and close a staging storage this app opened itself."""
        if self._sweeper is not None and not self._sweeper.done():
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._staging is not None and self._staging_option is None:
            await self._staging.aclose()

    # -- ASGI -------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan and websockets: nothing to do
        headers = _headers(scope)
        origin = headers.get("origin")
        cors = self._cors_headers(origin)
        method = scope["method"]
        override = headers.get("x-http-method-override")
        if override and method == "POST":
            method = override.strip().upper()
        upload_id = _route(scope)
        try:
            if method == "OPTIONS":
                if headers.get("access-control-request-method") and cors:
                    await _respond(send, 204, self._preflight_headers(cors))
                else:
                    await _respond(send, 204, {**self._discovery_headers(), **cors})
                return
            version = headers.get("tus-resumable")
            if version != TUS_VERSION:
                raise _Answer(
                    412,
                    f"this server speaks tus {TUS_VERSION}: send Tus-Resumable: {TUS_VERSION}",
                    {"Tus-Version": TUS_VERSION},
                )
            if upload_id is None:
                raise _Answer(404, "no such upload")
            if upload_id == "":
                if method != "POST":
                    raise _Answer(405, "create uploads with POST", {"Allow": "POST, OPTIONS"})
                answer = await self._create(scope, receive, headers)
            elif method == "HEAD":
                answer = await self._head(upload_id)
            elif method == "PATCH":
                answer = await self._patch(upload_id, receive, headers)
            elif method == "DELETE":
                answer = await self._terminate(upload_id)
            else:
                raise _Answer(405, f"{method} is not a tus method", {"Allow": _ALLOW})
        except _Answer as exc:
            answer = exc
        except ClientDisconnect:
            return  # nobody to answer; what was stored is stored
        except DepotError as exc:
            logger.error("depotx: tus %s failed: %s", method, exc)  # noqa: TRY400 - one line
            answer = _Answer(502, "the storage failed; retry later")
        answer.headers.update(cors)
        answer.headers["Tus-Resumable"] = TUS_VERSION
        body = b"" if method == "HEAD" else answer.message.encode()
        await _respond(send, answer.status, answer.headers, body)

    def _cors_headers(self, origin: str | None) -> dict[str, str]:
        if origin is None or not self.cors_origins:
            return {}
        if "*" in self.cors_origins:
            allowed = "*"
        elif origin in self.cors_origins:
            allowed = origin
        else:
            return {}
        headers = {"Access-Control-Allow-Origin": allowed, "Access-Control-Expose-Headers": ""}
        headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        if allowed != "*":
            headers["Vary"] = "Origin"
        return headers

    def _preflight_headers(self, cors: Mapping[str, str]) -> dict[str, str]:
        return {
            **cors,
            "Access-Control-Allow-Methods": _ALLOW,
            "Access-Control-Allow-Headers": ALLOW_HEADERS,
            "Access-Control-Max-Age": "86400",
        }

    def _discovery_headers(self) -> dict[str, str]:
        headers = {
            "Tus-Resumable": TUS_VERSION,
            "Tus-Version": TUS_VERSION,
            "Tus-Extension": ",".join(TUS_EXTENSIONS),
            "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS),
        }
        if self.max_size is not None:
            headers["Tus-Max-Size"] = str(self.max_size)
        return headers

    # -- creation ---------------------------------------------------------------------

    async def _create(self, scope: Scope, receive: Receive, headers: Mapping[str, str]) -> _Answer:
        length = _length_header(headers)
        if length is None and headers.get("upload-defer-length") != "1":
            raise _Answer(400, "send Upload-Length, or Upload-Defer-Length: 1")
        if length is not None and self.max_size is not None and length > self.max_size:
            raise _Answer(413, self._limit_message())
        raw_metadata = headers.get("upload-metadata", "")
        metadata = _parse_metadata(raw_metadata)
        storage_name = self._target_name(metadata)
        target = self.manager.get(storage_name)
        with_body = headers.get("content-type", "").split(";")[0].strip() == OFFSET_CONTENT_TYPE
        if not with_body and _declared_body(headers):
            raise _Answer(415, f"send the bytes of an upload as {OFFSET_CONTENT_TYPE}")
        upload = TusUpload(
            upload_id=uuid.uuid4().hex,
            length=length,
            metadata=metadata,
            storage=self.manager.resolve_alias(storage_name),
            file_id=target._new_id(),
            created=utcnow(),
        )
        record = {
            "length": upload.length,
            "metadata": raw_metadata,
            "storage": upload.storage,
            "file_id": upload.file_id,
            "created": upload.created.isoformat(),
        }
        await self.staging.create(
            json.dumps(record).encode(),
            "info.json",
            "application/json",
            file_id=f"{upload.upload_id}/info",
        )
        self._maybe_sweep()
        root = scope.get("root_path", "")
        location = f"{root.rstrip('/')}/{upload.upload_id}"
        answer = _Answer(201, "", {"Location": location})
        state = _State(upload, raw_metadata, 0, upload.created, False)
        if with_body:
            patched = await self._write(state, receive, headers)
            answer.headers.update(patched.headers)
        else:
            answer.headers["Upload-Expires"] = self._expires(state)
        return answer

    def _target_name(self, metadata: Mapping[str, str | None]) -> str:
        chosen = metadata.get("storage")
        if chosen is None:
            return self.storage or self.manager.get_default()
        if self.allowed_storages is None or chosen not in self.allowed_storages:
            raise _Answer(400, f"uploads cannot be sent to storage {chosen!r}")
        return chosen

    def _limit_message(self) -> str:
        assert self.max_size is not None
        return too_large_message(self.max_size)

    # -- core -------------------------------------------------------------------------

    async def _head(self, upload_id: str) -> _Answer:
        state = await self._state(upload_id)
        headers = {"Upload-Offset": str(state.offset), "Upload-Expires": self._expires(state)}
        if state.upload.length is None:
            headers["Upload-Defer-Length"] = "1"
        else:
            headers["Upload-Length"] = str(state.upload.length)
        if state.raw_metadata:
            headers["Upload-Metadata"] = state.raw_metadata
        if state.upload.length == state.offset and upload_id not in self._busy:
            # Complete: finish it if a crash (or a lost race) left it unfinished.
            headers.update(await self._finish(state))
        return _Answer(200, "", headers)

    async def _patch(self, upload_id: str, receive: Receive, headers: Mapping[str, str]) -> _Answer:
        if headers.get("content-type", "").split(";")[0].strip() != OFFSET_CONTENT_TYPE:
            raise _Answer(415, f"send PATCH bodies as {OFFSET_CONTENT_TYPE}")
        offset = headers.get("upload-offset", "")
        if not _DIGITS.fullmatch(offset):
            raise _Answer(400, "send Upload-Offset: the number of bytes already stored")
        if upload_id in self._busy:
            raise _Answer(409, "another request is writing this upload")
        self._busy.add(upload_id)
        try:
            state = await self._state(upload_id)
            if int(offset) != state.offset:
                raise _Answer(
                    409,
                    f"the upload is at offset {state.offset}, not {offset}",
                    {"Upload-Offset": str(state.offset)},
                )
            return await self._write(state, receive, headers)
        finally:
            self._busy.discard(upload_id)

    async def _write(self, state: _State, receive: Receive, headers: Mapping[str, str]) -> _Answer:
        """Store the request body as the upload's next chunk, then finish it if complete."""
        upload = state.upload
        upload_id = upload.upload_id
        length = _length_header(headers)
        if length is not None:
            state = await self._set_length(state, length)
        checksum = _checksum_header(headers)
        limit = state.upload.length if state.upload.length is not None else self.max_size
        room = None if limit is None else limit - state.offset
        body = _Body(receive, room, checksum)
        key = f"{upload_id}/chunks/{state.offset:020d}"
        try:
            first = await body.first()
            if first is not None:
                await self.staging.create(
                    body.chunks(first), "chunk", "application/octet-stream", file_id=key
                )
                state.offset += body.received
                state.active = utcnow()
        except StoredFileExistsError as exc:
            raise _Answer(409, "another request wrote this part of the upload first") from exc
        except _ChecksumMismatch as exc:
            message = "checksum mismatch: the chunk was dropped"
            raise _Answer(_CHECKSUM_MISMATCH, message) from exc
        except _TooLarge as exc:
            if state.upload.length is not None:
                message = "the body goes past the upload's Upload-Length: it was dropped"
            else:
                message = self._limit_message()
            raise _Answer(413, message) from exc
        if body.disconnected:
            raise ClientDisconnect()
        answer = _Answer(
            204, "", {"Upload-Offset": str(state.offset), "Upload-Expires": self._expires(state)}
        )
        if state.upload.length == state.offset:
            answer.headers.update(await self._finish(state))
        return answer

    async def _set_length(self, state: _State, length: int) -> _State:
        """Record a deferred ``Upload-Length`` (once: it never changes afterwards)."""
        if state.upload.length is not None:
            if length != state.upload.length:
                raise _Answer(400, "Upload-Length cannot change once it is set")
            return state
        if length < state.offset:
            raise _Answer(400, f"Upload-Length {length} is below the bytes stored ({state.offset})")
        if self.max_size is not None and length > self.max_size:
            raise _Answer(413, self._limit_message())
        key = f"{state.upload.upload_id}/length"
        try:
            await self.staging.create(str(length).encode(), "length", "text/plain", file_id=key)
        except StoredFileExistsError:
            if await self._read_length(state.upload.upload_id) != length:
                raise _Answer(400, "Upload-Length cannot change once it is set") from None
        state.upload = dataclasses.replace(state.upload, length=length)
        return state

    async def _terminate(self, upload_id: str) -> _Answer:
        await self._state(upload_id)  # 404 / 410 as for any request
        await self._remove(upload_id)
        return _Answer(204)

    # -- state ------------------------------------------------------------------------

    async def _state(self, upload_id: str) -> _State:
        """The upload as stored: its record, its offset, whether it is finished."""
        staging = self.staging
        try:
            async with await staging.get(f"{upload_id}/info") as stored:
                record = json.loads(await stored.read())
        except StoredFileNotFoundError:
            message = "no such upload (finished and cleaned up, or never created)"
            raise _Answer(404, message) from None
        length = record["length"]
        if length is None:
            length = await self._read_length(upload_id)
        created = datetime.fromisoformat(record["created"])
        upload = TusUpload(
            upload_id=upload_id,
            length=length,
            metadata=_parse_metadata(record["metadata"]),
            storage=record["storage"],
            file_id=record["file_id"],
            created=created,
        )
        done = await staging.exists(f"{upload_id}/done")
        offset = 0
        active = created
        last: str | None = None
        async for key in staging.list(f"{upload_id}/chunks/"):
            last = key
        if last is not None:
            async with await staging.get(last) as chunk:
                offset = int(last.rsplit("/", 1)[1]) + chunk.content_length
                active = max(active, chunk.last_modified)
        state = _State(upload, record["metadata"], offset, active, done)
        if done and upload.length is not None:
            state.offset = upload.length  # chunks are deleted once the file is stored
        elif self._expired(state):
            await self._remove(upload_id)
            raise _Answer(410, "this upload expired; start a new one")
        return state

    async def _read_length(self, upload_id: str) -> int | None:
        try:
            async with await self.staging.get(f"{upload_id}/length") as stored:
                return int(await stored.read())
        except StoredFileNotFoundError:
            return None

    def _expired(self, state: _State) -> bool:
        return utcnow() - state.active > self.expires_after

    def _expires(self, state: _State) -> str:
        return format_datetime(state.active + self.expires_after, usegmt=True)

    # -- finishing --------------------------------------------------------------------

    async def _finish(self, state: _State) -> dict[str, str]:
        """Store the complete upload as a file of its target storage; once.

        The file id was chosen at creation, so a second finish (after a crash, or
        by a concurrent ``HEAD``) finds it taken and only completes the record.
        """
        upload = state.upload
        if not state.done:
            target = self.manager.get(upload.storage)
            done_key = f"{upload.upload_id}/done"
            try:
                await self._store_file(target, upload)
            except StoredFileExistsError:
                pass  # an earlier finish stored it
            except DepotError:
                # A concurrent finish may have stored it and deleted the chunks under us.
                if not await self.staging.exists(done_key):
                    raise
            marker = json.dumps({"path": upload.path}).encode()
            try:
                await self.staging.create(marker, "done", "application/json", file_id=done_key)
            except StoredFileExistsError:
                pass  # finished by another request, which ran the hook
            else:
                await self._delete_chunks(upload.upload_id)
                if self.on_complete is not None:
                    try:
                        await self.on_complete(upload)
                    except Exception as exc:
                        logger.exception("depotx: tus on_complete failed for %s", upload.path)
                        raise _Answer(500, "the upload is stored but the app failed") from exc
            state.done = True
        headers = {"Depot-File-Id": upload.file_id, "Depot-File-Path": upload.path}
        with contextlib.suppress(ConfigurationError):  # private: its URLs must be signed
            headers["Depot-File-Url"] = self.manager.url_for(upload.path)
        return headers

    async def _store_file(self, target: FileStorage, upload: TusUpload) -> None:
        """Create the file from the chunks: inside the service when it can, else streamed.

        Its name is the client's; its type is detected from its first bytes and name,
        as for any upload. Between S3 storages of one service the chunks are put
        together by S3 itself (:meth:`FileStorage._compose`), so the bytes, sent to
        S3 once as chunks, do not pass through the app again.
        """
        prepared = await prepare_upload(self._assembled(upload), upload.filename)
        try:
            if await self._compose(target, upload, prepared):
                return
            content = FileIntent(prepared.chunks, prepared.filename, prepared.content_type)
            await target.create(content, file_id=upload.file_id)
        finally:
            await prepared.aclose()

    async def _compose(self, target: FileStorage, upload: TusUpload, prepared: Upload) -> bool:
        if type(target)._compose is FileStorage._compose:
            return False  # the target cannot: skip opening every chunk for nothing
        staging = self.staging
        pieces: list[StoredFile] = []
        try:
            async for key in staging.list(f"{upload.upload_id}/chunks/"):
                pieces.append(await staging.get(key))
            if sum(piece.content_length for piece in pieces) != upload.length:
                return False  # let the streamed path report what is missing
            with target._translating("create", upload.file_id):
                return await target._compose(
                    upload.file_id, staging, pieces, prepared, mode="create"
                )
        finally:
            for piece in pieces:
                await piece.aclose()

    async def _assembled(self, upload: TusUpload) -> AsyncIterator[bytes]:
        """The upload's bytes, chunk after chunk, checked to add up to its length."""
        staging = self.staging
        total = 0
        async for key in staging.list(f"{upload.upload_id}/chunks/"):
            start = int(key.rsplit("/", 1)[1])
            if start != total:
                raise DepotError(f"tus upload {upload.upload_id}: a chunk is missing at {total}")
            async with await staging.get(key) as chunk:
                async for data in chunk:
                    total += len(data)
                    yield data
        if total != upload.length:
            raise DepotError(
                f"tus upload {upload.upload_id}: {total} bytes stored of {upload.length}"
            )

    # -- removal and expiry -----------------------------------------------------------

    async def _delete_chunks(self, upload_id: str) -> None:
        keys = [key async for key in self.staging.list(f"{upload_id}/chunks/")]
        for key in keys:
            await self.staging.delete(key)

    async def _remove(self, upload_id: str) -> None:
        """Delete an upload: its record first, so no request sees a half-removed one."""
        for name in ("info", "length", "done"):
            await self.staging.delete(f"{upload_id}/{name}")
        await self._delete_chunks(upload_id)

    async def cleanup(self) -> int:
        """Delete expired unfinished uploads and old records; return how many.

        Unfinished uploads idle longer than ``expires_after`` go, and so do the
        records of finished ones (the files stay), and chunks a terminated upload
        left behind. Safe to run while uploads are in progress, from any number
        of processes; the app also runs it now and then on its own.
        """
        staging = self.staging
        removed = 0
        now = utcnow()
        folders = [key async for key in staging.list(delimiter="/") if key.endswith("/")]
        for folder in folders:
            upload_id = folder[:-1]
            if not _UPLOAD_ID.fullmatch(upload_id):
                continue
            try:
                await self._state(upload_id)
            except _Answer as exc:
                if exc.status == 410:
                    removed += 1
                    continue
                if exc.status == 404 and await self._orphan_expired(upload_id, now):
                    await self._remove(upload_id)
                    removed += 1
                continue
            if await staging.exists(f"{upload_id}/done"):
                async with await staging.get(f"{upload_id}/done") as marker:
                    finished = marker.last_modified
                if now - finished > self.expires_after:
                    await self._remove(upload_id)
                    removed += 1
        return removed

    async def _orphan_expired(self, upload_id: str, now: datetime) -> bool:
        """Whether the chunks of an upload without a record are old enough to sweep."""
        async for key in self.staging.list(f"{upload_id}/"):
            try:
                async with await self.staging.get(key) as stored:
                    if now - stored.last_modified <= self.expires_after:
                        return False
            except StoredFileNotFoundError:
                continue
        return True

    def _maybe_sweep(self) -> None:
        """Start :meth:`cleanup` in the background, at most once an hour."""
        loop = asyncio.get_running_loop()
        if self._sweeper is not None and not self._sweeper.done():
            return
        if self._last_sweep and loop.time() - self._last_sweep < 3600:
            return
        self._last_sweep = loop.time()
        self._sweeper = loop.create_task(self.cleanup())
        self._sweeper.add_done_callback(_log_sweep)


def _log_sweep(task: asyncio.Task[int]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        logger.warning("depotx: tus cleanup failed: %s", exc)
    elif task.result():
        logger.info("depotx: tus cleanup removed %d expired upload(s)", task.result())


_ALLOW = "POST, HEAD, PATCH, DELETE, OPTIONS"


class _Body:
    """A ``PATCH`` body as chunks, checked against the room left and a checksum."""

    def __init__(
        self, receive: Receive, room: int | None, checksum: tuple[str, bytes] | None
    ) -> None:
        self._receive = receive
        self._room = room
        self._expected = None if checksum is None else checksum[1]
        self._hash = None if checksum is None else CHECKSUM_ALGORITHMS[checksum[0]]()
        self._ended = False
        self.received = 0
        self.disconnected = False

    async def _next(self) -> bytes | None:
        """The next piece of the body; ``None`` at its end, or at a disconnect kept."""
        while not self._ended:
            message: Message = await self._receive()
            if message["type"] == "http.disconnect":
                self._ended = True
                self.disconnected = True
                if self._hash is not None:
                    raise ClientDisconnect()  # unverifiable: drop the partial chunk
                return None
            data: bytes = message.get("body", b"")
            if not message.get("more_body", False):
                self._ended = True
            if data:
                if self._room is not None and self.received + len(data) > self._room:
                    raise _TooLarge()
                self.received += len(data)
                if self._hash is not None:
                    self._hash.update(data)
                return data
        if self._hash is not None and not self.disconnected:
            assert self._expected is not None
            if not hmac.compare_digest(self._hash.digest(), self._expected):
                raise _ChecksumMismatch()
        return None

    async def first(self) -> bytes | None:
        """The first non-empty piece, before anything is stored; ``None`` for no bytes."""
        return await self._next()

    async def chunks(self, first: bytes) -> AsyncIterator[bytes]:
        yield first
        while (data := await self._next()) is not None:
            yield data


def _headers(scope: Scope) -> dict[str, str]:
    return {key.decode("latin-1").lower(): val.decode("latin-1") for key, val in scope["headers"]}


def _route(scope: Scope) -> str | None:
    """``""`` for the creation URL, the upload id below it, ``None`` for anything else."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    path = path.strip("/")
    if path == "":
        return ""
    return path if _UPLOAD_ID.fullmatch(path) else None


def _length_header(headers: Mapping[str, str]) -> int | None:
    value = headers.get("upload-length")
    if value is None:
        return None
    if not _DIGITS.fullmatch(value.strip()):
        raise _Answer(400, "Upload-Length must be a number of bytes")
    return int(value)


def _declared_body(headers: Mapping[str, str]) -> bool:
    length = headers.get("content-length", "0").strip()
    return "transfer-encoding" in headers or (length.isdigit() and int(length) > 0)


def _checksum_header(headers: Mapping[str, str]) -> tuple[str, bytes] | None:
    value = headers.get("upload-checksum")
    if value is None:
        return None
    algorithm, _, encoded = value.strip().partition(" ")
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise _Answer(
            400,
            f"unsupported checksum algorithm {algorithm!r}: use one of "
            + ", ".join(CHECKSUM_ALGORITHMS),
        )
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error:
        raise _Answer(400, "Upload-Checksum: the digest must be base64") from None
    if len(digest) != CHECKSUM_ALGORITHMS[algorithm]().digest_size:
        raise _Answer(400, f"Upload-Checksum: not a {algorithm} digest")
    return algorithm, digest


def _parse_metadata(raw: str) -> dict[str, str | None]:
    """``Upload-Metadata``: comma-separated ``key base64value`` pairs (the value optional)."""
    if len(raw) > _MAX_METADATA:
        raise _Answer(400, f"Upload-Metadata is longer than {_MAX_METADATA} bytes")
    metadata: dict[str, str | None] = {}
    for pair in raw.split(","):
        pair = pair.strip()
        if not pair:
            continue
        key, _, encoded = pair.partition(" ")
        if not _METADATA_KEY.fullmatch(key) or key in metadata:
            raise _Answer(400, f"Upload-Metadata: bad or repeated key {key!r}")
        encoded = encoded.strip()
        if not encoded:
            metadata[key] = None
            continue
        try:
            metadata[key] = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise _Answer(400, f"Upload-Metadata: the value of {key!r} is not base64") from None
    return metadata


async def _respond(send: Send, status: int, headers: Mapping[str, str], body: bytes = b"") -> None:
    # Every answer is about a moment of an upload in progress: none may be cached.
    raw = [(key.lower().encode("latin-1"), val.encode("latin-1")) for key, val in headers.items()]
    await send_small(send, status, body, headers=raw)
