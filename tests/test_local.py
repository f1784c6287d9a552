"""Local storage specifics: filedepot's on-disk layout, both directions, and atomic writes."""

from __future__ import annotations

import asyncio
import io
import json
import os
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from depotx import BackendError, LocalFileStorage, StorageManager, StoredFileNotFoundError

depot_local = pytest.importorskip("depot.io.local", reason="filedepot is needed for interop tests")


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
async def storage(store_path: Path) -> LocalFileStorage:
    return LocalFileStorage(store_path)


async def test_layout_is_filedepots(storage: LocalFileStorage, store_path: Path) -> None:
    file_id = await storage.create(b"hello", "hello.txt", "text/plain")
    folder = store_path / file_id
    assert (folder / "file").read_bytes() == b"hello"
    meta = json.loads((folder / "metadata.json").read_text())
    assert set(meta) == {"filename", "content_type", "content_length", "last_modified"}
    assert meta["filename"] == "hello.txt"
    assert meta["content_type"] == "text/plain"
    assert meta["content_length"] == 5
    parsed = datetime.strptime(meta["last_modified"], "%Y-%m-%d %H:%M:%S")
    assert abs((datetime.now(timezone.utc).replace(tzinfo=None) - parsed).total_seconds()) < 5
    # nothing half-written is left behind
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


async def test_filedepot_reads_what_depotx_writes(
    storage: LocalFileStorage, store_path: Path
) -> None:
    file_id = await storage.create(b"written by depotx", "été.txt", "text/plain")
    theirs = depot_local.LocalFileStorage(str(store_path))
    stored = theirs.get(file_id)
    assert stored.read() == b"written by depotx"
    assert stored.filename == "été.txt"
    assert stored.content_type == "text/plain"
    assert stored.content_length == len(b"written by depotx")
    assert isinstance(stored.last_modified, datetime)
    stored.close()
    assert file_id in theirs.list()


async def test_depotx_reads_what_filedepot_writes(
    storage: LocalFileStorage, store_path: Path
) -> None:
    theirs = depot_local.LocalFileStorage(str(store_path))
    file_id = theirs.create(io.BytesIO(b"written by filedepot"), "old.pdf", "application/pdf")
    async with await storage.get(file_id) as stored:
        assert await stored.read() == b"written by filedepot"
        assert stored.filename == "old.pdf"
        assert stored.content_type == "application/pdf"
        assert stored.content_length == 20
        assert stored.last_modified.tzinfo is not None
        # no checksum on disk: a validator that is stable while the file is unchanged
        checksum = stored.checksum
    async with await storage.get(file_id) as again:
        assert again.checksum == checksum
    assert [i async for i in storage.list()] == [file_id]
    # and depotx can replace it, after which filedepot still reads it
    await storage.replace(file_id, b"replaced by depotx")
    stored_again = theirs.get(file_id)
    assert stored_again.read() == b"replaced by depotx"
    assert stored_again.filename == "old.pdf"


async def test_serving_an_existing_filedepot_store_through_the_manager(store_path: Path) -> None:
    theirs = depot_local.LocalFileStorage(str(store_path))
    file_id = theirs.create(b"legacy", "legacy.txt", "text/plain")
    manager = StorageManager()
    manager.configure(
        "default",
        {"depot.backend": "depot.io.local.LocalFileStorage", "depot.storage_path": str(store_path)},
    )
    async with await manager.get_file(f"default/{file_id}") as stored:
        assert await stored.read() == b"legacy"


async def test_list_ignores_foreign_and_unfinished_entries(
    storage: LocalFileStorage, store_path: Path
) -> None:
    file_id = await storage.create(b"x")
    (store_path / "not-a-file-folder").mkdir()  # no metadata.json: unfinished
    (store_path / ".deleted-junk").mkdir()
    (store_path / "stray.txt").write_text("x")
    assert [i async for i in storage.list()] == [file_id]


async def test_list_of_a_store_never_written(tmp_path: Path) -> None:
    assert [i async for i in LocalFileStorage(tmp_path / "nothing-here").list()] == []


async def test_constructor_does_no_io(tmp_path: Path) -> None:
    LocalFileStorage(tmp_path / "lazy")
    assert not (tmp_path / "lazy").exists()


async def test_failed_create_leaves_no_folder(storage: LocalFileStorage, store_path: Path) -> None:
    async def failing() -> AsyncIterator[bytes]:
        yield b"partial"
        raise ConnectionResetError("client went away")

    await storage.create(b"other")  # the store folder exists
    before = sorted(p.name for p in store_path.iterdir())
    with pytest.raises(ConnectionResetError):
        # an explicit type: no sniffing, so the failure happens while writing
        await storage.create(failing(), "x.bin", "application/octet-stream")
    assert sorted(p.name for p in store_path.iterdir()) == before


async def test_failed_replace_leaves_no_temporary_files(
    storage: LocalFileStorage, store_path: Path
) -> None:
    file_id = await storage.create(b"keep me")

    async def failing() -> AsyncIterator[bytes]:
        yield b"partial"
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await storage.replace(file_id, failing())
    names = sorted(p.name for p in (store_path / file_id).iterdir())
    assert names == [".lock", "depotx.json", "file", "metadata.json"]


async def test_cancelled_replace_keeps_the_old_version(storage: LocalFileStorage) -> None:
    file_id = await storage.create(b"keep me", "keep.txt")
    gate = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b"new"
        gate.set()
        await asyncio.sleep(10)
        yield b"never"

    task = asyncio.ensure_future(storage.replace(file_id, slow()))
    await gate.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with await storage.get(file_id) as stored:
        assert (stored.filename, await stored.read()) == ("keep.txt", b"keep me")


async def test_delete_while_a_reader_holds_the_file(storage: LocalFileStorage) -> None:
    data = os.urandom(200_000)
    file_id = await storage.create(data)
    async with await storage.get(file_id) as reader:
        await storage.delete(file_id)
        assert await reader.read() == data
    with pytest.raises(StoredFileNotFoundError):
        await storage.get(file_id)


async def test_corrupt_metadata_is_a_backend_error(
    storage: LocalFileStorage, store_path: Path
) -> None:
    file_id = await storage.create(b"x")
    (store_path / file_id / "metadata.json").write_text("{not json")
    with pytest.raises(BackendError, match="corrupt") as info:
        await storage.get(file_id)
    assert info.value.__cause__ is not None


async def test_disk_errors_are_wrapped_with_the_cause(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    storage = LocalFileStorage(blocker / "store")
    with pytest.raises(BackendError) as info:
        await storage.create(b"x")
    assert isinstance(info.value, OSError)
    assert isinstance(info.value.__cause__, OSError)


async def test_storage_path_option_accepts_pathlike(tmp_path: Path) -> None:
    storage = LocalFileStorage(tmp_path)
    assert storage.storage_path == str(tmp_path)
