"""``StoredFileResponse``: serve one stored file from a route of your own.

For files that need a check the middleware cannot make (a login, an owner, a
plan): authorize in your endpoint, then ``return StoredFileResponse(await
storage.get(file_id))``. It answers exactly as the middleware does, through the
same code (:func:`depotx._serving.send_stored`): RFC 9110 preconditions, single
and multipart ranges, HEAD without a body, the disposition rule, ``nosniff``,
streaming with flat memory, release on disconnect, and a retry when the file
is replaced before its first byte.
"""

from __future__ import annotations

import logging
from typing import Literal

from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ._exceptions import StoredFileChangedError
from ._files import StoredFile
from ._serving import DEFAULT_SERVE_CHUNK_SIZE, serve_file

__all__ = ["StoredFileResponse"]

logger = logging.getLogger("depotx")


class StoredFileResponse(Response):
    """An ASGI response (a Starlette ``Response``) that serves one ``StoredFile``.

    :param stored: an open file (``await storage.get(file_id)``); the response
        closes it when it is done, whatever happens.
    :param disposition: ``"attachment"`` to make browsers download it; ``None`` or
        ``"inline"`` lets the disposition rule decide (active content, such as
        HTML or SVG, is always an attachment unless its storage allows it inline).
    :param filename: the name in ``Content-Disposition`` instead of the stored one.
    :param cache_control: the ``Cache-Control`` value; default ``private, no-cache``:
        a file behind your own checks is for that user, revalidated every time
        (cheap, with its ``ETag``).
    :param chunk_size: bytes per read from the backend and per ASGI message.
    """

    def __init__(
        self,
        stored: StoredFile,
        *,
        disposition: Literal["inline", "attachment"] | None = None,
        filename: str | None = None,
        cache_control: str = "private, no-cache",
        chunk_size: int = DEFAULT_SERVE_CHUNK_SIZE,
        background: BackgroundTask | None = None,
    ) -> None:
        if disposition not in (None, "inline", "attachment"):
            raise ValueError(f"disposition must be 'inline' or 'attachment', not {disposition!r}")
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        self.stored = stored
        self.download = disposition == "attachment"
        self.filename = filename
        self.cache_control = cache_control
        self.chunk_size = chunk_size
        self.background = background
        # What Starlette's Response carries, for code that inspects responses;
        # the real headers are planned per request (conditional, ranges, HEAD).
        self.status_code = 200
        self.body = b""
        self.raw_headers = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stored = self.stored
        storage = stored.storage

        async def reopen() -> StoredFile:
            if storage is None:  # a file of no storage cannot be opened again
                raise StoredFileChangedError(stored.file_id)
            return await storage.get(stored.file_id)

        await serve_file(
            reopen,
            scope,
            receive,
            send,
            label=stored.file_id if storage is None else f"{storage.name}/{stored.file_id}",
            first=stored,
            cache_control=(b"cache-control", self.cache_control.encode("latin-1")),
            inline_active=storage is not None and storage.inline_active_content is True,
            download=self.download,
            filename=self.filename,
            chunk_size=self.chunk_size,
        )
        if self.background is not None:
            await self.background()
