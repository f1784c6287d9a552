"""The checksum option: SHA-256 by default (bare hex), BLAKE3 on request (``blake3:<hex>``)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import blake3
import httpx
import pytest

from depotx import ConfigurationError, FileStorage, StorageManager
from depotx._checksums import is_content_checksum
from tests.conftest import BACKEND_FACTORIES

DATA = bytes(range(256)) * 4000  # ~1 MiB: several chunks on every backend


@pytest.mark.parametrize("backend", sorted(BACKEND_FACTORIES))
async def test_blake3_checksums_on_every_backend(backend: str, tmp_path: Path) -> None:
    storage: FileStorage = await BACKEND_FACTORIES[backend](tmp_path)
    try:
        old = await storage.create(DATA, "old.bin")  # stored with the default, SHA-256
        storage.checksum_algorithm = "blake3"
        new = await storage.create(DATA, "new.bin")
        async with await storage.get(new) as stored:
            assert stored.checksum == "blake3:" + blake3.blake3(DATA).hexdigest()
        async with await storage.get(old) as stored:
            # Files stored before keep their checksum, and so their ETag.
            assert stored.checksum == hashlib.sha256(DATA).hexdigest()
        await storage.replace(old, b"replaced")
        async with await storage.get(old) as stored:
            assert stored.checksum == "blake3:" + blake3.blake3(b"replaced").hexdigest()
            assert is_content_checksum(stored.checksum)
    finally:
        await storage.aclose()


async def test_the_option_is_configured_and_checked(tmp_path: Path) -> None:
    manager = StorageManager()
    storage = manager.configure(
        "files", {"depot.storage_path": str(tmp_path), "depot.checksum": "BLAKE3"}
    )
    assert storage.checksum_algorithm == "blake3"
    file_id = await storage.create(b"etag me", "e.txt")

    async def nothing(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("not reached")

    transport = httpx.ASGITransport(app=manager.make_middleware(nothing))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get(manager.url_for(f"files/{file_id}"))
    assert response.headers["etag"] == f'"blake3:{blake3.blake3(b"etag me").hexdigest()}"'
    with pytest.raises(ConfigurationError, match="unknown checksum algorithm 'md5'"):
        manager.configure("other", {"depot.backend": "memory", "depot.checksum": "md5"})
    assert manager.get().checksum_algorithm == "blake3"
    default = manager.configure("plain", {"depot.backend": "memory"})
    assert default.checksum_algorithm == "sha256"
