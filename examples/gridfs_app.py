"""A small media store on MongoDB GridFS: folders, lookup by name, replace in place.

Run against a real MongoDB:

    DEPOTX_MONGODB_URI=mongodb://127.0.0.1:27017/media python examples/gridfs_app.py

Without the variable it runs on mongomock-motor (``pip install mongomock-motor``),
an in-memory stand-in, so the example works anywhere.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from depotx import StorageManager
from depotx.storages.gridfs import GridFSStorage


def make_storage(manager: StorageManager) -> GridFSStorage:
    uri = os.environ.get("DEPOTX_MONGODB_URI")
    if uri:
        # The same keys a filedepot config uses; `depot.backend = gridfs` works too.
        storage = manager.configure(
            "media",
            {"depot.backend": "depot.io.gridfs.GridFSStorage", "depot.mongouri": uri},
        )
    else:
        from mongomock_motor import AsyncMongoMockClient

        client: Any = AsyncMongoMockClient()
        storage = GridFSStorage(database=client.get_database("media"))
    assert isinstance(storage, GridFSStorage)
    return storage


async def main() -> None:
    manager = StorageManager()
    storage = make_storage(manager)
    try:
        logo = await storage.create(
            b"\x89PNG\r\n\x1a\n fake logo", "logo.png", metadata={"folder": "branding"}
        )
        await storage.create(b"%PDF-1.4 invoice", "invoice-1.pdf", metadata={"folder": "invoices"})
        await storage.create(b"%PDF-1.4 invoice", "invoice-2.pdf", metadata={"folder": "invoices"})

        invoices = [file_id async for file_id in storage.list_by_metadata("folder", "invoices")]
        print("invoices folder:", invoices)

        async with await storage.get_by_filename("logo.png") as stored:
            print(
                "logo.png ->", stored.file_id, stored.content_type, stored.content_length, "bytes"
            )

        # Same id, new content: readers see the old version or the new one, never a gap.
        await storage.replace(logo, b"\x89PNG\r\n\x1a\n new logo")
        async with await storage.get(logo) as stored:
            print("replaced, same id:", stored.file_id == logo, await stored.read())
            # A ranged read starts at the chunk holding byte 8, as an HTTP Range does.
            print("bytes 8..: ", b"".join([c async for c in stored.iter_bytes(8)]))

        print("all files:", [file_id async for file_id in storage.list()])
        for file_id in [file_id async for file_id in storage.list()]:
            await storage.delete(file_id)
    finally:
        await storage.aclose()


if __name__ == "__main__":
    asyncio.run(main())
