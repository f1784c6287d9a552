"""The ceiling of the Python stack: a bare ASGI app answering preloaded bytes.

It does what the middleware must do at the least for a small file (look the
file up, send validators, answer ``If-None-Match`` with 304) and nothing else:
no disk, no thread hop. Files are read into memory once, at import; only the
small ids in ``BENCH_IDS`` are loaded.
"""

from __future__ import annotations

import hashlib
import os

from starlette.types import Receive, Scope, Send

from ._common import not_found

_PREFIX = "/depot/bench/"
_FILES: dict[str, tuple[bytes, list[tuple[bytes, bytes]], bytes]] = {}

for _file_id in filter(None, os.environ.get("BENCH_IDS", "").split(",")):
    with open(os.path.join(os.environ["BENCH_ROOT"], _file_id, "file"), "rb") as _source:
        _body = _source.read()
    _etag = f'"{hashlib.sha256(_body).hexdigest()}"'.encode()
    _headers = [
        (b"content-type", b"application/octet-stream"),
        (b"content-length", str(len(_body)).encode()),
        (b"etag", _etag),
    ]
    _FILES[_PREFIX + _file_id] = (_body, _headers, _etag)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    found = _FILES.get(scope["path"])
    if found is None:
        await not_found(send)
        return
    body, headers, etag = found
    for key, value in scope["headers"]:
        if key == b"if-none-match" and value == etag:
            await send({"type": "http.response.start", "status": 304, "headers": [(b"etag", etag)]})
            await send({"type": "http.response.body", "body": b""})
            return
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
