"""depotx on MinIO (or any S3-compatible service): upload, stream, range, presign, replace.

Start a MinIO server, then run the example::

    docker run -p 9000:9000 -e MINIO_ROOT_USER=minioadmin -e MINIO_ROOT_PASSWORD=minioadmin \\
        minio/minio server /data
    python examples/s3_minio.py

``S3_ENDPOINT_URL``, ``S3_ACCESS_KEY_ID``, ``S3_SECRET_ACCESS_KEY`` and ``S3_BUCKET``
point it elsewhere. The bucket is created on first use (``create_bucket``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import httpx

from depotx import StorageManager, StoredFileChangedError
from depotx.storages.s3 import S3Storage

MiB = 1024 * 1024


def settings() -> dict[str, str]:
    """The settings an ``.ini`` file or the environment would give: strings, converted."""
    return {
        "depot.backend": "s3",
        "depot.endpoint_url": os.environ.get("S3_ENDPOINT_URL", "http://127.0.0.1:9000"),
        "depot.access_key_id": os.environ.get("S3_ACCESS_KEY_ID", "minioadmin"),
        "depot.secret_access_key": os.environ.get("S3_SECRET_ACCESS_KEY", "minioadmin"),
        "depot.region_name": "us-east-1",
        "depot.bucket": os.environ.get("S3_BUCKET", "depotx-example"),
        "depot.prefix": "example/",
        "depot.addressing_style": "path",
        "depot.create_bucket": "true",
        "depot.part_size": str(5 * MiB),  # the smallest S3 allows, to show multipart
        "depot.public_url_mode": "presigned",
        "depot.presigned_expires": "300",
    }


async def generated(total: int) -> AsyncIterator[bytes]:
    """A large upload arriving in pieces, as from a request body: never all in memory."""
    sent = 0
    while sent < total:
        piece = min(256 * 1024, total - sent)
        yield bytes([sent // MiB % 256]) * piece
        sent += piece


async def main() -> None:
    async with StorageManager() as manager:
        storage = manager.configure("media", settings())
        assert isinstance(storage, S3Storage)

        # Small content: one PutObject. Non-ASCII names survive the round trip.
        note_id = await storage.create(
            "Bonjour, l'été !\n".encode(), "note d'été.txt", metadata={"owner": "zoë"}
        )
        async with await storage.get(note_id) as note:
            print(f"{note.filename!r} {note.content_type} {note.content_length} bytes")
            print("  metadata:", note.metadata, "sha256:", note.checksum[:16], "...")

        # 12 MiB from a stream: a multipart upload in 5 MiB parts, sent concurrently.
        big_id = await storage.create(generated(12 * MiB), "big.bin")
        async with await storage.get(big_id) as big:
            # An HTTP Range is one ranged GetObject: only those bytes travel.
            middle = b"".join([c async for c in big.iter_bytes(5 * MiB - 2, 5 * MiB + 2)])
            print(f"big.bin: {big.content_length} bytes, bytes around 5 MiB: {middle!r}")

        # The presigned URL the middleware redirects to; computed without a request.
        url = manager.url_for(f"media/{note_id}")
        async with httpx.AsyncClient() as http:
            response = await http.get(url)
        print("presigned GET:", response.status_code, response.content)

        # Replace keeps the id. A reader opened before sees the change instead of
        # mixed bytes (unversioned bucket) and simply opens the file again.
        async with await storage.get(note_id) as before:
            await storage.replace(note_id, b"Hello, summer!\n")
            try:
                print("old reader:", await before.read())
            except StoredFileChangedError:
                async with await storage.get(note_id) as after:
                    print("replaced while open; reopened:", await after.read())

        print("files:", sorted([file_id async for file_id in storage.list()]))
        for file_id in (note_id, big_id):
            await storage.delete(file_id)
        print("after delete:", [file_id async for file_id in storage.list()])


if __name__ == "__main__":
    asyncio.run(main())
