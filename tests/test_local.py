"""Local storage specifics: filedepot's on-disk layout, both directions, and atomic writes."""

from __future__ import annotations

import asyncio
import errno
import io
import json
import os
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from depotx import (
    BackendError,
    ConfigurationError,
    LocalFileStorage,
    StorageManager,
    StoredFileNotFoundError,
)

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


# -- the small-file cache ------------------------------------------------------------


def _count_opens(storage: LocalFileStorage, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    opened: list[str] = []
    original = storage._open

    def counting(file_id: str) -> object:
        opened.append(file_id)
        return original(file_id)

    monkeypatch.setattr(storage, "_open", counting)
    return opened


async def _read(storage: LocalFileStorage, file_id: str) -> tuple[str, bytes]:
    async with await storage.get(file_id) as stored:
        return stored.filename, await stored.read()


async def test_small_files_are_served_from_memory_after_a_whole_read(
    storage: LocalFileStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    file_id = await storage.create(b"tiny avatar", "a.png", "image/png")
    opened = _count_opens(storage, monkeypatch)
    assert await _read(storage, file_id) == ("a.png", b"tiny avatar")
    assert await _read(storage, file_id) == ("a.png", b"tiny avatar")
    async with await storage.get(file_id) as stored:
        assert (stored.content_type, stored.content_length) == ("image/png", 11)
    assert opened == [file_id], "only the first get touches the disk"


async def test_metadata_only_access_caches_no_content(
    storage: LocalFileStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A HEAD request reads no content, so only metadata is cached."""
    file_id = await storage.create(b"x" * 100)
    opened = _count_opens(storage, monkeypatch)
    for _ in range(2):
        async with await storage.get(file_id) as stored:
            assert stored.content_length == 100
    assert opened == [file_id]
    cached = storage._cache.get(file_id)
    assert cached is not None
    assert cached.data is None


async def test_large_files_have_only_their_metadata_cached(
    storage: LocalFileStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(64 * 1024 + 1)
    file_id = await storage.create(data)
    opened = _count_opens(storage, monkeypatch)
    assert (await _read(storage, file_id))[1] == data
    assert (await _read(storage, file_id))[1] == data
    assert opened == [file_id], "the second get reuses the metadata"
    cached = storage._cache.get(file_id)
    assert cached is not None
    assert cached.data is None, "the content of a large file is read from disk, not memory"


async def test_cached_metadata_never_pairs_with_other_content(store_path: Path) -> None:
    """A replace of a large file by another process is seen, metadata and bytes together."""
    reader = LocalFileStorage(store_path)
    writer = LocalFileStorage(store_path)
    versions = [bytes([n]) * (100_000 + n) for n in range(6)]
    file_id = await writer.create(versions[0], "v0.bin")
    assert await _read(reader, file_id) == ("v0.bin", versions[0])
    for n, data in enumerate(versions[1:], start=1):
        await writer.replace(file_id, data, f"v{n}.bin")
        async with await reader.get(file_id) as stored:
            assert (stored.filename, stored.content_length) == (f"v{n}.bin", len(data))
            assert await stored.read() == data


async def test_cache_sees_a_replace_by_another_process(store_path: Path) -> None:
    reader = LocalFileStorage(store_path)
    writer = LocalFileStorage(store_path)  # another process, as far as the reader knows
    file_id = await writer.create(b"version 1", "v1.txt")
    assert await _read(reader, file_id) == ("v1.txt", b"version 1")
    for n in range(2, 12):  # quick successive replaces, same size, same second
        await writer.replace(file_id, f"version {n % 10}".encode(), f"v{n}.txt")
        assert await _read(reader, file_id) == (f"v{n}.txt", f"version {n % 10}".encode())


async def test_cache_sees_a_replace_by_filedepot(store_path: Path) -> None:
    storage = LocalFileStorage(store_path)
    file_id = await storage.create(b"depotx wrote this", "a.txt")
    assert await _read(storage, file_id) == ("a.txt", b"depotx wrote this")
    depot_local.LocalFileStorage(str(store_path)).replace(file_id, b"filedepot now", "b.txt")
    assert await _read(storage, file_id) == ("b.txt", b"filedepot now")


async def test_cache_sees_a_delete_by_another_process(store_path: Path) -> None:
    reader = LocalFileStorage(store_path)
    file_id = await reader.create(b"short-lived")
    await _read(reader, file_id)
    await LocalFileStorage(store_path).delete(file_id)
    with pytest.raises(StoredFileNotFoundError):
        await reader.get(file_id)


async def test_cache_is_bounded(store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = LocalFileStorage(store_path, cache_size=2, cache_max_bytes=1000)
    ids = [await storage.create(bytes([n]) * 400) for n in range(3)]
    for file_id in ids:
        await _read(storage, file_id)
    opened = _count_opens(storage, monkeypatch)
    await _read(storage, ids[2])  # newest: cached
    await _read(storage, ids[0])  # evicted (entries and bytes both over the bound)
    assert opened == [ids[0]]


async def test_cache_can_be_turned_off(store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = LocalFileStorage(store_path, cache_size=0)
    file_id = await storage.create(b"x")
    opened = _count_opens(storage, monkeypatch)
    await _read(storage, file_id)
    await _read(storage, file_id)
    assert opened == [file_id, file_id]


def test_cache_options_from_config() -> None:
    manager = StorageManager()
    config = {"depot.storage_path": "/tmp/x", "depot.cache_size": "0", "depot.cache_max_bytes": "9"}
    storage = manager.configure("s", config)
    assert isinstance(storage, LocalFileStorage)
    assert (storage._cache.max_entries, storage._cache.max_bytes) == (0, 9)


async def test_cancelled_create_during_its_commit_completes(
    storage: LocalFileStorage, store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancellation that arrives while files are renamed into place comes too late.

    The commit thread is never abandoned half-way, and the call then returns
    normally: it never raises ``CancelledError`` for a file that was stored.
    """
    import threading
    import time

    in_commit = threading.Event()
    original = storage._commit

    def slow_commit(*args: object) -> None:
        in_commit.set()
        time.sleep(0.2)
        original(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(storage, "_commit", slow_commit)
    task = asyncio.ensure_future(storage.create(b"x" * 10, "x.bin"))
    await asyncio.to_thread(in_commit.wait, 5)
    task.cancel()
    file_id = await task
    assert await _read(storage, file_id) == ("x.bin", b"x" * 10)
    assert sorted(p.name for p in store_path.iterdir()) == [file_id]

    # The cancellation is not lost: a task writing in a loop stops at its next await.
    in_commit.clear()
    stored: list[str] = []

    async def loop_of_writes() -> None:
        for n in range(5):
            stored.append(await storage.create(b"y", f"{n}.bin"))

    loop_task = asyncio.ensure_future(loop_of_writes())
    await asyncio.to_thread(in_commit.wait, 5)
    loop_task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop_task
    assert len(stored) == 1, "the write in its commit completed, the next one never started"


async def test_cancelled_create_before_its_commit_leaves_nothing(
    storage: LocalFileStorage, store_path: Path
) -> None:
    started = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b"x" * 70_000
        started.set()
        yield b"y" * 70_000
        await asyncio.sleep(10)
        yield b"never"

    task = asyncio.ensure_future(storage.create(slow(), "x.bin"))
    await started.wait()
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    leftovers = [p.name for p in store_path.iterdir()] if store_path.exists() else []
    assert leftovers == [], "a cancelled create leaves nothing, not even its staging folder"


async def test_small_uploads_are_stored_in_one_thread_hop(
    storage: LocalFileStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    hops: list[str] = []
    loop = asyncio.get_running_loop()
    original = loop.run_in_executor

    def counting(executor: object, func: object, *args: object) -> object:
        hops.append(
            getattr(func, "__name__", getattr(getattr(func, "func", None), "__name__", "?"))
        )
        return original(executor, func, *args)  # type: ignore[arg-type]

    await storage.create(b"first", "f.bin", "application/octet-stream")  # sweeps once
    monkeypatch.setattr(loop, "run_in_executor", counting)
    await storage.create(b"small content", "s.bin", "application/octet-stream")
    assert hops == ["_store_whole"]


async def test_io_threads_pool_is_closed_and_reopened(store_path: Path) -> None:
    import threading

    storage = LocalFileStorage(store_path, io_threads=1)
    file_id = await storage.create(b"one")
    names = {t.name for t in threading.enumerate()}
    assert any(name.startswith("depotx-local") for name in names)
    await storage.aclose()
    # closed storages reopen their pool lazily: an app can close and keep going
    assert await _read(storage, file_id) == ("unnamed", b"one")
    await storage.aclose()


def test_io_threads_option() -> None:
    manager = StorageManager()
    storage = manager.configure("s", {"depot.storage_path": "/tmp/x", "depot.io_threads": "2"})
    assert isinstance(storage, LocalFileStorage)
    assert storage.io_threads == 2
    with pytest.raises(ConfigurationError, match="io_threads"):
        manager.configure("t", {"depot.storage_path": "/tmp/x", "depot.io_threads": "0"})


@pytest.mark.parametrize(
    "failure",
    [BlockingIOError(errno.EAGAIN, "not cached"), OSError(errno.EOPNOTSUPP, "not supported")],
)
async def test_reads_fall_back_to_a_thread_when_the_page_cache_cannot_answer(
    storage: LocalFileStorage, monkeypatch: pytest.MonkeyPatch, failure: OSError
) -> None:
    data = os.urandom(200_000)
    file_id = await storage.create(data)

    def refusing(*args: object) -> int:
        raise failure

    monkeypatch.setattr(os, "preadv", refusing)
    async with await storage.get(file_id) as stored:
        assert b"".join([c async for c in stored.iter_bytes(1000, 70_000)]) == data[1000:70_000]
        assert await stored.read() == data


async def test_short_page_cache_reads_are_completed(
    storage: LocalFileStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(100_000)
    file_id = await storage.create(data)
    real = os.preadv

    def half(fd: int, buffers: list[bytearray], offset: int, flags: int = 0) -> int:
        view = memoryview(buffers[0])[: len(buffers[0]) // 2]
        return real(fd, [view], offset, flags)

    monkeypatch.setattr(os, "preadv", half)
    async with await storage.get(file_id) as stored:
        assert b"".join([c async for c in stored.iter_bytes(10, 90_010)]) == data[10:90_010]


async def test_a_real_read_error_is_a_backend_error(
    storage: LocalFileStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    file_id = await storage.create(os.urandom(1000))

    def broken(*args: object) -> int:
        raise OSError(errno.EIO, "input/output error")

    monkeypatch.setattr(os, "preadv", broken)
    async with await storage.get(file_id) as stored:
        with pytest.raises(BackendError, match="input/output") as info:
            await stored.read()
        assert isinstance(info.value.__cause__, OSError)
        with pytest.raises(BackendError):
            await anext(stored.iter_bytes(0, 10))


# -- hardening: races, crash leftovers, corrupt entries, links -------------------------


async def test_replace_racing_delete_leaves_no_bookkeeping_behind(
    storage: LocalFileStorage, store_path: Path
) -> None:
    for _ in range(20):
        file_id = await storage.create(b"v0" * 40_000)
        results = await asyncio.gather(
            storage.replace(file_id, b"v1" * 40_000),
            storage.delete(file_id),
            storage.replace(file_id, b"v2"),
            return_exceptions=True,
        )
        assert all(r is None or isinstance(r, (str, StoredFileNotFoundError)) for r in results)
    # no .deleted-* folder, no staging area, no temporaries: only what exists
    assert sorted(p.name for p in store_path.iterdir()) == []


_KILLED_WRITER = """
import asyncio, sys
from depotx import LocalFileStorage

async def main():
    storage = LocalFileStorage(sys.argv[1])
    async def endless():
        while True:
            yield b"x" * (1 << 20)
            print("chunk", flush=True)
            await asyncio.sleep(0)
    await storage.create(endless(), "big.bin")

asyncio.run(main())
"""


async def test_a_killed_writer_leaves_a_leftover_that_cleanup_removes(
    store_path: Path,
) -> None:
    import sys
    import time

    writer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _KILLED_WRITER, str(store_path), stdout=asyncio.subprocess.PIPE
    )
    assert writer.stdout is not None
    for _ in range(5):
        assert await writer.stdout.readline() == b"chunk\n"
    writer.kill()  # SIGKILL: no cleanup of any kind runs
    await writer.wait()

    staged = list((store_path / "\\depotx-staging").iterdir())
    assert len(staged) == 1
    assert (staged[0] / "file").stat().st_size >= 4 << 20
    storage = LocalFileStorage(store_path)
    assert [i async for i in storage.list()] == []
    # Young leftovers may belong to an upload still running: kept.
    assert await storage.cleanup() == 0
    assert staged[0].exists()
    # A day old (as the default age says): removed, by cleanup ...
    old = time.time() - 2 * 86400
    os.utime(staged[0], (old, old))
    assert await storage.cleanup() == 1
    assert not (store_path / "\\depotx-staging").exists()
    # ... and by the first write of a storage, which sweeps the staging area.
    leftover = store_path / "\\depotx-staging" / "crashed"
    leftover.mkdir(parents=True)
    os.utime(leftover, (old, old))
    fresh = LocalFileStorage(store_path)
    await fresh.create(b"after a crash")
    assert not leftover.exists()


async def test_cleanup_removes_depotx_01_temporaries_and_old_trash(
    storage: LocalFileStorage, store_path: Path
) -> None:
    import time

    file_id = await storage.create(b"kept")
    legacy = store_path / file_id / ".file.0123abcd.tmp"
    legacy.write_bytes(b"half an upload")
    trash = store_path / "\\deleted-x-1234"
    trash.mkdir()
    (trash / "file").write_bytes(b"deleted")
    old = time.time() - 3600
    for path in (legacy, trash):
        os.utime(path, (old, old))
    assert await storage.cleanup(older_than=60) == 2
    assert not legacy.exists()
    assert not trash.exists()
    assert await _read(storage, file_id) == ("unnamed", b"kept")
    with pytest.raises(ValueError, match="negative"):
        await storage.cleanup(older_than=-1)


def test_fsync_and_temp_max_age_options() -> None:
    manager = StorageManager()
    storage = manager.configure(
        "s", {"depot.storage_path": "/tmp/x", "depot.fsync": "false", "depot.temp_max_age": "60"}
    )
    assert isinstance(storage, LocalFileStorage)
    assert storage.fsync is False
    assert storage.temp_max_age.total_seconds() == 60
    assert LocalFileStorage("/tmp/x").fsync is True
    with pytest.raises(ConfigurationError, match="temp_max_age"):
        LocalFileStorage("/tmp/x", temp_max_age=-1)
    with pytest.raises(ConfigurationError, match="cache_size"):
        LocalFileStorage("/tmp/x", cache_size=-1)


async def test_writes_are_synced_before_they_return(
    storage: LocalFileStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    original = os.fsync

    def counting(fd: int) -> None:
        synced.append(fd)
        original(fd)

    monkeypatch.setattr(os, "fsync", counting)
    file_id = await storage.create(b"durable")
    # content, depotx.json, metadata.json, and the root folder naming the new file
    assert len(synced) == 4
    synced.clear()
    await storage.replace(file_id, b"durable too")
    assert len(synced) == 4  # content, two metadata files, the file's folder
    synced.clear()
    storage.fsync = False
    await storage.replace(file_id, b"fast")
    assert synced == []


@pytest.mark.parametrize(
    "damage",
    ["bad json", "not an object", "metadata is a folder", "no content", "content is a folder"],
)
async def test_one_corrupt_entry_does_not_break_listings(
    storage: LocalFileStorage, store_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    good = [await storage.create(b"good") for _ in range(3)]
    bad = await storage.create(b"bad")
    folder = store_path / bad
    if damage == "bad json":
        (folder / "metadata.json").write_text("{not json")
    elif damage == "not an object":
        (folder / "metadata.json").write_text("[1, 2]")
    elif damage == "metadata is a folder":
        (folder / "metadata.json").unlink()
        (folder / "metadata.json").mkdir()
    elif damage == "no content":
        (folder / "file").unlink()
    else:
        (folder / "file").unlink()
        (folder / "file").mkdir()

    fresh = LocalFileStorage(store_path)
    with caplog.at_level("WARNING", logger="depotx"):
        listed = {i async for i in fresh.list()}
        assert {i async for i in fresh.list()} == listed
    assert listed == set(good)
    if damage in ("no content", "content is a folder"):
        # Metadata without content is no file at all: absent everywhere.
        assert not await fresh.exists(bad)
        with pytest.raises(StoredFileNotFoundError):
            await fresh.get(bad)
        return
    # Logged once, however often it is listed.
    assert [r.getMessage() for r in caplog.records].count(
        f"depotx: LocalFileStorage: skipping {folder} in listings: its metadata is corrupt"
    ) == 1
    with pytest.raises(BackendError, match="corrupt") as info:
        await fresh.get(bad)
    assert str(folder) in str(info.value)


async def test_links_planted_in_the_store_are_never_followed(
    storage: LocalFileStorage, store_path: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "file").write_bytes(b"secret")
    (outside / "metadata.json").write_text('{"filename": "secret.txt"}')
    file_id = await storage.create(b"mine", "mine.txt")

    # A whole folder replaced by a link to a folder outside the store.
    planted = "0b5c0c0e-4bd6-4b8e-9d4f-3f0a4c8f1f7e"
    (store_path / planted).symlink_to(outside)
    with pytest.raises(BackendError, match="symbolic link"):
        await storage.get(planted)
    assert planted not in {i async for i in storage.list()}
    # The link is removed by delete, never what it points to.
    await storage.delete(planted)
    assert not (store_path / planted).exists()
    assert (outside / "file").read_bytes() == b"secret"

    # A file inside a real folder replaced by a link.
    content = store_path / file_id / "file"
    content.unlink()
    content.symlink_to(outside / "file")
    fresh = LocalFileStorage(store_path)
    with pytest.raises(BackendError, match="symbolic link"):
        await fresh.get(file_id)
    target = outside / "victim"
    target.write_bytes(b"untouched")
    (store_path / file_id / "metadata.json").unlink()
    (store_path / file_id / "metadata.json").symlink_to(target)
    with pytest.raises(BackendError, match="symbolic link"):
        await fresh.replace(file_id, b"overwrite?")
    assert target.read_bytes() == b"untouched"


async def test_relative_storage_path_is_fixed_at_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    storage = LocalFileStorage("files")
    assert storage.storage_path == str(tmp_path / "files")
    file_id = await storage.create(b"here")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert await _read(storage, file_id) == ("unnamed", b"here")
    assert not (elsewhere / "files").exists()


async def test_key_layout_on_disk(
    storage: LocalFileStorage, store_path: Path, tmp_path: Path
) -> None:
    await storage.create(b"a", file_id="a")
    await storage.create(b"a/file", file_id="a/file")
    await storage.create(b"deep", file_id="a/b/c.pdf")
    assert (store_path / "a" / "file").read_bytes() == b"a"  # filedepot's layout
    assert (store_path / "a\\" / "file" / "file").read_bytes() == b"a/file"
    assert (store_path / "a\\" / "b\\" / "c.pdf" / "file").read_bytes() == b"deep"
    # A link planted among the prefix folders is never followed.
    outside = tmp_path / "outside"
    (outside / "x").mkdir(parents=True)
    (outside / "x" / "file").write_bytes(b"secret")
    (outside / "x" / "metadata.json").write_text("{}")
    (store_path / "evil\\").symlink_to(outside)
    with pytest.raises(BackendError, match="symbolic link"):
        await storage.get("evil/x")
    assert "evil/x" not in {i async for i in storage.list()}
    # Nor is a write sent through it, out of the store.
    with pytest.raises(BackendError, match="symbolic link"):
        await storage.create(b"escape?", file_id="evil/new")
    with pytest.raises(BackendError, match="symbolic link"):
        await storage.put("evil/x", b"escape?")
    assert sorted(p.name for p in outside.iterdir()) == ["x"]
    assert (outside / "x" / "file").read_bytes() == b"secret"
    # Deleting the last key under a prefix removes the prefix folders it leaves empty.
    await storage.delete("a/b/c.pdf")
    assert not (store_path / "a\\" / "b\\").exists()
    assert (store_path / "a\\").exists()  # still holds a/file


async def test_writers_racing_over_the_staging_area_all_succeed(tmp_path: Path) -> None:
    """The staging area is made and removed by concurrent writers: none may fail for it."""
    storage = LocalFileStorage(tmp_path / "store", fsync=False)
    for _ in range(3):
        payloads = [bytes([n % 256]) * (n * 97 % 5000) for n in range(300)]
        results = await asyncio.gather(
            *(storage.create(data) for data in payloads), return_exceptions=True
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        assert failures == []


async def test_nested_keys_work_when_the_storage_path_itself_is_a_link(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "linked").symlink_to(real)
    storage = LocalFileStorage(tmp_path / "linked")
    await storage.create(b"deep", file_id="a/b/c.txt")
    assert await _read(storage, "a/b/c.txt") == ("unnamed", b"deep")
    assert await storage.exists("a/b/c.txt")
