"""GridFS-specific behaviour; the shared contract runs in test_contract.py (``-k gridfs``).

Most tests run on mongomock-motor. Interop with filedepot's own ``GridFSStorage``
(sync PyMongo) runs twice: on a mongomock server shared by both clients, and on
a real MongoDB when ``MONGODB_TEST_URI`` is set (skipped, with the
reason shown, otherwise).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timezone
from typing import Any
from unittest import mock

import mongomock
import pytest
from bson import ObjectId
from mongomock_motor import AsyncMongoMockClient, enabled_gridfs_integration

from depotx import (
    BackendError,
    ConfigurationError,
    InvalidFileIdError,
    StorageManager,
    StoredFileChangedError,
    StoredFileNotFoundError,
)
from depotx.storages import _mongo
from depotx.storages.gridfs import GridFSStorage, GridFSStoredFile

#: mongomock's client (typed by mypy as PyMongo's generic one, which it imitates).
MockServer = Any
MONGODB_URI_ENV = "MONGODB_TEST_URI"
needs_mongodb = pytest.mark.skipif(
    not os.environ.get(MONGODB_URI_ENV),
    reason=f"{MONGODB_URI_ENV} is not set: real MongoDB tests not run",
)


@pytest.fixture
def server() -> MockServer:
    """One in-memory MongoDB, reachable by sync (filedepot) and async (depotx) clients."""
    return mongomock.MongoClient("mongodb://localhost/depotx_test")


@pytest.fixture
async def storage(server: MockServer) -> AsyncIterator[GridFSStorage]:
    client: Any = AsyncMongoMockClient(mock_mongo_client=server)
    store = GridFSStorage(database=client.get_database("depotx_test"))
    yield store
    await store.aclose()


def _second_process(server: MockServer) -> GridFSStorage:
    """Another storage on the same data, with its own readers: like a second worker process."""
    client: Any = AsyncMongoMockClient(mock_mongo_client=server)
    return GridFSStorage(database=client.get_database("depotx_test"))


async def _read(storage: GridFSStorage, file_id: str) -> tuple[str, bytes]:
    async with await storage.get(file_id) as stored:
        return stored.filename, await stored.read()


# -- document layout ----------------------------------------------------------


async def test_document_layout_is_filedepots(storage: GridFSStorage, server: MockServer) -> None:
    storage.chunk_size = 4
    file_id = await storage.create(b"0123456789", "ten.txt", "text/plain", metadata={"k": "v"})
    files = server.depotx_test["filedepot.files"]
    chunks = server.depotx_test["filedepot.chunks"]
    doc = files.find_one({"_id": ObjectId(file_id)})
    assert doc is not None
    assert doc["filename"] == "ten.txt"
    assert doc["contentType"] == "text/plain"
    assert (doc["length"], doc["chunkSize"]) == (10, 4)
    assert doc["metadata"] == {"k": "v"}
    stamp = datetime.strptime(doc["last_modified"], "%Y-%m-%d %H:%M:%S")
    assert abs((datetime.now(timezone.utc).replace(tzinfo=None) - stamp).total_seconds()) < 5
    assert isinstance(doc["uploadDate"], datetime)
    assert len(doc["depotx_checksum"]) == 64
    stored = [(c["files_id"], c["n"], c["data"]) for c in chunks.find().sort("n", 1)]
    oid = ObjectId(file_id)
    assert stored == [(oid, 0, b"0123"), (oid, 1, b"4567"), (oid, 2, b"89")]
    # GridFS's indexes exist, so reads by (files_id, n) are index lookups.
    assert any(i.get("unique") for i in chunks.index_information().values())


async def test_replace_leaves_chunks_home_and_nothing_behind(
    storage: GridFSStorage, server: MockServer
) -> None:
    storage.chunk_size = 4
    file_id = await storage.create(b"old version!", "v1.txt")
    await storage.replace(file_id, b"new", "v2.txt")
    chunks = list(server.depotx_test["filedepot.chunks"].find())
    assert [(c["files_id"], c["n"], c["data"]) for c in chunks] == [(ObjectId(file_id), 0, b"new")]
    assert server.depotx_test["filedepot.files"].count_documents({}) == 1


# -- ids ----------------------------------------------------------------------


class _NoIO:
    """A database that fails the test if anything touches it."""

    def __getitem__(self, name: str) -> Any:
        raise AssertionError(f"I/O on collection {name!r} for an invalid id")

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"I/O through database.{name} for an invalid id")


@pytest.mark.parametrize("bad_id", ["..", "a//b", "a\\b", "/abs", "id\x00", "x" * 1100])
async def test_malformed_ids_are_refused_before_io(bad_id: str) -> None:
    storage = GridFSStorage(database=_NoIO())
    for call in (
        storage.get(bad_id),
        storage.exists(bad_id),
        storage.delete(bad_id),
        storage.replace(bad_id, b"x"),
    ):
        with pytest.raises(InvalidFileIdError):
            await call
    with pytest.raises(InvalidFileIdError):
        storage.public_url(bad_id)


async def test_keys_are_string_ids_and_generated_ids_object_ids(
    storage: GridFSStorage, server: MockServer
) -> None:
    key = await storage.create(b"by key", file_id="uploads/2026/report.pdf")
    generated = await storage.create(b"generated")
    files = server.depotx_test["filedepot.files"]
    assert files.find_one({"_id": "uploads/2026/report.pdf"}) is not None  # the _id index
    assert files.find_one({"_id": ObjectId(generated)}) is not None
    # An uppercase spelling of an ObjectId is a key of its own, not the same file.
    upper = generated.upper()
    assert not await storage.exists(upper)
    assert await _read(storage, key) == ("unnamed", b"by key")


async def test_new_ids_are_object_ids(storage: GridFSStorage) -> None:
    file_id = await storage.create(b"x")
    assert str(ObjectId(file_id)) == file_id


# -- lookups ------------------------------------------------------------------


async def test_lookup_by_filename(storage: GridFSStorage) -> None:
    first = await storage.create(b"first", "logo.png")
    await asyncio.sleep(0.01)  # uploadDate has millisecond precision
    second = await storage.create(b"second", "logo.png")
    await storage.create(b"other", "other.png")
    async with await storage.get_by_filename("logo.png") as stored:
        assert stored.file_id == second
        assert await stored.read() == b"second"
    assert [i async for i in storage.find_ids_by_filename("logo.png")] == [second, first]
    assert [i async for i in storage.find_ids_by_filename("missing.png")] == []
    with pytest.raises(StoredFileNotFoundError):
        await storage.get_by_filename("missing.png")


async def test_list_by_metadata_field(storage: GridFSStorage) -> None:
    a = await storage.create(b"a", metadata={"folder": "invoices"})
    b = await storage.create(b"b", metadata={"folder": "invoices", "year": "2024"})
    await storage.create(b"c", metadata={"folder": "avatars"})
    await storage.create(b"d")
    assert {i async for i in storage.list_by_metadata("folder", "invoices")} == {a, b}
    assert [i async for i in storage.list_by_metadata("year", "2024")] == [b]
    assert [i async for i in storage.list_by_metadata("folder", "nope")] == []
    for bad_key in ("", "$where", "a.b", "nul\x00"):
        with pytest.raises(ValueError, match="metadata key"):
            [i async for i in storage.list_by_metadata(bad_key, "x")]


# -- replace without a window -------------------------------------------------


async def test_replace_has_no_window_at_any_step(
    storage: GridFSStorage, server: MockServer
) -> None:
    """Another process reads between every step of a replace: always one whole version."""
    storage.chunk_size = 1000
    old, new = os.urandom(5500), os.urandom(7300)
    file_id = await storage.create(old, "v1.bin")
    other = _second_process(server)
    seen: list[tuple[str, bytes]] = []
    chunks = server.depotx_test["filedepot.chunks"]
    original_update_many = chunks.update_many
    steps: list[Any] = []

    def counting_update_many(*args: Any, **kwargs: Any) -> Any:
        steps.append(args[0])
        return original_update_many(*args, **kwargs)

    real_settle = storage._settle
    real_retire = storage._retire

    async def settle(*args: Any) -> None:
        seen.append(await _read(other, file_id))  # document swapped, chunks still staged
        await real_settle(*args)

    async def retire(*args: Any) -> None:
        seen.append(await _read(other, file_id))  # chunks moved home, old ones parked
        await real_retire(*args)

    with (
        mock.patch.object(storage, "_settle", settle),
        mock.patch.object(storage, "_retire", retire),
        mock.patch.object(chunks, "update_many", counting_update_many),
    ):
        await storage.replace(file_id, new, "v2.bin")
    seen.append(await _read(other, file_id))
    assert len(steps) == 2, "the replace moves the old chunks aside, then the new ones home"
    assert seen == [("v2.bin", new)] * 3


async def test_concurrent_readers_never_see_missing_or_doubled(
    storage: GridFSStorage, server: MockServer
) -> None:
    storage.chunk_size = 512
    versions = {bytes([n]) * (3000 + 700 * n): f"v{n}.bin" for n in range(8)}
    first = next(iter(versions))
    file_id = await storage.create(first, versions[first])
    other = _second_process(server)
    reads = 0

    async def writer() -> None:
        for data, name in versions.items():
            await storage.replace(file_id, data, name)
            await asyncio.sleep(0)

    async def reader(store: GridFSStorage) -> None:
        nonlocal reads
        for _ in range(40):
            name, data = await _read(store, file_id)  # never StoredFileNotFoundError
            assert versions[data] == name  # never a mix, never a doubled chunk
            reads += 1
            await asyncio.sleep(0)

    await asyncio.gather(writer(), reader(storage), reader(other))
    assert reads == 80


async def test_reader_of_a_deleted_version_elsewhere_raises_changed(
    storage: GridFSStorage, server: MockServer
) -> None:
    """A reader in another process whose version is gone fails loudly, not with other bytes."""
    storage.chunk_size = 100
    file_id = await storage.create(b"a" * 1000, "v1.bin")
    other = _second_process(server)
    async with await other.get(file_id) as stale:
        await storage.replace(file_id, b"b" * 1000, "v2.bin")
        with pytest.raises(StoredFileChangedError):
            await stale.read()
    assert await _read(other, file_id) == ("v2.bin", b"b" * 1000)


async def test_reader_keeps_version_across_delete(storage: GridFSStorage) -> None:
    storage.chunk_size = 100
    file_id = await storage.create(b"z" * 450, "z.bin")
    async with await storage.get(file_id) as reader:
        await storage.delete(file_id)
        assert not await storage.exists(file_id)
        assert await reader.read() == b"z" * 450


async def test_failed_replace_of_filedepot_file_leaves_it_intact(
    storage: GridFSStorage, server: MockServer
) -> None:
    async def failing() -> AsyncIterator[bytes]:
        yield b"partial"
        raise RuntimeError("source failed")

    file_id = await _filedepot_create(server, b"legacy bytes", "legacy.txt")
    with pytest.raises(RuntimeError, match="source failed"):
        await storage.replace(file_id, failing())
    assert await _read(storage, file_id) == ("legacy.txt", b"legacy bytes")
    assert server.depotx_test["filedepot.chunks"].count_documents({}) == 1


# -- ranged reads -------------------------------------------------------------


class _RecordingChunks:
    """Wraps the chunks collection, recording the chunk numbers the server sends back."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.sent: list[int] = []

    def find(self, *args: Any, **kwargs: Any) -> Any:
        return _RecordingCursor(self.inner.find(*args, **kwargs), self.sent)


class _RecordingCursor:
    def __init__(self, inner: Any, sent: list[int]) -> None:
        self.inner, self.sent = inner, sent

    def sort(self, *args: Any) -> _RecordingCursor:
        self.inner = self.inner.sort(*args)
        return self

    def batch_size(self, size: int) -> _RecordingCursor:
        self.inner = self.inner.batch_size(size)
        return self

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        async for doc in self.inner:
            self.sent.append(doc["n"])
            yield doc

    def close(self) -> Any:
        return self.inner.close()


async def test_ranged_read_seeks_to_the_chunk_holding_start(storage: GridFSStorage) -> None:
    storage.chunk_size = 4
    data = bytes(range(40))  # chunks 0..9, four bytes each
    file_id = await storage.create(data)
    async with await storage.get(file_id) as stored:
        real = await storage._chunks_collection()
        recorder = _RecordingChunks(real)

        async def recording() -> Any:
            return recorder

        with mock.patch.object(storage, "_chunks_collection", recording):
            part = b"".join([c async for c in stored.iter_bytes(30, 35, chunk_size=2)])
            assert part == data[30:35]
            assert recorder.sent == [7, 8]  # bytes 28..35: never chunks 0..6 nor 9
            recorder.sent.clear()
            assert [c async for c in stored.iter_bytes(39, 40)] == [data[39:]]
            assert recorder.sent == [9]


# -- lifecycle and configuration ----------------------------------------------


class _SpyClient(AsyncMongoMockClient):  # type: ignore[type-arg]
    closed = 0

    def close(self) -> None:
        type(self).closed += 1


async def test_aclose_closes_only_a_client_it_created(monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[_SpyClient] = []

    def create_client(uri: str, driver: str) -> _SpyClient:
        created.append(_SpyClient())
        return created[-1]

    monkeypatch.setattr(_mongo, "create_client", create_client)
    _SpyClient.closed = 0
    owned = GridFSStorage("mongodb://127.0.0.1:9/depotx_test")
    assert created == []  # nothing opened by the constructor
    file_id = await owned.create(b"x")
    assert len(created) == 1
    await owned.aclose()
    await owned.aclose()
    assert _SpyClient.closed == 1
    assert await owned.exists(file_id) is False  # reopened lazily: a new (empty) mock server
    await owned.aclose()
    assert (len(created), _SpyClient.closed) == (2, 2)

    _SpyClient.closed = 0
    theirs = _SpyClient()
    borrowed = GridFSStorage(database=theirs.get_database("depotx_test"))
    await borrowed.create(b"x")
    await borrowed.aclose()
    assert _SpyClient.closed == 0
    assert await borrowed.exists(await borrowed.create(b"still usable"))


@pytest.mark.parametrize("driver", _mongo.AVAILABLE_DRIVERS)
async def test_real_drivers_build_clients_without_io(driver: str) -> None:
    storage = GridFSStorage("mongodb://127.0.0.1:9/depotx_test", driver=driver)  # type: ignore[arg-type]
    database = storage._db()  # nothing listens on port 9: creating it must not connect
    assert database.name == "depotx_test"
    assert type(database).__module__.split(".")[0] == driver
    await storage.aclose()
    assert storage._client is None


def test_config_from_strings_with_filedepots_path(manager: StorageManager) -> None:
    storage = manager.configure(
        "media",
        {
            "depot.backend": "depot.io.gridfs.GridFSStorage",
            "depot.mongouri": "mongodb://db.example:27017/cms?replicaSet=rs0",
            "depot.collection": "uploads",
            "depot.chunk_size": "65536",
        },
    )
    assert isinstance(storage, GridFSStorage)
    assert (storage.collection, storage.chunk_size) == ("uploads", 65536)
    assert storage._database_name == "cms"
    assert storage._client is None  # configuring opens no connection
    short = manager.configure(
        "other",
        {
            "depot.backend": "gridfs",
            "depot.mongouri": "mongodb+srv://cluster.example/",
            "depot.database": "assets",
            "depot.driver": "motor",
        },
    )
    assert isinstance(short, GridFSStorage)
    assert (short.collection, short._database_name, short.driver) == (
        "filedepot",
        "assets",
        "motor",
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"depot.mongouri": "mongodb://localhost:27017"}, "names no database"),
        ({"depot.mongouri": "http://localhost/db"}, "not a MongoDB URI"),
        ({"depot.mongouri": "mongodb://h/db", "depot.chunk_size": "big"}, "chunk_size"),
        ({"depot.mongouri": "mongodb://h/db", "depot.chunk_size": "0"}, "chunk_size"),
        ({"depot.mongouri": "mongodb://h/db", "depot.driver": "pymango"}, "driver"),
        ({}, "mongouri or a database"),
    ],
)
def test_bad_config_is_refused(
    manager: StorageManager, options: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        manager.configure("bad", {"depot.backend": "gridfs", **options})


async def test_driver_errors_become_backend_errors(storage: GridFSStorage) -> None:
    async def broken() -> Any:
        raise _mongo.PyMongoError("connection reset")

    with (
        mock.patch.object(storage, "_collections", broken),
        pytest.raises(BackendError, match="connection reset") as info,
    ):
        await storage.get(str(ObjectId()))
    assert isinstance(info.value.__cause__, _mongo.PyMongoError)


# -- interop with filedepot's own GridFSStorage ---------------------------------


@pytest.fixture
def filedepot_on_mock(server: MockServer) -> Iterator[Any]:
    """filedepot's GridFSStorage, unchanged, talking to the shared mongomock server."""
    from depot.io.gridfs import GridFSStorage as FiledepotGridFS

    with (
        enabled_gridfs_integration(),
        mock.patch("depot.io.gridfs.MongoClient", return_value=server),
    ):
        yield FiledepotGridFS("mongodb://localhost/depotx_test")


async def _filedepot_create(server: MockServer, data: bytes, name: str) -> str:
    from depot.io.gridfs import GridFSStorage as FiledepotGridFS

    with (
        enabled_gridfs_integration(),
        mock.patch("depot.io.gridfs.MongoClient", return_value=server),
    ):
        return str(FiledepotGridFS("mongodb://localhost/depotx_test").create(data, name))


async def _check_interop(storage: GridFSStorage, filedepot: Any) -> None:
    # filedepot writes, depotx reads.
    theirs = filedepot.create(b"written by filedepot", "theirs.txt", "text/plain")
    async with await storage.get(theirs) as stored:
        assert isinstance(stored, GridFSStoredFile)
        assert (stored.filename, stored.content_type) == ("theirs.txt", "text/plain")
        assert stored.content_length == 20
        assert stored.last_modified.tzinfo is not None
        assert stored.checksum  # a validator even without depotx's sha256
        assert await stored.read() == b"written by filedepot"
        assert b"".join([c async for c in stored.iter_bytes(8, 10)]) == b"by"

    # depotx writes, filedepot reads.
    ours = await storage.create(b"written by depotx", "ours.txt", "text/plain", metadata={"a": "b"})
    legacy = filedepot.get(ours)
    assert (legacy.filename, legacy.content_type, legacy.content_length) == (
        "ours.txt",
        "text/plain",
        17,
    )
    assert isinstance(legacy.last_modified, datetime)
    assert legacy.read() == b"written by depotx"
    assert set(filedepot.list()) >= {theirs, ours}

    # A depotx replace of a filedepot file is what filedepot then reads.
    await storage.replace(theirs, b"replaced by depotx")
    again = filedepot.get(theirs)
    assert (again.filename, again.read()) == ("theirs.txt", b"replaced by depotx")
    filedepot.delete(ours)
    assert not await storage.exists(ours)


async def test_filedepot_interop_on_mongomock(
    storage: GridFSStorage, filedepot_on_mock: Any
) -> None:
    await _check_interop(storage, filedepot_on_mock)


@needs_mongodb
async def test_filedepot_interop_on_real_mongodb() -> None:
    from depot.io.gridfs import GridFSStorage as FiledepotGridFS

    uri = os.environ[MONGODB_URI_ENV]
    bucket = f"depotx_interop_{uuid.uuid4().hex[:12]}"
    storage = GridFSStorage(uri, collection=bucket)
    filedepot = FiledepotGridFS(uri, collection=bucket)
    try:
        await _check_interop(storage, filedepot)
    finally:
        filedepot._db.drop_collection(f"{bucket}.files")
        filedepot._db.drop_collection(f"{bucket}.chunks")
        filedepot._cli.close()
        await storage.aclose()


async def test_an_old_version_held_by_a_reader_is_removed_when_it_closes(
    storage: GridFSStorage, server: MockServer
) -> None:
    """Chunks of a replaced (or deleted) version live exactly as long as their last reader."""
    storage.chunk_size = 100
    chunks = server.depotx_test["filedepot.chunks"]
    file_id = await storage.create(b"a" * 450, "v1.bin")
    reader = await storage.get(file_id)
    await storage.replace(file_id, b"b" * 150, "v2.bin")
    assert chunks.count_documents({}) == 5 + 2, "the old version is parked while it is read"
    assert await reader.read() == b"a" * 450
    await reader.aclose()
    assert chunks.count_documents({}) == 2, "closing the last reader removes the old chunks"
    held = await storage.get(file_id)
    await storage.delete(file_id)
    assert chunks.count_documents({}) == 2
    await held.aclose()
    assert chunks.count_documents({}) == 0
