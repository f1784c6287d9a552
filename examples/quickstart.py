"""Store, read, replace and delete a file on local storage.

Run: python examples/quickstart.py
"""

from __future__ import annotations

import asyncio
import tempfile

from depotx import FileIntent, StorageManager


async def main() -> None:
    manager = StorageManager()  # or the global depotx.DepotManager
    with tempfile.TemporaryDirectory() as folder:
        manager.configure("default", {"depot.storage_path": folder})
        storage = manager.get()

        file_id = await storage.create(b"Hello, depotx!\n", filename="hello.txt")
        path = f"default/{file_id}"
        print("stored", path, "->", manager.url_for(path))

        async with await manager.get_file(path) as stored:
            print(stored.filename, stored.content_type, stored.content_length, "bytes")
            print("content:", (await stored.read()).decode())

        await storage.replace(file_id, FileIntent(b"{}", "data.json", "application/json"))
        async with await storage.get(file_id) as stored:
            print("replaced:", stored.filename, stored.content_type)

        print("files:", [file_id async for file_id in storage.list()])
        await storage.delete(file_id)
        print("exists after delete:", await storage.exists(file_id))
    await manager.aclose()


if __name__ == "__main__":
    asyncio.run(main())
