"""The ASGI middleware that serves stored files at ``<mountpoint>/<storage>/<fileid>``.

Pure ASGI, so streaming stays streaming and nothing is buffered. The middleware
is thin on purpose: it routes a request to a storage and a file, and answers
through :func:`depotx._serving.send_stored`, which sends what the pure planner
:func:`depotx._http.plan_response` decided (validators, preconditions, ranges,
disposition) — the same code :class:`~depotx.StoredFileResponse` uses.

Every path under the mountpoint is the middleware's: what is not
``<mountpoint>/<storage>/<fileid>`` of a configured storage is a 404, so the
app behind it never sees attacker-made paths there. Other paths, websocket and
lifespan scopes go to the wrapped app untouched.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import quote

from starlette.types import ASGIApp, Receive, Scope, Send

from . import _http, _signing
from ._exceptions import (
    ConfigurationError,
    StorageNotFoundError,
)
from ._files import StoredFile
from ._ids import is_valid_file_id
from ._manager import DepotManager, StorageManager
from ._serving import (
    DEFAULT_SERVE_CHUNK_SIZE,
    Handoff,
    failure_status,
    send_plan,
    serve_file,
)
from .storages.base import FileStorage
from .storages.local import LocalFileStorage
from .uploads import _direct

__all__ = ["DepotMiddleware"]

logger = logging.getLogger("depotx")

_ALLOW = (b"allow", b"GET, HEAD")
#: Where the front server's internal location for offloaded files is, by default.
DEFAULT_OFFLOAD_LOCATION = "/_depotx"
#: Smaller files are sent by depotx itself, from memory, even with offload on.
DEFAULT_OFFLOAD_MIN_SIZE = 64 * 1024
#: ``<mountpoint>/.upload`` takes direct uploads for storages that cannot presign.
_UPLOAD_NAME = _direct.UPLOAD_ROUTE.lstrip("/")
# Characters left alone when a public URL is made header-safe: the URL syntax
# itself and existing escapes.
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~"

#: How many files' response headers each middleware keeps ready (a few MiB at most).
HEADER_CACHE_SIZE = 4096
#: How long a redirect URL lives when a private file was allowed by an ``authorize``
#: hook rather than a signature (which carries its own expiry).
AUTHORIZED_REDIRECT_SECONDS = 60

#: ``authorize(scope, storage_name, file_id)``: True to serve, False to refuse.
Authorize = Callable[[Any, str, str], Any]


class DepotMiddleware:
    """Serve the files of ``manager`` at ``<mountpoint>/<storage-or-alias>/<fileid>``.

    Usable around any ASGI app, or as
    ``Starlette(middleware=[Middleware(DepotMiddleware, manager=...)])``.

    :param mountpoint: where files are served is the manager's setting
        (``StorageManager(mountpoint=...)``, ``depot.mountpoint``), read here so
        ``url_for`` never depends on when the middleware was built. Passing one
        only checks that it agrees; a different one is a ``ConfigurationError``.
    :param cache_max_age: ``max-age`` of ``Cache-Control``, in seconds. Files keep
        their id when replaced, so this is how long a cache may serve an old
        version without revalidating (revalidation is cheap: ``ETag``).
    :param cache_public: ``public`` (shared caches and CDNs may store the files)
        instead of ``private`` (browsers only).
    :param redirect_to_public_url: answer 307 to the storage's public URL (S3, a
        CDN) when it has one; ``False`` proxies those files too.
    :param chunk_size: bytes per read from the backend and per ASGI message.
    :param authorize: ``authorize(scope, storage_name, file_id)``, sync or async,
        decides requests that carry no valid signature, before any backend I/O:
        ``False`` answers 403 (404 with ``hide_forbidden``); an exception in it
        is logged and answers 403. A storage's own ``depot.authorize`` applies
        where this is not given.
    :param hide_forbidden: answer refused requests 404 instead of 403, so they do
        not reveal that a file exists.
    :param pathsend: when the ASGI server offers ``http.response.pathsend``
        (Granian does), local files of ``offload_min_size`` and more, asked for
        whole, are sent by the server itself from a link pinned to the version
        opened (:meth:`LocalFileStorage.pin`). ``False`` streams them here.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        manager: StorageManager = DepotManager,
        mountpoint: str | None = None,
        cache_max_age: int = 3600,
        cache_public: bool = False,
        redirect_to_public_url: bool = True,
        chunk_size: int = DEFAULT_SERVE_CHUNK_SIZE,
        authorize: Authorize | None = None,
        hide_forbidden: bool = False,
        offload: Literal["x-accel-redirect", "x-sendfile"] | None = None,
        offload_location: str = DEFAULT_OFFLOAD_LOCATION,
        offload_min_size: int = DEFAULT_OFFLOAD_MIN_SIZE,
        pathsend: bool = True,
    ) -> None:
        if offload not in (None, "x-accel-redirect", "x-sendfile"):
            raise ConfigurationError(
                f"offload is 'x-accel-redirect' (nginx), 'x-sendfile' or None, not {offload!r}"
            )
        if offload_min_size < 0:
            raise ConfigurationError("offload_min_size must be >= 0")
        if not offload_location.startswith("/"):
            raise ConfigurationError("offload_location is an absolute path: /_depotx")
        if cache_max_age < 0:
            raise ConfigurationError("cache_max_age must be >= 0")
        if chunk_size <= 0:
            raise ConfigurationError("chunk_size must be positive")
        if mountpoint is not None:
            wanted = StorageManager(mountpoint=mountpoint).mountpoint  # validated, normalised
            if wanted != manager.mountpoint:
                raise ConfigurationError(
                    f"mountpoint {wanted!r} differs from the manager's {manager.mountpoint!r}: "
                    "set it on the manager (StorageManager(mountpoint=...), the "
                    "depot.mountpoint setting, or make_middleware(app, mountpoint=...)) "
                    "so url_for agrees"
                )
        self.app = app
        self.manager = manager
        self.cache_max_age = cache_max_age
        self.cache_public = cache_public
        self.redirect_to_public_url = redirect_to_public_url
        self.offload = offload
        self.offload_location = offload_location.rstrip("/")
        self.offload_min_size = offload_min_size
        self.pathsend = pathsend
        self.chunk_size = chunk_size
        self.authorize = authorize
        self.hide_forbidden = hide_forbidden
        # Per instance, not module-wide: the cache lives and dies with the app.
        # Keyed on everything the headers derive from, so a new version (new
        # checksum, name or date) simply misses.
        self._headers_for = functools.lru_cache(maxsize=HEADER_CACHE_SIZE)(_http.file_headers)
        visibility = "public" if cache_public else "private"
        self._cache_control = (b"cache-control", f"{visibility}, max-age={cache_max_age}".encode())

    @property
    def mountpoint(self) -> str:
        return self.manager.mountpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        root_path: str = scope.get("root_path", "")
        if (
            root_path
            and path.startswith(root_path)
            and path[len(root_path) : len(root_path) + 1] == "/"
        ):
            # ASGI servers and Starlette's Mount keep root_path inside path.
            path = path[len(root_path) :]
        mountpoint = self.manager.mountpoint
        if not path.startswith(mountpoint) or path[len(mountpoint) : len(mountpoint) + 1] not in (
            "",
            "/",
        ):
            await self.app(scope, receive, send)
            return
        # Under the mountpoint: ours, whatever it is.
        name, slash, file_id = path[len(mountpoint) + 1 :].partition("/")
        if name == _UPLOAD_NAME and not slash:
            await _direct.receive(self.manager, scope, receive, send)
            return
        head = scope["method"] == "HEAD"
        if not name or not slash or not file_id or not _canonical(scope, file_id):
            await send_plan(send, _http.error_plan(404, head=head))
            return
        await self._serve(scope, receive, send, name, file_id, head)

    # -- routing ---------------------------------------------------------------------

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, name: str, file_id: str, head: bool
    ) -> None:
        try:
            storage = self.manager.get(name)
        except StorageNotFoundError:
            await send_plan(send, _http.error_plan(404, head=head))
            return
        if not is_valid_file_id(file_id):
            await send_plan(send, _http.error_plan(404, head=head))  # before any backend call
            return
        if not head and scope["method"] != "GET":
            await send_plan(send, _http.error_plan(405, head=head, extra=[_ALLOW]))
            return
        # Signatures name the real storage, so a re-pointed alias cannot reuse them.
        real = self.manager.resolve_alias(name)
        query = scope.get("query_string", b"").decode("latin-1")
        try:
            signed = _signing.check_file_query(
                self.manager.signing_keys, real, file_id, query, self.manager.clock()
            )
        except _signing.BadSignature as exc:
            logger.info("depotx: refused %s/%s: %s", real, file_id, exc)
            await send_plan(send, _http.error_plan(403, head=head))
            return
        cache_control = self._cache_control
        if signed is not None:
            remaining = max(1, int(signed.expires - self.manager.clock()))
            cache_control = (
                b"cache-control",
                f"private, max-age={min(self.cache_max_age, remaining)}".encode(),
            )
        else:
            hook = self.authorize or storage.authorize
            allowed = None if hook is None else await self._authorized(scope, hook, real, file_id)
            if allowed is False or (allowed is None and storage.private):
                status = 404 if self.hide_forbidden else 403
                await send_plan(send, _http.error_plan(status, head=head))
                return
            if allowed:  # decided per request: never for shared caches
                cache_control = (b"cache-control", b"private, no-cache")
            remaining = AUTHORIZED_REDIRECT_SECONDS
        restricted = signed is not None or storage.private
        # Storages that serve no URL of their own (local, memory, GridFS) skip all this.
        redirects = self.redirect_to_public_url and storage._may_redirect()
        # The storage's lasting public URL, found once: the redirect for public files,
        # and a sign that restricted ones will be redirected to a temporary URL.
        public: str | None = None
        if redirects and not storage.redirect_after_open:
            try:
                public = storage.public_url(file_id)
            except Exception as exc:  # noqa: BLE001 - any backend failure is a 502, logged
                await self._backend_failure(send, head, storage, file_id, exc)
                return
            if public and not restricted:
                await _send_redirect(send, public)
                return
        download = signed is not None and signed.download
        filename = signed.filename if signed is not None else None

        async def redirect(stored: StoredFile) -> bool:
            if restricted:
                # Never a lasting public URL: one that expires no later than the
                # signature, with the disposition rules and overrides.
                url = storage.temporary_url(
                    stored, expires_in=remaining, download=download, filename=filename
                )
            else:
                url = stored.public_url
            if url:
                await _send_redirect(send, url)
            return bool(url)

        # A store whose get starts sending the bytes (S3: one GetObject) is asked
        # for the metadata alone when they will likely not be sent.
        metadata_only = storage.reads_with_metadata and (
            head
            or _may_not_read(scope)
            or (redirects and (storage.redirect_after_open or bool(public)))
        )
        await serve_file(
            lambda: storage.get(file_id, metadata_only=metadata_only),
            scope,
            receive,
            send,
            label=f"{storage.name}/{file_id}",
            before_send=redirect if redirects else None,
            cache_control=cache_control,
            headers_for=self._headers_for,
            inline_active=storage.inline_active_content is True,
            download=download,
            filename=filename,
            chunk_size=self.chunk_size,
            handoff=self._handoff(real, storage) if self.offload else None,
            pathsend=self._pinner(storage, scope),
        )

    def _pinner(
        self, storage: FileStorage, scope: Scope
    ) -> Callable[[StoredFile], str | None] | None:
        """What gives a local file's path to the server's ``pathsend``, when it has one."""
        if (
            not self.pathsend
            or not isinstance(storage, LocalFileStorage)
            or "http.response.pathsend" not in scope.get("extensions", ())
        ):
            return None
        smallest = self.offload_min_size

        def pin(stored: StoredFile) -> str | None:
            # Small files are sent from memory here, faster than a server opens them.
            return storage.pin(stored) if stored.content_length >= smallest else None

        return pin

    def _handoff(self, name: str, storage: FileStorage) -> Handoff | None:
        """What hands a local file to the front server, or ``None`` for other storages.

        Files under ``offload_min_size`` are sent here: local storage serves them
        from memory, faster than the front server can open them.
        """
        if not isinstance(storage, LocalFileStorage):
            return None  # the front server cannot read other storages' files
        root = storage.storage_path
        smallest = self.offload_min_size
        sendfile = self.offload == "x-sendfile"
        location = f"{self.offload_location}/{quote(name, safe='')}/"

        def handoff(stored: StoredFile) -> tuple[bytes, bytes] | None:
            if stored.content_length < smallest:
                return None
            path = storage.content_path(stored.file_id)
            if sendfile:
                return (b"x-sendfile", _latin1(path))
            relative = os.path.relpath(path, root)
            return (b"x-accel-redirect", (location + quote(relative, safe="/")).encode("ascii"))

        return handoff

    async def _authorized(self, scope: Scope, hook: Authorize, name: str, file_id: str) -> bool:
        """The ``authorize`` hook's verdict.

        A hook that raises refuses: an error in an access check must never open
        the door (nor show a 500 with its details).
        """
        try:
            verdict = hook(scope, name, file_id)
            if inspect.isawaitable(verdict):
                verdict = await verdict
        except Exception as exc:  # logged, and the request is refused
            logger.error(  # noqa: TRY400 - exc_info given explicitly
                "depotx: authorize hook failed for %s/%s, refusing: %s",
                name,
                file_id,
                exc,
                exc_info=exc,
            )
            return False
        return bool(verdict)

    async def _backend_failure(
        self, send: Send, head: bool, storage: FileStorage, file_id: str, exc: BaseException
    ) -> None:
        status = failure_status(exc)
        logger.error(
            "depotx: serving %s/%s failed (%d): %s",
            storage.name,
            file_id,
            status,
            exc,
            exc_info=exc,
        )
        await send_plan(send, _http.error_plan(status, head=head))


def _latin1(path: str) -> bytes:
    """A path as a header value: percent-encoded beyond printable ASCII."""
    return quote(path, safe="/~!$&'()*+,;=:@").encode("ascii")


def _may_not_read(scope: Scope) -> bool:
    """Whether the answer may carry no body (304, 412) or only ranges of it."""
    return any(key in _CONDITIONAL_OR_RANGE for key, _ in scope["headers"])


_CONDITIONAL_OR_RANGE = frozenset(
    {b"if-none-match", b"if-modified-since", b"if-match", b"if-unmodified-since", b"range"}
)


def _canonical(scope: Scope, file_id: str) -> bool:
    """Whether the request spelled the id one way only: no ``%2F`` standing for ``/``.

    ``path`` is already decoded, so ``a%2Fb`` and ``a/b`` would both read as the
    key ``a/b``; the raw path tells them apart. (Empty, ``.`` and ``..``
    segments are refused by the id rules themselves.)
    """
    if "/" not in file_id:
        return True
    raw: bytes = scope.get("raw_path") or b""
    return b"%2f" not in raw.lower()


async def _send_redirect(send: Send, url: str) -> None:
    """307: presigned URLs expire, so the redirect is temporary and never cached."""
    location = quote(url, safe=_URL_SAFE).encode("latin-1")
    headers: _http.Headers = [
        (b"location", location),
        (b"cache-control", b"no-store"),
        (b"content-length", b"0"),
    ]
    await send({"type": "http.response.start", "status": 307, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
