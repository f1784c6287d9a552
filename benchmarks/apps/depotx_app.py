"""depotx's ``DepotMiddleware`` over local storage ``bench`` at ``BENCH_ROOT``.

With ``BENCH_OFFLOAD=x-accel-redirect`` it hands the bytes to nginx in front.
"""

from __future__ import annotations

import os

from starlette.types import Receive, Scope, Send

from depotx import StorageManager

from ._common import not_found

manager = StorageManager()
manager.configure(
    "bench", {"depot.backend": "local", "depot.storage_path": os.environ["BENCH_ROOT"]}
)


async def _fallback(scope: Scope, receive: Receive, send: Send) -> None:
    await not_found(send)


app = manager.make_middleware(_fallback, offload=os.environ.get("BENCH_OFFLOAD") or None)
