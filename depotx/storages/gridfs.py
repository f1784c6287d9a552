"""MongoDB GridFS storage, laid out exactly as filedepot's ``GridFSStorage``.

A file is one document in ``<collection>.files`` and its content is split into
``<collection>.chunks`` documents (``files_id``, ``n``, ``data``), as the GridFS
spec says, so an existing filedepot collection is served as is and filedepot
(or ``mongofiles``, or any driver's GridFS bucket) reads what we write. The
files document keeps filedepot's fields (``filename``, ``contentType``,
top-level ``last_modified`` as a naive-UTC ``%Y-%m-%d %H:%M:%S`` string) plus
custom metadata under ``metadata`` and two fields of depotx's own:
``depotx_checksum`` (sha256 of the content, computed while streaming) and
``depotx_version`` (an ObjectId naming this version of the content).

The backend talks to the two collections directly rather than through a
driver's ``GridFSBucket``. That is what lets it give readers a pinned version:
every chunk depotx writes is tagged with its version, a reader asks only for
chunks of the version it opened, and a replace swaps versions with one atomic
update of the files document. It is also the API that motor, PyMongo's async
client and mongomock-motor (whose database motor's bucket refuses) all share.

How ``replace`` works, and what readers see:

1. the new content is written as chunks tagged ``V2`` under ``files_id=V2``
   (a staging place no GridFS reader looks at; a failure deletes them);
2. the files document is replaced in one atomic operation, conditional on the
   old version still being current: from here on ``get`` returns ``V2``;
3. the old chunks are moved aside to ``files_id=V1`` and the new ones to
   ``files_id=<id>``, where GridFS readers expect them;
4. the old chunks are deleted, once no ``StoredFile`` of this storage still
   reads them.

A depotx reader looks for its version's chunks under ``<id>`` or under the
version's own id, so it finds them before, during and after the moves and
never sees a gap or another version's bytes. A reader in another process whose
old version was deleted under it raises :class:`~depotx.StoredFileChangedError`
instead of yielding anything else (the middleware then simply opens the file
again). Other GridFS readers (filedepot, ``mongofiles``) may see a missing
chunk during step 3, which lasts two ``update_many`` calls: shorter than the
window filedepot's own replace (delete, then upload) has. Without a MongoDB
transaction, and so a replica set, no GridFS layout can do better for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import weakref
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timezone
from typing import Any

from .._checksums import new_hasher
from .._content import Upload
from .._exceptions import (
    BackendError,
    ConfigurationError,
    DepotError,
    MissingDependencyError,
    StoredFileChangedError,
    StoredFileExistsError,
    StoredFileNotFoundError,
)
from .._files import StoredFile
from .._formats import (
    DEFAULT_CONTENT_TYPE,
    DEFAULT_FILENAME,
    format_filedepot_time,
    parse_filedepot_time,
)
from .._ids import is_valid_file_id
from .base import FileStorage, WriteMode, commit_or_cancel, fold_listing

try:
    from . import _mongo
except ImportError as exc:  # pragma: no cover - exercised only without pymongo installed
    raise MissingDependencyError("gridfs", "motor") from exc
if not _mongo.AVAILABLE_DRIVERS:  # pragma: no cover - pymongo < 4.10 and no motor
    raise MissingDependencyError("gridfs", "motor")

__all__ = ["GridFSStorage", "GridFSStoredFile"]

#: GridFS's own default chunk size: under 256 KiB so a chunk and its document
#: overhead fit a power-of-two allocation on the server.
DEFAULT_GRIDFS_CHUNK_SIZE = 255 * 1024
#: A BSON document is at most 16 MiB; a chunk must fit with its fields.
MAX_GRIDFS_CHUNK_SIZE = 15 * 1024 * 1024
_OBJECT_ID_RE = re.compile(r"[0-9a-f]{24}")
# Chunks fetched per round trip: about 2 MiB with the default chunk size.
_MAX_BATCH_BYTES = 2 * 1024 * 1024
# Re-queries without progress before a reader concludes its version is gone.
_READ_RETRIES = 3
# Conditional swaps lost to concurrent writers before a replace gives up.
_SWAP_ATTEMPTS = 20


def _object_id(file_id: str) -> Any:
    """The ``_id`` of a file: an ObjectId for generated ids (filedepot's), else the key.

    A chosen key is stored as a string ``_id``, so lookups use the ``_id`` index.
    """
    if _OBJECT_ID_RE.fullmatch(file_id):
        return _mongo.ObjectId(file_id)
    return file_id


def _millis(value: object) -> int | None:
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:  # drivers return naive UTC unless tz_aware=True
        value = value.replace(tzinfo=timezone.utc)
    return int(value.timestamp() * 1000)


def _version_of(doc: Mapping[str, Any]) -> tuple[Any, bool]:
    """The version token of a files document, and whether it was written without depotx.

    A filedepot (or other) file has no ``depotx_version``: its token is derived
    from what identifies that upload, the same in every process, so a reader
    and a writer agree on where its chunks are parked during a replace.
    """
    version = doc.get("depotx_version")
    if isinstance(version, _mongo.ObjectId):
        return version, False
    identity = f"{doc['_id']}:{doc.get('length')}:{_millis(doc.get('uploadDate'))}"
    return _mongo.ObjectId(hashlib.sha256(identity.encode()).digest()[:12]), True


def _checksum_of(doc: Mapping[str, Any], version: Any) -> str:
    checksum = doc.get("depotx_checksum")
    if isinstance(checksum, str) and checksum:
        return checksum
    md5 = doc.get("md5")  # PyMongo < 4 wrote it; filedepot collections often have it
    if isinstance(md5, str) and md5:
        return md5
    return hashlib.sha256(f"gridfs:{version}".encode()).hexdigest()


def _last_modified_of(doc: Mapping[str, Any]) -> datetime:
    parsed = parse_filedepot_time(doc.get("last_modified"))
    if parsed is not None:
        return parsed
    upload_date = doc.get("uploadDate")
    if isinstance(upload_date, datetime):
        if upload_date.tzinfo is None:
            upload_date = upload_date.replace(tzinfo=timezone.utc)
        return upload_date.astimezone(timezone.utc).replace(microsecond=0)
    return datetime.fromtimestamp(0, timezone.utc)


def _custom_metadata(doc: Mapping[str, Any]) -> dict[str, str]:
    metadata = doc.get("metadata")
    if not isinstance(metadata, Mapping):
        return {}
    return {k: v for k, v in metadata.items() if isinstance(k, str) and isinstance(v, str)}


class GridFSStoredFile(StoredFile):
    """One version of a GridFS file.

    Reads fetch only this version's chunks, starting at the one that holds
    ``start``: a ranged read seeks, it never reads from the beginning.
    """

    def __init__(
        self,
        file_id: str,
        *,
        gridfs: GridFSStorage,
        object_id: Any,
        version: Any,
        legacy: bool,
        gridfs_chunk_size: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(file_id, storage=gridfs, **kwargs)
        self._gridfs = gridfs
        self._object_id = object_id
        self._version = version
        self._legacy = legacy
        self._gridfs_chunk_size = gridfs_chunk_size

    def _query(self, first: int, last: int) -> dict[str, Any]:
        # The version's chunks are under the file's id, or parked under the
        # version's own id while a replace moves them; the tag tells them apart
        # from any other version's. A filedepot-written version has untagged chunks.
        tag: Any = {"$in": [None, self._version]} if self._legacy else self._version
        return {
            "files_id": {"$in": [self._object_id, self._version]},
            "depotx_version": tag,
            "n": {"$gte": first, "$lte": last},
        }

    def _changed(self) -> StoredFileChangedError:
        return StoredFileChangedError(self.file_id, self._gridfs.name)

    async def _chunks(self, first: int, last: int) -> AsyncIterator[tuple[int, bytes]]:
        """Yield ``(n, data)`` for chunks ``first..last`` of this version, in order.

        Documents moved by a concurrent replace can be skipped or returned
        twice by one query (MongoDB does not isolate a multi-document read), so
        a duplicate is dropped and a gap is re-queried from where it starts.
        """
        chunk_size = self._gridfs_chunk_size
        batch = max(1, _MAX_BATCH_BYTES // chunk_size)
        expected = first
        stalls = 0
        while expected <= last:
            progressed = False
            with self._gridfs._translating("read", self.file_id):
                chunks = await self._gridfs._chunks_collection()
                cursor = chunks.find(self._query(expected, last)).sort("n", 1).batch_size(batch)
                try:
                    async for doc in cursor:
                        n = doc["n"]
                        if n < expected:
                            continue
                        if n > expected:
                            break
                        data = bytes(doc["data"])
                        want = min(chunk_size, self.content_length - n * chunk_size)
                        if len(data) != want:
                            if self._legacy:  # rewritten by a non-depotx writer
                                raise self._changed()
                            raise BackendError(
                                f"{self._gridfs._label()}: chunk {n} of {self.file_id!r} "
                                f"has {len(data)} bytes, expected {want}: the file is corrupt"
                            )
                        yield n, data
                        expected += 1
                        progressed = True
                finally:
                    await _mongo.close_cursor(cursor)
            stalls = 0 if progressed else stalls + 1
            if stalls >= _READ_RETRIES:
                raise self._changed()

    async def _iter_range(self, start: int, end: int, chunk_size: int) -> AsyncIterator[bytes]:
        if start >= end:
            return
        size = self._gridfs_chunk_size
        pending = bytearray()
        async for n, data in self._chunks(start // size, (end - 1) // size):
            offset = n * size
            pending += data[max(start - offset, 0) : min(end - offset, len(data))]
            while len(pending) >= chunk_size:
                yield bytes(pending[:chunk_size])
                del pending[:chunk_size]
        if pending:
            yield bytes(pending)

    async def _release(self) -> None:
        await self._gridfs._unpin(self._version)


class GridFSStorage(FileStorage):
    """Files in a MongoDB GridFS bucket, compatible with filedepot's ``GridFSStorage``.

    Give ``mongouri`` (the database is the URI's default database, as in
    filedepot, unless ``database`` names another) or an existing async
    ``database`` object from motor or PyMongo; ``collection`` is the bucket name.
    No I/O happens here: a client is created on first use, and :meth:`aclose`
    closes it only if this storage created it.
    """

    _without_urls = True  # served by the middleware, never redirected

    def __init__(
        self,
        mongouri: str | None = None,
        collection: str = "filedepot",
        chunk_size: int = DEFAULT_GRIDFS_CHUNK_SIZE,
        *,
        database: Any = None,
        driver: _mongo.Driver = "auto",
    ) -> None:
        if not isinstance(collection, str) or not collection or "$" in collection:
            raise ConfigurationError(f"collection must be a bucket name, got {collection!r}")
        if not isinstance(chunk_size, int) or not 0 < chunk_size <= MAX_GRIDFS_CHUNK_SIZE:
            raise ConfigurationError(
                f"chunk_size must be between 1 and {MAX_GRIDFS_CHUNK_SIZE} bytes, "
                f"got {chunk_size!r}"
            )
        if driver not in ("auto", "pymongo", "motor"):
            raise ConfigurationError(f"driver must be 'auto', 'pymongo' or 'motor', not {driver!r}")
        self._database_name: str | None = None
        self._database: Any = None
        if mongouri is None:
            if database is None or isinstance(database, str):
                raise ConfigurationError("GridFSStorage needs mongouri or a database object")
            self._database = database
        else:
            if database is not None and not isinstance(database, str):
                raise ConfigurationError("give mongouri or a database object, not both")
            try:
                name = database or _mongo.default_database_name(mongouri)
            except ValueError as exc:
                raise ConfigurationError(str(exc)) from exc
            if not name:
                raise ConfigurationError(
                    "mongouri names no database (mongodb://host/<database>); "
                    "add one, or set the database option"
                )
            self._database_name = name
        self.mongouri = mongouri
        self.collection = collection
        self.chunk_size = chunk_size
        self.driver = driver
        self._client: Any = None
        self._indexes_ready = False
        # Versions held by open StoredFiles of this storage, and the retired ones
        # among them whose chunks are deleted when the last reader closes.
        self._pins: dict[Any, int] = {}
        self._retired: set[Any] = set()
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    # -- driver plumbing -------------------------------------------------------

    def _translate_error(
        self, exc: Exception, action: str, file_id: str | None
    ) -> DepotError | None:
        """Driver errors are not ``OSError``: they become :class:`BackendError` too."""
        if isinstance(exc, _mongo.PyMongoError):
            return self._failure(action, file_id, exc)
        return super()._translate_error(exc, action, file_id)

    def _db(self) -> Any:
        if self._database is None:
            assert self.mongouri is not None
            assert self._database_name is not None
            self._client = _mongo.create_client(self.mongouri, self.driver)
            self._database = self._client[self._database_name]
        return self._database

    async def _collections(self) -> tuple[Any, Any]:
        files, chunks = _mongo.bucket_collections(self._db(), self.collection)
        return files, chunks

    async def _chunks_collection(self) -> Any:
        return (await self._collections())[1]

    async def _writable(self) -> tuple[Any, Any]:
        """The collections, with GridFS's indexes created first if the bucket is new.

        As the GridFS spec asks: only when the files collection is empty, so a
        user without the createIndex privilege can write to an existing bucket.
        """
        files, chunks = await self._collections()
        if not self._indexes_ready:
            if await files.find_one({}, {"_id": 1}) is None:
                await files.create_index([("filename", 1), ("uploadDate", 1)])
                await chunks.create_index([("files_id", 1), ("n", 1)], unique=True)
            self._indexes_ready = True
        return files, chunks

    @contextlib.asynccontextmanager
    async def _serialized(self, file_id: str) -> AsyncIterator[None]:
        """One writer per id within this process, so chunk moves never race each other."""
        lock = self._locks.get(file_id)
        if lock is None:
            lock = self._locks[file_id] = asyncio.Lock()
        async with lock:
            yield

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            self._database = None
            self._indexes_ready = False
            await _mongo.close_client(client)

    # -- versions held by readers ----------------------------------------------

    def _pin(self, version: Any) -> None:
        self._pins[version] = self._pins.get(version, 0) + 1

    async def _unpin(self, version: Any) -> None:
        count = self._pins.get(version, 0) - 1
        if count > 0:
            self._pins[version] = count
            return
        self._pins.pop(version, None)
        if version in self._retired:
            self._retired.discard(version)
            with self._translating("delete old version of", None):
                chunks = await self._chunks_collection()
                await chunks.delete_many({"files_id": version})

    async def _retire(self, chunks: Any, object_id: Any, version: Any) -> None:
        """Remove a version whose files document is gone or replaced, unless it is being read."""
        if self._pins.get(version):
            await chunks.update_many(
                {"files_id": object_id, "depotx_version": {"$in": [None, version]}},
                {"$set": {"files_id": version, "depotx_version": version}},
            )
            self._retired.add(version)
        else:
            await chunks.delete_many({"files_id": version})

    # -- primitives ------------------------------------------------------------

    def _new_id(self) -> str:
        return str(_mongo.ObjectId())

    def _stored_file(self, doc: Mapping[str, Any]) -> GridFSStoredFile:
        version, legacy = _version_of(doc)
        stored = GridFSStoredFile(
            str(doc["_id"]),
            gridfs=self,
            object_id=doc["_id"],
            version=version,
            legacy=legacy,
            gridfs_chunk_size=int(doc.get("chunkSize") or DEFAULT_GRIDFS_CHUNK_SIZE),
            filename=str(doc.get("filename") or DEFAULT_FILENAME),
            content_type=str(doc.get("contentType") or DEFAULT_CONTENT_TYPE),
            content_length=int(doc.get("length") or 0),
            last_modified=_last_modified_of(doc),
            checksum=_checksum_of(doc, version),
            metadata=_custom_metadata(doc),
        )
        self._pin(version)
        return stored

    async def _get(self, file_id: str) -> StoredFile:
        object_id = _object_id(file_id)
        files, _ = await self._collections()
        doc = await files.find_one({"_id": object_id})
        if doc is None:
            raise StoredFileNotFoundError(file_id, self.name)
        return self._stored_file(doc)

    async def _write_chunks(
        self, chunks: Any, files_id: Any, version: Any, upload: Upload
    ) -> tuple[int, str]:
        """Stream the upload into chunks tagged ``version``; return (length, checksum)."""
        size = self.chunk_size
        per_batch = max(1, _MAX_BATCH_BYTES // size)
        digest = new_hasher(self.checksum_algorithm)
        pending = bytearray()
        batch: list[dict[str, Any]] = []
        length = 0
        n = 0

        def take(data: bytes) -> None:
            nonlocal n
            batch.append({"files_id": files_id, "n": n, "data": data, "depotx_version": version})
            n += 1

        async for piece in upload.chunks:
            digest.update(piece)
            length += len(piece)
            pending += piece
            while len(pending) >= size:
                take(bytes(pending[:size]))
                del pending[:size]
                if len(batch) >= per_batch:
                    await chunks.insert_many(batch, ordered=True)
                    batch.clear()
        if pending:
            take(bytes(pending))
        if batch:
            await chunks.insert_many(batch, ordered=True)
        return length, digest.hexdigest()

    async def _store(self, file_id: str, upload: Upload, *, mode: WriteMode) -> None:
        object_id = _object_id(file_id)
        replace = mode != "create"
        files, chunks = await self._writable()
        version = _mongo.ObjectId()
        # A new file's chunks can go straight home: no files document points
        # there yet. A replacement is staged under its version's own id, so
        # uploads need no lock: only the commit and the chunk moves take one.
        staging = version if replace else object_id
        committed = False
        try:
            try:
                length, checksum = await self._write_chunks(chunks, staging, version, upload)
            except _mongo.PyMongoError as exc:
                if not _mongo.is_duplicate_key(exc):
                    raise
                # A create whose id is taken collides with the file's own chunks.
                raise StoredFileExistsError(file_id, self.name) from exc
            doc = {
                "_id": object_id,
                "length": length,
                "chunkSize": self.chunk_size,
                "uploadDate": datetime.now(timezone.utc),
                "filename": upload.filename,
                "contentType": upload.content_type,
                "last_modified": format_filedepot_time(upload.stamp()),
                "metadata": dict(upload.metadata),
                "depotx_checksum": checksum,
                "depotx_version": version,
            }
            if not replace:
                await commit_or_cancel(self._insert(files, doc))
                return
            async with self._serialized(file_id):
                old = await commit_or_cancel(
                    self._swap(files, object_id, doc, required=mode == "replace")
                )
                committed = True
                # Move the chunks home and retire the old version's, even if the
                # caller is cancelled now.
                await commit_or_cancel(self._settle(files, chunks, object_id, version, old))
        except BaseException:
            if not committed:
                # Nothing points at these chunks (failed, cancelled or lost a race);
                # only this call's version is removed, never another writer's.
                await asyncio.shield(
                    chunks.delete_many({"files_id": staging, "depotx_version": version})
                )
            raise

    async def _insert(self, files: Any, doc: dict[str, Any]) -> None:
        """Add a new file's document; the unique ``_id`` lets exactly one create win."""
        try:
            await files.insert_one(doc)
        except _mongo.DuplicateKeyError as exc:
            raise StoredFileExistsError(str(doc["_id"]), self.name) from exc

    async def _swap(
        self, files: Any, object_id: Any, doc: dict[str, Any], *, required: bool
    ) -> dict[str, Any] | None:
        """Make ``doc`` the current version in one atomic write; return the document it replaced.

        With ``required``, a file deleted meanwhile stays deleted: not-found is raised.
        """
        for _ in range(_SWAP_ATTEMPTS):
            current = await files.find_one({"_id": object_id})
            if current is None:  # filedepot's backup pattern, or deleted meanwhile
                if required:
                    raise StoredFileNotFoundError(str(object_id), self.name)
                try:
                    await files.insert_one(doc)
                except _mongo.DuplicateKeyError:
                    continue
                return None
            # Conditional on the version read above, so two writers cannot both win.
            condition = {
                "_id": object_id,
                "uploadDate": current.get("uploadDate"),
                "depotx_version": current.get("depotx_version"),
            }
            result = await files.replace_one(condition, doc)
            if result.matched_count == 1:
                return dict(current)
        raise BackendError(
            f"{self._label()}: replace of {str(object_id)!r} kept losing to concurrent writers"
        )

    async def _settle(
        self, files: Any, chunks: Any, object_id: Any, version: Any, old: Mapping[str, Any] | None
    ) -> None:
        """Move the new version's chunks where GridFS readers look, and retire the old ones."""
        current = await files.find_one({"_id": object_id}, {"depotx_version": 1})
        if current is None or current.get("depotx_version") != version:
            # Deleted or replaced again by another process: that writer retires us.
            return
        not_ours = {"files_id": object_id, "depotx_version": {"$ne": version}}
        if old is None:
            await chunks.delete_many(not_ours)  # leftovers of an interrupted operation
        else:
            old_version, _ = _version_of(old)
            try:
                await chunks.update_many(
                    not_ours, {"$set": {"files_id": old_version, "depotx_version": old_version}}
                )
            except _mongo.DuplicateKeyError:
                # The parking place is taken (leftovers of an interrupted replace):
                # readers of the old version get StoredFileChangedError, never wrong bytes.
                await chunks.delete_many(not_ours)
        await chunks.update_many({"files_id": version}, {"$set": {"files_id": object_id}})
        if old is not None:
            await self._retire(chunks, object_id, _version_of(old)[0])

    async def _delete(self, file_id: str) -> None:
        object_id = _object_id(file_id)
        async with self._serialized(file_id):
            with self._translating("delete", file_id):
                files, chunks = await self._collections()
                doc = await files.find_one_and_delete({"_id": object_id})
                if doc is None:
                    # Orphaned chunks (filedepot's delete removes them too) and nothing else.
                    await chunks.delete_many({"files_id": object_id})
                    return
                version, _ = _version_of(doc)
                await self._retire(chunks, object_id, version)
                await chunks.delete_many({"files_id": object_id})

    async def _exists(self, file_id: str) -> bool:
        object_id = _object_id(file_id)
        with self._translating("exists", file_id):
            files, _ = await self._collections()
            return await files.find_one({"_id": object_id}, {"_id": 1}) is not None

    async def _ids(
        self, query: Mapping[str, Any], *, newest_first: bool = False
    ) -> AsyncIterator[str]:
        """Ids of files matching ``query``: ObjectIds (generated) and string keys."""
        with self._translating("list", None):
            files, _ = await self._collections()
            cursor = files.find(dict(query), {"_id": 1})
            if newest_first:
                cursor = cursor.sort("uploadDate", -1)
            try:
                async for doc in cursor:
                    file_id = doc["_id"]
                    if isinstance(file_id, _mongo.ObjectId):
                        yield str(file_id)
                    elif isinstance(file_id, str) and is_valid_file_id(file_id):
                        yield file_id
            finally:
                await _mongo.close_cursor(cursor)

    async def _list(
        self, prefix: str, start_after: str | None, delimiter: str | None
    ) -> AsyncIterator[str]:
        # ObjectIds and strings do not sort together in MongoDB (and ObjectIds
        # sort as bytes, not as their hex): the ids are sorted here, in memory.
        ids = sorted([file_id async for file_id in self._ids({}) if file_id.startswith(prefix)])
        async for file_id in fold_listing(ids, prefix, start_after, delimiter):
            yield file_id

    # -- GridFS-specific lookups ------------------------------------------------

    async def find_ids_by_filename(self, filename: str) -> AsyncIterator[str]:
        """Ids of every file stored under ``filename``, newest first.

        Served by GridFS's ``(filename, uploadDate)`` index, which the bucket
        has whether depotx, filedepot or another driver created it.
        """
        if not isinstance(filename, str):
            raise TypeError(f"filename must be a str, not {type(filename).__name__}")
        async for file_id in self._ids({"filename": filename}, newest_first=True):
            yield file_id

    async def get_by_filename(self, filename: str) -> StoredFile:
        """The newest file stored under ``filename`` (GridFS's ``get_last_version``).

        For a bucket used as a media store keyed by name, as Superdesk's
        ``GridFSMediaStorageAsync`` does. Raises ``StoredFileNotFoundError``.
        """
        if not isinstance(filename, str):
            raise TypeError(f"filename must be a str, not {type(filename).__name__}")
        with self._translating("get by filename", filename):
            files, _ = await self._collections()
            cursor = files.find({"filename": filename}).sort("uploadDate", -1).limit(1)
            try:
                doc = None
                async for found in cursor:
                    doc = found
            finally:
                await _mongo.close_cursor(cursor)
        if doc is None or not isinstance(doc["_id"], _mongo.ObjectId):
            raise StoredFileNotFoundError(filename, self.name)
        return self._stored_file(doc)

    async def list_by_metadata(self, key: str, value: str) -> AsyncIterator[str]:
        """Ids of the files whose custom metadata has ``key`` set to ``value`` (e.g. a folder).

        Queries ``metadata.<key>``; on a large bucket, create an index on that
        field. ``key`` may not start with ``$`` nor contain ``.`` or NUL, so it
        cannot turn into a different query.
        """
        if (
            not isinstance(key, str)
            or not key
            or key.startswith("$")
            or "." in key
            or "\x00" in key
        ):
            raise ValueError(f"invalid metadata key {key!r}")
        if not isinstance(value, str):
            raise TypeError(f"metadata values are str, not {type(value).__name__}")
        async for file_id in self._ids({f"metadata.{key}": value}):
            yield file_id

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"<GridFSStorage{label} collection={self.collection!r}>"
