"""Moving every file of one storage to another: :func:`migrate` and its journal.

Ids are kept (generated ids and keys alike), with the filename, content type,
custom metadata and last-modified time, so ``"<storage>/<id>"`` paths in a
database only need the storage name changed, or nothing when they go through an
alias. Each file is streamed (memory flat whatever its size) and written with
the destination's atomic create, so an interrupted copy leaves nothing half
there. A SQLite journal records what is done, so a re-run skips it and retries
what failed.

The CLI (``depotx migrate SRC DST``) only parses arguments and draws progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ._exceptions import (
    DepotError,
    StoredFileChangedError,
    StoredFileExistsError,
    StoredFileNotFoundError,
)
from ._files import StoredFile
from .storages.base import FileStorage, WriteMode
from .storages.local import LocalFileStorage
from .storages.memory import MemoryFileStorage

__all__ = [
    "MigrationJournal",
    "MigrationProgress",
    "MigrationReport",
    "default_concurrency",
    "migrate",
]

logger = logging.getLogger("depotx.migrate")

#: How often a file whose source changed during its copy is copied again.
SOURCE_CHANGE_RETRIES = 2


@dataclass
class MigrationProgress:
    """Where a migration stands; handed to ``on_progress`` after every file."""

    total_files: int = 0
    files_done: int = 0
    bytes_done: int = 0
    copied: int = 0
    skipped: int = 0
    failed: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        """Bytes per second so far."""
        return self.bytes_done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left, from the pace in files so far; ``None`` before the first file."""
        if not self.files_done or not self.total_files:
            return None
        return self.elapsed / self.files_done * (self.total_files - self.files_done)


@dataclass
class MigrationReport:
    """What a migration did: counts, bytes, time, and the reason for every failure."""

    copied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    bytes: int = 0
    elapsed: float = 0.0
    journal: str | None = None
    dry_run: bool = False
    #: With ``dry_run``: the ids that would be copied, with their sizes.
    planned: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed

    def as_dict(self) -> dict[str, Any]:
        return {
            "copied": len(self.copied),
            "skipped": len(self.skipped),
            "failed": self.failed,
            "bytes": self.bytes,
            "elapsed_seconds": round(self.elapsed, 3),
            "journal": self.journal,
            "dry_run": self.dry_run,
            "planned": self.planned if self.dry_run else None,
        }


class MigrationJournal:
    """A small SQLite file: one row per id, ``done`` or ``failed`` with the reason.

    Bound to one source and destination: re-using it for another pair is an
    error, so a journal can never make a migration skip files it did not copy.
    Every row is committed as it is written, so a killed run loses nothing it
    recorded.
    """

    def __init__(self, path: str | os.PathLike[str], source: str, destination: str) -> None:
        self.path = os.fspath(path)
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS pair (source TEXT, destination TEXT)")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS files "
            "(file_id TEXT PRIMARY KEY, status TEXT NOT NULL, size INTEGER, reason TEXT)"
        )
        row = self._db.execute("SELECT source, destination FROM pair").fetchone()
        if row is None:
            self._db.execute("INSERT INTO pair VALUES (?, ?)", (source, destination))
        elif tuple(row) != (source, destination):
            self._db.close()
            raise DepotError(
                f"journal {self.path!r} belongs to a migration from {row[0]!r} to {row[1]!r}, "
                f"not from {source!r} to {destination!r}: use another --journal"
            )

    def done(self, file_id: str) -> bool:
        row = self._db.execute("SELECT status FROM files WHERE file_id = ?", (file_id,)).fetchone()
        return row is not None and row[0] == "done"

    def record(self, file_id: str, status: str, size: int | None, reason: str | None) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)", (file_id, status, size, reason)
        )

    def close(self) -> None:
        self._db.close()


async def _ids_from(
    source: FileStorage, prefix: str, ids: Iterable[str] | AsyncIterable[str] | None
) -> list[str]:
    if ids is None:
        return [file_id async for file_id in source.list(prefix)]
    if isinstance(ids, AsyncIterable):
        return [file_id async for file_id in ids]
    return list(ids)


def default_concurrency(source: FileStorage, destination: FileStorage) -> int:
    """Files copied at once when not told: more where each file waits on a network.

    Local disk and memory gain nothing past a few (two cores, one disk); a network
    service spends most of each file waiting on round trips, which overlap.
    """
    local = (LocalFileStorage, MemoryFileStorage)
    if isinstance(source, local) and isinstance(destination, local):
        return 4
    return 8


async def _sha256(stored: StoredFile) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    async for chunk in stored.iter_bytes():
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


async def migrate(
    source: FileStorage,
    destination: FileStorage,
    *,
    prefix: str = "",
    ids: Iterable[str] | AsyncIterable[str] | None = None,
    concurrency: int | None = None,
    verify: bool = False,
    overwrite: bool = False,
    delete_source: bool = False,
    journal: str | os.PathLike[str] | None = None,
    dry_run: bool = False,
    on_progress: Callable[[MigrationProgress], None] | None = None,
) -> MigrationReport:
    """Copy every file of ``source`` (under ``prefix``, or the given ``ids``) to ``destination``.

    - Ids, filenames, content types, custom metadata and last-modified times are
      kept; the checksum is recomputed by the destination from the same bytes.
    - A file already at the destination with the same content is skipped; one
      with other content is a failure unless ``overwrite``.
    - ``verify`` re-reads each copied file from the destination and compares its
      SHA-256 with the source's (sizes are always compared), also for files the
      journal says are done; ``delete_source`` (which needs ``verify``) deletes
      a source file only once its copy is verified.
    - A source replaced while it was copied is copied again; a source that keeps
      changing is reported, never recorded as done.
    - ``journal`` (a path) records each file's outcome: a re-run skips what is
      done and retries what failed.
    - ``dry_run`` copies nothing and lists what would be copied, with sizes.

    Cancelling (Ctrl-C in the CLI) stops cleanly: a copy in flight is rolled
    back by the destination's atomic write, and the journal has every outcome
    recorded so far.
    """
    if concurrency is None:
        concurrency = default_concurrency(source, destination)
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    if delete_source and not verify:
        raise ValueError("delete_source needs verify: a source is deleted only once its copy is")
    if source is destination:
        raise ValueError("source and destination are the same storage")
    started = time.monotonic()
    report = MigrationReport(dry_run=dry_run)
    book: MigrationJournal | None = None
    if journal is not None and not dry_run:
        book = MigrationJournal(journal, source._label(), destination._label())
        report.journal = book.path
    progress = MigrationProgress()
    try:
        all_ids = await _ids_from(source, prefix, ids)
        progress.total_files = len(all_ids)
        queue: asyncio.Queue[str] = asyncio.Queue()
        for file_id in all_ids:
            queue.put_nowait(file_id)

        async def worker() -> None:
            while True:
                try:
                    file_id = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                outcome, size, reason = await _migrate_one(
                    source, destination, file_id, book, verify, overwrite, delete_source, dry_run
                )
                if outcome == "copied":
                    report.copied.append(file_id)
                    report.bytes += size
                    progress.copied += 1
                elif outcome == "planned":
                    report.planned[file_id] = size
                elif outcome == "skipped":
                    report.skipped.append(file_id)
                    progress.skipped += 1
                else:
                    report.failed[file_id] = reason or "failed"
                    progress.failed += 1
                if book is not None and outcome != "planned":
                    status = "failed" if outcome == "failed" else "done"
                    book.record(file_id, status, size, reason)
                progress.files_done += 1
                progress.bytes_done += size
                if on_progress is not None:
                    on_progress(progress)

        workers = [asyncio.ensure_future(worker()) for _ in range(concurrency)]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
    finally:
        report.elapsed = time.monotonic() - started
        if book is not None:
            book.close()
    return report


async def _migrate_one(
    source: FileStorage,
    destination: FileStorage,
    file_id: str,
    book: MigrationJournal | None,
    verify: bool,
    overwrite: bool,
    delete_source: bool,
    dry_run: bool,
) -> tuple[str, int, str | None]:
    """One file: ``(outcome, bytes, reason)`` with outcome copied/skipped/failed/planned."""
    try:
        if book is not None and book.done(file_id) and not verify:
            return "skipped", 0, None
        for _ in range(1 + SOURCE_CHANGE_RETRIES):
            try:
                return await _copy(
                    source, destination, file_id, book, verify, overwrite, delete_source, dry_run
                )
            except (StoredFileChangedError, _SourceChanged):
                logger.info("%s changed while it was copied: copying it again", file_id)
                overwrite = True  # what is at the destination now is our own stale copy
        return "failed", 0, "the source kept changing while it was copied"
    except StoredFileNotFoundError:
        return "failed", 0, "no longer in the source"
    except DepotError as exc:
        return "failed", 0, str(exc)
    except OSError as exc:
        return "failed", 0, f"{type(exc).__name__}: {exc}"


class _SourceChanged(Exception):
    """The source file was replaced while it was being copied."""


async def _copy(
    source: FileStorage,
    destination: FileStorage,
    file_id: str,
    book: MigrationJournal | None,
    verify: bool,
    overwrite: bool,
    delete_source: bool,
    dry_run: bool,
) -> tuple[str, int, str | None]:
    async with await source.get(file_id) as src:
        size = src.content_length
        version = (src.checksum, src.last_modified, size)
        existing: StoredFile | None
        try:
            existing = await destination.get(file_id)
        except StoredFileNotFoundError:
            existing = None
        source_digest: str | None = None
        if existing is not None:
            async with existing:
                if existing.content_length == size:
                    source_digest, _ = await _sha256(src)
                    if (await _sha256(existing))[0] == source_digest:
                        if delete_source and not dry_run:
                            await source.delete(file_id)
                        return "skipped", 0, None
            if not overwrite:
                return "failed", 0, "at the destination with other content (use overwrite)"
        if dry_run:
            return "planned", size, None
        mode: WriteMode = "put" if overwrite else "create"
        try:
            within = await destination._copy_within(source, src, file_id, mode=mode)
        except StoredFileExistsError:
            return "failed", 0, "appeared at the destination during the copy"
        if within:
            # Copied inside the service: the bytes never came through here.
            if verify:
                source_digest = source_digest or (await _sha256(src))[0]
                async with await destination.get(file_id) as written:
                    if (await _sha256(written))[0] != source_digest:
                        return "failed", size, "the copy's content differs from the source"
            if delete_source:
                await source.delete(file_id)
            return "copied", size, None
        digest = hashlib.sha256()
        copied = 0

        async def teed() -> AsyncIterator[bytes]:
            nonlocal copied
            async for chunk in src.iter_bytes():
                digest.update(chunk)
                copied += len(chunk)
                yield chunk

        try:
            await destination._write_copy(file_id, src, mode=mode, chunks=teed())
        except StoredFileExistsError:
            return "failed", 0, "appeared at the destination during the copy"
    if copied != size:
        raise _SourceChanged
    with contextlib.suppress(StoredFileNotFoundError):
        async with await source.get(file_id) as fresh:
            if (fresh.checksum, fresh.last_modified, fresh.content_length) != version:
                raise _SourceChanged
    if verify:
        async with await destination.get(file_id) as written:
            if written.content_length != size:
                return "failed", copied, "the copy has another size than the source"
            if (await _sha256(written))[0] != digest.hexdigest():
                return "failed", copied, "the copy's content differs from the source (verify)"
        if delete_source:
            await source.delete(file_id)
    return "copied", copied, None
