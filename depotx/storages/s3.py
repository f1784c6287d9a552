"""Amazon S3 and S3-compatible services (MinIO, Ceph, R2, Wasabi), through aioboto3.

The object layout is filedepot's boto3 storage: the key is ``prefix + file_id``,
the content type is the object's ``Content-Type``, and the user metadata holds
``x-depot-filename`` (URL-quoted) and ``x-depot-modified`` (naive UTC,
``%Y-%m-%d %H:%M:%S``). An existing filedepot bucket is therefore served as is,
and filedepot reads what depotx writes. What only depotx needs rides along as
extra user metadata: ``x-depotx-checksum`` (sha256 of single-part uploads) and
``x-depotx-metadata`` (the custom metadata, as ASCII JSON).

Opening a file is one ``GetObject``: its answer gives the metadata and its body
is kept for the first whole read, so a download is one round trip. Where no bytes
are wanted (a ``HEAD`` request, a conditional ``GET`` answered with 304, ranges)
``get(..., metadata_only=True)`` is a ``HeadObject`` only. Other reads are one
ranged ``GetObject`` each, pinned to the version opened: by ``VersionId`` when
the bucket is versioned, else by ``If-Match`` on the ETag, in which case a
replace in between makes the read fail with :class:`~depotx.StoredFileChangedError`
before a single byte of the other version is yielded (the middleware retries).

Uploads stream: content that fits in one part is one ``PutObject``; larger
content becomes a multipart upload whose parts are sent concurrently, with
memory bounded by ``max_concurrency * part_size``. Any failure or cancellation
aborts the multipart upload, so neither orphan parts nor half objects remain.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Literal
from urllib.parse import quote, unquote

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
from ..uploads._direct import DirectTarget, UploadGrant
from ._parts import PartReader, no_chunks
from .base import (
    FileStorage,
    WriteMode,
    commit_or_cancel,
    fold_listing,
    staged_expiry,
    utcnow,
)

try:
    import aioboto3
    import aiohttp
    import botocore.session
    from botocore import UNSIGNED
    from botocore.config import Config
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        NoCredentialsError,
        PartialCredentialsError,
    )
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError("s3", "aioboto3") from exc

__all__ = ["S3Storage"]

logger = logging.getLogger("depotx.s3")

KiB = 1024
MiB = 1024 * KiB

#: S3 refuses parts below 5 MiB (except the last one) and above 5 GiB.
MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * 1024 * MiB
DEFAULT_PART_SIZE = 8 * MiB
MAX_PARTS = 10_000
#: Direct uploads declared larger than this get a multipart ticket instead of a POST.
DEFAULT_DIRECT_MULTIPART_THRESHOLD = 64 * MiB
#: Staged direct uploads live under ``<prefix>depotx-upload\``: not a valid id (a
#: backslash), so ``list()`` never shows them, and one prefix for a lifecycle rule.
DIRECT_STAGING = "depotx-upload\\"
#: Above this, a server-side copy is a multipart copy (``CopyObject`` stops at 5 GiB).
COPY_OBJECT_LIMIT = 5 * 1024 * MiB
#: S3's limit on object keys, in UTF-8 bytes.
MAX_KEY_BYTES = 1024
#: S3's limit on user metadata: keys plus values, UTF-8 bytes, all headers together.
METADATA_LIMIT = 2 * KiB
#: How long to wait for a connection, and for the next bytes of an answer, before
#: giving up (botocore's own default is 60 s each, times three attempts).
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 15.0
#: SigV4 presigned URLs live at most seven days.
MAX_PRESIGNED_EXPIRES = 7 * 24 * 3600

CANNED_ACLS = frozenset(
    {
        "private",
        "public-read",
        "public-read-write",
        "authenticated-read",
        "aws-exec-read",
        "bucket-owner-read",
        "bucket-owner-full-control",
    }
)
# ACLs that grant read to anyone: objects are then readable at their plain URL.
_PUBLIC_ACLS = frozenset({"public-read", "public-read-write"})
# Creating a bucket for these needs ACLs enabled on it (new AWS buckets disable them).
_OWNER_ONLY_ACLS = frozenset({"private", "bucket-owner-full-control"})

#: How often a replace that keeps losing to other replaces goes again.
_COMMIT_ATTEMPTS = 5
_CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404", "NoSuchVersion"})
_CREDENTIAL_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "InvalidSecurity",
    }
)
_ACCESS_CODES = frozenset({"AccessDenied", "AllAccessDisabled", "403", "Forbidden"})
_BUSY_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeout",
        "500",
        "502",
        "503",
        "504",
    }
)


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def _is_not_found(exc: ClientError) -> bool:
    return _error_code(exc) in _NOT_FOUND_CODES or _status(exc) == 404


def _metadata_size(metadata: Mapping[str, str]) -> int:
    return sum(len(key.encode()) + len(value.encode()) for key, value in metadata.items())


class S3StoredFile(StoredFile):
    """A file in S3: opened by one ``GetObject`` (or a ``HeadObject`` for metadata only);
    other reads are ranged ``GetObject`` requests pinned to the version opened."""

    #: Each range is one ``GetObject``: more than this in one request, and the
    #: middleware sends the whole file (ranges within 80 bytes are merged first).
    max_ranges = 8

    def __init__(
        self,
        file_id: str,
        *,
        backend: S3Storage,
        key: str,
        etag: str,
        version_id: str | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(file_id, storage=backend, **kwargs)
        self._backend = backend
        self._key = key
        self._etag = etag
        self._version_id = version_id
        #: The body of the ``GetObject`` that opened the file, until the first read
        #: takes it (a read of the whole file) or it is given up.
        self._body: Any = None

    async def _iter_range(self, start: int, end: int, chunk_size: int) -> AsyncIterator[bytes]:
        body = self._body
        self._body = None
        if body is not None:
            if start == 0 and end == self.content_length:
                # The opening GetObject's own body: the same version, no second request.
                async for chunk in self._read_body(body, end, chunk_size):
                    yield chunk
                return
            await _give_up(body, self.content_length)
        if start >= end:
            return
        backend = self._backend
        params: dict[str, Any] = {"Bucket": backend.bucket, "Key": self._key}
        if start > 0 or end < self.content_length:
            # Whole-file reads go without Range: servers answer them on their
            # plain (often faster) path, and the pinning below still applies.
            params["Range"] = f"bytes={start}-{end - 1}"
        if self._version_id:
            params["VersionId"] = self._version_id
        else:
            params["IfMatch"] = self._etag
        with backend._translating("read", self.file_id):
            client = await backend._client()
            try:
                response = await client.get_object(**params)
            except ClientError as exc:
                if _error_code(exc) == "PreconditionFailed" or _status(exc) == 412:
                    raise StoredFileChangedError(self.file_id, backend.name) from exc
                if _is_not_found(exc):
                    raise StoredFileNotFoundError(self.file_id, backend.name) from exc
                raise
            async for chunk in self._read_body(response["Body"], end - start, chunk_size):
                yield chunk

    async def _read_body(self, body: Any, expected: int, chunk_size: int) -> AsyncIterator[bytes]:
        """Yield ``expected`` bytes of ``body`` in chunks; fewer or more is an error."""
        backend = self._backend
        received = 0
        try:
            # Reads are yielded as they come when they fill a chunk, joined only when
            # the network hands them over in pieces: no copy of every byte.
            pending: list[bytes] = []
            have = 0
            while True:
                data = await body.read(chunk_size - have)
                if not data:
                    break
                received += len(data)
                if received > expected:
                    raise BackendError(
                        f"{backend._label()}: read {self.file_id!r}: the service sent more "
                        f"than the {expected} bytes asked for"
                    )
                pending.append(data)
                have += len(data)
                if have >= chunk_size:
                    yield b"".join(pending)
                    pending.clear()
                    have = 0
            if pending:
                yield b"".join(pending)
            if received != expected:
                raise BackendError(
                    f"{backend._label()}: read {self.file_id!r}: got {received} of {expected} bytes"
                )
        finally:
            # Fully read: the connection goes back to the pool; else it is closed.
            body.release()

    async def _release(self) -> None:
        body = self._body
        self._body = None
        if body is not None:
            await _give_up(body, self.content_length)


#: A body left unread up to this size is read to the end, so its connection is reused.
_DRAIN_LIMIT = 64 * KiB


async def _give_up(body: Any, length: int) -> None:
    """Let go of an unread ``GetObject`` body: drained when small, else closed."""
    if length <= _DRAIN_LIMIT:
        try:
            await body.read()
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            body.close()  # a broken connection is simply closed
        else:
            body.release()
        return
    body.close()


class S3Storage(FileStorage):
    """Files in an S3 bucket, laid out as filedepot's ``depot.io.boto3.S3Storage``.

    Nothing touches the network until first use: the aioboto3 session and its
    client are opened lazily, kept for the storage's lifetime and closed by
    :meth:`aclose`. Credentials not given as options come from the standard AWS
    chain (environment, shared files, instance or container roles).
    """

    #: ``get`` is one ``GetObject`` whose body is kept for the first read.
    reads_with_metadata = True

    def __init__(
        self,
        *,
        bucket: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        prefix: str = "",
        policy: str | None = "private",
        storage_class: str | None = None,
        session_token: str | None = None,
        profile_name: str | None = None,
        verify: bool | str | None = None,
        use_ssl: bool = True,
        config: dict[str, Any] | None = None,
        public_url_mode: Literal["none", "public", "presigned"] = "none",
        presigned_expires: int = 3600,
        custom_domain: str | None = None,
        addressing_style: Literal["auto", "path", "virtual"] | None = None,
        create_bucket: bool = False,
        part_size: int = DEFAULT_PART_SIZE,
        max_concurrency: int = 4,
        server_side_encryption: str | None = None,
        host: str | None = None,
        encrypt_key: bool = False,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        conditional_writes: bool = True,
        direct_multipart_threshold: int = DEFAULT_DIRECT_MULTIPART_THRESHOLD,
        cors_origins: str | None = None,
    ) -> None:
        if host:  # filedepot's boto2 storage (depot.io.awss3) names the endpoint by host
            if endpoint_url:
                raise ConfigurationError("give endpoint_url or host (filedepot's name), not both")
            endpoint_url = host if "://" in host else f"{'https' if use_ssl else 'http'}://{host}"
        if not bucket:
            if not access_key_id:
                raise ConfigurationError("the s3 backend needs a bucket (depot.bucket)")
            bucket = f"filedepot-{access_key_id.lower()}"  # filedepot's default bucket name
        if bool(access_key_id) != bool(secret_access_key):
            raise ConfigurationError(
                "give both access_key_id and secret_access_key, or neither to use the "
                "standard AWS credential chain"
            )
        if policy is not None and policy.strip().lower() in {"", "none"}:
            policy = None
        if policy is not None and policy not in CANNED_ACLS:
            raise ConfigurationError(
                f"unknown policy {policy!r}: use a canned ACL ({', '.join(sorted(CANNED_ACLS))}) "
                "or none to send no ACL (buckets with ACLs disabled)"
            )
        if public_url_mode not in ("none", "public", "presigned"):
            raise ConfigurationError(
                f"public_url_mode must be none, public or presigned, not {public_url_mode!r}"
            )
        if (
            public_url_mode == "public"
            and not custom_domain
            and policy is not None
            and policy not in _PUBLIC_ACLS
        ):
            raise ConfigurationError(
                f"public_url_mode = public with policy = {policy} would link to URLs that "
                "answer 403: set policy = public-read, or policy = none if a bucket policy "
                "makes objects public, or custom_domain for a CDN in front of the bucket, "
                "or use public_url_mode = presigned"
            )
        if custom_domain and public_url_mode != "public":
            raise ConfigurationError(
                "custom_domain is used by public_url_mode = public only (a presigned URL is "
                "signed for the bucket's own host)"
            )
        if not 1 <= presigned_expires <= MAX_PRESIGNED_EXPIRES:
            raise ConfigurationError(
                f"presigned_expires must be between 1 and {MAX_PRESIGNED_EXPIRES} seconds"
            )
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise ConfigurationError(
                f"part_size must be between {MIN_PART_SIZE} (5 MiB) and {MAX_PART_SIZE} (5 GiB)"
            )
        if max_concurrency < 1:
            raise ConfigurationError("max_concurrency must be at least 1")
        if connect_timeout <= 0 or read_timeout <= 0:
            raise ConfigurationError("connect_timeout and read_timeout must be positive")
        if addressing_style not in (None, "auto", "path", "virtual"):
            raise ConfigurationError(
                f"addressing_style must be auto, path or virtual, not {addressing_style!r}"
            )
        if encrypt_key and not server_side_encryption:
            server_side_encryption = "AES256"  # what filedepot's encrypt_key meant

        self.bucket = bucket
        self.prefix = prefix or ""
        self.policy = policy
        self.storage_class = storage_class
        self.server_side_encryption = server_side_encryption
        self.public_url_mode = public_url_mode
        self.presigned_expires = presigned_expires
        self.custom_domain = custom_domain.rstrip("/") if custom_domain else None
        self.create_bucket = create_bucket
        if direct_multipart_threshold < MIN_PART_SIZE:
            raise ConfigurationError("direct_multipart_threshold must be at least 5 MiB")
        self.direct_multipart_threshold = direct_multipart_threshold
        #: Origins a bucket created by depotx lets browsers upload from (CORS); off by default.
        self.cors_origins = (
            [origin.strip() for origin in cors_origins.split(",") if origin.strip()]
            if isinstance(cors_origins, str)
            else list(cors_origins or [])
        )
        self.part_size = part_size
        self.max_concurrency = max_concurrency
        self.conditional_writes = conditional_writes
        # A presigned URL carries the disposition rule, which needs the file's type.
        self.redirect_after_open = public_url_mode == "presigned"
        self._region_name = region_name
        self._credentials: dict[str, str] = {}
        if access_key_id and secret_access_key:
            self._credentials = {
                "aws_access_key_id": access_key_id,
                "aws_secret_access_key": secret_access_key,
            }
            if session_token:
                self._credentials["aws_session_token"] = session_token
        self._profile_name = profile_name
        self._config_kwargs = self._merge_config(
            config, addressing_style, max_concurrency, connect_timeout, read_timeout
        )
        try:
            self._config = Config(**self._config_kwargs)
        except TypeError as exc:
            raise ConfigurationError(f"invalid botocore config option: {exc}") from exc
        self._client_kwargs: dict[str, Any] = {"config": self._config, "use_ssl": use_ssl}
        if endpoint_url:
            self._client_kwargs["endpoint_url"] = endpoint_url
        if verify is not None:
            self._client_kwargs["verify"] = verify

        self._session: Any = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._s3: Any = None
        self._lock = asyncio.Lock()
        self._bucket_checked = False
        self._signer: Any = None
        self._plain: Any = None

    @staticmethod
    def _merge_config(
        user: Mapping[str, Any] | None,
        addressing_style: str | None,
        concurrency: int,
        connect_timeout: float,
        read_timeout: float,
    ) -> dict[str, Any]:
        """Our defaults under the user's ``config``; nested ``retries``/``s3`` merge key by key.

        botocore's own timeouts (60 s each, three attempts) let a frozen endpoint
        hold a request for three minutes; ours make it a quick, clear failure.
        """
        merged: dict[str, Any] = {
            "retries": {"mode": "standard"},
            "max_pool_connections": max(10, 2 * concurrency),
            "connect_timeout": connect_timeout,
            "read_timeout": read_timeout,
        }
        if addressing_style:
            merged["s3"] = {"addressing_style": addressing_style}
        if user is not None and not isinstance(user, Mapping):
            raise ConfigurationError("config must be a mapping of botocore Config options")
        for key, value in (user or {}).items():
            if key in ("retries", "s3") and isinstance(value, Mapping):
                merged[key] = {**merged.get(key, {}), **value}
            else:
                merged[key] = value
        return merged

    # -- the client ---------------------------------------------------------------

    def _label(self) -> str:
        return self.name or f"s3 bucket {self.bucket!r}"

    async def _client(self) -> Any:
        """The long-lived aiobotocore client, opened on first use."""
        client = self._s3
        if client is not None:
            return client
        async with self._lock:
            if self._s3 is None:
                self._s3 = await self._open()
            return self._s3

    async def _open(self) -> Any:
        if self._session is None:
            self._session = aioboto3.Session(
                region_name=self._region_name,
                profile_name=self._profile_name,
                **self._credentials,
            )
        stack = contextlib.AsyncExitStack()
        try:
            client = await stack.enter_async_context(
                self._session.client("s3", **self._client_kwargs)
            )
            if self.create_bucket:
                await self._ensure_bucket(client)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return client

    async def aclose(self) -> None:
        """Close the client and its connection pool; the next call reopens it."""
        stack, self._stack, self._s3 = self._stack, None, None
        # A fresh lock, so the storage may be reused from another event loop.
        self._lock = asyncio.Lock()
        if stack is not None:
            await stack.aclose()

    async def _ensure_bucket(self, client: Any) -> None:
        """Create the bucket when ``create_bucket`` is on and it does not exist yet."""
        try:
            await client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if not _is_not_found(exc):
                raise
        else:
            self._bucket_checked = True
            return
        params: dict[str, Any] = {"Bucket": self.bucket}
        region = self._region_name or client.meta.region_name
        if region and region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": region}
        needs_acls = self.policy is not None and self.policy not in _OWNER_ONLY_ACLS
        if needs_acls:
            params["ObjectOwnership"] = "BucketOwnerPreferred"
        try:
            await client.create_bucket(**params)
        except ClientError as exc:
            if _error_code(exc) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise
        if self.cors_origins:
            await client.put_bucket_cors(
                Bucket=self.bucket, CORSConfiguration=cors_configuration(self.cors_origins)
            )
        if needs_acls and self.policy in _PUBLIC_ACLS:
            # New AWS buckets block public ACLs; allow them as filedepot does, and
            # keep public bucket policies blocked.
            try:
                await client.put_public_access_block(
                    Bucket=self.bucket,
                    PublicAccessBlockConfiguration={
                        "BlockPublicAcls": False,
                        "IgnorePublicAcls": False,
                        "BlockPublicPolicy": True,
                        "RestrictPublicBuckets": True,
                    },
                )
            except ClientError as exc:
                if _error_code(exc) not in {"NotImplemented", "MethodNotAllowed"}:
                    raise
                logger.info(
                    "%s: the service has no public access block settings (%s); "
                    "public-read objects rely on its own defaults",
                    self._label(),
                    _error_code(exc),
                )
        self._bucket_checked = True

    async def _missing(self, client: Any, file_id: str) -> StoredFileNotFoundError:
        """The not-found error for ``file_id``, once the bucket itself is known to exist.

        A ``HeadObject`` in a missing bucket answers a bare 404, exactly as for a
        missing key; one ``HeadBucket`` tells them apart, so a typo in the bucket
        name says so instead of looking like a missing file.
        """
        if not self._bucket_checked:
            try:
                await client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if _is_not_found(exc):
                    raise self._bucket_missing() from exc
                if _error_code(exc) not in _ACCESS_CODES:
                    raise
                # Credentials limited to objects may not head the bucket: no verdict,
                # and no point asking again on every miss.
            self._bucket_checked = True
        return StoredFileNotFoundError(file_id, self.name)

    def _bucket_missing(self) -> BackendError:
        endpoint = self._client_kwargs.get("endpoint_url")
        where = f" at {endpoint}" if endpoint else ""
        return BackendError(
            f"{self._label()}: bucket {self.bucket!r} does not exist{where}; "
            "create it, or set depot.create_bucket = true"
        )

    def _translate_error(
        self, exc: Exception, action: str, file_id: str | None
    ) -> DepotError | None:
        """Map botocore and aiohttp failures onto the depotx error tree."""
        what = f" {file_id!r}" if file_id else ""
        label = self._label()
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return ConfigurationError(
                f"{label}: no usable AWS credentials ({exc}); set depot.access_key_id and "
                "depot.secret_access_key, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or a "
                "profile or role"
            )
        if isinstance(exc, ClientError):
            code = _error_code(exc)
            if code == "NoSuchBucket":
                return self._bucket_missing()
            if code in _CREDENTIAL_CODES:
                message = (
                    f"the service rejected the credentials ({code}); check "
                    "access_key_id, secret_access_key and region_name"
                )
            elif code in _ACCESS_CODES:
                message = (
                    f"access denied to bucket {self.bucket!r} ({code}); the credentials "
                    "need s3:GetObject, s3:PutObject, s3:DeleteObject and s3:ListBucket "
                    "(and s3:PutObjectAcl for a policy other than private)"
                )
            elif code in _BUSY_CODES or _status(exc) >= 500:
                message = f"the service is unavailable or throttling ({code}) after retries"
            else:
                message = f"{code or _status(exc)}: {exc}"
            return BackendError(f"{label}: {action}{what} failed: {message}")
        if isinstance(exc, (BotoCoreError, aiohttp.ClientError, asyncio.TimeoutError)):
            return BackendError(f"{label}: {action}{what} failed: {exc}")
        return super()._translate_error(exc, action, file_id)

    # -- keys and metadata ---------------------------------------------------------

    def _validate_id(self, file_id: object) -> str:
        """Keys, and the bucket prefix with them, must fit S3's 1,024 bytes."""
        valid = super()._validate_id(file_id)
        if len((self.prefix + valid).encode("utf-8")) > MAX_KEY_BYTES:
            raise InvalidFileIdError(
                f"file id {valid[:40]!r}... is too long for this storage: with the prefix "
                f"{self.prefix!r} an S3 key holds at most {MAX_KEY_BYTES} bytes"
            )
        return valid

    @property
    def max_id_bytes(self) -> int:
        return MAX_KEY_BYTES - len(self.prefix.encode("utf-8"))

    def _key(self, file_id: str) -> str:
        return self.prefix + file_id

    def _object_metadata(self, upload: Upload) -> dict[str, str]:
        metadata = {
            FILENAME_KEY: quote_filename(upload.filename),
            MODIFIED_KEY: format_filedepot_time(upload.stamp()),
        }
        if upload.metadata:
            metadata[METADATA_KEY] = dump_custom_metadata(upload.metadata)
        # The checksum is added once the content is read; count its room now, so
        # a too-large upload is refused before any byte is sent.
        size = _metadata_size(metadata) + len(CHECKSUM_KEY) + 64
        if size > METADATA_LIMIT:
            raise ValidationError(
                "s3-metadata",
                f"filename and metadata need {size} bytes of S3 user metadata; S3 allows "
                f"{METADATA_LIMIT} bytes in all: shorten the filename or the metadata",
            )
        return metadata

    def _put_params(self, key: str, upload: Upload) -> dict[str, Any]:
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "ContentType": upload.content_type,
            # The one disposition rule: what the bucket serves on public and presigned
            # URLs is as safe as what the middleware serves (HTML, SVG: attachment).
            "ContentDisposition": _http.disposition_for(
                upload.filename, upload.content_type, inline_active=self.inline_active_content
            ),
            "Metadata": self._object_metadata(upload),
        }
        if self.policy is not None:
            params["ACL"] = self.policy
        if self.storage_class:
            params["StorageClass"] = self.storage_class
        if self.server_side_encryption:
            params["ServerSideEncryption"] = self.server_side_encryption
        return params

    def _stored_file(self, file_id: str, head: Mapping[str, Any]) -> S3StoredFile:
        meta = {str(k).lower(): str(v) for k, v in (head.get("Metadata") or {}).items()}
        filename = unquote(meta[FILENAME_KEY]) if meta.get(FILENAME_KEY) else DEFAULT_FILENAME
        etag = str(head.get("ETag", ""))
        checksum = meta.get(CHECKSUM_KEY) or etag.strip('"')
        last_modified: datetime | None = None
        if meta.get(MODIFIED_KEY):
            last_modified = parse_filedepot_time(meta[MODIFIED_KEY])
            if last_modified is None:
                logger.warning(
                    "%s: %r has a malformed %s %r; using the object's LastModified",
                    self._label(),
                    file_id,
                    MODIFIED_KEY,
                    meta[MODIFIED_KEY],
                )
        if last_modified is None:
            stamp = head.get("LastModified")
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
                logger.warning(
                    "%s: %r has malformed %s metadata; ignoring it",
                    self._label(),
                    file_id,
                    METADATA_KEY,
                )
        version_id = head.get("VersionId")
        content_type = str(head.get("ContentType") or DEFAULT_CONTENT_TYPE)
        return S3StoredFile(
            file_id,
            backend=self,
            key=self._key(file_id),
            etag=etag,
            version_id=str(version_id) if version_id and version_id != "null" else None,
            filename=filename,
            content_type=content_type,
            content_length=int(head.get("ContentLength", 0)),
            last_modified=last_modified,
            checksum=checksum,
            metadata=custom,
            public_url=self._file_url(file_id, filename, content_type),
        )

    # -- primitives ------------------------------------------------------------------

    async def _get(self, file_id: str) -> StoredFile:
        """One ``GetObject``: its answer carries the metadata, and its body is kept
        for the first read, so opening and reading a file is one round trip."""
        client = await self._client()
        try:
            response = await client.get_object(Bucket=self.bucket, Key=self._key(file_id))
        except ClientError as exc:
            if _is_not_found(exc):
                raise await self._missing(client, file_id) from exc
            raise
        stored = self._stored_file(file_id, response)
        stored._body = response["Body"]
        return stored

    async def _head(self, file_id: str) -> StoredFile:
        """``HeadObject`` only: for a ``HEAD``, a conditional request or a redirect."""
        client = await self._client()
        try:
            head = await client.head_object(Bucket=self.bucket, Key=self._key(file_id))
        except ClientError as exc:
            if _is_not_found(exc):
                raise await self._missing(client, file_id) from exc
            raise
        return self._stored_file(file_id, head)

    async def _exists(self, file_id: str) -> bool:
        client = await self._client()
        try:
            await client.head_object(Bucket=self.bucket, Key=self._key(file_id))
        except ClientError as exc:
            if _is_not_found(exc):
                await self._missing(client, file_id)
                return False
            raise
        return True

    async def _delete(self, file_id: str) -> None:
        client = await self._client()
        await client.delete_object(Bucket=self.bucket, Key=self._key(file_id))

    async def _list(
        self, prefix: str, start_after: str | None, delimiter: str | None
    ) -> AsyncIterator[str]:
        # S3 lists keys in UTF-8 byte order, which is code point order.
        async for file_id in fold_listing(
            self._listed(prefix, start_after, delimiter), prefix, start_after, delimiter
        ):
            yield file_id

    async def _listed(
        self, prefix: str, start_after: str | None, delimiter: str | None
    ) -> AsyncIterator[str]:
        client = await self._client()
        paginator = client.get_paginator("list_objects_v2")
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix + prefix}
        if start_after:
            params["StartAfter"] = self.prefix + start_after
        if delimiter:
            params["Delimiter"] = delimiter
        strip = len(self.prefix)
        async for page in paginator.paginate(**params):
            # Keys and folders arrive in two lists, each sorted: merge them.
            keys = [str(item["Key"])[strip:] for item in page.get("Contents", ())]
            folders = [str(item["Prefix"])[strip:] for item in page.get("CommonPrefixes", ())]
            for name in sorted([*keys, *folders]):
                if name.endswith("/") or is_valid_file_id(name):
                    yield name

    async def _store(self, file_id: str, upload: Upload, *, mode: WriteMode) -> None:
        params = self._put_params(self._key(file_id), upload)
        client = await self._client()
        digest = new_hasher(self.checksum_algorithm)
        reader = PartReader(upload.chunks, self.part_size, digest)
        first = await reader.read()
        if reader.done:
            # One part: one PutObject, atomic, and the sha256 is known before it is sent.
            params["Metadata"][CHECKSUM_KEY] = digest.hexdigest()
            await commit_or_cancel(self._commit(client, file_id, mode, params, Body=first))
            return
        await self._multipart(client, file_id, mode, params, first, reader)

    async def _commit(
        self, client: Any, file_id: str, mode: WriteMode, params: Mapping[str, Any], **extra: Any
    ) -> None:
        """The request that makes a write visible: ``PutObject`` or ``CompleteMultipartUpload``.

        Conditional, so the rules of :data:`WriteMode` hold in the service itself:
        a create sends ``If-None-Match: *`` (exactly one create of a key wins), a
        replace sends ``If-Match`` with the ETag the key has right before it (a
        delete that landed while the content uploaded wins: the key is gone, and
        the replace raises not-found instead of bringing it back). A replace that
        loses to another replace goes again on top of it. With
        ``conditional_writes = false`` the same is checked with a ``HeadObject``
        first, which leaves a window of milliseconds.
        """
        request = dict(params, **extra)
        for _ in range(_COMMIT_ATTEMPTS):
            if mode == "replace" or not self.conditional_writes:
                etag = await self._current_etag(client, file_id)
                if mode == "replace" and etag is None:
                    raise StoredFileNotFoundError(file_id, self.name)
                if mode == "create" and etag is not None:
                    raise StoredFileExistsError(file_id, self.name)
                if mode == "replace" and self.conditional_writes:
                    request["IfMatch"] = etag
            elif mode == "create":
                request["IfNoneMatch"] = "*"
            try:
                if "UploadId" in request:
                    await client.complete_multipart_upload(**request)
                else:
                    await client.put_object(**request)
                return
            except ClientError as exc:
                failed = _error_code(exc) in _CONFLICT_CODES or _status(exc) in (409, 412)
                if mode == "create" and failed:
                    raise StoredFileExistsError(file_id, self.name) from exc
                if mode == "replace" and _is_not_found(exc):
                    raise StoredFileNotFoundError(file_id, self.name) from exc
                if not (mode == "replace" and failed):
                    raise
                # Another replace committed between our look and our write: go again.
        raise BackendError(f"{self._label()}: replace {file_id!r} kept losing to other writers")

    async def _current_etag(self, client: Any, file_id: str) -> str | None:
        try:
            head = await client.head_object(Bucket=self.bucket, Key=self._key(file_id))
        except ClientError as exc:
            if _is_not_found(exc):
                return None
            raise
        return str(head["ETag"])

    def _same_service(self, other: FileStorage) -> bool:
        """Whether ``other`` is an S3 storage this one's client can read from."""
        return (
            isinstance(other, S3Storage)
            and other._client_kwargs.get("endpoint_url") == self._client_kwargs.get("endpoint_url")
            and other._credentials == self._credentials
            and other._profile_name == self._profile_name
            and other._region_name == self._region_name
        )

    async def _copy_within(
        self, source: FileStorage, stored: StoredFile, file_id: str, *, mode: WriteMode
    ) -> bool:
        """``CopyObject`` (a multipart copy above 5 GiB) from another bucket or prefix.

        The source object is pinned with ``CopySourceIfMatch`` on its ETag (and its
        version when it has one): a source replaced since it was opened fails the
        copy with :class:`~depotx.StoredFileChangedError` instead of copying another
        version. Metadata is written anew in filedepot's layout, date kept.
        """
        if not self._same_service(source) or not isinstance(stored, S3StoredFile):
            return False
        assert isinstance(source, S3Storage)
        file_id = self._validate_id(file_id)
        copy_source = source._copy_source(stored)

        async def nothing() -> AsyncIterator[bytes]:
            return
            yield b""  # pragma: no cover

        upload = Upload(
            chunks=nothing(),
            filename=stored.filename,
            content_type=stored.content_type,
            metadata=dict(stored.metadata),
            last_modified=stored.last_modified,
        )
        params = self._put_params(self._key(file_id), upload)
        if is_content_checksum(stored.checksum):  # a hash of the content: true of the copy
            params["Metadata"][CHECKSUM_KEY] = stored.checksum
        client = await self._client()
        if mode != "put":
            exists = await self._current_etag(client, file_id) is not None
            if mode == "create" and exists:
                raise StoredFileExistsError(file_id, self.name)
            if mode == "replace" and not exists:
                raise StoredFileNotFoundError(file_id, self.name)
        try:
            if stored.content_length <= COPY_OBJECT_LIMIT:
                await commit_or_cancel(
                    client.copy_object(
                        CopySource=copy_source,
                        CopySourceIfMatch=stored._etag,
                        MetadataDirective="REPLACE",
                        **params,
                    )
                )
            else:
                await self._multipart_copy(client, params, copy_source, stored)
        except ClientError as exc:
            if _error_code(exc) == "PreconditionFailed" or _status(exc) == 412:
                raise StoredFileChangedError(file_id, source.name) from exc
            raise
        return True

    def _copy_source(self, stored: S3StoredFile) -> dict[str, str]:
        """``CopySource`` naming ``stored``'s object, pinned to its version when it has one."""
        source: dict[str, str] = {"Bucket": self.bucket, "Key": self._key(stored.file_id)}
        if stored._version_id:
            source["VersionId"] = stored._version_id
        return source

    async def _compose(
        self,
        file_id: str,
        source: FileStorage,
        pieces: Sequence[StoredFile],
        upload: Upload,
        *,
        mode: WriteMode,
    ) -> bool:
        """A multipart upload whose parts are copied from ``pieces`` inside S3.

        Pieces of 5 MiB and more become ``UploadPartCopy`` parts (pinned with
        ``CopySourceIfMatch``); smaller ones are gathered, with the start of the next
        piece if need be, into parts of 5 MiB that are read and sent (S3 refuses
        parts under 5 MiB but the last): at most one part's bytes are held at a time
        per concurrent part. The object appears with ``CompleteMultipartUpload``
        only; any failure aborts the upload.
        """
        if not (
            self._same_service(source)
            and pieces
            and all(isinstance(piece, S3StoredFile) for piece in pieces)
        ):
            return False
        assert isinstance(source, S3Storage)
        plan = compose_plan(
            [piece.content_length for piece in pieces], MIN_PART_SIZE, MAX_PART_SIZE
        )
        if len(plan) > MAX_PARTS:
            return False
        file_id = self._validate_id(file_id)
        params = self._put_params(self._key(file_id), upload)
        client = await self._client()
        created = await client.create_multipart_upload(**params)
        upload_id = created["UploadId"]
        target = {"Bucket": params["Bucket"], "Key": params["Key"]}
        slots = asyncio.Semaphore(self.max_concurrency)

        async def send(
            number: int, copy: bool, ranges: list[tuple[int, int, int]]
        ) -> dict[str, Any]:
            async with slots:
                if copy:
                    ((index, start, end),) = ranges
                    piece = pieces[index]
                    assert isinstance(piece, S3StoredFile)
                    response = await client.upload_part_copy(
                        UploadId=upload_id,
                        PartNumber=number,
                        CopySource=source._copy_source(piece),
                        CopySourceRange=f"bytes={start}-{end - 1}",
                        CopySourceIfMatch=piece._etag,
                        **target,
                    )
                    return {"ETag": response["CopyPartResult"]["ETag"], "PartNumber": number}
                data = bytearray()
                for index, start, end in ranges:
                    async for chunk in pieces[index].iter_bytes(start, end):
                        data += chunk
                response = await client.upload_part(
                    UploadId=upload_id, PartNumber=number, Body=bytes(data), **target
                )
                part = {"ETag": response["ETag"], "PartNumber": number}
                part.update({k: v for k, v in response.items() if k.startswith("Checksum")})
                return part

        tasks = [
            asyncio.ensure_future(send(number, copy, ranges))
            for number, (copy, ranges) in enumerate(plan, start=1)
        ]
        try:
            parts = await asyncio.gather(*tasks)
            await commit_or_cancel(
                self._commit(
                    client,
                    file_id,
                    mode,
                    target,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": list(parts)},
                )
            )
        except BaseException:
            await asyncio.shield(self._abort(client, target, upload_id, tasks))
            raise
        return True

    async def _multipart_copy(
        self,
        client: Any,
        params: dict[str, Any],
        copy_source: dict[str, str],
        stored: S3StoredFile,
    ) -> None:
        """``UploadPartCopy`` in parts (at most 10,000, each 5 MiB-5 GiB); aborted on failure."""
        await self._copy_in_parts(client, params, copy_source, stored.content_length, stored._etag)

    async def _copy_in_parts(
        self,
        client: Any,
        params: dict[str, Any],
        copy_source: dict[str, str],
        size: int,
        etag: str,
    ) -> None:
        part = max(self.part_size, -(-size // MAX_PARTS))
        created = await client.create_multipart_upload(**params)
        target = {"Bucket": params["Bucket"], "Key": params["Key"]}
        upload_id = created["UploadId"]
        try:
            parts = []
            for number, start in enumerate(range(0, size, part), start=1):
                end = min(start + part, size) - 1
                response = await client.upload_part_copy(
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource=copy_source,
                    CopySourceRange=f"bytes={start}-{end}",
                    CopySourceIfMatch=etag,
                    **target,
                )
                parts.append({"ETag": response["CopyPartResult"]["ETag"], "PartNumber": number})
            await commit_or_cancel(
                client.complete_multipart_upload(
                    UploadId=upload_id, MultipartUpload={"Parts": parts}, **target
                )
            )
        except BaseException:
            await asyncio.shield(self._abort(client, target, upload_id, []))
            raise

    # -- direct uploads -------------------------------------------------------------------

    def _presigns_uploads(self) -> bool:
        return True

    async def _open_direct_upload(
        self, grant: UploadGrant
    ) -> tuple[UploadGrant, DirectTarget | None]:
        """A presigned ``POST`` to a staging key, or a multipart upload for large files.

        The POST policy fixes the key, limits the size (``content-length-range``)
        and the ``Content-Type``; S3 refuses anything else before storing it. The
        staging key starts with the expiry, for :meth:`cleanup`.
        """
        key = f"{self.prefix}{DIRECT_STAGING}{grant.staged.rsplit('/', 1)[1]}"
        content_type = grant.content_type or "application/octet-stream"
        seconds = max(1, int(grant.expires - time.time()))
        size = grant.size
        if size is not None and size > self.direct_multipart_threshold:
            part = max(self.part_size, -(-size // MAX_PARTS))
            client = await self._client()
            created = await client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ContentType=content_type
            )
            grant = dataclasses.replace(grant, staged=key, upload_id=created["UploadId"])
            count = max(1, -(-size // part))
            return grant, DirectTarget(None, {}, part, count)
        post = self._signing_client().generate_presigned_post(
            Bucket=self.bucket,
            Key=key,
            Fields={"Content-Type": content_type},
            Conditions=[
                {"Content-Type": content_type},
                ["content-length-range", 0, grant.max_size],
            ],
            ExpiresIn=seconds,
        )
        return dataclasses.replace(grant, staged=key), DirectTarget(post["url"], post["fields"])

    async def _presign_upload_parts(self, grant: UploadGrant, numbers: list[int]) -> dict[int, str]:
        seconds = max(1, int(grant.expires - time.time()))
        signer = self._signing_client()
        return {
            number: str(
                signer.generate_presigned_url(
                    "upload_part",
                    Params={
                        "Bucket": self.bucket,
                        "Key": grant.staged,
                        "UploadId": grant.upload_id,
                        "PartNumber": number,
                    },
                    ExpiresIn=seconds,
                )
            )
            for number in numbers
        }

    async def _abort_direct_upload(self, grant: UploadGrant) -> None:
        client = await self._client()
        if grant.upload_id is not None:
            try:
                await client.abort_multipart_upload(
                    Bucket=self.bucket, Key=grant.staged, UploadId=grant.upload_id
                )
            except ClientError as exc:
                if _error_code(exc) != "NoSuchUpload":
                    raise
        await client.delete_object(Bucket=self.bucket, Key=grant.staged)

    async def _finalize_direct_upload(self, grant: UploadGrant) -> str:
        """Check the staged object, detect its type, copy it to its id with our metadata.

        The copy is server-side (``CopyObject``, pinned to the staged ETag; a
        multipart copy above 5 GiB) and writes filedepot's metadata and the
        disposition rule anew; the staged object is deleted afterwards.
        """
        client = await self._client()
        if grant.upload_id is not None:
            await self._complete_direct_parts(client, grant)
        try:
            head = await client.head_object(
                Bucket=self.bucket, Key=grant.staged, ChecksumMode="ENABLED"
            )
        except ClientError as exc:
            if not _is_not_found(exc):
                raise
            if await self._exists(grant.file_id):
                return grant.file_id  # finalized before
            raise ValidationError(
                "upload", "nothing was uploaded with this ticket (or it was cleaned up)"
            ) from exc
        size = int(head["ContentLength"])
        etag = str(head["ETag"])
        if size > grant.max_size:
            await client.delete_object(Bucket=self.bucket, Key=grant.staged)
            raise ValidationError("max_size", too_large_message(grant.max_size))
        sample = b""
        if size:
            response = await client.get_object(
                Bucket=self.bucket,
                Key=grant.staged,
                Range=f"bytes=0-{SNIFF_SIZE - 1}",
                IfMatch=etag,
            )
            body = response["Body"]
            try:
                sample = await body.read()
            finally:
                body.close()
        content_type = await asyncio.to_thread(
            detect_content_type, sample, grant.filename, complete=size <= SNIFF_SIZE
        )
        checksum = await self._direct_checksum(client, grant.staged, head)
        upload = Upload(
            chunks=no_chunks(),
            filename=grant.filename,
            content_type=content_type,
            metadata=dict(grant.metadata),
            last_modified=utcnow(),
        )
        params = self._put_params(self._key(grant.file_id), upload)
        if checksum is not None:
            params["Metadata"][CHECKSUM_KEY] = checksum
        source = {"Bucket": self.bucket, "Key": grant.staged}
        if size <= COPY_OBJECT_LIMIT:
            await commit_or_cancel(
                client.copy_object(
                    CopySource=source,
                    CopySourceIfMatch=etag,
                    MetadataDirective="REPLACE",
                    **params,
                )
            )
        else:
            await self._copy_in_parts(client, params, source, size, etag)
        await client.delete_object(Bucket=self.bucket, Key=grant.staged)
        return grant.file_id

    async def _complete_direct_parts(self, client: Any, grant: UploadGrant) -> None:
        """Complete a multipart direct upload from the parts S3 holds (none trusted from
        the client); one whose parts do not add up to the declared size is aborted."""
        parts: list[dict[str, Any]] = []
        try:
            paginator = client.get_paginator("list_parts")
            async for page in paginator.paginate(
                Bucket=self.bucket, Key=grant.staged, UploadId=grant.upload_id
            ):
                parts.extend(page.get("Parts", ()))
        except ClientError as exc:
            if _error_code(exc) == "NoSuchUpload":
                return  # completed (or aborted) before: the staged object tells
            raise
        total = sum(int(part["Size"]) for part in parts)
        if total != grant.size or total > grant.max_size:
            await self._abort_direct_upload(grant)
            raise ValidationError(
                "upload", f"the parts hold {total} bytes, not the {grant.size} announced"
            )
        await client.complete_multipart_upload(
            Bucket=self.bucket,
            Key=grant.staged,
            UploadId=grant.upload_id,
            MultipartUpload={
                "Parts": [{"ETag": p["ETag"], "PartNumber": p["PartNumber"]} for p in parts]
            },
        )

    async def _direct_checksum(self, client: Any, key: str, head: Mapping[str, Any]) -> str | None:
        """The SHA-256 of a staged object: S3's own when the client sent one, else read.

        A multipart object keeps its multipart ETag as checksum, as any multipart
        upload does (``None`` here): reading gigabytes back to hash them is not
        worth it.
        """
        given = head.get("ChecksumSHA256")
        if given and "-" not in str(given):
            return base64.b64decode(str(given)).hex()
        if "-" in str(head["ETag"]):
            return None
        digest = hashlib.sha256()
        response = await client.get_object(Bucket=self.bucket, Key=key, IfMatch=head["ETag"])
        body = response["Body"]
        try:
            while chunk := await body.read(1024 * 1024):
                digest.update(chunk)
        finally:
            body.close()
        return digest.hexdigest()

    async def _cleanup(self, older_than: timedelta) -> int:
        """Abort multipart uploads under the prefix started longer ago than ``older_than``,
        and delete staged direct uploads whose ticket expired.

        A process killed mid-upload leaves its parts stored (and billed) until then.
        """
        client = await self._client()
        removed = 0
        staging = f"{self.prefix}{DIRECT_STAGING}"
        now = time.time()
        paginator = client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=staging):
            for item in page.get("Contents", ()):
                if staged_expiry(str(item["Key"])[len(staging) :]) < now:
                    await client.delete_object(Bucket=self.bucket, Key=item["Key"])
                    removed += 1
        removed += await self._abort_stale(client, older_than, staging, now)
        return removed

    async def _abort_stale(
        self, client: Any, older_than: timedelta, staging: str, now: float
    ) -> int:
        cutoff = datetime.now(timezone.utc) - older_than
        removed = 0
        paginator = client.get_paginator("list_multipart_uploads")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for item in page.get("Uploads", ()):
                key = str(item["Key"])
                # A direct upload's parts are stale once its ticket expired.
                expired = key.startswith(staging) and staged_expiry(key[len(staging) :]) < now
                if item["Initiated"] <= cutoff or expired:
                    await client.abort_multipart_upload(
                        Bucket=self.bucket, Key=item["Key"], UploadId=item["UploadId"]
                    )
                    removed += 1
        return removed

    async def _multipart(
        self,
        client: Any,
        file_id: str,
        mode: WriteMode,
        params: dict[str, Any],
        first: bytes,
        reader: PartReader,
    ) -> None:
        """Upload in parts, ``max_concurrency`` at a time; abort on any failure.

        Each part holds a slot of the semaphore from before it is read until it is
        sent, so memory stays under ``max_concurrency * part_size`` however fast
        the source is. The object appears only with ``CompleteMultipartUpload``.
        """
        # The object's checksum will be its multipart ETag: no need to hash the rest.
        reader.digest = None
        created = await client.create_multipart_upload(**params)
        upload_id = created["UploadId"]
        target = {"Bucket": params["Bucket"], "Key": params["Key"]}
        slots = asyncio.Semaphore(self.max_concurrency)
        tasks: list[asyncio.Task[dict[str, Any]]] = []

        async def send(number: int, data: bytes) -> dict[str, Any]:
            try:
                response = await client.upload_part(
                    UploadId=upload_id, PartNumber=number, Body=data, **target
                )
            finally:
                slots.release()
            part = {"ETag": response["ETag"], "PartNumber": number}
            # With botocore's default request checksums, Complete must repeat them.
            part.update({k: v for k, v in response.items() if k.startswith("Checksum")})
            return part

        def check_failures() -> None:
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    task.result()  # re-raises the part's error

        try:
            await slots.acquire()
            tasks.append(asyncio.ensure_future(send(1, first)))
            while not reader.done:
                await slots.acquire()
                check_failures()
                data = await reader.read()
                if not data:  # the content ended exactly on a part boundary
                    slots.release()
                    break
                if len(tasks) >= MAX_PARTS:
                    slots.release()
                    raise ValidationError(
                        "s3-size",
                        f"content exceeds {MAX_PARTS} parts of {self.part_size} bytes; "
                        "raise depot.part_size",
                    )
                tasks.append(asyncio.ensure_future(send(len(tasks) + 1, data)))
            parts = await asyncio.gather(*tasks)
            await commit_or_cancel(
                self._commit(
                    client,
                    file_id,
                    mode,
                    target,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
            )
            return
        except BaseException:
            # Shielded: a second cancellation must not skip the abort, or the parts
            # would stay (and be billed) until a lifecycle rule removes them.
            await asyncio.shield(self._abort(client, target, upload_id, tasks))
            raise

    async def _abort(
        self,
        client: Any,
        target: Mapping[str, str],
        upload_id: str,
        tasks: list[asyncio.Task[dict[str, Any]]],
    ) -> None:
        for task in tasks:
            task.cancel()
        # Wait for in-flight parts first: a part finishing after the abort could linger.
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await client.abort_multipart_upload(UploadId=upload_id, **target)
        except (ClientError, BotoCoreError, aiohttp.ClientError, asyncio.TimeoutError):
            # The upload's own error is the one to raise; this one is logged, with the
            # id a lifecycle rule or a manual abort needs.
            logger.exception(
                "%s: could not abort multipart upload %s of %r",
                self._label(),
                upload_id,
                target["Key"],
            )

    # -- URLs --------------------------------------------------------------------------

    def public_url(self, file_id: str) -> str | None:
        """The URL per ``public_url_mode``; computed locally, without network I/O.

        ``public``: the custom domain's URL, else the bucket's own URL (objects are
        readable there only with a public ACL or bucket policy). ``presigned``: a
        SigV4 URL valid ``presigned_expires`` seconds, signed with local credentials.
        """
        file_id = self._validate_id(file_id)
        if self.public_url_mode == "none":
            return None
        key = self._key(file_id)
        if self.public_url_mode == "public":
            if self.custom_domain:
                base = self.custom_domain
                if "://" not in base:
                    base = f"https://{base}"
                return f"{base}/{quote(key, safe='/~')}"
            url = self._plain_client().generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}
            )
            return str(url).split("?", 1)[0]
        return self._presigned(key, {})

    def _presigned(self, key: str, overrides: Mapping[str, str]) -> str:
        url = self._signing_client().generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": key, **overrides},
            ExpiresIn=self.presigned_expires,
        )
        return str(url)

    def temporary_url(
        self, stored: StoredFile, *, expires_in: int, download: bool, filename: str | None
    ) -> str | None:
        """A presigned URL valid ``expires_in`` seconds (at most ``presigned_expires``).

        Carries the disposition rule and the overrides of a signed request
        (``response-content-disposition``, ``response-content-type``), so a private
        file is served from the bucket exactly as the middleware would serve it.
        ``None`` with ``public_url_mode = none``: the app proxies everything.
        """
        if self.public_url_mode == "none":
            return None
        name = filename if filename is not None else stored.filename
        disposition = _http.disposition_for(
            name, stored.content_type, inline_active=self.inline_active_content, download=download
        )
        overrides = {
            "ResponseContentDisposition": disposition,
            "ResponseContentType": _http.header_content_type(stored.content_type),
        }
        url = self._signing_client().generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self._key(stored.file_id), **overrides},
            ExpiresIn=max(1, min(int(expires_in), self.presigned_expires)),
        )
        return str(url)

    def _file_url(self, file_id: str, filename: str, content_type: str) -> str | None:
        """The public URL of an opened file: presigned ones carry the disposition rule.

        ``public_url(file_id)`` knows only the id, so it relies on the disposition
        saved with the object. Once the file is open its type is known, and a
        presigned URL overrides the disposition (``response-content-disposition``),
        so objects written by other tools (filedepot saves ``inline`` for HTML too)
        are served as safely as the middleware serves them.
        """
        if self.public_url_mode != "presigned":
            return self.public_url(file_id)
        disposition = _http.disposition_for(
            filename, content_type, inline_active=self.inline_active_content
        )
        return self._presigned(self._key(file_id), {"ResponseContentDisposition": disposition})

    def _botocore_client(self, config: Config, credentials: Mapping[str, str]) -> Any:
        session = botocore.session.Session(profile=self._profile_name)
        kwargs = {k: v for k, v in self._client_kwargs.items() if k != "config"}
        return session.create_client(
            "s3",
            region_name=self._region_name,
            config=self._config.merge(config),
            **kwargs,
            **credentials,
        )

    def _plain_client(self) -> Any:
        """A botocore client that signs nothing: it only builds plain object URLs."""
        if self._plain is None:
            self._plain = self._botocore_client(Config(signature_version=UNSIGNED), {})
        return self._plain

    def _signing_client(self) -> Any:
        """A synchronous botocore client used only to presign; it never sends a request.

        Credentials come from the options, else from the environment or the shared
        files. Instance and container roles are left out: fetching them is network
        I/O, which ``public_url`` must not do.
        """
        if self._signer is not None:
            return self._signer
        credentials = dict(self._credentials)
        if not credentials:
            session = botocore.session.Session(profile=self._profile_name)
            resolver = session.get_component("credential_provider")
            for method in ("iam-role", "container-role"):
                resolver.remove(method)
            found = session.get_credentials()
            if found is None:
                raise ConfigurationError(
                    f"{self._label()}: public_url_mode = presigned needs credentials from "
                    "depot.access_key_id/secret_access_key, the environment or the shared "
                    "AWS files (instance roles are not read: that would be network I/O)"
                )
            frozen = found.get_frozen_credentials()
            credentials = {
                "aws_access_key_id": frozen.access_key,
                "aws_secret_access_key": frozen.secret_key,
            }
            if frozen.token:
                credentials["aws_session_token"] = frozen.token
        signature = self._config_kwargs.get("signature_version") or "s3v4"
        self._signer = self._botocore_client(Config(signature_version=signature), credentials)
        return self._signer

    def __repr__(self) -> str:
        name = f" {self.name!r}" if self.name else ""
        return f"<{type(self).__name__}{name} bucket={self.bucket!r} prefix={self.prefix!r}>"


def compose_plan(
    sizes: Sequence[int], min_part: int, max_part: int
) -> list[tuple[bool, list[tuple[int, int, int]]]]:
    """The parts of a multipart upload made of pieces of ``sizes``, in order.

    Each part is ``(copy, ranges)`` with ranges ``(piece, start, end)``: a copy part
    is one range of one piece, copied inside the service; the others gather ranges
    to be read and sent. Every part but the last is at least ``min_part`` and at
    most ``max_part`` bytes; pieces of ``min_part`` and more are copied, never read,
    except for what fills a part that smaller pieces started.
    """
    plan: list[tuple[bool, list[tuple[int, int, int]]]] = []
    pending: list[tuple[int, int, int]] = []
    pending_size = 0
    for index, size in enumerate(sizes):
        position = 0
        while position < size:
            left = size - position
            if pending_size == 0 and left >= min_part:
                take = min(left, max_part)
                plan.append((True, [(index, position, position + take)]))
            else:
                take = min(left, min_part - pending_size)
                pending.append((index, position, position + take))
                pending_size += take
                if pending_size >= min_part:
                    plan.append((False, pending))
                    pending, pending_size = [], 0
            position += take
    if pending:
        plan.append((False, pending))
    return plan


def cors_configuration(origins: Sequence[str]) -> dict[str, Any]:
    """The bucket CORS rules browsers need for direct uploads from ``origins``.

    ``POST`` for form uploads, ``PUT`` for parts, ``ETag`` exposed so a client can
    read it; ``GET``/``HEAD`` for files served from the bucket.
    """
    return {
        "CORSRules": [
            {
                "AllowedOrigins": list(origins),
                "AllowedMethods": ["GET", "HEAD", "POST", "PUT"],
                "AllowedHeaders": ["*"],
                "ExposeHeaders": ["ETag"],
                "MaxAgeSeconds": 3600,
            }
        ]
    }
