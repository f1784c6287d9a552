"""depotx's ``DepotMiddleware`` over local storage ``bench`` at ``BENCH_ROOT``.

The same files are also storage ``signed`` (private: every URL signed) and
``authorized`` (private, with an ``authorize`` hook that allows everything), for
the cost of checking a signature and of calling the hook. With
``BENCH_OFFLOAD=x-accel-redirect`` it hands the bytes to nginx in front.
"""

from __future__ import annotations

import os

from starlette.types import Receive, Scope, Send

from ._common import make_manager, not_found

manager = make_manager(os.environ["BENCH_ROOT"])


async def _fallback(scope: Scope, receive: Receive, send: Send) -> None:
    await not_found(send)


app = manager.make_middleware(_fallback, offload=os.environ.get("BENCH_OFFLOAD") or None)
