"""Direct uploads: the browser sends the bytes straight to where they are kept.

The app hands out a *ticket* (:meth:`FileStorage.prepare_upload`); the browser
uploads with it; the app *finalizes* the result (:meth:`FileStorage.finalize_upload`)
into an ordinary depotx file. Two ways up, one ticket shape, so front-end code does
not care which storage it talks to:

- **S3**: a presigned ``POST`` (form fields, a policy with ``content-length-range``
  and a ``Content-Type`` condition, the key fixed to a staging key), or for large
  files a multipart upload whose part URLs the app presigns on demand. The bytes
  never pass through the app.
- **Every other storage**: a ``POST`` of the same form to the middleware
  (``<mountpoint>/.upload``), with the token in the ``Depot-Upload-Token`` header;
  it is streamed into the manager's *upload staging* storage.

Either way the upload lands in a staging place that ``list()`` and ``get()`` never
show; only finalizing makes a file of it, after the checks any upload gets (size,
type sniffed from the bytes, checksum, filedepot metadata). The ticket carries a
token signed with the manager's secret (the one that signs private URLs): it names
the storage, the staging key, the final id, the size limit and the expiry, so
finalizing needs nothing the app must remember.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, NamedTuple

from .._content import _check_metadata
from .._exceptions import (
    ConfigurationError,
    StoredFileExistsError,
    StoredFileNotFoundError,
    UploadTokenError,
    ValidationError,
)
from .._files import FileIntent
from .._serving import send_small
from .._signing import UPLOAD_TOKEN, BadSignature, read_token, sign_token
from .._units import too_large_message
from ..storages.base import FileStorage, staged_expiry

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

    from .._manager import StorageManager

__all__ = [
    "DEFAULT_TICKET_LIFETIME",
    "TOKEN_HEADER",
    "UPLOAD_ROUTE",
    "DirectTarget",
    "UploadGrant",
    "UploadTicket",
]

#: How long a ticket is valid by default: to upload, and to finalize.
DEFAULT_TICKET_LIFETIME = timedelta(minutes=15)
#: The longest a ticket may live (SigV4 presigned requests stop at seven days).
MAX_TICKET_LIFETIME = timedelta(days=7)
#: The request header carrying the token of an upload to the app.
TOKEN_HEADER = "Depot-Upload-Token"
#: Where, under the mountpoint, the middleware takes uploads for storages without presigning.
UPLOAD_ROUTE = "/.upload"


@dataclass(frozen=True)
class UploadGrant:
    """What a token grants, once its signature and expiry are checked."""

    storage: str
    file_id: str
    staged: str
    filename: str
    content_type: str | None
    max_size: int
    metadata: Mapping[str, str]
    expires: int
    size: int | None = None
    upload_id: str | None = None

    def payload(self) -> dict[str, object]:
        return {
            "v": 1,
            "storage": self.storage,
            "file_id": self.file_id,
            "staged": self.staged,
            "filename": self.filename,
            "content_type": self.content_type,
            "max_size": self.max_size,
            "metadata": dict(self.metadata),
            "expires": self.expires,
            "size": self.size,
            "upload_id": self.upload_id,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> UploadGrant:
        try:
            return cls(
                storage=str(payload["storage"]),
                file_id=str(payload["file_id"]),
                staged=str(payload["staged"]),
                filename=str(payload["filename"]),
                content_type=payload["content_type"],
                max_size=int(payload["max_size"]),
                metadata=dict(payload["metadata"]),
                expires=int(payload["expires"]),
                size=payload["size"],
                upload_id=payload["upload_id"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UploadTokenError("the upload token is not one of depotx's") from exc


class DirectTarget(NamedTuple):
    """Where a storage that presigns sends the browser (from ``_open_direct_upload``).

    ``method`` is ``POST`` for a form (S3's presigned POST: ``fields``, then the
    file), ``PUT`` for the file as the whole body (a GCS or Azure signed URL), with
    ``headers`` the signature requires.
    """

    url: str | None
    fields: Mapping[str, str]
    part_size: int | None = None
    part_count: int | None = None
    method: str = "POST"
    headers: Mapping[str, str] = {}


@dataclass(frozen=True)
class UploadTicket:
    """How a browser uploads one file; give :meth:`to_dict` to the front end.

    One of three: a form upload (``method`` ``POST``: a ``multipart/form-data``
    body with every one of ``fields``, then the file in ``file``, to ``url`` with
    ``headers``); a single ``PUT`` of the file as the body (``method`` ``PUT``, to
    a signed ``url``, sending exactly ``headers``: GCS and Azure); or, when
    ``part_size`` is set, a multipart upload (``PUT`` each part to a URL the app
    presigns on demand: S3). ``token`` finalizes it.
    """

    token: str
    expires: datetime
    max_size: int
    url: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    part_size: int | None = None
    part_count: int | None = None
    method: str = "POST"

    @property
    def multipart(self) -> bool:
        return self.part_size is not None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form, the one ``depotx-upload.js`` reads."""
        data: dict[str, Any] = {
            "token": self.token,
            "expires": self.expires.isoformat().replace("+00:00", "Z"),
            "max_size": self.max_size,
        }
        if self.multipart:
            data["multipart"] = {"part_size": self.part_size, "part_count": self.part_count}
        else:
            data["upload"] = {
                "method": self.method,
                "url": self.url,
                "fields": dict(self.fields),
                "headers": dict(self.headers),
                "file_field": "file" if self.method == "POST" else None,
            }
        return data

    def __repr__(self) -> str:  # the token is a credential: keep it out of logs
        kind = "multipart" if self.multipart else "form" if self.method == "POST" else "put"
        return f"<UploadTicket {kind} max_size={self.max_size} expires={self.expires.isoformat()}>"


def _manager_of(storage: FileStorage) -> StorageManager:
    manager = storage._manager
    if manager is None or storage.name is None:
        raise ConfigurationError(
            "direct uploads need the storage to be configured in a StorageManager "
            "(its secret signs the tickets)"
        )
    if manager.signing_keys is None:
        raise ConfigurationError(
            "direct uploads sign their tickets: set depot.secret_key, DEPOTX_SECRET_KEY "
            "or StorageManager(secret_key=...)"
        )
    return manager


def presigns(storage: FileStorage) -> bool:
    """Whether the browser uploads to ``storage``'s service directly (S3, GCS, Azure with
    an account key), not to the app."""
    return storage._presigns_uploads()


def _staging_folder(storage_name: str) -> str:
    """One folder per storage in the shared upload staging storage, whatever its name."""
    return hashlib.sha256(storage_name.encode()).hexdigest()[:16]


async def prepare(
    storage: FileStorage,
    filename: str,
    content_type: str | None,
    *,
    max_size: int,
    expires_in: timedelta | float,
    metadata: Mapping[str, str] | None,
    size: int | None,
) -> UploadTicket:
    manager = _manager_of(storage)
    if not isinstance(filename, str) or not filename or len(filename.encode()) > 1024:
        raise ValidationError("filename", "a file name of 1 to 1024 bytes is needed")
    if not isinstance(max_size, int) or max_size < 0:
        raise ConfigurationError("max_size must be a number of bytes >= 0")
    if size is not None and not 0 <= size <= max_size:
        raise ValidationError("max_size", too_large_message(max_size))
    lifetime = expires_in if isinstance(expires_in, timedelta) else timedelta(seconds=expires_in)
    if not timedelta(0) < lifetime <= MAX_TICKET_LIFETIME:
        raise ConfigurationError("expires_in must be positive and at most 7 days")
    expires = math.ceil(manager.clock() + lifetime.total_seconds())
    file_id = storage._new_id()
    grant = UploadGrant(
        storage=manager.resolve_alias(storage.name or ""),
        file_id=file_id,
        staged=f"{_staging_folder(storage.name or '')}/{expires}-{uuid.uuid4().hex}",
        filename=filename,
        content_type=content_type,
        max_size=max_size,
        metadata=_check_metadata(metadata) if metadata else {},
        expires=expires,
        size=size,
    )
    with storage._translating("prepare upload", file_id):
        grant, target = await storage._open_direct_upload(grant)
    keys = manager.signing_keys
    assert keys is not None
    token = sign_token(keys, UPLOAD_TOKEN, grant.payload())
    when = datetime.fromtimestamp(expires, timezone.utc)
    if target is None:
        return UploadTicket(
            token=token,
            expires=when,
            max_size=max_size,
            url=f"{manager.mountpoint}{UPLOAD_ROUTE}",
            headers={TOKEN_HEADER: token},
        )
    return UploadTicket(
        token=token,
        expires=when,
        max_size=max_size,
        url=target.url,
        fields=dict(target.fields),
        headers=dict(target.headers),
        part_size=target.part_size,
        part_count=target.part_count,
        method=target.method,
    )


def read_grant(manager: StorageManager, token: object) -> UploadGrant:
    """The grant of a token, or :class:`UploadTokenError` saying what is wrong with it."""
    try:
        payload = read_token(manager.signing_keys, UPLOAD_TOKEN, token, manager.clock())
    except BadSignature as exc:
        raise UploadTokenError(f"the upload token is invalid: {exc}") from None
    return UploadGrant.from_payload(payload)


def grant_for(storage: FileStorage, token: object) -> UploadGrant:
    manager = _manager_of(storage)
    grant = read_grant(manager, token)
    if grant.storage != manager.resolve_alias(storage.name or ""):
        raise UploadTokenError(f"the upload token is for storage {grant.storage!r}")
    return grant


async def finalize(storage: FileStorage, token: object) -> str:
    grant = grant_for(storage, token)
    with storage._translating("finalize upload", grant.file_id):
        return await storage._finalize_direct_upload(grant)


# -- storages without presigning: through the app -----------------------------------------


async def finalize_staged(storage: FileStorage, grant: UploadGrant) -> str:
    """Make a file of what the middleware staged: checked, detected, stored; staging removed."""
    staging = _manager_of(storage).upload_staging
    try:
        staged = await staging.get(grant.staged)
    except StoredFileNotFoundError:
        if await storage.exists(grant.file_id):
            return grant.file_id  # finalized before
        raise ValidationError(
            "upload", "nothing was uploaded with this ticket (or it was cleaned up)"
        ) from None
    try:
        if staged.content_length > grant.max_size:
            await staged.aclose()
            await staging.delete(grant.staged)
            raise ValidationError("max_size", too_large_message(grant.max_size))
        # No type given: it is detected from the bytes and the name, as for any
        # upload; the client's claim is not trusted. Exists: a concurrent finalize won.
        with contextlib.suppress(StoredFileExistsError):
            await storage.create(
                FileIntent(staged.iter_bytes(), grant.filename),
                metadata=grant.metadata,
                file_id=grant.file_id,
            )
    finally:
        await staged.aclose()
    await staging.delete(grant.staged)
    return grant.file_id


async def sweep_staged(storage: FileStorage) -> int:
    """Delete this storage's staged uploads whose ticket has expired; how many."""
    manager = storage._manager
    if manager is None or storage.name is None or not manager.has_upload_staging:
        return 0
    staging = manager.upload_staging
    now = time.time()
    removed = 0
    folder = f"{_staging_folder(storage.name)}/"
    expired = [key async for key in staging.list(folder) if staged_expiry(key[len(folder) :]) < now]
    for key in expired:
        await staging.delete(key)
        removed += 1
    return removed


async def presign_parts(
    storage: FileStorage, token: object, part_numbers: Iterable[int]
) -> dict[int, str]:
    grant = grant_for(storage, token)
    if grant.upload_id is None:
        raise UploadTokenError("this ticket is a form upload: it has no parts")
    numbers = sorted(set(part_numbers))
    if not numbers or any(not isinstance(n, int) or not 1 <= n <= 10_000 for n in numbers):
        raise ValidationError("parts", "part numbers run from 1 to 10000")
    return await storage._presign_upload_parts(grant, numbers)


async def abort(storage: FileStorage, token: object) -> None:
    grant = grant_for(storage, token)
    with storage._translating("abort upload", grant.file_id):
        await storage._abort_direct_upload(grant)


# -- the middleware's upload route --------------------------------------------------------


async def receive(manager: StorageManager, scope: Scope, receive: Receive, send: Send) -> None:
    """``POST <mountpoint>/.upload``: stage a form upload whose ticket is in ``Depot-Upload-Token``.

    The body is streamed into the manager's upload staging storage under the
    ticket's staging key, the size limit enforced while it arrives (413 at once,
    nothing kept); a second upload with one ticket gets 409. Answers are JSON
    with an ``error`` in words, never cached.
    """
    from starlette.requests import ClientDisconnect

    from ._multipart import receive_upload

    if scope["method"] != "POST":
        await _answer(send, 405, {"error": "upload with POST"}, [(b"allow", b"POST")])
        return
    token = dict(scope["headers"]).get(TOKEN_HEADER.lower().encode(), b"").decode("latin-1")
    try:
        grant = read_grant(manager, token)
        storage = manager.get(grant.storage)
        if presigns(storage):
            raise UploadTokenError("this ticket uploads to the bucket, not here")
        received = await receive_upload(
            (scope, receive),
            manager.upload_staging,
            field="file",
            max_size=grant.max_size,
            max_fields=20,
            file_id=grant.staged,
        )
    except UploadTokenError as exc:
        await _answer(send, 403, {"error": str(exc)})
        return
    except StoredFileExistsError:
        await _answer(send, 409, {"error": "this ticket was already used: ask for a new one"})
        return
    except ValidationError as exc:
        status = 413 if exc.rule == "max_size" else 400
        message = too_large_message(grant.max_size) if status == 413 else str(exc)
        await _answer(send, status, {"error": message})
        return
    except ClientDisconnect:
        return  # nothing was kept; nobody to answer
    if not received.files:
        await _answer(send, 400, {"error": "send the file in a form field named 'file'"})
        return
    await _answer(send, 201, {"size": received.files[0].size})


async def _answer(
    send: Send,
    status: int,
    body: Mapping[str, object],
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    data = json.dumps(body).encode()
    await send_small(send, status, data, content_type=b"application/json", headers=extra or [])
