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
import logging
from urllib.parse import quote

from starlette.types import ASGIApp, Receive, Scope, Send

from . import _http
from ._exceptions import (
    ConfigurationError,
    InvalidFileIdError,
    StorageNotFoundError,
    StoredFileNotFoundError,
)
from ._files import StoredFile
from ._ids import is_valid_file_id
from ._manager import DepotManager, StorageManager
from ._serving import DEFAULT_SERVE_CHUNK_SIZE, failure_status, send_plan, send_stored
from .storages.base import FileStorage

__all__ = ["DepotMiddleware"]

logger = logging.getLogger("depotx")

#: How often a file replaced between ``get`` and its first byte is re-opened
#: before giving up with 503; a replace would have to win this race every time.
MAX_ATTEMPTS = 3

_ALLOW = (b"allow", b"GET, HEAD")
# Characters left alone when a public URL is made header-safe: the URL syntax
# itself and existing escapes.
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~"

#: How many files' response headers each middleware keeps ready (a few MiB at most).
HEADER_CACHE_SIZE = 4096


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
    ) -> None:
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
        self.chunk_size = chunk_size
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
        head = scope["method"] == "HEAD"
        if not name or not slash or not file_id or "/" in file_id:
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
        if self.redirect_to_public_url and not storage.redirect_after_open:
            try:
                url = storage.public_url(file_id)
            except Exception as exc:  # noqa: BLE001 - any backend failure is a 502, logged
                await self._backend_failure(send, head, storage, file_id, exc)
                return
            if url:
                await _send_redirect(send, url)
                return
        for _ in range(MAX_ATTEMPTS):
            try:
                stored = await storage.get(file_id)
            except (StoredFileNotFoundError, InvalidFileIdError):
                await send_plan(send, _http.error_plan(404, head=head))
                return
            except Exception as exc:  # noqa: BLE001 - any backend failure is a 502, logged
                await self._backend_failure(send, head, storage, file_id, exc)
                return
            try:
                if self.redirect_to_public_url and stored.public_url:
                    await _send_redirect(send, stored.public_url)
                    return
                answered = await send_stored(
                    stored,
                    scope,
                    receive,
                    send,
                    cache_control=self._cache_control,
                    headers_for=self._headers_for,
                    inline_active=storage.inline_active_content is True,
                    chunk_size=self.chunk_size,
                )
                if answered:
                    return
            finally:
                await _release(stored)
        logger.error(
            "depotx: %s/%s kept changing while it was opened (%d attempts)",
            storage.name,
            file_id,
            MAX_ATTEMPTS,
        )
        await send_plan(send, _http.error_plan(503, head=head))

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


async def _release(stored: StoredFile) -> None:
    try:
        await stored.aclose()
    except Exception as exc:
        logger.warning("depotx: closing %r failed: %s", stored, exc, exc_info=exc)
