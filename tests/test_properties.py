"""Property tests: any filename survives a round trip; many concurrent writers stay intact."""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from depotx import FileStorage, LocalFileStorage, MemoryFileStorage


def _roundtrip(storage: FileStorage, filename: str, data: bytes) -> tuple[str, bytes]:
    async def run() -> tuple[str, bytes]:
        file_id = await storage.create(data, filename, "application/octet-stream")
        async with await storage.get(file_id) as stored:
            return stored.filename, await stored.read()

    return asyncio.run(run())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(filename=st.text(min_size=1, max_size=300), data=st.binary(max_size=2048))
def test_any_filename_roundtrips_on_local_storage(filename: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        assert _roundtrip(LocalFileStorage(folder), filename, data) == (filename, data)


@settings(max_examples=60, deadline=None)
@given(filename=st.text(min_size=1, max_size=300), data=st.binary(max_size=2048))
def test_any_filename_roundtrips_on_memory_storage(filename: str, data: bytes) -> None:
    assert _roundtrip(MemoryFileStorage(), filename, data) == (filename, data)


async def test_hundreds_of_concurrent_creates_and_reads(tmp_path: Path) -> None:
    storage = LocalFileStorage(tmp_path / "store")
    payloads = [os.urandom(512 + n) for n in range(500)]
    ids = await asyncio.gather(*(storage.create(data) for data in payloads))
    assert len(set(ids)) == 500

    async def check(file_id: str, data: bytes) -> None:
        async with await storage.get(file_id) as stored:
            assert stored.checksum == hashlib.sha256(data).hexdigest()
            assert await stored.read() == data

    await asyncio.gather(*(check(i, d) for i, d in zip(ids, payloads, strict=True)))
    assert {i async for i in storage.list()} == set(ids)
