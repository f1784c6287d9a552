"""GridFS factories for the shared contract: mongomock-motor always, a real MongoDB when configured.

Set ``MONGODB_TEST_URI`` (e.g. ``mongodb://127.0.0.1:27017/depotx_test``)
to run the contract against a real server; each test gets a bucket of its own,
dropped when the storage closes. Without it, the real-MongoDB parameter is
skipped with the reason shown in pytest's summary, never silently dropped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from depotx import FileStorage
from depotx.storages.gridfs import GridFSStorage

MONGODB_URI_ENV = "MONGODB_TEST_URI"
SKIP_REASON = f"{MONGODB_URI_ENV} is not set: real MongoDB tests not run"


class DisposableGridFSStorage(GridFSStorage):
    """A storage on a throwaway bucket of a real server, dropped by the first ``aclose``."""

    _dropped = False

    async def aclose(self) -> None:
        if not self._dropped:
            self._dropped = True
            files, chunks = await self._collections()
            await files.drop()
            await chunks.drop()
        await super().aclose()


async def mongomock_storage(tmp_path: Path) -> FileStorage:
    from mongomock_motor import AsyncMongoMockClient

    client: Any = AsyncMongoMockClient()  # one in-memory server per test
    return GridFSStorage(database=client.get_database("depotx_test"))


async def mongodb_storage(tmp_path: Path) -> FileStorage:
    uri = os.environ.get(MONGODB_URI_ENV)
    if not uri:
        pytest.skip(SKIP_REASON)
    return DisposableGridFSStorage(uri, collection=f"depotx_test_{uuid.uuid4().hex[:12]}")


FACTORIES: dict[str, Callable[[Path], Awaitable[FileStorage]]] = {
    "gridfs-mongomock": mongomock_storage,
    "gridfs-mongodb": mongodb_storage,
}
