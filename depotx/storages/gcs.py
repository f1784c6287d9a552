"""Google Cloud Storage, over its JSON and XML APIs with aiohttp (extra ``gcs``).

Each file is an object ``<prefix><file id>`` in one bucket, with filedepot's
metadata (``x-depot-filename`` percent-encoded, ``x-depot-content-type``,
``x-depot-modified`` as naive UTC) so filedepot's ``GCSStorage`` reads what
depotx writes and the other way round; depotx adds ``x-depotx-checksum`` and
``x-depotx-metadata`` (the custom metadata, ASCII JSON). The object's
``contentType`` and ``contentDisposition`` (the active-content rule) make the
bucket's own URLs serve it safely.

The requests are ours; ``gcloud-aio-auth`` (installed with
``gcloud-aio-storage``, the peer the benchmarks compare with) provides the
access tokens: Application Default Credentials, a service-account file or its
JSON. ``gcloud-aio-storage`` itself uploads only a sized, synchronous stream in
one request and hides a download's headers, so a streamed resumable upload and a
read pinned to the generation it opened cannot be built on it.

How the guarantees hold:

- **Writes appear whole or not at all.** Content that fits one chunk is one
  multipart upload; larger content a resumable upload, sent chunk by chunk and
  resumed from what GCS says it has stored (never from what was sent). The
  object exists only once the last chunk is in; a failed or cancelled upload
  cancels its session.
- **Create-only and replace-what-exists are preconditions of the write**:
  ``ifGenerationMatch=0`` for a create (of concurrent creates exactly one wins),
  ``ifGenerationMatch=<the generation seen>`` for a replace (a delete that
  landed first wins: not found).
- **Reads are pinned.** ``get`` is one XML API ``GET`` of the first MiB: its
  headers carry the metadata and the generation. Every other read asks for that
  ``generation``: a replace in between (the bucket keeps no other generation
  without versioning) raises :class:`~depotx.StoredFileChangedError` before a
  byte of the other version.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import io
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Collection, Mapping
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, unquote, urlsplit

from .. import _http
from .._checksums import is_content_checksum, new_hasher
from .._content import Upload
from .._detect import SNIFF_SIZE, detect_content_type
from .._exceptions import (
    BackendError,
    ConfigurationError,
    DepotError,
    InvalidFileIdError,
    MissingDependencyError,
    StoredFileChangedError,
    StoredFileExistsError,
    StoredFileNotFoundError,
    ValidationError,
)
from .._files import StoredFile
from .._formats import (
    CHECKSUM_KEY,
    DEFAULT_CONTENT_TYPE,
    DEFAULT_FILENAME,
    FILENAME_KEY,
    METADATA_KEY,
    MODIFIED_KEY,
    dump_custom_metadata,
    format_filedepot_time,
    load_custom_metadata,
    parse_filedepot_time,
    quote_filename,
)
from .._ids import is_valid_file_id
from .._units import too_large_message
from ._parts import PartReader, large_bodies, no_chunks
from .base import (
    FileStorage,
    WriteMode,
    commit_or_cancel,
    fold_listing,
    staged_expiry,
    utcnow,
)

try:
    import aiohttp
    from gcloud.aio.auth import Token
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError("gcs", "gcloud-aio-storage") from exc

if TYPE_CHECKING:
    from ..uploads._direct import DirectTarget, UploadGrant

__all__ = ["GCSStorage", "GCSStoredFile", "sign_url_v4"]

logger = logging.getLogger("depotx.gcs")

KiB = 1024
MiB = 1024 * KiB
#: Resumable chunks must be multiples of this (but the last).
CHUNK_GRANULARITY = 256 * KiB
DEFAULT_CHUNK_SIZE = 8 * MiB
#: GCS's limit on object names, in UTF-8 bytes.
MAX_NAME_BYTES = 1024
#: GCS's limit on custom metadata: keys plus values, all together.
METADATA_LIMIT = 8 * KiB
#: V4 signatures live at most seven days.
MAX_PRESIGNED_EXPIRES = 7 * 24 * 3600
#: What ``get`` fetches with the metadata: a file this small is read in one request.
FIRST_READ = 1 * MiB
#: Names asked for per listing request (GCS's maximum).
PAGE_SIZE = 1000
PUBLIC_HOST = "https://storage.googleapis.com"
SCOPES = ["https://www.googleapis.com/auth/devstorage.read_write"]

#: filedepot's GCS storage also records the type in the metadata (its reads use it).
CONTENT_TYPE_KEY = "x-depot-content-type"
#: Where direct uploads land before finalize: not a valid file id (a backslash), so
#: ``list()`` never shows them, and one prefix for a lifecycle rule.
DIRECT_STAGING = "depotx-upload\\"
_POLICIES = ("private", "public-read")
_COMMIT_ATTEMPTS = 5
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class GCSError(Exception):
    """An answer of the service that means failure (translated to :class:`BackendError`)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if message else f"HTTP {status}")
        self.status = status


class GCSStoredFile(StoredFile):
    """An object: its first MiB fetched with the metadata; reads pinned to its generation."""

    #: Each range is one request: more than this, and the middleware sends the whole file.
    max_ranges = 8

    def __init__(
        self,
        file_id: str,
        *,
        backend: GCSStorage,
        generation: str | None,
        first: bytes | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(file_id, storage=backend, **kwargs)
        self._backend = backend
        self.generation = generation
        #: The bytes the opening request brought (the first MiB at most).
        self._first = first

    async def _iter_range(self, start: int, end: int, chunk_size: int) -> AsyncIterator[bytes]:
        first = self._first
        if first is not None and start < len(first):
            stop = min(end, len(first))
            view = memoryview(first)
            for offset in range(start, stop, chunk_size):
                yield bytes(view[offset : min(offset + chunk_size, stop)])
            start = stop
        if start >= end:
            return
        backend = self._backend
        with backend._translating("read", self.file_id):
            async for chunk in backend._read_range(
                backend._name(self.file_id), self.generation, self.file_id, start, end, chunk_size
            ):
                yield chunk

    async def _release(self) -> None:
        self._first = None


class GCSStorage(FileStorage):
    """Files in a Google Cloud Storage bucket (``backend = gcs``).

    Credentials: ``credentials`` (a service-account JSON file, or its content as a
    dict), else Application Default Credentials. With ``STORAGE_EMULATOR_HOST``
    set (``host:port`` or ``http://host:port``), or ``api_endpoint`` given, requests
    go there without credentials, and public and signed URLs point there too, as
    google-cloud-storage's do. Nothing touches the network until first use.
    """

    reads_with_metadata = True

    def __init__(
        self,
        *,
        bucket: str,
        project_id: str | None = None,
        credentials: str | dict[str, Any] | None = None,
        prefix: str = "",
        policy: str | None = "private",
        storage_class: str | None = None,
        public_url_mode: Literal["none", "public", "presigned"] = "none",
        presigned_expires: int = 3600,
        custom_domain: str | None = None,
        api_endpoint: str | None = None,
        create_bucket: bool = False,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_retries: int = 3,
    ) -> None:
        if not bucket:
            raise ConfigurationError("the gcs backend needs a bucket (depot.bucket)")
        policy = (policy or "private").strip().lower()
        if policy not in _POLICIES:
            raise ConfigurationError(
                f"unknown policy {policy!r}: use private (the bucket's own access rules) "
                "or public-read (each object readable by anyone, through an object ACL)"
            )
        if public_url_mode not in ("none", "public", "presigned"):
            raise ConfigurationError(
                f"public_url_mode must be none, public or presigned, not {public_url_mode!r}"
            )
        if custom_domain and public_url_mode != "public":
            raise ConfigurationError(
                "custom_domain is used by public_url_mode = public only (a signed URL is "
                "signed for the storage host)"
            )
        if not 1 <= presigned_expires <= MAX_PRESIGNED_EXPIRES:
            raise ConfigurationError(
                f"presigned_expires must be between 1 and {MAX_PRESIGNED_EXPIRES} seconds"
            )
        if chunk_size < CHUNK_GRANULARITY or chunk_size % CHUNK_GRANULARITY:
            raise ConfigurationError("chunk_size must be a multiple of 256 KiB (262144 bytes)")
        if prefix and not prefix.endswith("/"):
            raise ConfigurationError(f"prefix must end with '/': {prefix!r}")
        if connect_timeout <= 0 or read_timeout <= 0:
            raise ConfigurationError("connect_timeout and read_timeout must be positive")
        if max_retries < 0:
            raise ConfigurationError("max_retries must be >= 0")
        emulator = api_endpoint or os.environ.get("STORAGE_EMULATOR_HOST")
        self.bucket = bucket
        self.project_id = project_id
        self.prefix = prefix
        self.policy = policy
        self.storage_class = storage_class
        self.public_url_mode = public_url_mode
        self.presigned_expires = presigned_expires
        self.custom_domain = custom_domain.rstrip("/") if custom_domain else None
        self.create_bucket = create_bucket
        self.chunk_size = chunk_size
        self.redirect_after_open = public_url_mode == "presigned"
        #: Where requests go: the service, or an emulator (then without credentials).
        self.api_endpoint = _with_scheme(emulator) if emulator else PUBLIC_HOST
        self._emulated = bool(emulator)
        self._credentials = credentials
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=connect_timeout,
            sock_connect=connect_timeout,
            sock_read=read_timeout,
        )
        self._retries = max_retries
        self._session: aiohttp.ClientSession | None = None
        self._token: Token | None = None
        self._service_data: dict[str, Any] | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:  # credentials stay out of reprs and logs
        name = f" {self.name!r}" if self.name else ""
        return f"<GCSStorage{name} gs://{self.bucket}/{self.prefix}>"

    # -- clients -------------------------------------------------------------------------

    async def _client(self) -> aiohttp.ClientSession:
        if self._session is not None:
            return self._session
        async with self._lock:
            if self._session is None:
                session = aiohttp.ClientSession(timeout=self._timeout, auto_decompress=False)
                if not self._emulated:
                    # gcloud-aio's stubs name requests' Session (its sync build's); the
                    # async build takes aiohttp's.
                    self._token = Token(
                        service_file=self._service_file(),
                        scopes=SCOPES,
                        session=session,  # type: ignore[arg-type]
                    )
                if self.create_bucket:
                    try:
                        await self._ensure_bucket(session)
                    except BaseException:
                        token, self._token = self._token, None
                        if token is not None:
                            await token.close()
                        await session.close()
                        raise
                self._session = session
        return self._session

    def _service_file(self) -> Any:
        credentials = self._credentials
        if isinstance(credentials, Mapping):
            return io.StringIO(json.dumps(dict(credentials)))
        return credentials  # a path, or None: Application Default Credentials

    async def _ensure_bucket(self, session: aiohttp.ClientSession) -> None:
        project = self.project_id or self._signer().get("project_id")
        if not project:
            if not self._emulated:
                raise ConfigurationError(
                    f"{self._label()}: create_bucket needs the project to create it in: "
                    "set depot.project_id"
                )
            project = "depotx"  # an emulator takes any
        async with session.post(
            f"{self.api_endpoint}/storage/v1/b",
            params={"project": project},
            json={"name": self.bucket},
            headers=await self._auth(),
        ) as response:
            if response.status not in (200, 409):  # 409: it exists, fine
                raise GCSError(response.status, await _message(response))

    async def _auth(self) -> dict[str, str]:
        if self._token is None:
            return {}
        return {"Authorization": f"Bearer {await self._token.get()}"}

    async def aclose(self) -> None:
        session, self._session = self._session, None
        token, self._token = self._token, None
        if token is not None:
            await token.close()
        if session is not None:
            await session.close()

    async def _request(
        self,
        method: str,
        url: str,
        *,
        expect: Collection[int] = (200,),
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
        idempotent: bool = True,
    ) -> aiohttp.ClientResponse:
        """Send a request; return its response when the status is one of ``expect``.

        The caller reads or releases the response. Other statuses raise
        :class:`GCSError` with the service's message. Idempotent requests
        (reads, and writes guarded by a precondition) are retried after a
        connection failure, a timeout, 429 or a 5xx, with backoff.
        """
        session = await self._client()
        attempt = 0
        while True:
            try:
                response = await session.request(
                    method,
                    url,
                    params=params,
                    headers={**(headers or {}), **await self._auth()},
                    data=None if data is None else _payload(data),
                )
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError):
                if not idempotent or attempt >= self._retries:
                    raise
            else:
                if response.status in expect:
                    return response
                if (
                    not idempotent
                    or response.status not in _RETRY_STATUSES
                    or (attempt >= self._retries)
                ):
                    message = await _message(response)
                    raise GCSError(response.status, message)
                response.release()
            attempt += 1
            await asyncio.sleep(min(4.0, 0.25 * 2**attempt))

    # -- names, URLs and metadata --------------------------------------------------------

    def _name(self, file_id: str) -> str:
        return self.prefix + file_id

    @property
    def max_id_bytes(self) -> int:
        return MAX_NAME_BYTES - len(self.prefix.encode())

    def _validate_id(self, file_id: object) -> str:
        """Names, the prefix with them, must fit GCS's 1,024 bytes."""
        checked = super()._validate_id(file_id)
        if len(self._name(checked).encode()) > MAX_NAME_BYTES:
            raise InvalidFileIdError(
                f"file id {checked[:40]!r}... is too long for this storage: with the prefix "
                f"{self.prefix!r} an object name holds at most {MAX_NAME_BYTES} bytes"
            )
        return checked

    def _json_url(self, name: str) -> str:
        return f"{self.api_endpoint}/storage/v1/b/{self.bucket}/o/{quote(name, safe='')}"

    def _xml_url(self, name: str) -> str:
        return f"{self.api_endpoint}/{self.bucket}/{quote(name, safe='/~')}"

    def _object_resource(self, name: str, upload: Upload, checksum: str | None) -> dict[str, Any]:
        content_type = upload.content_type
        metadata = {
            FILENAME_KEY: quote_filename(upload.filename),
            CONTENT_TYPE_KEY: content_type,
            MODIFIED_KEY: format_filedepot_time(upload.stamp()),
        }
        if upload.metadata:
            metadata[METADATA_KEY] = dump_custom_metadata(upload.metadata)
        if checksum:
            metadata[CHECKSUM_KEY] = checksum
        size = sum(len(k.encode()) + len(v.encode()) for k, v in metadata.items())
        if size > METADATA_LIMIT:
            raise ValidationError(
                "gcs-metadata",
                f"filename and metadata need {size} bytes of object metadata; keep them "
                f"under {METADATA_LIMIT}",
            )
        resource: dict[str, Any] = {
            "name": name,
            "contentType": content_type,
            "contentDisposition": _http.disposition_for(
                upload.filename, content_type, inline_active=self.inline_active_content
            ),
            "metadata": metadata,
        }
        if self.storage_class:
            resource["storageClass"] = self.storage_class
        return resource

    def _write_params(self, name: str, generation: int | None) -> dict[str, str]:
        params = {"name": name}
        if generation is not None:
            params["ifGenerationMatch"] = str(generation)
        if self.policy == "public-read":
            params["predefinedAcl"] = "publicRead"
        return params

    def _stored_file(
        self,
        file_id: str,
        *,
        metadata: Mapping[str, str],
        content_type: str | None,
        size: int,
        generation: str | None,
        updated: datetime | None,
        md5: str | None,
        first: bytes | None = None,
    ) -> GCSStoredFile:
        meta = {key.lower(): value for key, value in metadata.items()}
        filename = unquote(meta[FILENAME_KEY]) if meta.get(FILENAME_KEY) else DEFAULT_FILENAME
        content_type = content_type or meta.get(CONTENT_TYPE_KEY) or DEFAULT_CONTENT_TYPE
        last_modified = parse_filedepot_time(meta.get(MODIFIED_KEY))
        if last_modified is None:
            last_modified = (
                updated.astimezone(timezone.utc).replace(microsecond=0) if updated else utcnow()
            )
        custom: dict[str, str] = {}
        if meta.get(METADATA_KEY):
            parsed = load_custom_metadata(meta[METADATA_KEY])
            if parsed is None:
                logger.warning("%s: %r has malformed custom metadata", self._label(), file_id)
            else:
                custom = parsed
        checksum = meta.get(CHECKSUM_KEY) or _md5_hex(md5) or f"gcs-{generation}"
        return GCSStoredFile(
            file_id,
            backend=self,
            generation=generation,
            first=first,
            filename=filename,
            content_type=content_type,
            content_length=size,
            last_modified=last_modified,
            checksum=checksum,
            metadata=custom,
            public_url=self._file_url(file_id, filename, content_type),
        )

    def _from_resource(self, file_id: str, resource: Mapping[str, Any]) -> GCSStoredFile:
        updated = resource.get("updated")
        return self._stored_file(
            file_id,
            metadata=resource.get("metadata") or {},
            content_type=resource.get("contentType"),
            size=int(resource.get("size") or 0),
            generation=str(resource["generation"]) if resource.get("generation") else None,
            updated=_parse_rfc3339(updated) if isinstance(updated, str) else None,
            md5=resource.get("md5Hash"),
        )

    # -- reads ---------------------------------------------------------------------------

    async def _get(self, file_id: str) -> StoredFile:
        """One XML API ``GET`` of the first MiB: its headers are the metadata."""
        response = await self._request(
            "GET",
            self._xml_url(self._name(file_id)),
            headers={"Range": f"bytes=0-{FIRST_READ - 1}"},
            expect=(200, 206, 404, 416),
        )
        try:
            if response.status == 404:
                raise StoredFileNotFoundError(file_id, self.name)
            if response.status == 416:  # an empty object has no first byte
                return await self._head(file_id)
            headers = response.headers
            size = _total_size(response)
            first: bytes | None = None
            if response.status == 206 or size <= FIRST_READ:
                first = await response.read()
            generation = headers.get("x-goog-generation")
            if generation is None:
                # An emulator that does not say: ask, so later reads are pinned.
                return await self._head(file_id)
            updated = headers.get("Last-Modified")
            return self._stored_file(
                file_id,
                metadata={
                    key[len("x-goog-meta-") :]: value
                    for key, value in headers.items()
                    if key.lower().startswith("x-goog-meta-")
                },
                content_type=headers.get("Content-Type"),
                size=size,
                generation=generation,
                updated=parsedate_to_datetime(updated) if updated else None,
                md5=_hash_of(headers.get("x-goog-hash"), "md5"),
                first=first,
            )
        finally:
            response.release()

    async def _head(self, file_id: str) -> StoredFile:
        resource = await self._resource(self._name(file_id))
        if resource is None:
            raise StoredFileNotFoundError(file_id, self.name)
        return self._from_resource(file_id, resource)

    async def _resource(self, name: str, fields: str | None = None) -> dict[str, Any] | None:
        params = {"fields": fields} if fields else None
        response = await self._request(
            "GET", self._json_url(name), params=params, expect=(200, 404)
        )
        async with response:
            if response.status == 404:
                return None
            resource: dict[str, Any] = await response.json(content_type=None)
            return resource

    async def _read_range(
        self,
        name: str,
        generation: str | None,
        file_id: str,
        start: int,
        end: int,
        chunk_size: int,
    ) -> AsyncIterator[bytes]:
        """Bytes ``[start, end)`` of object ``name`` at ``generation``, streamed."""
        params = {"generation": generation} if generation else None
        response = await self._request(
            "GET",
            self._xml_url(name),
            params=params,
            headers={"Range": f"bytes={start}-{end - 1}"},
            expect=(200, 206, 404, 412, 416),
        )
        async with response:
            if response.status in (404, 412, 416):
                # Without versioning, the generation opened is gone once replaced.
                raise StoredFileChangedError(file_id, self.name)
            served = response.headers.get("x-goog-generation")
            if generation and served and served != generation:
                raise StoredFileChangedError(file_id, self.name)
            skip = start if response.status == 200 else 0  # a server that ignored Range
            expected = end - start
            received = 0
            pending = b""
            async for data in response.content.iter_chunked(chunk_size):
                if skip:
                    cut = min(skip, len(data))
                    data, skip = data[cut:], skip - cut
                data = data[: expected - received]
                if not data:
                    continue
                received += len(data)
                pending = pending + data if pending else data
                if len(pending) >= chunk_size:
                    yield pending
                    pending = b""
                if received >= expected:
                    break
            if pending:
                yield pending
            if received != expected:
                raise BackendError(
                    f"{self._label()}: read {file_id!r}: got {received} of {expected} bytes"
                )

    async def _exists(self, file_id: str) -> bool:
        return await self._resource(self._name(file_id), fields="name") is not None

    async def _list(
        self, prefix: str, start_after: str | None, delimiter: str | None
    ) -> AsyncIterator[str]:
        async for file_id in fold_listing(
            self._listed(prefix, start_after, delimiter), prefix, start_after, delimiter
        ):
            yield file_id

    async def _listed(
        self, prefix: str, start_after: str | None, delimiter: str | None
    ) -> AsyncIterator[str]:
        """Names under ``prefix`` in code point order (GCS lists in UTF-8 byte order).

        With a delimiter a page holds its objects and its folders apart, each
        sorted: they are merged per page, as pages follow each other in order.
        """
        strip = len(self.prefix)
        params = {"prefix": self.prefix + prefix}
        if delimiter:
            params["delimiter"] = delimiter
        if start_after:
            params["startOffset"] = self.prefix + start_after
        async for page in self._pages(params):
            names = [str(item["name"])[strip:] for item in page.get("items") or ()]
            names += [str(folder)[strip:] for folder in page.get("prefixes") or ()]
            for name in sorted(names):
                if name.endswith("/") or is_valid_file_id(name):
                    yield name

    async def _pages(self, params: dict[str, str]) -> AsyncIterator[dict[str, Any]]:
        """The pages of ``objects.list`` with ``params``, following ``nextPageToken``."""
        params = {
            **params,
            "maxResults": str(PAGE_SIZE),
            "fields": "items(name),prefixes,nextPageToken",
        }
        url = f"{self.api_endpoint}/storage/v1/b/{self.bucket}/o"
        while True:
            response = await self._request("GET", url, params=params)
            async with response:
                page: dict[str, Any] = await response.json(content_type=None)
            yield page
            token = page.get("nextPageToken")
            if not token:
                return
            params["pageToken"] = str(token)

    # -- writes --------------------------------------------------------------------------

    async def _store(self, file_id: str, upload: Upload, *, mode: WriteMode) -> None:
        name = self._name(file_id)
        # Hashed only once it is known to be one chunk: a larger file's checksum is
        # GCS's own MD5 (see _write_resumable).
        reader = PartReader(upload.chunks, self.chunk_size, None)
        first = await reader.read()
        if reader.done:
            digest = new_hasher(self.checksum_algorithm)
            digest.update(first)
            resource = self._object_resource(name, upload, digest.hexdigest())
            await commit_or_cancel(self._write_small(file_id, resource, first, mode))
            return
        await self._write_resumable(file_id, upload, mode, first, reader)

    async def _precondition(self, file_id: str, mode: WriteMode) -> int | None:
        """The ``ifGenerationMatch`` a write in ``mode`` needs (``None``: unconditional)."""
        if mode == "create":
            return 0
        if mode == "put":
            return None
        resource = await self._resource(self._name(file_id), fields="generation")
        if resource is None:
            raise StoredFileNotFoundError(file_id, self.name)
        return int(resource["generation"])

    async def _write_small(
        self, file_id: str, resource: dict[str, Any], data: bytes, mode: WriteMode
    ) -> None:
        """One multipart upload (metadata and bytes), retried while replaces race it."""
        boundary = uuid.uuid4().hex
        body = b"".join(
            (
                f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n".encode(),
                json.dumps(resource).encode(),
                f"\r\n--{boundary}\r\nContent-Type: {resource['contentType']}\r\n\r\n".encode(),
                data,
                f"\r\n--{boundary}--\r\n".encode(),
            )
        )
        url = f"{self.api_endpoint}/upload/storage/v1/b/{self.bucket}/o"
        for _ in range(_COMMIT_ATTEMPTS):
            generation = await self._precondition(file_id, mode)
            params = {**self._write_params(resource["name"], generation), "uploadType": "multipart"}
            response = await self._request(
                "POST",
                url,
                params=params,
                headers={"Content-Type": f"multipart/related; boundary={boundary}"},
                data=body,
                expect=(200, 412),
                idempotent=generation is not None,
            )
            response.release()
            if response.status == 200:
                return
            if mode == "create":
                raise StoredFileExistsError(file_id, self.name)
            # replace: another replace (or a delete) landed between our look and our write
        raise BackendError(f"{self._label()}: replace {file_id!r} kept losing to other writers")

    async def _write_resumable(
        self, file_id: str, upload: Upload, mode: WriteMode, first: bytes, reader: PartReader
    ) -> None:
        """A resumable upload, chunk by chunk: the object appears with its last chunk.

        Its metadata is fixed when the session starts, before the content is known:
        the checksum is then GCS's own MD5 of the object (as a multipart ETag is on
        S3), so the rest is not hashed.
        """
        name = self._name(file_id)
        generation = await self._precondition(file_id, mode)
        session = await self._start_session(self._object_resource(name, upload, None), generation)
        status = 412
        if session is not None:
            try:
                status = await self._send_all(session, first, reader)
            except BaseException:
                # Shielded: a second cancellation must not skip the cancel of the session.
                await asyncio.shield(self._cancel_session(session))
                raise
        if status == 412:
            if mode == "create":
                raise StoredFileExistsError(file_id, self.name)
            if await self._resource(name, fields="generation") is None:
                raise StoredFileNotFoundError(file_id, self.name)  # a delete landed first
            # Another replace committed while this one uploaded: this one is the older
            # of the two, overwritten as if it had finished first. Readers saw one
            # version or the other, never a mix.

    async def _start_session(self, resource: dict[str, Any], generation: int | None) -> str | None:
        """Start a resumable upload; its session URL, or ``None`` if the precondition fails."""
        params = {**self._write_params(resource["name"], generation), "uploadType": "resumable"}
        response = await self._request(
            "POST",
            f"{self.api_endpoint}/upload/storage/v1/b/{self.bucket}/o",
            params=params,
            headers={
                "Content-Type": "application/json; charset=UTF-8",
                "X-Upload-Content-Type": resource["contentType"],
            },
            data=json.dumps(resource).encode(),
            expect=(200, 201, 412),
        )
        async with response:
            if response.status == 412:
                return None
            location = response.headers.get("Location")
        if not location:
            raise BackendError(f"{self._label()}: the resumable upload got no session URL")
        return location

    async def _send_all(self, session: str, first: bytes, reader: PartReader) -> int:
        """Send every chunk; the status of the last one (200, or 412: precondition failed)."""
        offset = 0
        data = first
        while True:
            following = await reader.read()
            if not following:
                total = offset + len(data)
                return await commit_or_cancel(self._send_chunk(session, offset, data, total))
            await self._send_chunk(session, offset, data, None)
            offset += len(data)
            data = following

    async def _send_chunk(self, session: str, offset: int, data: bytes, total: int | None) -> int:
        """PUT ``data`` at ``offset``; resend what GCS did not store. The final status.

        GCS answers a chunk with what it has stored (``308`` and ``Range``), which
        may be less than it was sent: the offset that counts is that one. After a
        failure the session's status is asked and the upload goes on from there.
        """
        end = offset + len(data)
        size = "*" if total is None else str(total)
        attempt = 0
        while True:
            if offset < end:
                content_range = f"bytes {offset}-{end - 1}/{size}"
            else:
                content_range = f"bytes */{size}"
            try:
                response = await self._request(
                    "PUT",
                    session,
                    headers={"Content-Range": content_range},
                    data=data,
                    expect=(200, 201, 308, 412),
                    idempotent=False,
                )
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError, GCSError) as exc:
                if attempt >= self._retries or (
                    isinstance(exc, GCSError) and exc.status not in _RETRY_STATUSES
                ):
                    raise
                attempt += 1
                await asyncio.sleep(min(4.0, 0.25 * 2**attempt))
                stored = await self._stored_offset(session, size)
            else:
                async with response:
                    if response.status != 308:
                        return response.status
                    stored = _persisted(response.headers.get("Range"))
            if stored is None:  # the last chunk landed while we could not hear it
                return 200
            if stored >= end and total is None:
                return 308
            if not end - len(data) <= stored <= end:
                raise BackendError(
                    f"{self._label()}: the resumable upload stored {stored} bytes, expected "
                    f"{end - len(data)} to {end}"
                )
            data = data[stored - (end - len(data)) :]
            offset = stored

    async def _stored_offset(self, session: str, size: str) -> int | None:
        """How many bytes a session holds (``None``: it completed)."""
        response = await self._request(
            "PUT",
            session,
            headers={"Content-Range": f"bytes */{size}"},
            expect=(200, 201, 308),
        )
        async with response:
            if response.status != 308:
                return None
            return _persisted(response.headers.get("Range"))

    async def _cancel_session(self, session: str) -> None:
        """Cancel a resumable upload (GCS answers 499); its bytes are never an object."""
        try:
            response = await self._request(
                "DELETE", session, expect=range(200, 600), idempotent=False
            )
            response.release()
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            # The session expires by itself within a week; nothing of it is visible.
            logger.warning("%s: could not cancel an upload session: %s", self._label(), exc)

    async def _delete(self, file_id: str) -> None:
        await self._delete_object(self._name(file_id))

    async def _delete_object(self, name: str) -> None:
        response = await self._request("DELETE", self._json_url(name), expect=(200, 204, 404))
        response.release()  # 404: deleting what is not there is no error

    # -- copies inside the service -------------------------------------------------------

    async def _compose_into(
        self,
        name: str,
        resource: dict[str, Any],
        sources: list[tuple[str, str | None]],
        generation: int | None,
    ) -> int:
        """Make ``name`` of ``sources`` (names, pinned generations) with ``resource``'s
        metadata, inside GCS; the status (200, or 412 when a precondition failed)."""
        params: dict[str, str] = {}
        if generation is not None:
            params["ifGenerationMatch"] = str(generation)
        if self.policy == "public-read":
            params["destinationPredefinedAcl"] = "publicRead"
        body = {
            "sourceObjects": [
                {"name": source, "objectPreconditions": {"ifGenerationMatch": pin}}
                if pin
                else {"name": source}
                for source, pin in sources
            ],
            "destination": {key: value for key, value in resource.items() if key != "name"},
        }
        response = await self._request(
            "POST",
            f"{self._json_url(name)}/compose",
            params=params,
            headers={"Content-Type": "application/json; charset=UTF-8"},
            data=json.dumps(body).encode(),
            expect=(200, 412),
            idempotent=generation is not None,
        )
        response.release()
        return response.status

    async def _copy_within(
        self, source: FileStorage, stored: StoredFile, file_id: str, *, mode: WriteMode
    ) -> bool:
        """A copy inside the bucket (``compose`` of one source), pinned to its generation."""
        if not (
            isinstance(source, GCSStorage)
            and isinstance(stored, GCSStoredFile)
            and source.bucket == self.bucket
            and source.api_endpoint == self.api_endpoint
        ):
            return False
        upload = Upload(
            chunks=no_chunks(),
            filename=stored.filename,
            content_type=stored.content_type,
            metadata=dict(stored.metadata),
            last_modified=stored.last_modified,
        )
        name = self._name(file_id)
        # A hash of the content is still true of the copy; a generation is not.
        checksum = stored.checksum if is_content_checksum(stored.checksum) else None
        resource = self._object_resource(name, upload, checksum)
        for _ in range(_COMMIT_ATTEMPTS):
            generation = await self._precondition(file_id, mode)
            status = await commit_or_cancel(
                self._compose_into(
                    name, resource, [(source._name(stored.file_id), stored.generation)], generation
                )
            )
            if status == 200:
                return True
            live = await source._resource(source._name(stored.file_id), fields="generation")
            if live is None or str(live["generation"]) != stored.generation:
                raise StoredFileChangedError(stored.file_id, source.name)
            if mode == "create":
                raise StoredFileExistsError(file_id, self.name)
        raise BackendError(f"{self._label()}: replace {file_id!r} kept losing to other writers")

    # -- direct uploads ------------------------------------------------------------------

    def _presigns_uploads(self) -> bool:
        """With a service-account key; without one (the metadata server's tokens), uploads
        go through the app, since signing through IAM would be a request per ticket."""
        signer = self._signer()
        return bool(signer.get("client_email") and signer.get("private_key"))

    async def _open_direct_upload(
        self, grant: UploadGrant
    ) -> tuple[UploadGrant, DirectTarget | None]:
        """A V4 signed ``PUT`` of one object, to a staging name.

        The URL is signed with the headers the browser must send: the type, the
        size range GCS enforces (``x-goog-content-length-range``) and
        ``x-goog-if-generation-match: 0``, so a ticket writes once. GCS refuses
        anything else before storing it; the staging name starts with the expiry,
        for :meth:`cleanup`.
        """
        import dataclasses

        from ..uploads._direct import DirectTarget

        if not self._presigns_uploads():
            return await super()._open_direct_upload(grant)
        name = f"{self.prefix}{DIRECT_STAGING}{grant.staged.rsplit('/', 1)[1]}"
        headers = {
            "Content-Type": grant.content_type or "application/octet-stream",
            "x-goog-content-length-range": f"0,{grant.max_size}",
            "x-goog-if-generation-match": "0",
        }
        seconds = max(1, min(MAX_PRESIGNED_EXPIRES, int(grant.expires - time.time())))
        url = self._sign("PUT", name, seconds, headers=headers)
        return dataclasses.replace(grant, staged=name), DirectTarget(
            url, {}, method="PUT", headers=headers
        )

    async def _finalize_direct_upload(self, grant: UploadGrant) -> str:
        """Check the staged object, detect its type, hash it, compose it to its id.

        One read of the staged object gives the sample the type is detected from
        and the checksum; the copy is server-side (``compose``, pinned to the
        staged generation, create-only at the final name) and writes filedepot's
        metadata and the disposition rule anew. The staged object is deleted after.
        """
        if not grant.staged.startswith(self.prefix + DIRECT_STAGING):
            return await super()._finalize_direct_upload(grant)  # it came through the app
        staged = await self._resource(grant.staged)
        if staged is None:
            if await self._exists(grant.file_id):
                return grant.file_id  # finalized before
            raise ValidationError(
                "upload", "nothing was uploaded with this ticket (or it was cleaned up)"
            )
        size = int(staged.get("size") or 0)
        generation = str(staged["generation"])
        if size > grant.max_size:
            await self._delete_object(grant.staged)
            raise ValidationError("max_size", too_large_message(grant.max_size))
        digest = new_hasher(self.checksum_algorithm)
        sample = bytearray()
        if size:
            chunks = self._read_range(grant.staged, generation, grant.file_id, 0, size, 1 * MiB)
            async for chunk in chunks:
                if len(sample) < SNIFF_SIZE:
                    sample += chunk[: SNIFF_SIZE - len(sample)]
                await asyncio.to_thread(digest.update, chunk)
        content_type = await asyncio.to_thread(
            detect_content_type, bytes(sample), grant.filename, complete=size <= SNIFF_SIZE
        )
        upload = Upload(
            chunks=no_chunks(),
            filename=grant.filename,
            content_type=content_type,
            metadata=dict(grant.metadata),
            last_modified=utcnow(),
        )
        name = self._name(grant.file_id)
        resource = self._object_resource(name, upload, digest.hexdigest())
        status = await commit_or_cancel(
            self._compose_into(name, resource, [(grant.staged, generation)], 0)
        )
        if status == 412 and not await self._exists(grant.file_id):
            raise ValidationError("upload", "the upload changed while it was finalized")
        await self._delete_object(grant.staged)
        return grant.file_id

    async def _abort_direct_upload(self, grant: UploadGrant) -> None:
        if not grant.staged.startswith(self.prefix + DIRECT_STAGING):
            await super()._abort_direct_upload(grant)
            return
        await self._delete_object(grant.staged)

    async def _cleanup(self, older_than: timedelta) -> int:
        """Delete staged direct uploads whose ticket expired (resumable sessions of
        crashed writers expire by themselves and are never visible)."""
        folder = self.prefix + DIRECT_STAGING
        expired: list[str] = []
        now = time.time()
        async for page in self._pages({"prefix": folder}):
            for item in page.get("items") or ():
                if staged_expiry(str(item["name"])[len(folder) :]) < now:
                    expired.append(str(item["name"]))
        for name in expired:
            await self._delete_object(name)
        return len(expired)

    def _translate_error(
        self, exc: Exception, action: str, file_id: str | None
    ) -> DepotError | None:
        if isinstance(exc, GCSError) and exc.status in (401, 403):
            what = f" {file_id!r}" if file_id else ""
            return BackendError(
                f"{self._label()}: {action}{what} was refused ({exc}): check the credentials "
                f"and that they may use bucket {self.bucket!r}"
            )
        if isinstance(exc, (GCSError, aiohttp.ClientError, asyncio.TimeoutError, OSError)):
            return self._failure(action, file_id, exc)
        return None

    # -- URLs ----------------------------------------------------------------------------

    def public_url(self, file_id: str) -> str | None:
        file_id = self._validate_id(file_id)
        if self.public_url_mode == "none":
            return None
        name = self._name(file_id)
        if self.public_url_mode == "public":
            if self.custom_domain:
                base = self.custom_domain
                base = base if "://" in base else f"https://{base}"
                return f"{base}/{quote(name, safe='/~')}"
            return self._xml_url(name)
        return self._sign("GET", name, self.presigned_expires)

    def _file_url(self, file_id: str, filename: str, content_type: str) -> str | None:
        if self.public_url_mode != "presigned":
            return self.public_url(file_id)
        disposition = _http.disposition_for(
            filename, content_type, inline_active=self.inline_active_content
        )
        return self._sign(
            "GET",
            self._name(file_id),
            self.presigned_expires,
            query={"response-content-disposition": disposition},
        )

    def temporary_url(
        self, stored: StoredFile, *, expires_in: int, download: bool, filename: str | None
    ) -> str | None:
        if self.public_url_mode == "none":
            return None
        name = filename if filename is not None else stored.filename
        query = {
            "response-content-disposition": _http.disposition_for(
                name,
                stored.content_type,
                inline_active=self.inline_active_content,
                download=download,
            ),
            "response-content-type": _http.header_content_type(stored.content_type),
        }
        seconds = max(1, min(int(expires_in), self.presigned_expires))
        return self._sign("GET", self._name(stored.file_id), seconds, query=query)

    def _signer(self) -> dict[str, Any]:
        """The service account's data (``client_email``, ``private_key``), if any."""
        if self._service_data is None:
            credentials = self._credentials or os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
            data: dict[str, Any] = {}
            if isinstance(credentials, Mapping):
                data = dict(credentials)
            elif credentials:
                try:
                    with open(credentials, encoding="utf-8") as handle:
                        data = json.load(handle)
                except (OSError, ValueError) as exc:
                    raise ConfigurationError(
                        f"{self._label()}: cannot read the credentials file {credentials!r}: {exc}"
                    ) from exc
            self._service_data = data
        return self._service_data

    def _sign(
        self,
        method: str,
        name: str,
        seconds: int,
        *,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
    ) -> str:
        signer = self._signer()
        email, key = signer.get("client_email"), signer.get("private_key")
        if not email or not key:
            raise ConfigurationError(
                f"{self._label()}: signed URLs (public_url_mode = presigned, direct uploads) "
                "are signed with a service account's key: give depot.credentials (the key "
                "file, or its JSON)"
            )
        return sign_url_v4(
            method=method,
            endpoint=self.api_endpoint,
            path=f"/{self.bucket}/{name}",
            client_email=str(email),
            private_key=str(key),
            expires=seconds,
            headers=headers,
            query=query,
        )


def sign_url_v4(
    *,
    method: str,
    endpoint: str,
    path: str,
    client_email: str,
    private_key: str,
    expires: int,
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> str:
    """A V4 signed URL (``GOOG4-RSA-SHA256``), made locally with the account's key.

    The canonical request is GCS's: the path quoted but ``/`` and ``~``, query
    parameters sorted and quoted, headers lower-cased with their whitespace
    folded, ``host`` always signed, the payload unsigned. Every header given
    must be sent, with that value, by whoever uses the URL.
    """
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    now = now or datetime.now(timezone.utc)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{now:%Y%m%d}/auto/storage/goog4_request"
    signed = {"host": urlsplit(endpoint).netloc}
    for header, value in (headers or {}).items():
        signed[header.lower().strip()] = " ".join(str(value).split())
    names = sorted(signed)
    params = {
        **(query or {}),
        "X-Goog-Algorithm": "GOOG4-RSA-SHA256",
        "X-Goog-Credential": f"{client_email}/{scope}",
        "X-Goog-Date": stamp,
        "X-Goog-Expires": str(expires),
        "X-Goog-SignedHeaders": ";".join(names),
    }
    canonical_query = "&".join(
        sorted(f"{quote(k, safe='~')}={quote(str(v), safe='~')}" for k, v in params.items())
    )
    resource = quote(path, safe="/~")
    canonical_request = "\n".join(
        (
            method,
            resource,
            canonical_query,
            "".join(f"{name}:{signed[name]}\n" for name in names),
            ";".join(names),
            "UNSIGNED-PAYLOAD",
        )
    )
    to_sign = "\n".join(
        (
            "GOOG4-RSA-SHA256",
            stamp,
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        )
    )
    key = serialization.load_pem_private_key(private_key.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigurationError("the service account's private_key is not an RSA key")
    signature = key.sign(to_sign.encode(), padding.PKCS1v15(), hashes.SHA256()).hex()
    return f"{endpoint}{resource}?{canonical_query}&X-Goog-Signature={signature}"


def _payload(data: bytes) -> aiohttp.BytesPayload:
    """``data`` as a request body; made here, outside any await, so the warning
    aiohttp gives for bodies over 1 MiB is silenced for this call only."""
    with large_bodies():
        return aiohttp.BytesPayload(data)


def _with_scheme(host: str) -> str:
    """``STORAGE_EMULATOR_HOST`` in either form (``host:port``, ``http://host:port``)."""
    host = host.strip().rstrip("/")
    return host if "://" in host else f"http://{host}"


def _total_size(response: aiohttp.ClientResponse) -> int:
    content_range = response.headers.get("Content-Range", "")
    if response.status == 206 and "/" in content_range:
        total = content_range.rsplit("/", 1)[1]
        if total.isdigit():
            return int(total)
    stored = response.headers.get("x-goog-stored-content-length")
    return int(stored or response.headers.get("Content-Length") or 0)


def _persisted(value: str | None) -> int:
    """The bytes a session holds, from a 308's ``Range: bytes=0-N`` (none: 0)."""
    if not value or "-" not in value:
        return 0
    return int(value.rsplit("-", 1)[1]) + 1


def _hash_of(header: str | None, kind: str) -> str | None:
    for part in (header or "").split(","):
        name, _, value = part.strip().partition("=")
        if name == kind and value:
            return value
    return None


def _md5_hex(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return base64.b64decode(value).hex()
    except (binascii.Error, ValueError):
        return None


def _parse_rfc3339(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


async def _message(response: aiohttp.ClientResponse) -> str:
    """The service's error message: JSON API ``error.message``, XML ``<Message>``."""
    try:
        text = (await response.read()).decode("utf-8", "replace")
    finally:
        response.release()
    with contextlib.suppress(ValueError):  # not JSON: XML, or plain text
        parsed = json.loads(text)
        error = parsed.get("error") if isinstance(parsed, dict) else None
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    start, end = text.find("<Message>"), text.find("</Message>")
    if 0 <= start < end:
        return text[start + len("<Message>") : end]
    return text[:200].strip()
