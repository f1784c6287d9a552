"""filedepot's WSGI ``DepotMiddleware`` over the same folder, for gunicorn.

depotx writes filedepot's on-disk layout, so filedepot serves depotx's files as
they are. gunicorn's sync worker hands the file to ``sendfile`` through
``wsgi.file_wrapper``: that is why this peer is fast on large files.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from depot.manager import DepotManager

DepotManager.configure("bench", {"depot.storage_path": os.environ["BENCH_ROOT"]})


def _fallback(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("404 Not Found", [("Content-Length", "9")])
    return [b"Not Found"]


app = DepotManager.make_middleware(_fallback)
