"""The storage contract as a reusable pytest suite.

Every depotx backend runs it, and so can yours::

    import pytest
    from depotx.testing import StorageContract

    class TestMyStorage(StorageContract):
        @pytest.fixture
        async def storage(self):
            storage = MyStorage(...)
            yield storage
            await storage.aclose()

Needs pytest and pytest-asyncio (``pip install 'depotx[test]'``); with
pytest-asyncio's strict mode, decorate the fixture with ``@pytest_asyncio.fixture``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from ._exceptions import (
    InvalidFileIdError,
    StoredFileChangedError,
    StoredFileExistsError,
    StoredFileNotFoundError,
)
from ._files import BytesStoredFile, FileIntent, StoredFile
from .storages.base import FileStorage
from .storages.memory import MemoryFileStorage

__all__ = ["INVALID_FILE_IDS", "PNG_1PX", "StorageContract"]

#: A valid 1x1 PNG, for content-type detection.
PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)

#: Ids no storage may accept: empty, traversal, empty segments, backslashes, control
#: characters, too long (see the key rules in docs/keys.md).
INVALID_FILE_IDS = [
    "",
    ".",
    "..",
    "../etc/passwd",
    "a/../b",
    "a/./b",
    "a//b",
    "a/",
    "a\\b",
    "/abs",
    "id\x00",
    "id\n",
    "x" * 1100,
]


async def _chunks(*parts: bytes, fail_after: int | None = None) -> AsyncIterator[bytes]:
    for index, part in enumerate(parts):
        if fail_after is not None and index == fail_after:
            raise RuntimeError("source failed mid-upload")
        yield part


async def _ids(storage: FileStorage) -> set[str]:
    return {file_id async for file_id in storage.list()}


async def _content(storage: FileStorage, file_id: str) -> bytes:
    async with await storage.get(file_id) as stored:
        return await stored.read()


class StorageContract:
    """Tests every backend must pass. Subclass it and provide a ``storage`` fixture.

    Set ``pins_versions = False`` for a store that cannot keep serving an old
    version once it is replaced (an S3 bucket without versioning): its readers
    must then fail with :class:`~depotx.StoredFileChangedError` before yielding a
    byte of another version, and the version tests check that instead.
    """

    pytestmark = pytest.mark.asyncio

    #: Whether an open ``StoredFile`` keeps reading its own version after a replace.
    pins_versions: bool = True

    # -- create and get ------------------------------------------------------------

    async def test_create_and_get_roundtrip(self, storage: FileStorage) -> None:
        before = datetime.now(timezone.utc) - timedelta(seconds=2)
        file_id = await storage.create(b"hello depotx", "hello.txt", "text/plain")
        async with await storage.get(file_id) as stored:
            assert isinstance(stored, StoredFile)
            assert stored.file_id == file_id
            assert stored.filename == stored.name == "hello.txt"
            assert stored.content_type == "text/plain"
            assert stored.content_length == 12
            assert stored.last_modified.tzinfo is not None
            assert (
                before <= stored.last_modified <= datetime.now(timezone.utc) + timedelta(seconds=2)
            )
            assert await stored.read() == b"hello depotx"
        assert stored.closed

    async def test_ids_are_unique_strings(self, storage: FileStorage) -> None:
        ids = {await storage.create(b"x") for _ in range(5)}
        assert len(ids) == 5
        assert all(isinstance(file_id, str) and file_id for file_id in ids)

    async def test_checksum_is_stable_per_content(self, storage: FileStorage) -> None:
        first = await storage.get(await storage.create(b"same bytes"))
        second = await storage.get(await storage.create(b"same bytes"))
        other = await storage.get(await storage.create(b"other bytes"))
        try:
            assert first.checksum
            assert first.checksum == second.checksum
            assert other.checksum != first.checksum
        finally:
            for stored in (first, second, other):
                await stored.aclose()

    async def test_metadata_roundtrip(self, storage: FileStorage) -> None:
        file_id = await storage.create(b"x", "a.bin", metadata={"owner": "alice", "folder": "docs"})
        async with await storage.get(file_id) as stored:
            assert stored.metadata == {"owner": "alice", "folder": "docs"}

    async def test_non_ascii_filename_roundtrip(self, storage: FileStorage) -> None:
        name = 'rapport d\'été "final" 📄.pdf'
        file_id = await storage.create(b"%PDF-1.4 x", name)
        async with await storage.get(file_id) as stored:
            assert stored.filename == name

    async def test_empty_content(self, storage: FileStorage) -> None:
        file_id = await storage.create(b"", "empty.txt")
        async with await storage.get(file_id) as stored:
            assert stored.content_length == 0
            assert await stored.read() == b""
            assert [chunk async for chunk in stored.iter_bytes()] == []

    async def test_large_content_is_streamed_intact(self, storage: FileStorage) -> None:
        data = os.urandom(3 * 1024 * 1024 + 123)
        file_id = await storage.create(_chunks(data[:1000], data[1000:2_000_000], data[2_000_000:]))
        async with await storage.get(file_id) as stored:
            assert stored.content_length == len(data)
            chunks = [chunk async for chunk in stored]
            assert len(chunks) > 1, "content must be streamed in chunks"
            assert b"".join(chunks) == data

    # -- content kinds -------------------------------------------------------------

    async def test_create_from_binary_file(self, storage: FileStorage, tmp_path: Path) -> None:
        path = tmp_path / "report.csv"
        path.write_bytes(b"a,b\n1,2\n")
        with path.open("rb") as source:
            file_id = await storage.create(source)
        async with await storage.get(file_id) as stored:
            assert stored.filename == "report.csv"
            assert stored.content_type.startswith("text/csv")
            assert await stored.read() == b"a,b\n1,2\n"

    async def test_create_from_bytesio_and_bytearray(self, storage: FileStorage) -> None:
        one = await storage.create(io.BytesIO(b"from bytesio"))
        two = await storage.create(bytearray(b"from bytearray"))
        three = await storage.create(memoryview(b"from memoryview"))
        assert await _content(storage, one) == b"from bytesio"
        assert await _content(storage, two) == b"from bytearray"
        assert await _content(storage, three) == b"from memoryview"
        async with await storage.get(one) as stored:
            assert stored.filename == "unnamed"

    async def test_create_from_async_file(self, storage: FileStorage, tmp_path: Path) -> None:
        import aiofiles

        path = tmp_path / "notes.txt"
        path.write_bytes(b"async file")
        async with aiofiles.open(path, "rb") as source:
            file_id = await storage.create(source)
        async with await storage.get(file_id) as stored:
            assert stored.filename == "notes.txt"
            assert await stored.read() == b"async file"

    async def test_create_from_async_iterator(self, storage: FileStorage) -> None:
        file_id = await storage.create(_chunks(b"one ", b"two ", b"three"), "n.txt")
        assert await _content(storage, file_id) == b"one two three"

    async def test_create_from_upload_file(self, storage: FileStorage) -> None:
        from starlette.datastructures import UploadFile

        upload = UploadFile(io.BytesIO(PNG_1PX), filename="C:\\Users\\me\\pixel.png")
        file_id = await storage.create(upload)
        async with await storage.get(file_id) as stored:
            assert stored.filename == "pixel.png"
            assert stored.content_type == "image/png"
            assert await stored.read() == PNG_1PX

    async def test_create_from_file_intent(self, storage: FileStorage) -> None:
        intent = FileIntent(b"{}", "data.bin", "application/json")
        file_id = await storage.create(intent)
        async with await storage.get(file_id) as stored:
            assert (stored.filename, stored.content_type) == ("data.bin", "application/json")
        # Explicit arguments beat the intent.
        file_id = await storage.create(intent, filename="x.json", content_type="text/plain")
        async with await storage.get(file_id) as stored:
            assert (stored.filename, stored.content_type) == ("x.json", "text/plain")

    async def test_copy_from_another_storage(self, storage: FileStorage) -> None:
        other = MemoryFileStorage()
        source_id = await other.create(b"copied", "c.txt", "text/x-custom", metadata={"k": "v"})
        async with await other.get(source_id) as source:
            file_id = await storage.create(source)
        async with await storage.get(file_id) as stored:
            assert (stored.filename, stored.content_type) == ("c.txt", "text/x-custom")
            assert stored.metadata == {"k": "v"}
            assert await stored.read() == b"copied"

    async def test_str_content_is_refused_with_a_hint(self, storage: FileStorage) -> None:
        with pytest.raises(TypeError, match="encode"):
            await storage.create("text, not bytes")
        assert await _ids(storage) == set()

    async def test_text_mode_file_is_refused(self, storage: FileStorage, tmp_path: Path) -> None:
        path = tmp_path / "t.txt"
        path.write_text("text")
        with path.open("r") as source, pytest.raises(TypeError, match="binary"):
            await storage.create(source)

    # -- content type ----------------------------------------------------------------

    async def test_content_type_detected_from_content(self, storage: FileStorage) -> None:
        file_id = await storage.create(PNG_1PX, "no-extension")
        async with await storage.get(file_id) as stored:
            assert stored.content_type == "image/png"

    async def test_extension_refines_generic_detection(self, storage: FileStorage) -> None:
        file_id = await storage.create(b"body { color: red }\n", "site.css")
        async with await storage.get(file_id) as stored:
            assert stored.content_type.startswith("text/css")

    async def test_text_gets_a_charset(self, storage: FileStorage) -> None:
        file_id = await storage.create("naïve café\n".encode(), "notes")
        async with await storage.get(file_id) as stored:
            assert stored.content_type == "text/plain; charset=utf-8"

    # -- reading -------------------------------------------------------------------------

    async def test_read_in_parts(self, storage: FileStorage) -> None:
        file_id = await storage.create(b"0123456789")
        async with await storage.get(file_id) as stored:
            assert await stored.read(3) == b"012"
            assert stored.tell() == 3
            assert await stored.read(0) == b""
            assert await stored.read(4) == b"3456"
            assert await stored.read() == b"789"
            assert await stored.read() == b""

    async def test_iter_bytes_ranges(self, storage: FileStorage) -> None:
        file_id = await storage.create(b"0123456789")
        async with await storage.get(file_id) as stored:

            async def part(start: int, end: int | None) -> bytes:
                return b"".join([chunk async for chunk in stored.iter_bytes(start, end)])

            assert await part(0, None) == b"0123456789"
            assert await part(2, 5) == b"234"
            assert await part(7, None) == b"789"
            assert await part(9, 100) == b"9"
            assert await part(20, None) == b""
            assert await part(4, 4) == b""
            chunks = [c async for c in stored.iter_bytes(1, 9, chunk_size=3)]
            assert chunks == [b"123", b"456", b"78"]

    async def test_closed_file_refuses_reads(self, storage: FileStorage) -> None:
        stored = await storage.get(await storage.create(b"x"))
        await stored.aclose()
        await stored.aclose()  # idempotent
        with pytest.raises(ValueError, match="closed"):
            await stored.read()

    # -- missing and malformed ids -------------------------------------------------------

    async def test_get_missing_raises_not_found(self, storage: FileStorage) -> None:
        file_id = await storage.create(b"x")
        await storage.delete(file_id)
        with pytest.raises(StoredFileNotFoundError):
            await storage.get(file_id)
        with pytest.raises(FileNotFoundError):
            await storage.get(file_id)

    @pytest.mark.parametrize("bad_id", INVALID_FILE_IDS)
    async def test_malformed_ids_are_refused_everywhere(
        self, storage: FileStorage, bad_id: str
    ) -> None:
        for call in (
            storage.get(bad_id),
            storage.delete(bad_id),
            storage.exists(bad_id),
            storage.replace(bad_id, b"x"),
        ):
            with pytest.raises(InvalidFileIdError):
                await call
        with pytest.raises(InvalidFileIdError):
            storage.public_url(bad_id)

    # -- exists, delete, list ---------------------------------------------------------------

    async def test_exists_and_idempotent_delete(self, storage: FileStorage) -> None:
        file_id = await storage.create(b"x")
        assert await storage.exists(file_id)
        async with await storage.get(file_id) as stored:
            assert await storage.exists(stored)
        await storage.delete(file_id)
        assert not await storage.exists(file_id)
        await storage.delete(file_id)  # no error the second time

    async def test_list_yields_every_id(self, storage: FileStorage) -> None:
        ids = {await storage.create(f"file {n}".encode()) for n in range(7)}
        assert await _ids(storage) == ids
        removed = ids.pop()
        await storage.delete(removed)
        assert await _ids(storage) == ids

    # -- replace ---------------------------------------------------------------------------

    async def test_replace_keeps_id_and_old_filename(self, storage: FileStorage) -> None:
        file_id = await storage.create(b"version one", "doc.txt", metadata={"v": "1"})
        assert await storage.replace(file_id, PNG_1PX) == file_id
        async with await storage.get(file_id) as stored:
            assert await stored.read() == PNG_1PX
            assert stored.filename == "doc.txt"
            assert stored.content_type == "image/png"  # detected from the new content
            assert stored.metadata == {"v": "1"}

    async def test_replace_explicit_values_win(self, storage: FileStorage) -> None:
        file_id = await storage.create(b"one", "a.txt")
        async with await storage.get(file_id) as stored:
            await storage.replace(stored, b"two", "b.dat", "application/x-custom")
        async with await storage.get(file_id) as stored:
            assert (stored.filename, stored.content_type) == ("b.dat", "application/x-custom")
            assert await stored.read() == b"two"

    async def test_replace_missing_raises_not_found(self, storage: FileStorage) -> None:
        file_id = await storage.create(b"x")
        await storage.delete(file_id)
        with pytest.raises(StoredFileNotFoundError):
            await storage.replace(file_id, b"y")
        assert not await storage.exists(file_id)

    async def test_replace_backup_pattern(self, storage: FileStorage) -> None:
        """filedepot's ``backup.replace(f, f)`` stores a foreign file under its own id."""
        primary = MemoryFileStorage()
        source_id = await storage.create(b"seed")  # an id in this backend's own format
        await storage.delete(source_id)
        original = await primary.create(b"precious", "p.txt", "text/plain")
        async with await primary.get(original) as stored:
            stored.file_id = source_id  # as if the primary used this backend's id format
            assert await storage.replace(stored, stored) == source_id
        async with await storage.get(source_id) as copy:
            assert (copy.filename, copy.content_type) == ("p.txt", "text/plain")
            assert await copy.read() == b"precious"

    async def test_failed_replace_keeps_old_version(self, storage: FileStorage) -> None:
        file_id = await storage.create(b"old content", "old.txt", "text/plain")
        with pytest.raises(RuntimeError, match="mid-upload"):
            await storage.replace(file_id, _chunks(b"new ", b"content", fail_after=1), "new.txt")
        async with await storage.get(file_id) as stored:
            assert stored.filename == "old.txt"
            assert await stored.read() == b"old content"

    async def test_reader_keeps_its_version_during_replace(self, storage: FileStorage) -> None:
        old = os.urandom(300_000)
        file_id = await storage.create(old, "v1.bin")
        for metadata_only in (False, True):
            async with await storage.get(file_id, metadata_only=metadata_only) as reader:
                await storage.replace(file_id, b"new and shorter", "v2.bin")
                assert reader.filename == "v1.bin"
                assert reader.content_length == len(old)
                if self.pins_versions:
                    assert await reader.read() == old
                else:
                    # No byte of the new version reaches this reader: either it already
                    # holds the old bytes (S3's get streams them with the metadata), or
                    # the very first chunk fails (StoredFileChangedError, and no bytes).
                    with contextlib.suppress(StoredFileChangedError):
                        assert await reader.read() == old
            await storage.replace(file_id, old, "v1.bin")
        await storage.replace(file_id, b"new and shorter", "v2.bin")
        async with await storage.get(file_id) as fresh:
            assert (fresh.filename, await fresh.read()) == ("v2.bin", b"new and shorter")

    async def test_concurrent_replace_never_mixes_versions(self, storage: FileStorage) -> None:
        versions = {bytes([n]) * (10_000 + n): f"v{n}.bin" for n in range(1, 6)}
        file_id = await storage.create(next(iter(versions)), "v1.bin")

        async def writer() -> None:
            for data, name in versions.items():
                await storage.replace(file_id, data, name)

        async def reader() -> None:
            for _ in range(20):
                while True:
                    async with await storage.get(file_id) as stored:
                        try:
                            data = await stored.read()
                        except StoredFileChangedError:
                            if self.pins_versions:
                                raise
                            continue  # what the middleware does: open the file again
                        assert versions[data] == stored.filename
                        assert stored.content_length == len(data)
                        break

        await asyncio.gather(writer(), reader(), reader())

    # -- failures leave nothing behind ---------------------------------------------------

    async def test_failed_create_leaves_nothing(self, storage: FileStorage) -> None:
        with pytest.raises(RuntimeError, match="mid-upload"):
            await storage.create(_chunks(b"a" * 100_000, b"b", fail_after=1), "half.bin")
        assert await _ids(storage) == set()

    async def test_source_errors_propagate_unchanged(self, storage: FileStorage) -> None:
        """A client that disconnects mid-upload is the caller's error, not a backend failure."""

        async def disconnecting() -> AsyncIterator[bytes]:
            yield b"x" * 70_000
            raise ConnectionResetError("client went away")

        with pytest.raises(ConnectionResetError, match="client went away") as info:
            await storage.create(disconnecting(), "x.bin", "application/octet-stream")
        assert type(info.value) is ConnectionResetError
        assert await _ids(storage) == set()

    async def test_cancelled_create_leaves_nothing(self, storage: FileStorage) -> None:
        started = asyncio.Event()

        async def endless() -> AsyncIterator[bytes]:
            while True:
                started.set()
                yield b"x" * 65536
                await asyncio.sleep(0.001)

        task = asyncio.ensure_future(storage.create(endless(), "never.bin"))
        await started.wait()
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await _ids(storage) == set()

    async def test_concurrent_creates_are_all_intact(self, storage: FileStorage) -> None:
        payloads = [os.urandom(1000 + n) for n in range(100)]
        ids = await asyncio.gather(*(storage.create(data) for data in payloads))
        assert len(set(ids)) == len(payloads)
        contents = await asyncio.gather(*(_content(storage, file_id) for file_id in ids))
        assert contents == payloads

    async def test_storage_closes_and_reopens(self, storage: FileStorage) -> None:
        file_id = await storage.create(b"x")
        await storage.aclose()
        # A closed storage opens its clients again on next use.
        assert await _content(storage, file_id) == b"x"
        await storage.aclose()

    # -- races on one id ------------------------------------------------------------------

    async def test_delete_during_replace_wins(self, storage: FileStorage) -> None:
        """A delete that lands while a replace uploads wins: the file does not come back."""
        file_id = await storage.create(b"old content", "old.txt")
        uploading = asyncio.Event()
        release = asyncio.Event()

        async def slow() -> AsyncIterator[bytes]:
            yield b"n" * 70_000
            uploading.set()
            await release.wait()
            yield b"end"

        replacing = asyncio.ensure_future(storage.replace(file_id, slow(), "new.txt"))
        await uploading.wait()
        await storage.delete(file_id)
        release.set()
        with pytest.raises(StoredFileNotFoundError):
            await replacing
        assert not await storage.exists(file_id)
        assert await _ids(storage) == set()
        with pytest.raises(StoredFileNotFoundError):
            await storage.get(file_id)

    async def test_replace_and_delete_racing_lose_only_with_not_found(
        self, storage: FileStorage
    ) -> None:
        """Many replaces and deletes of one id: the losers raise not-found, nothing else."""
        for round_ in range(8):
            file_id = await storage.create(b"v0", "v0.bin")

            async def replace(n: int, file_id: str = file_id) -> None:
                await storage.replace(file_id, bytes([n]) * (20_000 + n), f"v{n}.bin")

            results = await asyncio.gather(
                *(replace(n) for n in range(1, 5)),
                storage.delete(file_id),
                *(replace(n) for n in range(5, 8)),
                return_exceptions=True,
            )
            for result in results:
                if isinstance(result, BaseException):
                    assert isinstance(result, StoredFileNotFoundError), repr(result)
            assert not await storage.exists(file_id), f"round {round_}: the delete was undone"
        assert await _ids(storage) == set()

    async def test_readers_never_mix_versions_across_deletes(self, storage: FileStorage) -> None:
        """Replace, delete and re-create (filedepot's backup pattern) under concurrent readers."""
        # Version n is n+1 repeated 2,000+n times and named v<n>.bin: any mix of one
        # version's metadata with another's bytes shows.
        names = {n: f"v{n}.bin" for n in range(6)}

        def content(n: int) -> bytes:
            return bytes([n + 1]) * (2_000 + n)

        file_id = await storage.create(content(0), names[0])
        elsewhere = MemoryFileStorage()
        stop = asyncio.Event()
        seen: list[int] = []

        def foreign() -> StoredFile:
            # A file of another storage with this id: replace() stores it whether or not
            # the id exists here, so a deleted id comes back through it.
            return BytesStoredFile(
                file_id,
                content(0),
                filename=names[0],
                content_type="application/octet-stream",
                last_modified=datetime.now(timezone.utc),
                checksum="x",
                storage=elsewhere,
            )

        async def writer() -> None:
            try:
                for round_ in range(5):
                    for n in range(1, 6):
                        with contextlib.suppress(StoredFileNotFoundError):
                            await storage.replace(file_id, content(n), names[n])
                    await storage.delete(file_id)
                    await storage.replace(foreign(), foreign())
                    assert await storage.exists(file_id), f"round {round_}"
            finally:
                stop.set()

        async def reader() -> None:
            while not stop.is_set():
                try:
                    async with await storage.get(file_id) as stored:
                        data = await stored.read()
                except (StoredFileNotFoundError, StoredFileChangedError):
                    await asyncio.sleep(0)
                    continue
                n = data[0] - 1 if data else -1
                assert data == content(n), "bytes of no single version"
                assert stored.filename == names[n], f"{stored.filename} with the bytes of v{n}"
                assert stored.content_length == len(data)
                seen.append(n)
                # A pause between reads: a backend whose reads never wait (an
                # in-process fake) must not starve the writer.
                await asyncio.sleep(0.001)

        await asyncio.gather(writer(), reader(), reader())
        assert seen, "the readers never got the file"

    async def test_cancelled_replace_raises_or_commits_never_both(
        self, storage: FileStorage
    ) -> None:
        file_id = await storage.create(b"old", "old.txt")
        outcomes = set()
        for step in range(40):
            task = asyncio.ensure_future(storage.replace(file_id, b"new", "new.txt"))
            if step < 20:
                for _ in range(step):
                    await asyncio.sleep(0)
            else:
                await asyncio.sleep((step - 20) * 0.0005)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                committed = False
            else:
                committed = True
            outcomes.add(committed)
            async with await storage.get(file_id) as stored:
                expected = (b"new", "new.txt") if committed else (b"old", "old.txt")
                assert (await stored.read(), stored.filename) == expected, f"step {step}"
            if committed:
                await storage.replace(file_id, b"old", "old.txt")
        assert False in outcomes, "no cancellation landed before the commit"

    async def test_create_with_a_taken_id_leaves_the_file_alone(
        self, storage: FileStorage, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A colliding ``_new_id`` (a documented hook) raises and removes nothing."""
        file_id = await storage.create(b"precious", "keep.txt", "text/plain")
        monkeypatch.setattr(storage, "_new_id", lambda: file_id)
        with pytest.raises(StoredFileExistsError) as info:
            await storage.create(b"intruder" * 10_000, "other.txt")
        assert isinstance(info.value, FileExistsError)
        with pytest.raises(StoredFileExistsError):
            await storage.create(b"small intruder", "other.txt")
        monkeypatch.undo()
        async with await storage.get(file_id) as stored:
            assert (stored.filename, await stored.read()) == ("keep.txt", b"precious")
        assert await _ids(storage) == {file_id}

    # -- keys chosen by the application -------------------------------------------------

    async def test_create_at_a_chosen_key_and_use_it_everywhere(self, storage: FileStorage) -> None:
        key = "uploads/2026/report.pdf"
        assert await storage.create(b"%PDF-1.4 v1", file_id=key) == key
        assert await storage.exists(key)
        async with await storage.get(key) as stored:
            assert stored.file_id == key
            assert (stored.filename, await stored.read()) == ("unnamed", b"%PDF-1.4 v1")
        await storage.replace(key, b"%PDF-1.4 v2", "report.pdf")
        assert await _content(storage, key) == b"%PDF-1.4 v2"
        assert key in await _ids(storage)
        await storage.delete(key)
        assert not await storage.exists(key)
        assert await _ids(storage) == set()

    async def test_create_at_a_taken_key_raises_and_keeps_the_file(
        self, storage: FileStorage
    ) -> None:
        await storage.create(b"first", "first.txt", file_id="docs/a.txt")
        with pytest.raises(StoredFileExistsError):
            await storage.create(b"second", file_id="docs/a.txt")
        async with await storage.get("docs/a.txt") as stored:
            assert (stored.filename, await stored.read()) == ("first.txt", b"first")

    async def test_concurrent_creates_of_one_key_exactly_one_wins(
        self, storage: FileStorage
    ) -> None:
        contents = [bytes([n]) * (1000 + n) for n in range(50)]
        results = await asyncio.gather(
            *(storage.create(data, f"v{n}", file_id="race/key") for n, data in enumerate(contents)),
            return_exceptions=True,
        )
        winners = [n for n, result in enumerate(results) if result == "race/key"]
        assert len(winners) == 1, f"{len(winners)} creates won"
        assert all(
            isinstance(result, StoredFileExistsError)
            for n, result in enumerate(results)
            if n != winners[0]
        ), [type(r).__name__ for r in results]
        async with await storage.get("race/key") as stored:
            assert stored.filename == f"v{winners[0]}"
            assert await stored.read() == contents[winners[0]]

    async def test_put_creates_then_replaces(self, storage: FileStorage) -> None:
        assert await storage.put("notes/today.txt", b"one", "a.txt") == "notes/today.txt"
        assert await _content(storage, "notes/today.txt") == b"one"
        await storage.put("notes/today.txt", b"two", "b.txt")
        async with await storage.get("notes/today.txt") as stored:
            assert (stored.filename, await stored.read()) == ("b.txt", b"two")
        assert await _ids(storage) == {"notes/today.txt"}

    async def test_keys_that_look_like_the_storages_own_names_coexist(
        self, storage: FileStorage
    ) -> None:
        keys = ["a", "a/b", "a/file", "a/metadata.json", "a/depotx.json", "a/.lock", "a/b/c"]
        for key in keys:
            await storage.create(key.encode(), file_id=key)
        for key in keys:
            assert await _content(storage, key) == key.encode(), key
        await storage.delete("a")
        assert await _content(storage, "a/file") == b"a/file"
        assert not await storage.exists("a")
        assert [i async for i in storage.list()] == sorted(set(keys) - {"a"})

    async def test_prefix_listing_is_ordered_and_resumable(self, storage: FileStorage) -> None:
        keys = [
            "b",
            "a/x",
            "a-c",
            "a0",
            "a/y/z",
            "a",
            "ab",
            "uploads/2026/02/b.txt",
            "uploads/2026/01/a.txt",
            "uploads/2025/x.txt",
            "été",
            "Z",
        ]
        for key in keys:
            await storage.create(b"x", file_id=key)
        everything = [i async for i in storage.list()]
        assert everything == sorted(keys), "code point order"
        assert [i async for i in storage.list("uploads/2026/")] == [
            "uploads/2026/01/a.txt",
            "uploads/2026/02/b.txt",
        ]
        assert [i async for i in storage.list("a")] == sorted(k for k in keys if k[0] == "a")
        # Resuming after the last id seen gives the rest, nothing twice.
        first = everything[:4]
        rest = [i async for i in storage.list(start_after=first[-1])]
        assert first + rest == everything
        # Folders, once each, in their place.
        assert [i async for i in storage.list(delimiter="/")] == [
            "Z",
            "a",
            "a-c",
            "a/",
            "a0",
            "ab",
            "b",
            "uploads/",
            "été",
        ]
        assert [i async for i in storage.list("uploads/", delimiter="/")] == [
            "uploads/2025/",
            "uploads/2026/",
        ]
        after_folder = [i async for i in storage.list(start_after="a/", delimiter="/")]
        assert after_folder[0] == "a0", "resuming after a folder skips what is in it"

    async def test_long_and_unicode_keys(self, storage: FileStorage) -> None:
        budget = storage.max_id_bytes
        segment = "s" * 200
        parts = [segment] * (budget // 201)
        tail = budget - len("/".join(parts).encode()) - 1
        key = "/".join([*parts, "t" * tail]) if tail > 0 else "/".join(parts)
        assert len(key.encode()) in (budget, budget - 1)
        await storage.create(b"long", file_id=key)
        assert await _content(storage, key) == b"long"
        with pytest.raises(InvalidFileIdError):
            await storage.create(b"too long", file_id=key + "/more")
        unicode_key = "фото/été 2026/ü ✓ 100%?#+.txt"
        await storage.create(b"unicode", file_id=unicode_key)
        assert await _content(storage, unicode_key) == b"unicode"
        assert {key, unicode_key} <= await _ids(storage)

    @pytest.mark.parametrize("bad_key", ["a//b", "/a", "a/", "a/../b", "a\\b"])
    async def test_malformed_keys_are_refused_before_any_io(
        self, storage: FileStorage, bad_key: str
    ) -> None:
        with pytest.raises(InvalidFileIdError):
            await storage.create(b"x", file_id=bad_key)
        with pytest.raises(InvalidFileIdError):
            await storage.put(bad_key, b"x")
        assert await _ids(storage) == set()

    async def test_keys_under_churn_stay_consistent(self, storage: FileStorage) -> None:
        """Creates, puts, replaces, deletes and reads of nested keys, all at once.

        Only not-found and exists errors are allowed, and every read is one whole
        version: the bytes name the key and the version recorded as the filename.
        """
        keys = ["a", "a/b", "a/b/c", "k/file", "k/.lock", "k", "x y/é"]
        unexpected: list[str] = []
        bad_reads: list[str] = []

        async def worker(seed: int) -> None:
            for step in range(40):
                key = keys[(seed * 31 + step * 7) % len(keys)]
                version = f"{seed}-{step}"
                data = f"{key}|{version}|".encode() * (1 + (seed * step) % 3000)
                operation = (seed + step) % 5
                try:
                    if operation == 0:
                        await storage.create(data, version, file_id=key)
                    elif operation == 1:
                        await storage.put(key, data, version)
                    elif operation == 2:
                        await storage.replace(key, data, version)
                    elif operation == 3:
                        await storage.delete(key)
                    else:
                        async with await storage.get(key) as stored:
                            got = await stored.read()
                        prefix = f"{key}|{stored.filename}|".encode()
                        if not got.startswith(prefix) or len(got) != stored.content_length:
                            bad_reads.append(key)
                except (StoredFileNotFoundError, StoredFileExistsError, StoredFileChangedError):
                    pass
                except Exception as exc:  # noqa: BLE001 - collected and reported below
                    unexpected.append(f"{key}: {type(exc).__name__}: {exc}")

        await asyncio.gather(*(worker(seed) for seed in range(8)))
        assert unexpected == []
        assert bad_reads == []
        listed = [i async for i in storage.list()]
        assert listed == sorted(listed)
        for key in listed:
            assert await storage.exists(key)
