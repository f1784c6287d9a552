"""Storing what was assigned to a file column: validate, stream, measure, thumbnail.

Session-free and async: the lifecycle module calls these from inside the flush.
Every rule is checked before a file becomes visible in the storage, and a
failure part-way removes whatever this call stored, so a refused upload leaves
nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import IO, Any

from .._content import prepare_upload
from .._detect import SNIFF_SIZE, detect_content_type
from .._exceptions import ValidationError
from .._files import FileIntent, StoredFile, aclose_iterator
from .._ids import split_path
from ..storages.base import FileStorage
from ._attached import AttachedFile, AttachedImage, Thumbnail
from ._images import ImageInfo, measure, spool, thumbnail
from ._sqlalchemy_types import FileType, ImageType

__all__ = ["COLUMN_KEY", "TABLE_KEY", "THUMBNAIL_KEY", "Stored", "adopt_path", "store_content"]

logger = logging.getLogger("depotx.ext.sqlalchemy")

#: Custom metadata written on every file a column stores, so ``delete_orphans``
#: only ever touches files that column created.
TABLE_KEY = "depotx_table"
COLUMN_KEY = "depotx_column"
THUMBNAIL_KEY = "depotx_thumbnail"


@dataclass(frozen=True)
class Stored:
    """The new value, and the paths this call created (to delete if the transaction fails)."""

    value: AttachedFile
    created: list[str]


async def _limited(chunks: AsyncIterator[bytes], max_size: int | None) -> AsyncIterator[bytes]:
    """Pass ``chunks`` through, failing as soon as more than ``max_size`` bytes went by.

    Raised inside the storage's write, so the storage discards the partial file.
    """
    seen = 0
    try:
        async for chunk in chunks:
            seen += len(chunk)
            if max_size is not None and seen > max_size:
                raise ValidationError("max_size", f"the file is larger than {max_size} bytes")
            yield chunk
    finally:
        await aclose_iterator(chunks)


async def _sniff(sample: bytes, filename: str | None, complete: bool) -> str:
    return await asyncio.to_thread(detect_content_type, sample, filename, complete=complete)


async def _delete_quietly(storage: FileStorage, file_ids: list[str]) -> None:
    """Undo this call's writes; the original error is what the caller needs to see, so
    a failed delete is logged rather than raised over it."""
    for file_id in file_ids:
        try:
            await storage.delete(file_id)
        except Exception:
            logger.warning(
                "could not delete %s/%s after a failed store", storage, file_id, exc_info=True
            )


async def _close_consumed(content: Any) -> None:
    """Close a file or ``StoredFile`` that was assigned to a column, once it is stored."""
    if isinstance(content, FileIntent):
        content = content.content
    if isinstance(content, StoredFile):
        await content.aclose()
        return
    close = getattr(content, "close", None)
    if close is None or isinstance(content, (bytes, bytearray, memoryview)):
        return
    result = close()
    if inspect.isawaitable(result):  # UploadFile, aiofiles
        await result


def _marker(table: str, column: str) -> dict[str, str]:
    return {TABLE_KEY: table, COLUMN_KEY: column}


async def store_content(ftype: FileType, content: Any, *, table: str, column: str) -> Stored:
    """Validate ``content`` and store it (with thumbnails, for images) in the column's storage."""
    name, storage = ftype.resolve_storage()
    async with contextlib.AsyncExitStack() as stack:
        # The column consumes what it was given: ``row.f = open(...)`` or
        # ``row.f = await manager.get_file(...)`` leave no handle open.
        stack.push_async_callback(_close_consumed, content)
        if isinstance(content, AttachedFile):  # a copy of another row's file
            content = await stack.enter_async_context(await content.open())
        # Sniffed even when the caller names a type: rules check what the bytes are.
        upload = await prepare_upload(content, sniff=True)
        stack.push_async_callback(upload.aclose)
        chunks = upload.chunks
        sniffed = upload.sniffed_type
        assert sniffed is not None  # sniff=True always sniffs; never the client's claim
        ftype.check_type(sniffed)
        content_type = sniffed if ftype.allowed_types is not None else upload.content_type
        metadata = {**upload.metadata, **_marker(table, column)}
        if isinstance(ftype, ImageType):
            source = await spool(chunks, ftype.max_size)
            stack.callback(source.close)
            info = await asyncio.to_thread(measure, source, ftype.max_pixels)
            chunks_or_file: Any = source
        else:
            chunks_or_file = _limited(chunks, ftype.max_size)
            info = None
        file_id = await storage.create(
            chunks_or_file, filename=upload.filename, content_type=content_type, metadata=metadata
        )
        created = [file_id]
        try:
            value = await _describe(ftype, name, storage, file_id)
            if isinstance(ftype, ImageType) and info is not None:
                value = await _with_thumbnails(
                    ftype, name, storage, value, source, info, metadata, created
                )
        except BaseException:
            await _delete_quietly(storage, created)
            raise
        return Stored(value, [f"{name}/{fid}" for fid in created])
    raise AssertionError("unreachable")  # pragma: no cover - AsyncExitStack swallows nothing


async def _describe(ftype: FileType, name: str, storage: FileStorage, file_id: str) -> AttachedFile:
    """The column value, from what the storage recorded (size, checksum, final type)."""
    async with await storage.get(file_id) as stored:
        return _value_from(ftype, name, stored)


def _value_from(ftype: FileType, name: str, stored: StoredFile) -> AttachedFile:
    return ftype._attached(
        path=f"{name}/{stored.file_id}",
        storage=name,
        file_id=stored.file_id,
        filename=stored.filename,
        content_type=stored.content_type,
        size=stored.content_length,
        checksum=stored.checksum,
    )


async def _with_thumbnails(
    ftype: ImageType,
    name: str,
    storage: FileStorage,
    value: AttachedFile,
    source: IO[bytes],
    info: ImageInfo,
    metadata: dict[str, str],
    created: list[str],
) -> AttachedImage:
    """Store one resized copy per configured size; ``created`` collects their ids for undo."""
    stem = os.path.splitext(value.filename or "image")[0] or "image"
    thumbs: dict[str, Thumbnail] = {}
    for thumb_name, size in ftype.thumbnail_sizes:
        data, ext, width, height = await asyncio.to_thread(thumbnail, source, size)
        thumb_id = await storage.create(
            data,
            filename=f"{stem}.{thumb_name}.{ext}",
            metadata={**metadata, THUMBNAIL_KEY: thumb_name},
        )
        created.append(thumb_id)
        thumbs[thumb_name] = Thumbnail(
            name=thumb_name,
            path=f"{name}/{thumb_id}",
            width=width,
            height=height,
            manager=ftype._manager,
        )
    return AttachedImage(
        manager=ftype._manager,
        path=value.path,
        storage=value.storage,
        file_id=value.file_id,
        filename=value.filename,
        content_type=value.content_type,
        size=value.size,
        checksum=value.checksum,
        width=info.width,
        height=info.height,
        thumbnails=thumbs,
    )


async def adopt_path(ftype: FileType, path: str, *, table: str, column: str) -> Stored:
    """Take over an already stored file: check the rules, record its metadata, add thumbnails.

    The file itself is the caller's upload, so it is not in ``created`` (a
    rollback leaves it where it was); thumbnails made here are.
    """
    storage_name, file_id = split_path(path)
    manager = ftype.manager
    real = manager.resolve_alias(storage_name)
    storage = manager.get(real)
    async with await storage.get(file_id) as stored:
        ftype.check_size(stored.content_length)
        head = b"".join([chunk async for chunk in stored.iter_bytes(0, SNIFF_SIZE)])
        sniffed = await _sniff(head, stored.filename, stored.content_length <= SNIFF_SIZE)
        ftype.check_type(sniffed)
        value = _value_from(ftype, real, stored)
        if not isinstance(ftype, ImageType):
            return Stored(value, [])
        source = await spool(stored.iter_bytes(), ftype.max_size)
        try:
            info = await asyncio.to_thread(measure, source, ftype.max_pixels)
            created: list[str] = []
            try:
                image = await _with_thumbnails(
                    ftype,
                    real,
                    storage,
                    value,
                    source,
                    info,
                    {**stored.metadata, **_marker(table, column)},
                    created,
                )
            except BaseException:
                await _delete_quietly(storage, created)
                raise
        finally:
            source.close()
    return Stored(image, [f"{real}/{fid}" for fid in created])


async def adopt_token(ftype: FileType, token: str, *, table: str, column: str) -> Stored:
    """Finalize a direct upload, then take it over as :func:`adopt_path` does.

    Unlike a path, the file is this assignment's own: it is in ``created``, so a
    rollback deletes it, and so does a column rule it breaks (``max_size``,
    ``allowed_types`` on the sniffed type, ``max_pixels``).
    """
    manager = ftype.manager
    path = await manager.finalize_upload(token)
    try:
        adopted = await adopt_path(ftype, path, table=table, column=column)
    except BaseException:
        storage_name, file_id = split_path(path)
        await _delete_quietly(manager.get(storage_name), [file_id])
        raise
    return Stored(adopted.value, [path, *adopted.created])
