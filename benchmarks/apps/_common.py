"""Bits the benchmark servers share."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.types import Scope, Send

if TYPE_CHECKING:
    from depotx import StorageManager

NOT_FOUND = b"Not Found"


async def not_found(send: Send) -> None:
    """A minimal 404, so a wrong URL shows up as errors in the load generator."""
    await send(
        {
            "type": "http.response.start",
            "status": 404,
            "headers": [(b"content-length", str(len(NOT_FOUND)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": NOT_FOUND})


#: Signs the ``signed`` storage's URLs (the runner signs them with the same secret).
SECRET = "depotx-benchmarks-only-secret-0123456789"


def allow(scope: Scope, storage: str, file_id: str) -> bool:
    """The ``authorized`` storage's hook: every request is allowed, after the call."""
    return True


def make_manager(root: str) -> StorageManager:
    """depotx's server's storages (and the runner's, to sign URLs): imported here, so
    the other servers that share this module do not load depotx."""
    from depotx import StorageManager

    manager = StorageManager(secret_key=SECRET)
    local = {"depot.backend": "local", "depot.storage_path": root}
    manager.configure("bench", local)
    manager.configure("signed", {**local, "depot.private": "true"})
    manager.configure(
        "authorized",
        {**local, "depot.private": "true", "depot.authorize": "benchmarks.apps._common:allow"},
    )
    return manager
