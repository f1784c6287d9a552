"""Azure Blob Storage, through ``azure-storage-blob``'s async client (extra ``azure``).

Each file is a block blob named ``<prefix><file id>`` in one container. Blob
metadata keys must be C# identifiers on Azure (and Azurite), so filedepot's
``x-depot-*`` names cannot be used: depotx writes ``depotx_filename`` (the name,
percent-encoded: values are ASCII), ``depotx_modified`` (filedepot's naive-UTC
``%Y-%m-%d %H:%M:%S``), ``depotx_checksum`` and ``depotx_metadata`` (the custom
metadata as ASCII JSON). The type and the disposition (the active-content rule)
are the blob's content settings, so the container's own URLs serve it safely.

How the guarantees hold:

- **Writes commit whole or not at all.** Content that fits one block is one
  ``Put Blob``; larger content is staged block by block (``Put Block``, up to
  ``max_concurrency`` at a time) and made visible by one ``Put Block List``.
  Uncommitted blocks of a failed or cancelled upload are never visible and the
  service drops them (after 7 days).
- **Create-only and replace-what-exists are conditions of the commit**:
  ``If-None-Match: *`` for a create (exactly one of concurrent creates wins, the
  others get :class:`~depotx.StoredFileExistsError`), ``If-Match`` on the ETag
  seen just before for a replace (a delete that landed first wins: not found).
- **Reads are pinned.** ``get`` is one ``Get Blob``: its answer carries the
  metadata, and its body serves the first whole read. Every other read is a
  ranged ``Get Blob`` with ``If-Match`` on the ETag opened: a replace in
  between raises :class:`~depotx.StoredFileChangedError` before a byte of the
  other version.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, unquote

from .. import _http
from .._checksums import new_hasher
from .._content import Upload
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
from .._files import FileIntent, StoredFile
from .._formats import (
    DEFAULT_CONTENT_TYPE,
    DEFAULT_FILENAME,
    dump_custom_metadata,
    format_filedepot_time,
    load_custom_metadata,
    parse_filedepot_time,
)
from .._ids import is_valid_file_id
from .._units import too_large_message
from ._parts import PartReader, large_bodies
from .base import (
    FileStorage,
    WriteMode,
    commit_or_cancel,
    fold_listing,
    staged_expiry,
    utcnow,
)

try:
    from azure.core import MatchConditions
    from azure.core.exceptions import (
        AzureError,
        ResourceExistsError,
        ResourceModifiedError,
        ResourceNotFoundError,
    )
    from azure.storage.blob import (
        BlobSasPermissions,
        ContentSettings,
        generate_blob_sas,
    )
    from azure.storage.blob.aio import BlobServiceClient, ContainerClient
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError("azure", "azure-storage-blob") from exc

if TYPE_CHECKING:
    from ..uploads._direct import DirectTarget, UploadGrant

__all__ = ["AzureBlobStorage"]

logger = logging.getLogger("depotx.azure")

KiB = 1024
MiB = 1024 * KiB
DEFAULT_BLOCK_SIZE = 8 * MiB
#: Azure's limit on blob names, in characters.
MAX_NAME_LENGTH = 1024
#: Metadata values are HTTP headers: all of them together stay under 8 KiB.
METADATA_LIMIT = 8 * KiB

#: Where direct uploads land before finalize: a DEL character makes the name no valid
#: file id, so ``list()`` never shows it (Azure cannot sign names with a backslash, as
#: S3 and GCS use, and Azurite breaks on ``..`` and ``//``), and one prefix for cleanup.
DIRECT_STAGING = "depotx-upload\x7f"

FILENAME_KEY = "depotx_filename"
MODIFIED_KEY = "depotx_modified"
CHECKSUM_KEY = "depotx_checksum"
METADATA_KEY = "depotx_metadata"
_FILENAME_SAFE = " !#$&'()*+,/:;=?@[]~"
_COMMIT_ATTEMPTS = 5
#: What the opening ``Get Blob`` asks for, and each later range: a download holds at
#: most one of these in memory (the SDK defaults are 32 and 4 MiB; 8 MiB ranges read
#: twice as fast as 4 MiB ones against Azurite, where each request costs most).
_FIRST_GET = 1 * MiB
_NEXT_GETS = 8 * MiB
#: The longest wait between retries of one request, in seconds (the SDK's is 120).
_BACKOFF_MAX = 4


class AzureStoredFile(StoredFile):
    """A blob: opened by one ``Get Blob`` (or its properties only); reads pinned by ETag."""

    def __init__(
        self, file_id: str, *, backend: AzureBlobStorage, etag: str, **kwargs: Any
    ) -> None:
        super().__init__(file_id, storage=backend, **kwargs)
        self._backend = backend
        self._etag = etag
        #: The download that opened the file, until the first whole read takes it.
        self._download: Any = None

    async def _iter_range(self, start: int, end: int, chunk_size: int) -> AsyncIterator[bytes]:
        download, self._download = self._download, None
        if download is not None and start == 0 and end == self.content_length:
            async for chunk in _chunks(download, chunk_size):
                yield chunk
            return
        if start >= end:
            return
        backend = self._backend
        with backend._translating("read", self.file_id):
            blob = (await backend._container()).get_blob_client(backend._name(self.file_id))
            try:
                ranged = await blob.download_blob(
                    offset=start,
                    length=end - start,
                    etag=self._etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            except ResourceModifiedError as exc:
                raise StoredFileChangedError(self.file_id, backend.name) from exc
            except ResourceNotFoundError as exc:
                raise StoredFileNotFoundError(self.file_id, backend.name) from exc
        received = 0
        async for chunk in _chunks(ranged, chunk_size):
            received += len(chunk)
            yield chunk
        if received != end - start:
            raise BackendError(
                f"{backend._label()}: read {self.file_id!r}: got {received} of {end - start} bytes"
            )


async def _chunks(download: Any, chunk_size: int) -> AsyncIterator[bytes]:
    """A download's bytes in chunks of ``chunk_size`` (the last may be shorter).

    The SDK fetches further ranges pinned to the blob's ETag: a replace in between
    is :class:`~depotx.StoredFileChangedError`, a delete not-found.
    """
    while True:
        try:
            data = await download.read(chunk_size)
        except ResourceModifiedError as exc:
            raise StoredFileChangedError(str(download.name)) from exc
        except ResourceNotFoundError as exc:
            raise StoredFileNotFoundError(str(download.name)) from exc
        if not data:
            return
        yield data


class AzureBlobStorage(FileStorage):
    """Files in an Azure Blob Storage container (``backend = azure``).

    Give ``connection_string``, or ``account_url`` with a ``credential`` (an
    account key, a SAS token, or nothing to use ``DefaultAzureCredential`` from
    ``azure-identity``). Nothing touches the network until first use.
    """

    reads_with_metadata = True

    def __init__(
        self,
        *,
        container: str,
        account_url: str | None = None,
        connection_string: str | None = None,
        credential: str | None = None,
        prefix: str = "",
        public_url_mode: Literal["none", "public", "presigned"] = "none",
        presigned_expires: int = 3600,
        custom_domain: str | None = None,
        create_container: bool = False,
        block_size: int = DEFAULT_BLOCK_SIZE,
        max_concurrency: int = 4,
        connect_timeout: float = 5.0,
        read_timeout: float = 15.0,
        max_retries: int = 3,
    ) -> None:
        if not container:
            raise ConfigurationError("the azure backend needs a container (depot.container)")
        if bool(account_url) == bool(connection_string):
            raise ConfigurationError("give account_url (with a credential) or connection_string")
        if public_url_mode not in ("none", "public", "presigned"):
            raise ConfigurationError(
                f"public_url_mode must be none, public or presigned, not {public_url_mode!r}"
            )
        if not 1 <= presigned_expires <= 7 * 24 * 3600:
            raise ConfigurationError("presigned_expires must be between 1 s and 7 days")
        if not 64 * KiB <= block_size <= 4000 * MiB:
            raise ConfigurationError("block_size must be between 64 KiB and 4000 MiB")
        if max_concurrency < 1:
            raise ConfigurationError("max_concurrency must be at least 1")
        if prefix and not prefix.endswith("/"):
            raise ConfigurationError(f"prefix must end with '/': {prefix!r}")
        self.container = container
        self.prefix = prefix
        self.public_url_mode = public_url_mode
        self.presigned_expires = presigned_expires
        self.custom_domain = custom_domain.rstrip("/") if custom_domain else None
        self.create_container = create_container
        self.block_size = block_size
        self.max_concurrency = max_concurrency
        self.redirect_after_open = public_url_mode == "presigned"
        self._account_url = account_url
        self._connection_string = connection_string
        self._credential = credential
        if max_retries < 0:
            raise ConfigurationError("max_retries must be >= 0")
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._retries = max_retries
        self._service: BlobServiceClient | None = None
        self._containers: ContainerClient | None = None
        self._lock = asyncio.Lock()

    # -- clients ---------------------------------------------------------------------

    async def _container(self) -> ContainerClient:
        if self._containers is not None:
            return self._containers
        async with self._lock:
            if self._containers is None:
                if self._connection_string:
                    service = BlobServiceClient.from_connection_string(
                        self._connection_string,
                        connection_timeout=self._connect_timeout,
                        read_timeout=self._read_timeout,
                        max_single_get_size=_FIRST_GET,
                        max_chunk_get_size=_NEXT_GETS,
                        retry_total=self._retries,
                        retry_backoff_max=_BACKOFF_MAX,
                    )
                else:
                    service = BlobServiceClient(
                        self._account_url or "",
                        credential=self._credential_object(),
                        connection_timeout=self._connect_timeout,
                        read_timeout=self._read_timeout,
                        max_single_get_size=_FIRST_GET,
                        max_chunk_get_size=_NEXT_GETS,
                        retry_total=self._retries,
                        retry_backoff_max=_BACKOFF_MAX,
                    )
                container = service.get_container_client(self.container)
                if self.create_container:
                    with contextlib.suppress(ResourceExistsError):  # it exists: fine
                        await container.create_container()
                self._service, self._containers = service, container
        return self._containers

    def _credential_object(self) -> Any:
        if self._credential:
            return self._credential
        try:
            from azure.identity.aio import (  # type: ignore[import-untyped, unused-ignore]
                DefaultAzureCredential,
            )
        except ImportError as exc:
            raise MissingDependencyError("azure", "azure-identity") from exc
        return DefaultAzureCredential()

    async def aclose(self) -> None:
        service, self._service, self._containers = self._service, None, None
        if service is not None:
            await service.close()

    # -- names and metadata ------------------------------------------------------------

    def _name(self, file_id: str) -> str:
        return self.prefix + file_id

    @property
    def max_id_bytes(self) -> int:
        return MAX_NAME_LENGTH - len(self.prefix.encode())

    def _validate_id(self, file_id: object) -> str:
        """Names, the container prefix with them, must fit Azure's 1,024 characters."""
        checked = super()._validate_id(file_id)
        if len(self._name(checked)) > MAX_NAME_LENGTH:
            raise InvalidFileIdError(
                f"file id {checked[:40]!r}... is too long for this storage: with the prefix "
                f"{self.prefix!r} a blob name holds at most {MAX_NAME_LENGTH} characters"
            )
        return checked

    def _blob_metadata(self, upload: Upload, checksum: str | None) -> dict[str, str]:
        metadata = {
            FILENAME_KEY: quote(upload.filename, safe=_FILENAME_SAFE, encoding="utf-8"),
            MODIFIED_KEY: format_filedepot_time(upload.stamp()),
        }
        if upload.metadata:
            metadata[METADATA_KEY] = dump_custom_metadata(upload.metadata)
        if checksum:
            metadata[CHECKSUM_KEY] = checksum
        size = sum(len(k) + len(v) for k, v in metadata.items())
        if size > METADATA_LIMIT:
            raise ValidationError(
                "azure-metadata",
                f"filename and metadata need {size} bytes of blob metadata; keep them "
                f"under {METADATA_LIMIT}",
            )
        return metadata

    def _settings(self, upload: Upload) -> ContentSettings:
        return ContentSettings(
            content_type=upload.content_type,
            content_disposition=_http.disposition_for(
                upload.filename, upload.content_type, inline_active=self.inline_active_content
            ),
        )

    def _stored_file(self, file_id: str, properties: Any) -> AzureStoredFile:
        meta = {str(k).lower(): str(v) for k, v in (properties.metadata or {}).items()}
        filename = unquote(meta[FILENAME_KEY]) if meta.get(FILENAME_KEY) else DEFAULT_FILENAME
        etag = str(properties.etag)
        last_modified = parse_filedepot_time(meta.get(MODIFIED_KEY))
        if last_modified is None:
            stamp = properties.last_modified
            last_modified = (
                stamp.astimezone(timezone.utc).replace(microsecond=0)
                if isinstance(stamp, datetime)
                else utcnow()
            )
        custom: dict[str, str] = {}
        if meta.get(METADATA_KEY):
            parsed = load_custom_metadata(meta[METADATA_KEY])
            if parsed is not None:
                custom = parsed
            else:
                logger.warning("%s: %r has malformed custom metadata", self._label(), file_id)
        settings = properties.content_settings
        content_type = str(settings.content_type or DEFAULT_CONTENT_TYPE)
        return AzureStoredFile(
            file_id,
            backend=self,
            etag=etag,
            filename=filename,
            content_type=content_type,
            content_length=int(properties.size or 0),
            last_modified=last_modified,
            checksum=meta.get(CHECKSUM_KEY) or etag.strip('"'),
            metadata=custom,
            public_url=self._file_url(file_id, filename, content_type),
        )

    # -- primitives ------------------------------------------------------------------

    async def _get(self, file_id: str) -> StoredFile:
        """One ``Get Blob``: its answer gives the properties, its body the first read."""
        blob = (await self._container()).get_blob_client(self._name(file_id))
        try:
            download = await blob.download_blob()
        except ResourceNotFoundError as exc:
            raise StoredFileNotFoundError(file_id, self.name) from exc
        stored = self._stored_file(file_id, download.properties)
        stored._download = download
        return stored

    async def _head(self, file_id: str) -> StoredFile:
        blob = (await self._container()).get_blob_client(self._name(file_id))
        try:
            properties = await blob.get_blob_properties()
        except ResourceNotFoundError as exc:
            raise StoredFileNotFoundError(file_id, self.name) from exc
        return self._stored_file(file_id, properties)

    async def _exists(self, file_id: str) -> bool:
        blob = (await self._container()).get_blob_client(self._name(file_id))
        return bool(await blob.exists())

    async def _delete(self, file_id: str) -> None:
        await self._delete_blob(self._name(file_id))

    async def _delete_blob(self, name: str) -> None:
        blob = (await self._container()).get_blob_client(name)
        with contextlib.suppress(ResourceNotFoundError):  # deleting what is not there: no error
            await blob.delete_blob()

    async def _list(
        self, prefix: str, start_after: str | None, delimiter: str | None
    ) -> AsyncIterator[str]:
        async for file_id in fold_listing(
            self._listed(prefix, delimiter), prefix, start_after, delimiter
        ):
            yield file_id

    async def _listed(self, prefix: str, delimiter: str | None) -> AsyncIterator[str]:
        """Names under ``prefix`` in code point order (Azure lists in UTF-8 byte order).

        With a delimiter a page holds its blobs and its folders apart, each sorted:
        they are merged per page, as pages follow each other in order.
        """
        container = await self._container()
        strip = len(self.prefix)
        start = self.prefix + prefix
        items: Any
        if delimiter:
            items = container.walk_blobs(name_starts_with=start, delimiter=delimiter)
        else:
            items = container.list_blobs(name_starts_with=start)
        async for page in items.by_page():
            names = sorted([str(item.name)[strip:] async for item in page])
            for name in names:
                if name.endswith("/") or is_valid_file_id(name):
                    yield name

    async def _store(self, file_id: str, upload: Upload, *, mode: WriteMode) -> None:
        blob = (await self._container()).get_blob_client(self._name(file_id))
        digest = new_hasher(self.checksum_algorithm)
        reader = PartReader(upload.chunks, self.block_size, digest)
        first = await reader.read()
        if reader.done:
            # One block: one Put Blob, atomic.
            metadata = self._blob_metadata(upload, digest.hexdigest())
            await commit_or_cancel(
                self._commit(
                    file_id,
                    mode,
                    lambda **conditions: blob.upload_blob(
                        first,
                        overwrite=True,
                        metadata=metadata,
                        content_settings=self._settings(upload),
                        **conditions,
                    ),
                )
            )
            return
        await self._store_blocks(blob, file_id, upload, mode, first, reader, digest)

    async def _store_blocks(
        self,
        blob: Any,
        file_id: str,
        upload: Upload,
        mode: WriteMode,
        first: bytes,
        reader: PartReader,
        digest: Any,
    ) -> None:
        """Stage blocks ``max_concurrency`` at a time, then commit the list under ``mode``."""
        prefix = uuid.uuid4().hex[:16]
        ids: list[str] = []
        slots = asyncio.Semaphore(self.max_concurrency)
        tasks: list[asyncio.Task[None]] = []

        async def stage(block_id: str, data: bytes) -> None:
            try:
                with large_bodies():
                    await blob.stage_block(block_id, data)
            finally:
                slots.release()

        data = first
        try:
            while data:
                await slots.acquire()
                for task in tasks:
                    if task.done() and not task.cancelled() and task.exception() is not None:
                        slots.release()
                        task.result()  # a failed block fails the upload
                block_id = base64.b64encode(f"{prefix}-{len(ids):08d}".encode()).decode()
                ids.append(block_id)
                tasks.append(asyncio.ensure_future(stage(block_id, data)))
                data = await reader.read()
            await asyncio.gather(*tasks)
        except BaseException:
            # Staged blocks are never visible; the service drops them uncommitted.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        metadata = self._blob_metadata(upload, digest.hexdigest())
        await commit_or_cancel(
            self._commit(
                file_id,
                mode,
                lambda **conditions: blob.commit_block_list(
                    ids,
                    metadata=metadata,
                    content_settings=self._settings(upload),
                    **conditions,
                ),
            )
        )

    async def _commit(self, file_id: str, mode: WriteMode, write: Any) -> None:
        """The request that makes a write visible, conditional as :data:`WriteMode` says."""
        blob = (await self._container()).get_blob_client(self._name(file_id))
        for _ in range(_COMMIT_ATTEMPTS):
            conditions: dict[str, Any] = {}
            if mode == "create":
                # If-None-Match: * (the SDK takes no etag with IfMissing)
                conditions = {"match_condition": MatchConditions.IfMissing}
            elif mode == "replace":
                try:
                    properties = await blob.get_blob_properties()
                except ResourceNotFoundError as exc:
                    raise StoredFileNotFoundError(file_id, self.name) from exc
                conditions = {
                    "etag": properties.etag,
                    "match_condition": MatchConditions.IfNotModified,
                }
            try:
                with large_bodies():
                    await write(**conditions)
                return
            except (ResourceExistsError, ResourceModifiedError) as exc:
                if mode == "create":
                    raise StoredFileExistsError(file_id, self.name) from exc
                if mode == "put":
                    raise
                # replace: another replace committed between our look and our write
            except ResourceNotFoundError as exc:
                if mode == "replace":
                    raise StoredFileNotFoundError(file_id, self.name) from exc
                raise
        raise BackendError(f"{self._label()}: replace {file_id!r} kept losing to other writers")

    def _translate_error(
        self, exc: Exception, action: str, file_id: str | None
    ) -> DepotError | None:
        if isinstance(exc, (AzureError, OSError, asyncio.TimeoutError)):
            return self._failure(action, file_id, exc)
        return None

    # -- URLs --------------------------------------------------------------------------

    def _base_url(self) -> str:
        if self.custom_domain:
            base = self.custom_domain
            return base if "://" in base else f"https://{base}"
        if self._account_url:
            return f"{self._account_url.rstrip('/')}/{quote(self.container)}"
        parts = _connection_parts(self._connection_string or "")
        endpoint = parts.get("blobendpoint")
        if endpoint:
            return f"{endpoint.rstrip('/')}/{quote(self.container)}"
        account = parts.get("accountname", "")
        suffix = parts.get("endpointsuffix", "core.windows.net")
        protocol = parts.get("defaultendpointsprotocol", "https")
        return f"{protocol}://{account}.blob.{suffix}/{quote(self.container)}"

    def public_url(self, file_id: str) -> str | None:
        file_id = self._validate_id(file_id)
        if self.public_url_mode == "none":
            return None
        if self.public_url_mode == "public":
            return f"{self._base_url()}/{quote(self._name(file_id), safe='/~')}"
        return self._sas_url(file_id, {}, self.presigned_expires)

    def _file_url(self, file_id: str, filename: str, content_type: str) -> str | None:
        if self.public_url_mode != "presigned":
            return self.public_url(file_id)
        disposition = _http.disposition_for(
            filename, content_type, inline_active=self.inline_active_content
        )
        return self._sas_url(file_id, {"content_disposition": disposition}, self.presigned_expires)

    def temporary_url(
        self, stored: StoredFile, *, expires_in: int, download: bool, filename: str | None
    ) -> str | None:
        if self.public_url_mode == "none":
            return None
        name = filename if filename is not None else stored.filename
        overrides = {
            "content_disposition": _http.disposition_for(
                name,
                stored.content_type,
                inline_active=self.inline_active_content,
                download=download,
            ),
            "content_type": _http.header_content_type(stored.content_type),
        }
        seconds = max(1, min(int(expires_in), self.presigned_expires))
        return self._sas_url(stored.file_id, overrides, seconds)

    def _account_key(self) -> tuple[str, str] | None:
        """The account name and key SAS tokens are signed with, if the config has them."""
        parts = _connection_parts(self._connection_string or "")
        account = parts.get("accountname")
        key = parts.get("accountkey") or (self._credential if self._account_url else None)
        if not account and self._account_url:
            account = self._account_url.split("//", 1)[-1].split(".", 1)[0]
        return (account, key) if account and key else None

    def _sas_url(self, file_id: str, overrides: Mapping[str, str], seconds: int) -> str:
        """A read-only SAS URL, signed locally with the account key (no network I/O)."""
        return self._signed_url(
            self._name(file_id),
            BlobSasPermissions(read=True),
            datetime.now(timezone.utc) + timedelta(seconds=seconds),
            overrides,
        )

    def _signed_url(
        self,
        name: str,
        permission: BlobSasPermissions,
        expiry: datetime,
        overrides: Mapping[str, str] | None = None,
    ) -> str:
        signer = self._account_key()
        if signer is None:
            raise ConfigurationError(
                f"{self._label()}: SAS URLs (public_url_mode = presigned, direct uploads) "
                "are signed with the account key: give it in the connection string or as "
                "the credential"
            )
        account, key = signer
        token = generate_blob_sas(
            account_name=account,
            container_name=self.container,
            blob_name=name,
            account_key=key,
            permission=permission,
            expiry=expiry,
            content_disposition=(overrides or {}).get("content_disposition"),
            content_type=(overrides or {}).get("content_type"),
        )
        return f"{self._base_url()}/{quote(name, safe='/~')}?{token}"

    # -- direct uploads ------------------------------------------------------------------

    def _presigns_uploads(self) -> bool:
        """With the account key; without it (a SAS credential, ``DefaultAzureCredential``)
        direct uploads go through the app."""
        return self._account_key() is not None

    def _is_staged(self, name: str) -> bool:
        return name.startswith(self.prefix + DIRECT_STAGING)

    async def _open_direct_upload(
        self, grant: UploadGrant
    ) -> tuple[UploadGrant, DirectTarget | None]:
        """A SAS URL to ``Put Blob`` one staging blob, for the ticket's lifetime.

        A SAS cannot bind a size or the request's headers: the ticket asks for
        ``If-None-Match: *`` (a replay is refused when sent) and finalize checks
        the size (an oversize upload is deleted there, not refused before it is
        stored, as S3's policy and GCS's signed header do).
        """
        if not self._presigns_uploads():
            return await super()._open_direct_upload(grant)
        import dataclasses

        from ..uploads._direct import DirectTarget

        name = f"{self.prefix}{DIRECT_STAGING}{grant.staged.rsplit('/', 1)[1]}"
        url = self._signed_url(
            name,
            BlobSasPermissions(create=True, write=True),
            datetime.fromtimestamp(grant.expires, timezone.utc),
        )
        headers = {
            "x-ms-blob-type": "BlockBlob",
            "Content-Type": grant.content_type or "application/octet-stream",
            "If-None-Match": "*",
        }
        return dataclasses.replace(grant, staged=name), DirectTarget(
            url, {}, method="PUT", headers=headers
        )

    async def _finalize_direct_upload(self, grant: UploadGrant) -> str:
        """Check the staged blob and store it under its id as any upload is stored.

        Azurite has no ``Put Block From URL`` and a server-side ``Copy Blob`` keeps
        the browser's content settings, so the staged bytes are read once (pinned
        to their ETag) and written through :meth:`create`: type detected from the
        bytes, checksum, metadata and disposition as for any upload, create-only
        at the final id. The staged blob is deleted after.
        """
        if not self._is_staged(grant.staged):
            return await super()._finalize_direct_upload(grant)  # it came through the app
        blob = (await self._container()).get_blob_client(grant.staged)
        try:
            properties = await blob.get_blob_properties()
        except ResourceNotFoundError:
            if await self._exists(grant.file_id):
                return grant.file_id  # finalized before
            raise ValidationError(
                "upload", "nothing was uploaded with this ticket (or it was cleaned up)"
            ) from None
        if int(properties.size or 0) > grant.max_size:
            await self._delete_blob(grant.staged)
            raise ValidationError("max_size", too_large_message(grant.max_size))
        download = await blob.download_blob(
            etag=properties.etag, match_condition=MatchConditions.IfNotModified
        )
        with contextlib.suppress(StoredFileExistsError):  # a concurrent finalize won
            await self.create(
                FileIntent(_chunks(download, _NEXT_GETS), grant.filename),
                metadata=grant.metadata,
                file_id=grant.file_id,
            )
        await self._delete_blob(grant.staged)
        return grant.file_id

    async def _abort_direct_upload(self, grant: UploadGrant) -> None:
        if not self._is_staged(grant.staged):
            await super()._abort_direct_upload(grant)
            return
        await self._delete_blob(grant.staged)

    async def _cleanup(self, older_than: timedelta) -> int:
        """Delete staged direct uploads whose ticket expired (uncommitted blocks of
        crashed writers are never visible; Azure drops them after 7 days)."""
        container = await self._container()
        folder = self.prefix + DIRECT_STAGING
        now = time.time()
        expired = [
            str(item.name)
            async for item in container.list_blobs(name_starts_with=folder)
            if staged_expiry(str(item.name)[len(folder) :]) < now
        ]
        for name in expired:
            await self._delete_blob(name)
        return len(expired)


def _connection_parts(connection_string: str) -> dict[str, str]:
    parts: dict[str, str] = {}
    for item in connection_string.split(";"):
        key, sep, value = item.partition("=")
        if sep:
            parts[key.strip().lower()] = value.strip()
    return parts
