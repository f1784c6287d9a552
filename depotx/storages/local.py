"""Local disk storage, laid out exactly as filedepot's ``LocalFileStorage``.

Each file is a folder named by its id holding ``file`` (the content) and
``metadata.json`` (filedepot's keys: ``filename``, ``content_type``,
``content_length``, ``last_modified`` as naive-UTC ``%Y-%m-%d %H:%M:%S``), so an
existing filedepot store is served as is and filedepot reads what we write.
filedepot refuses unknown keys in ``metadata.json``, so what only depotx needs
(checksum, custom metadata) lives beside it in ``depotx.json``.

How writes stay atomic and races stay harmless:

- A write first builds a complete folder (content, both metadata files, a
  ``.lock``) in the staging area ``\\depotx-staging/<token>``, synced to disk
  (``fsync``). A *create* then renames that folder to ``<id>`` in one step: the
  rename fails if the id is taken, so of many creates of one id exactly one
  wins. A *replace* renames the three files into the live folder.
- Readers hold a shared ``flock`` on the folder's ``.lock`` while they open its
  files; a replace renames its files in, and a delete renames the folder away,
  under an exclusive one. Every step works on the folder's directory
  descriptor, so a reader's files all come from one folder, one version.
- Under its exclusive lock a replace checks that its folder is still the live
  one: a delete that got there first wins, and the replace raises not-found
  instead of bringing the file back.
- Nothing is opened through a symbolic link (``O_NOFOLLOW``): a link planted
  inside ``storage_path`` is refused, never followed out of it.
- A writer killed mid-upload leaves its staging folder behind, invisible to
  ``list`` and ``get``; :meth:`~LocalFileStorage.cleanup` (run once at the first
  write, and by ``depotx cleanup``) removes those older than ``temp_max_age``.

The staging area and deleted folders (``\\deleted-*``) exist only while writes
and deletes run; their names are not valid ids, so ``list`` never shows them.
POSIX only (Linux, macOS, the BSDs): it relies on ``flock``, ``pread`` and
directory descriptors. Blocking work runs in worker threads, batched so each
step costs one thread hop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import errno
import functools
import hashlib
import json
import logging
import os
import shutil
import stat as stat_module
import sys
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import IO, Any, TypeVar

import aiofiles

from .._checksums import new_hasher
from .._content import Upload
from .._exceptions import (
    BackendError,
    ConfigurationError,
    StoredFileExistsError,
    StoredFileNotFoundError,
)
from .._files import BytesStoredFile, StoredFile
from .._formats import (
    DEFAULT_CONTENT_TYPE,
    DEFAULT_FILENAME,
    format_filedepot_time,
    parse_filedepot_time,
)
from .._ids import is_valid_file_id
from .base import (
    DEFAULT_TEMP_MAX_AGE,
    FileStorage,
    WriteMode,
    commit_or_cancel,
    fold_listing,
    staged_expiry,
)

if sys.platform != "win32":
    import fcntl

__all__ = ["LocalFileStorage"]

logger = logging.getLogger("depotx")

_T = TypeVar("_T")

CONTENT = "file"
METADATA = "metadata.json"
EXTRA = "depotx.json"
LOCK = ".lock"
# Keys may hold any character but "\\" (see depotx._ids), so names with a
# backslash are ours alone: a key "a/b" lives in "a\\/b" (the "a\\" folder holds
# the keys under "a/", next to the folder of the key "a" itself), and the
# storage's own areas start with one.
#: Marks a folder holding the keys under a prefix: ``uploads\\`` for ``uploads/``.
PREFIX_MARK = "\\"
#: Where writes are built before they are renamed into place.
STAGING = "\\depotx-staging"
#: Prefix of folders renamed away by a delete, removed right after.
TRASH = "\\deleted-"
#: Hard links handed to an ASGI server's ``pathsend`` (see :meth:`LocalFileStorage.pin`),
#: named ``<removal time>-<random>``.
PATHSEND = "\\depotx-pathsend"
#: How long such a link is kept: the server opens it after the send, within this.
PATHSEND_HOLD = 60.0
# Temporaries of depotx 0.1, which wrote them inside each file's folder.
_LEGACY_TEMP_PREFIXES = (f".{CONTENT}.", f".{METADATA}.", f".{EXTRA}.")
# Below this size hashing in the event loop is cheaper than a thread hop.
_HASH_INLINE_LIMIT = 64 * 1024
#: Files up to this size are kept in memory once read whole, so hot small files
#: (avatars, thumbnails, icons) are served without a thread hop or a disk read.
#: Larger files have only their metadata cached.
SMALL_FILE_LIMIT = 64 * 1024

# Reads of page-cached data up to this size happen on the event loop with
# RWF_NOWAIT (Linux): a memory copy of microseconds, cheaper than a thread hop,
# and the flag makes the kernel refuse rather than wait for the disk.
_NOWAIT_LIMIT = 256 * 1024
_RWF_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | _CLOEXEC
_READ_FLAGS = os.O_RDONLY | _NOFOLLOW | _CLOEXEC
# A folder or file that turned out to be a symbolic link (O_NOFOLLOW refused it).
_LINK_ERRNOS = frozenset({errno.ELOOP, errno.EMLINK})
# A rename onto a folder that is taken (and not empty).
_TAKEN_ERRNOS = frozenset({errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR})

# What identifies one version of a file on disk: every replace renames new
# files over ``file`` and ``metadata.json``, so their inodes and change times
# change, even within one clock tick.
_Version = tuple[int, int, int, int]


def _version(stat: os.stat_result) -> _Version:
    return (stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size)


@dataclass(frozen=True)
class _Cached:
    """What ``_open`` learnt about one version of a file, and how to recognise it."""

    metadata: _Version  # of metadata.json
    content: _Version  # of file
    length: int
    fields: dict[str, Any]
    data: bytes | None = None  # the content itself, for small files read whole

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else 0


class _FileCache:
    """An LRU of files' metadata (and small files' content), bounded in entries and bytes.

    An entry is used only once a ``stat`` of ``metadata.json`` and an ``fstat`` of
    the opened content show that both are still the files it was read from. Any
    replace, by this process, another one or filedepot, writes both anew, so it is
    never missed; and metadata and content always describe one version.
    """

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, _Cached] = OrderedDict()
        self._bytes = 0

    def get(self, file_id: str) -> _Cached | None:
        entry = self._entries.get(file_id)
        if entry is not None:
            self._entries.move_to_end(file_id)
        return entry

    def put(self, file_id: str, entry: _Cached) -> None:
        if self.max_entries <= 0 or entry.size > self.max_bytes:
            return
        self.discard(file_id)
        self._entries[file_id] = entry
        self._bytes += entry.size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= evicted.size

    def discard(self, file_id: str) -> None:
        entry = self._entries.pop(file_id, None)
        if entry is not None:
            self._bytes -= entry.size


class _LinkRefused(BackendError):
    """A path inside ``storage_path`` is a symbolic link: depotx never follows one."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"{path} is a symbolic link; depotx does not follow links inside storage_path"
        )


def _nofollow_error(exc: OSError, path: str) -> OSError:
    return _LinkRefused(path) if exc.errno in _LINK_ERRNOS else exc


def _open_folder(name: str, dir_fd: int | None = None, *, shown: str | None = None) -> int:
    """A descriptor of the folder ``name`` (inside ``dir_fd``), never through a link.

    ``FileNotFoundError`` when there is no folder there (a plain file counts as
    none); :class:`_LinkRefused` for a link. ``shown`` is the path errors name.
    """
    shown = shown or name
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except NotADirectoryError as exc:
        # Linux answers ENOTDIR for a link when O_DIRECTORY and O_NOFOLLOW meet.
        if stat_module.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
            raise _LinkRefused(shown) from exc
        raise FileNotFoundError(errno.ENOENT, "not a folder", shown) from exc
    except OSError as exc:
        raise _nofollow_error(exc, shown) from exc


def _opener(folder_fd: int) -> Callable[[str, int], int]:
    """An ``open(opener=...)`` that opens names inside ``folder_fd``, never through a link."""

    def opener(name: str, flags: int) -> int:
        return os.open(name, flags | _NOFOLLOW | _CLOEXEC, 0o644, dir_fd=folder_fd)

    return opener


@contextlib.contextmanager
def _locked(folder_fd: int, *, exclusive: bool) -> Iterator[None]:
    """Hold the folder's ``.lock``: shared to read a version, exclusive to change it.

    A reader of a folder no depotx writer has touched (a filedepot store) creates
    the lock file if it may; on a read-only store nothing can change the files,
    so there is nothing to fence against.
    """
    try:
        fd = os.open(LOCK, os.O_RDONLY | _NOFOLLOW | _CLOEXEC, dir_fd=folder_fd)
    except FileNotFoundError:
        flags = os.O_RDWR | os.O_CREAT | _NOFOLLOW | _CLOEXEC
        try:
            fd = os.open(LOCK, flags, 0o644, dir_fd=folder_fd)
        except FileNotFoundError:
            # The folder was deleted (and emptied) since it was opened: it is dead,
            # nothing can change it any more, and callers find it is not live.
            yield
            return
        except OSError as exc:
            if exclusive or exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            yield
            return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _is_live(path: str, folder_fd: int) -> bool:
    """Whether ``path`` still names the folder open as ``folder_fd`` (no delete since)."""
    try:
        current = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    opened = os.fstat(folder_fd)
    return (current.st_dev, current.st_ino) == (opened.st_dev, opened.st_ino)


def _is_regular(name: str, folder_fd: int) -> bool:
    try:
        return stat_module.S_ISREG(os.stat(name, dir_fd=folder_fd, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False


def _read_small(name: str, folder_fd: int) -> tuple[bytes, os.stat_result]:
    with open(name, "rb", opener=_opener(folder_fd)) as file:
        return file.read(), os.fstat(file.fileno())


def _fsync_folder(folder_fd: int) -> None:
    os.fsync(folder_fd)


def _rmtree(path: str) -> None:
    """Remove a folder of ours; what cannot be removed is logged and left for ``cleanup``."""

    def log(func: Any, failed: str, exc: Any) -> None:
        error = exc if isinstance(exc, BaseException) else exc[1]
        if not isinstance(error, FileNotFoundError):
            logger.warning("depotx: could not remove %s (left for cleanup): %s", failed, error)

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=log)
    else:  # pragma: no cover - Python < 3.12
        shutil.rmtree(path, onerror=log)


def _remove_trash(path: str) -> None:
    """Remove a deleted folder, even while racing readers or writers still hold it open.

    A reader or a replace that opened the folder before it was deleted may still
    take its lock, and a lock file that is gone is created again (for folders
    filedepot wrote, which have none): the folder is then not empty when it is
    removed. Such a racer finds the folder dead and stops, and no file can be
    created in a folder once removed, so going again a few times always wins.
    """
    for attempt in range(10):
        try:
            shutil.rmtree(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.ENOTEMPTY or attempt == 9:
                logger.warning("depotx: could not remove %s (left for cleanup): %s", path, exc)
                return


#: Bytes hashed and copied per step of :func:`_copy_and_hash`.
_COPY_STEP = 4 * 1024 * 1024


def _copy_and_hash(source: int, target: int, piece: StoredFile, digest: Any) -> int:
    """Append ``piece``'s bytes (open as ``source``) to ``target``; hash them on the way.

    The kernel copies (``copy_file_range``: no trip through Python's memory for the
    write) while the same range, read from the page cache, is hashed; where the
    call is missing or refused (another file system), the bytes read are written,
    and the call is not tried again for this piece.
    """
    copy_range = getattr(os, "copy_file_range", None)
    size = piece.content_length
    offset = 0
    while offset < size:
        data = os.pread(source, min(_COPY_STEP, size - offset), offset)
        if not data:
            raise BackendError(f"{piece.file_id!r} is shorter than its {size} bytes")
        digest.update(data)
        copied = 0
        if copy_range is not None:
            try:
                while copied < len(data):
                    done = copy_range(source, target, len(data) - copied, offset + copied)
                    if done == 0:
                        break
                    copied += done
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                copy_range = None
        if copied < len(data):
            _write_all(target, data[copied:])
        offset += len(data)
    return offset


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@functools.lru_cache(maxsize=1)
def _root_fd() -> int:
    """A descriptor of ``/``, opened once: it makes ``os.link`` call ``linkat``."""
    return os.open("/", os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))


def _unlink_pin(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return  # swept already
    except OSError as exc:
        logger.warning("depotx: removing the pathsend link %s failed: %s", path, exc)


def _sweep_pins(folder: str, now: float) -> int:
    """Remove pathsend links past their removal time (a link shares its file's dates,
    so its name says when it goes); how many."""
    removed = 0
    try:
        with os.scandir(folder) as pins:
            expired = [entry.path for entry in pins if staged_expiry(entry.name) < now]
    except (FileNotFoundError, NotADirectoryError):
        return 0
    for path in expired:
        with contextlib.suppress(FileNotFoundError):  # its timer was first
            os.unlink(path)
            removed += 1
    return removed


def _age(path: str, now: float) -> float:
    """Seconds since ``path`` was last changed; 0 if it is already gone."""
    try:
        return now - os.stat(path, follow_symlinks=False).st_mtime
    except FileNotFoundError:
        return 0.0


class LocalStoredFile(StoredFile):
    """A file held open by descriptor: a replace or delete after ``get`` does not affect it."""

    def __init__(
        self,
        file_id: str,
        fileobj: IO[bytes],
        *,
        read_at: Callable[[int, int, int], Awaitable[bytes]],
        on_whole_read: Callable[[bytes], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(file_id, **kwargs)
        self._fileobj = fileobj
        self._read_at = read_at
        self._on_whole_read = on_whole_read

    async def _iter_range(self, start: int, end: int, chunk_size: int) -> AsyncIterator[bytes]:
        fd = self._fileobj.fileno()
        if self._on_whole_read is not None and start == 0 and end == self.content_length:
            # A small file read whole: one read, and the cache keeps it for next time.
            data = await self._read_at(fd, end, 0)
            if len(data) == end:
                self._on_whole_read(data)
            for offset in range(0, len(data), chunk_size):
                yield data[offset : offset + chunk_size]
            return
        offset = start
        while offset < end:
            chunk = await self._read_at(fd, min(chunk_size, end - offset), offset)
            if not chunk:
                return
            offset += len(chunk)
            yield chunk

    async def _release(self) -> None:
        self._fileobj.close()

    def close_now(self) -> None:
        """Close the descriptor at once (for a file opened for a caller that left)."""
        self._closed = True
        self._fileobj.close()


async def _batches(storage: LocalFileStorage, names: Iterator[str]) -> AsyncIterator[str]:
    """The walk's names, checked and read in batches of 1,000 per thread hop."""
    while batch := await storage._run(storage._list_batch, names, 1000):
        for name in batch:
            yield name


def _close_unclaimed(future: asyncio.Future[tuple[LocalStoredFile, _Cached]]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result()[0].close_now()


class LocalFileStorage(FileStorage):
    """Files on the local filesystem under ``storage_path`` (created on first write).

    ``storage_path`` is made absolute when the storage is configured, so a later
    ``os.chdir`` cannot split the store in two.

    The metadata of up to ``cache_size`` files is cached, and the content of
    small ones (up to 64 KiB, ``cache_max_bytes`` in all) once read whole; each
    ``get`` checks that the cached version is still the current one (see
    :class:`_FileCache`). ``cache_size=0`` turns it off.

    ``fsync`` (on by default) syncs each new file, its metadata and the folders
    that name them to disk before a write returns, so a file that was reported
    stored survives a power cut; without it, a crash can lose recent writes (never
    mix two versions). ``temp_max_age`` (seconds, default one day) is the age
    after which a crashed write's leftovers are swept by :meth:`cleanup`.

    Disk work runs on ``io_threads`` threads of the storage's own (default: one
    more than the CPU cores, at most 8). More threads than that only fight over
    the GIL with the event loop: measured here, 1,000 concurrent small uploads
    beside a 256 MiB one lagged the loop 11-24 ms (p99) on asyncio's default
    pool, 6-7 ms on three threads.
    """

    _without_urls = True  # served by the middleware, never redirected

    def __init__(
        self,
        storage_path: str | os.PathLike[str],
        *,
        cache_size: int = 1024,
        cache_max_bytes: int = 16 * 1024 * 1024,
        io_threads: int | None = None,
        fsync: bool = True,
        temp_max_age: float = DEFAULT_TEMP_MAX_AGE.total_seconds(),
    ) -> None:
        if sys.platform == "win32":  # pragma: no cover - refused before any use
            raise ConfigurationError(
                "LocalFileStorage needs a POSIX system (Linux, macOS, BSD): it relies on "
                "flock, pread and directory descriptors; on Windows use WSL"
            )
        if io_threads is not None and io_threads < 1:
            raise ConfigurationError("io_threads must be at least 1")
        if cache_size < 0 or cache_max_bytes < 0:
            raise ConfigurationError("cache_size and cache_max_bytes must not be negative")
        if temp_max_age < 0:
            raise ConfigurationError("temp_max_age must not be negative")
        self.storage_path = os.path.abspath(os.fspath(storage_path))
        self.io_threads = io_threads or min(8, (os.cpu_count() or 1) + 1)
        self.fsync = fsync
        self.temp_max_age = timedelta(seconds=temp_max_age)
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._nowait = _RWF_NOWAIT is not None
        self._cache = _FileCache(cache_size, cache_max_bytes)
        self._root = os.path.join(self.storage_path, "")  # with a trailing separator
        self._staging = self._root + STAGING
        self._pins = self._root + PATHSEND
        self._swept = False
        self._corrupt_logged: set[str] = set()

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:  # created on first use: no threads for idle storages
            self._executor = concurrent.futures.ThreadPoolExecutor(
                self.io_threads, thread_name_prefix="depotx-local"
            )
        return self._executor

    def _submit(self, func: Callable[..., _T], *args: Any, **kwargs: Any) -> asyncio.Future[_T]:
        call = functools.partial(func, *args, **kwargs)
        return asyncio.get_running_loop().run_in_executor(self._pool(), call)

    async def _run(self, func: Callable[..., _T], *args: Any) -> _T:
        return await self._submit(func, *args)

    async def _run_to_end(self, func: Callable[..., _T], *args: Any) -> _T:
        """Run blocking file work on the I/O threads, and never abandon it half-way.

        Cancelling a task does not stop a thread. Were the caller cancelled while
        the thread creates files, the caller's cleanup would race it and could
        leave something behind; so a cancellation first waits for the work to
        end (it takes milliseconds), then goes on.
        """
        future = self._submit(func, *args)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            await asyncio.wait([future])
            if not future.cancelled():
                future.exception()  # retrieved: the caller sees the cancellation instead
            raise

    async def _read_at(self, fd: int, size: int, offset: int) -> bytes:
        """``os.pread``, on the event loop when the data is in the page cache."""
        if self._nowait and size <= _NOWAIT_LIMIT and _RWF_NOWAIT is not None:
            buffer = bytearray(size)
            try:
                got = os.preadv(fd, [buffer], offset, _RWF_NOWAIT)
            except BlockingIOError:  # not cached: the disk would have to be read
                got = 0
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                self._nowait = False  # this filesystem cannot; threads from now on
                got = 0
            if got == size:
                return bytes(buffer)
            if got:
                rest: bytes = await self._run(os.pread, fd, size - got, offset + got)
                return bytes(buffer[:got]) + rest
        return await self._run(os.pread, fd, size, offset)

    async def aclose(self) -> None:
        """Stop the storage's I/O threads; they start again on next use."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)

    def _folder(self, file_id: str) -> str:
        """The folder of ``file_id``: its segments, the leading ones as prefix folders."""
        if "/" not in file_id:  # generated ids and one-segment keys: filedepot's layout
            return self._root + file_id
        *parents, last = file_id.split("/")
        return self._root + "".join(part + PREFIX_MARK + os.sep for part in parents) + last

    def content_path(self, file_id: str) -> str:
        """The absolute path of ``file_id``'s content on disk (it may not exist).

        For a front server that sends files itself (``X-Sendfile``, nginx's
        ``X-Accel-Redirect``, an ASGI server's ``pathsend``). The id is validated;
        prefix folders of keys end with a backslash, as in the layout above.
        """
        return os.path.join(self._folder(self._validate_id(file_id)), CONTENT)

    def pin(self, stored: StoredFile) -> str | None:
        """A path holding exactly the version ``stored`` opened, for ``pathsend``; or ``None``.

        An ASGI server's ``http.response.pathsend`` opens the path after the send
        returns; by then a replace may have put another file at
        :meth:`content_path`, whose length would not be the one already sent. So
        the descriptor ``stored`` holds is hard-linked (through ``/proc/self/fd``)
        into ``\\depotx-pathsend``: that path is the opened version whatever
        happens to the file's own. The link goes after :data:`PATHSEND_HOLD`
        seconds (:meth:`cleanup` removes those of a process that died first).
        ``None`` when the file cannot be pinned so: held in memory, deleted
        since it was opened, or no ``/proc``.
        """
        if not isinstance(stored, LocalStoredFile) or stored.closed:
            return None
        name = f"{int(time.time() + PATHSEND_HOLD)}-{uuid.uuid4().hex}"
        path = os.path.join(self._pins, name)
        source = f"/proc/self/fd/{stored._fileobj.fileno()}"
        for _ in range(2):
            try:
                # With a dir_fd, os.link is linkat(AT_SYMLINK_FOLLOW): the /proc link is
                # followed to the open file (plain link() would link the /proc entry).
                os.link(source, path, src_dir_fd=_root_fd(), follow_symlinks=True)
                break
            except FileNotFoundError:
                if not os.path.exists(source):
                    return None  # deleted since it was opened, or no /proc
                os.makedirs(self._pins, exist_ok=True)
            except OSError as exc:
                logger.info("depotx: %s: cannot pin %r for pathsend: %s", self._label(), path, exc)
                return None
        else:
            return None
        asyncio.get_running_loop().call_later(PATHSEND_HOLD, _unlink_pin, path)
        return path

    def _corrupt(self, file_id: str, name: str, reason: object) -> BackendError:
        path = os.path.join(self._folder(file_id), name)
        return BackendError(f"{self._label()}: {path} of file {file_id!r} is corrupt: {reason}")

    # -- reading -----------------------------------------------------------------

    def _open_key_folder(self, file_id: str) -> int:
        """A descriptor of ``file_id``'s folder, opened one component at a time.

        No component is followed through a symbolic link, prefix folders
        included, so a link planted anywhere below the root leads nowhere.
        """
        if "/" not in file_id:
            return _open_folder(self._folder(file_id))
        parent = self._open_parent(file_id, create=False)
        try:
            return _open_folder(file_id.rsplit("/", 1)[1], parent, shown=self._folder(file_id))
        finally:
            os.close(parent)

    def _open(self, file_id: str) -> tuple[LocalStoredFile, _Cached]:
        try:
            folder_fd = self._open_key_folder(file_id)
        except FileNotFoundError as exc:
            raise StoredFileNotFoundError(file_id, self.name) from exc
        name = METADATA
        try:
            with _locked(folder_fd, exclusive=False):
                raw_meta, meta_stat = _read_small(METADATA, folder_fd)
                name = EXTRA
                try:
                    raw_extra: bytes | None = _read_small(EXTRA, folder_fd)[0]
                except FileNotFoundError:
                    raw_extra = None
                name = CONTENT
                fileobj = open(CONTENT, "rb", buffering=0, opener=_opener(folder_fd))  # noqa: SIM115
        except FileNotFoundError as exc:
            raise StoredFileNotFoundError(file_id, self.name) from exc
        except IsADirectoryError as exc:
            if name == CONTENT:  # no content: no file, as ``exists`` says
                raise StoredFileNotFoundError(file_id, self.name) from exc
            raise self._corrupt(file_id, name, "a folder, not a file") from exc
        except OSError as exc:
            raise _nofollow_error(exc, os.path.join(self._folder(file_id), name)) from exc
        finally:
            os.close(folder_fd)
        try:
            stat = os.fstat(fileobj.fileno())
            if not stat_module.S_ISREG(stat.st_mode):  # a device, a pipe: no file
                raise StoredFileNotFoundError(file_id, self.name)
            name = METADATA
            meta = json.loads(raw_meta)
            name = EXTRA
            extra = json.loads(raw_extra) if raw_extra is not None else {}
            if not isinstance(meta, dict):
                name = METADATA
                raise TypeError("not a JSON object")
            if not isinstance(extra, dict):
                raise TypeError("not a JSON object")
            checksum = extra.get("checksum")
            if not isinstance(checksum, str) or extra.get("content_length") != stat.st_size:
                # Written by filedepot (or changed behind our back): a validator
                # from what identifies this version on disk, as web servers do.
                identity = f"{file_id}:{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ino}"
                checksum = hashlib.sha256(identity.encode()).hexdigest()
            custom = extra.get("metadata") or {}
            last_modified = parse_filedepot_time(meta.get("last_modified"))
            fields: dict[str, Any] = {
                "filename": str(meta.get("filename") or DEFAULT_FILENAME),
                "content_type": str(meta.get("content_type") or DEFAULT_CONTENT_TYPE),
                "last_modified": last_modified
                or datetime.fromtimestamp(int(stat.st_mtime), timezone.utc),
                "checksum": checksum,
                "metadata": {str(k): str(v) for k, v in dict(custom).items()},
            }
            entry = _Cached(_version(meta_stat), _version(stat), stat.st_size, fields)
            return self._local_file(file_id, fileobj, entry), entry
        except (ValueError, TypeError) as exc:
            fileobj.close()
            raise self._corrupt(file_id, name, exc) from exc
        except BaseException:
            fileobj.close()
            raise

    def _local_file(self, file_id: str, fileobj: IO[bytes], entry: _Cached) -> LocalStoredFile:
        on_whole_read = None
        if entry.length <= SMALL_FILE_LIMIT and self._cache.max_entries > 0:

            def on_whole_read(data: bytes) -> None:
                self._cache.put(file_id, dataclasses.replace(entry, data=data))

        return LocalStoredFile(
            file_id,
            fileobj,
            read_at=self._read_at,
            on_whole_read=on_whole_read,
            content_length=entry.length,
            storage=self,
            **entry.fields,
        )

    def _reuse(self, file_id: str, entry: _Cached) -> StoredFile | None:
        """The cached version, if it is still the current one; else ``None``.

        A ``stat``, and for files not held in memory an ``open`` and ``fstat``:
        metadata syscalls on an already resolved path, done on the event loop
        because they cost microseconds against the tens a thread hop costs (the
        trade nginx's ``open_file_cache`` makes). No content is read here, and no
        link is followed: a changed folder simply misses.
        """
        folder = self._folder(file_id) + os.sep
        try:
            if _version(os.stat(folder + METADATA, follow_symlinks=False)) != entry.metadata:
                return None
            if entry.data is not None:
                return BytesStoredFile(file_id, entry.data, storage=self, **entry.fields)
            fd = os.open(folder + CONTENT, _READ_FLAGS)
        except OSError:
            return None
        fileobj = open(fd, "rb", buffering=0)  # noqa: SIM115 - handed over
        try:
            current = _version(os.fstat(fileobj.fileno()))
        except OSError:
            current = None
        if current != entry.content:
            fileobj.close()
            return None
        return self._local_file(file_id, fileobj, entry)

    async def _get(self, file_id: str) -> StoredFile:
        cached = self._cache.get(file_id)
        if cached is not None:
            reused = self._reuse(file_id, cached)
            if reused is not None:
                return reused
            self._cache.discard(file_id)
        future = self._submit(self._open, file_id)
        try:
            stored, entry = await asyncio.shield(future)
        except asyncio.CancelledError:
            # The thread goes on and opens the file: close what it opens, or the
            # descriptor would leak with nobody left to close it.
            future.add_done_callback(_close_unclaimed)
            raise
        self._cache.put(file_id, entry)  # metadata only: content is cached on a whole read
        return stored

    def _state(self, file_id: str) -> bool | None:
        """``True`` for a complete file, ``False`` for none, ``None`` for a corrupt one.

        A folder holding metadata but no content (or the reverse) is no file: an
        interrupted write of another tool, consistently absent.
        """
        try:
            folder_fd = self._open_key_folder(file_id)
        except (FileNotFoundError, _LinkRefused):
            return False
        try:
            if not _is_regular(CONTENT, folder_fd):
                return False
            try:
                raw, _ = _read_small(METADATA, folder_fd)
            except FileNotFoundError:
                return False
            except OSError:  # a folder, a link, unreadable
                return None
            try:
                return isinstance(json.loads(raw), dict) or None
            except ValueError:
                return None
        finally:
            os.close(folder_fd)

    async def _exists(self, file_id: str) -> bool:
        return await self._run(self._state, file_id) is not False

    def _ordered(self, prefix: str, delimiter: str | None) -> Iterator[str]:
        """Ids (and, with a delimiter, folders) under ``prefix``, in code point order.

        Walks from the deepest prefix folder the prefix names. Each folder's names
        are sorted by the ids they stand for: a key's folder ``x`` for ``…x``, a
        prefix folder ``x\\`` for ``…x/``, so ``a-b`` < ``a/…`` < ``a0``.
        """
        *parents, partial = prefix.split("/")
        start = self._root + "".join(part + PREFIX_MARK + os.sep for part in parents)
        yield from self._walk(start, "".join(part + "/" for part in parents), partial, delimiter)

    def _walk(
        self, directory: str, logical: str, partial: str, delimiter: str | None
    ) -> Iterator[str]:
        try:
            with os.scandir(directory) as entries:
                found = []
                for entry in entries:
                    name = entry.name
                    if name.startswith(PREFIX_MARK):
                        continue  # the storage's own: staging, trash
                    if name.endswith(PREFIX_MARK):
                        segment = name[: -len(PREFIX_MARK)]
                        if segment.startswith(partial) and entry.is_dir(follow_symlinks=False):
                            found.append((logical + segment + "/", entry.path))
                    elif name.startswith(partial) and PREFIX_MARK not in name:
                        found.append((logical + name, ""))
        except (FileNotFoundError, NotADirectoryError):
            return
        found.sort()
        for name, subfolder in found:
            if not subfolder:
                if is_valid_file_id(name):
                    yield name
            elif delimiter is not None:
                yield name  # a folder, once; ends with "/", so never taken for an id
            else:
                yield from self._walk(subfolder, name, "", None)

    def _list_batch(self, names: Iterator[str], size: int) -> list[str]:
        batch: list[str] = []
        for name in names:
            if name.endswith("/"):
                batch.append(name)  # a folder of the delimiter form
            else:
                state = self._state(name)
                if state is None:
                    path = self._folder(name)
                    if name not in self._corrupt_logged and len(self._corrupt_logged) < 10_000:
                        self._corrupt_logged.add(name)
                        logger.warning(
                            "depotx: %s: skipping %s in listings: its metadata is corrupt",
                            self._label(),
                            path,
                        )
                    continue
                if not state:
                    continue
                batch.append(name)
            if len(batch) >= size:
                break
        return batch

    async def _list(
        self, prefix: str, start_after: str | None, delimiter: str | None
    ) -> AsyncIterator[str]:
        names = self._ordered(prefix, delimiter)
        batches = _batches(self, names)
        async for file_id in fold_listing(batches, prefix, start_after, delimiter):
            yield file_id

    # -- writing -----------------------------------------------------------------

    def _new_stage(self) -> str:
        """Create an empty staging folder for one write and return its path."""
        path = os.path.join(self._staging, uuid.uuid4().hex)
        for _ in range(8):
            try:
                os.mkdir(path)
                break
            except FileNotFoundError:
                # No staging area yet, or the last writer just removed it (empty).
                # Another writer may make it, or remove it, at the same moment:
                # either way, try again.
                with contextlib.suppress(FileExistsError):
                    os.makedirs(self._staging, exist_ok=True)
        else:
            os.mkdir(path)  # let the error speak
        if not stat_module.S_ISDIR(os.stat(self._staging, follow_symlinks=False).st_mode):
            _rmtree(path)
            raise _LinkRefused(self._staging)
        return path

    def _discard_stage(self, stage: str) -> None:
        _rmtree(stage)
        try:
            os.rmdir(self._staging)  # only while no other write is staged: it stays hidden
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                raise

    async def _write_content(
        self, path: str, upload: Upload, head: tuple[bytes, ...]
    ) -> tuple[int, str]:
        digest = new_hasher(self.checksum_algorithm)
        length = 0

        async def chunks() -> AsyncIterator[bytes]:
            for chunk in head:
                yield chunk
            async for chunk in upload.chunks:
                yield chunk

        async with aiofiles.open(path, "xb", executor=self._pool()) as out:
            async for chunk in chunks():
                if len(chunk) < _HASH_INLINE_LIMIT:
                    digest.update(chunk)
                    await out.write(chunk)
                else:
                    # hashlib releases the GIL: hash on one core while the
                    # other writes, instead of one after the other.
                    await asyncio.gather(out.write(chunk), self._run(digest.update, chunk))
                length += len(chunk)
        return length, digest.hexdigest()

    def _write_metadata(self, stage: str, upload: Upload, length: int, checksum: str) -> None:
        meta = {
            "filename": upload.filename,
            "content_type": upload.content_type,
            "content_length": length,
            "last_modified": format_filedepot_time(upload.stamp()),
        }
        extra = {"checksum": checksum, "content_length": length, "metadata": upload.metadata}
        for name, value in ((EXTRA, extra), (METADATA, meta)):
            with open(os.path.join(stage, name), "x", encoding="utf-8") as out:
                json.dump(value, out)
                if self.fsync:
                    out.flush()
                    os.fsync(out.fileno())
        os.close(os.open(os.path.join(stage, LOCK), os.O_WRONLY | os.O_CREAT | _CLOEXEC, 0o644))

    def _commit(
        self, file_id: str, stage: str, upload: Upload, length: int, checksum: str, mode: WriteMode
    ) -> None:
        """Make the staged write the file ``file_id``; the staging folder is gone afterwards."""
        try:
            if self.fsync:
                content_fd = os.open(os.path.join(stage, CONTENT), _READ_FLAGS)
                try:
                    os.fsync(content_fd)
                finally:
                    os.close(content_fd)
            self._write_metadata(stage, upload, length, checksum)
            for _ in range(8):
                if mode != "replace" and self._publish(file_id, stage):
                    return
                if mode == "create":
                    raise StoredFileExistsError(file_id, self.name)
                if self._swap_in(file_id, stage, required=mode == "replace"):
                    return
                # "put" found neither a folder to swap into nor a free name: a delete
                # and a create raced it; look again.
            raise BackendError(f"{self._label()}: {file_id!r} kept changing while being written")
        finally:
            if os.path.lexists(stage):
                self._discard_stage(stage)

    def _publish(self, file_id: str, stage: str) -> bool:
        """Rename the staged folder to ``file_id``; ``False`` if the id is taken.

        The rename goes through the descriptor of the key's parent folder, reached
        without following any link: a link planted among the prefix folders can
        never send a write out of ``storage_path``.
        """
        name = self._folder(file_id).rsplit(os.sep, 1)[-1]
        for _ in range(8):
            try:
                parent_fd = self._open_parent(file_id)
            except FileNotFoundError:
                continue  # a delete removed an empty prefix folder while it was walked
            try:
                os.rename(stage, name, dst_dir_fd=parent_fd)
            except FileNotFoundError:
                if os.path.lexists(stage):
                    continue  # a delete removed an empty prefix folder meanwhile: again
                raise
            except OSError as exc:
                if exc.errno in _TAKEN_ERRNOS:
                    return False
                raise
            else:
                if self.fsync:
                    _fsync_folder(parent_fd)
                break
            finally:
                os.close(parent_fd)
        else:
            raise BackendError(f"{self._label()}: {file_id!r}: its prefix folders kept vanishing")
        with contextlib.suppress(OSError):  # the staging area is hidden; only tidy if empty
            os.rmdir(self._staging)
        return True

    def _open_parent(self, file_id: str, *, create: bool = True) -> int:
        """A descriptor of the folder that holds ``file_id``'s folder.

        Each prefix folder is opened (and with ``create`` made if missing) inside
        the last one, never through a link; the root itself may be one.
        """
        fd = os.open(self.storage_path, os.O_RDONLY | _CLOEXEC)
        try:
            for part in file_id.split("/")[:-1]:
                component = part + PREFIX_MARK
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(component, dir_fd=fd)
                inner = _open_folder(
                    component, fd, shown=os.path.join(self.storage_path, component)
                )
                os.close(fd)
                fd = inner
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _remove_empty_prefix_folders(self, file_id: str) -> None:
        """After a delete, remove the prefix folders the key leaves empty."""
        parts = file_id.split("/")[:-1]
        while parts:
            path = self._root + "".join(part + PREFIX_MARK + os.sep for part in parts)
            try:
                os.rmdir(path)
            except OSError:
                return  # not empty (other keys, or a create in progress): keep it
            parts.pop()

    def _swap_in(self, file_id: str, stage: str, *, required: bool) -> bool:
        """Rename the staged files into the live folder, under its exclusive lock.

        ``False`` when there is no live folder (never was, or a delete won);
        with ``required`` that raises not-found instead.
        """
        path = self._folder(file_id)
        try:
            folder_fd = self._open_key_folder(file_id)
        except FileNotFoundError as exc:
            if required:
                raise StoredFileNotFoundError(file_id, self.name) from exc
            return False
        try:
            with _locked(folder_fd, exclusive=True):
                live = _is_live(path, folder_fd)
                if not live or (required and not _is_regular(METADATA, folder_fd)):
                    if required:
                        raise StoredFileNotFoundError(file_id, self.name)
                    return False
                stage_fd = _open_folder(stage)
                try:
                    # metadata.json last: filedepot readers, which take no lock,
                    # see the new content with the old metadata at worst.
                    for name in (CONTENT, EXTRA, METADATA):
                        os.rename(name, name, src_dir_fd=stage_fd, dst_dir_fd=folder_fd)
                finally:
                    os.close(stage_fd)
                if self.fsync:
                    _fsync_folder(folder_fd)
            return True
        finally:
            os.close(folder_fd)

    def _store_whole(self, file_id: str, data: bytes, upload: Upload, mode: WriteMode) -> None:
        stage = self._new_stage()
        try:
            with open(os.path.join(stage, CONTENT), "xb") as out:
                out.write(data)
        except BaseException:
            self._discard_stage(stage)
            raise
        digest = new_hasher(self.checksum_algorithm)
        digest.update(data)
        self._commit(file_id, stage, upload, len(data), digest.hexdigest(), mode)

    async def _store(self, file_id: str, upload: Upload, *, mode: WriteMode) -> None:
        if not self._swept:
            self._swept = True
            await self._sweep_at_start()
        first = await anext(upload.chunks, None)
        second = None if first is None else await anext(upload.chunks, None)
        if first is None or second is None:
            # The whole content is in hand (up to one chunk: avatars, most
            # documents): write, hash and commit it in a single thread hop.
            data = first or b""
            await commit_or_cancel(self._run(self._store_whole, file_id, data, upload, mode))
        else:
            stage = await self._run_to_end(self._new_stage)
            try:
                length, checksum = await self._write_content(
                    os.path.join(stage, CONTENT), upload, (first, second)
                )
            except BaseException:
                # Synchronous on purpose: this also runs on cancellation, and
                # must finish even though the task is being torn down.
                self._discard_stage(stage)
                raise
            # From here the commit thread owns the staging folder, whatever happens.
            await commit_or_cancel(
                self._run(self._commit, file_id, stage, upload, length, checksum, mode)
            )
        self._cache.discard(file_id)

    async def _compose(
        self,
        file_id: str,
        source: FileStorage,
        pieces: Sequence[StoredFile],
        upload: Upload,
        *,
        mode: WriteMode,
    ) -> bool:
        """Concatenate local ``pieces`` into a new file in one worker thread.

        The bytes are copied by the kernel (``copy_file_range``) and hashed from the
        page cache, instead of being read and written back through the event loop
        one chunk at a time; the commit is :meth:`_store`'s.
        """
        if not isinstance(source, LocalFileStorage) or not all(
            isinstance(piece, (LocalStoredFile, BytesStoredFile)) for piece in pieces
        ):
            return False
        file_id = self._validate_id(file_id)
        if not self._swept:
            self._swept = True
            await self._sweep_at_start()
        stage = await self._run_to_end(self._new_stage)
        try:
            length, checksum = await self._run(
                self._concatenate, os.path.join(stage, CONTENT), list(pieces)
            )
        except BaseException:
            self._discard_stage(stage)
            raise
        await commit_or_cancel(
            self._run(self._commit, file_id, stage, upload, length, checksum, mode)
        )
        self._cache.discard(file_id)
        return True

    def _concatenate(self, path: str, pieces: list[StoredFile]) -> tuple[int, str]:
        digest = new_hasher(self.checksum_algorithm)
        length = 0
        # Unbuffered: every write goes to the descriptor, in order with the kernel's copies.
        with open(path, "xb", buffering=0) as out:
            for piece in pieces:
                if isinstance(piece, BytesStoredFile):
                    digest.update(piece._data)
                    _write_all(out.fileno(), piece._data)
                    length += len(piece._data)
                    continue
                assert isinstance(piece, LocalStoredFile)
                length += _copy_and_hash(piece._fileobj.fileno(), out.fileno(), piece, digest)
        return length, digest.hexdigest()

    # -- deleting ----------------------------------------------------------------

    def _remove_folder(self, file_id: str) -> None:
        path = self._folder(file_id)
        try:
            folder_fd = self._open_key_folder(file_id)
        except FileNotFoundError:
            return
        except _LinkRefused:
            if os.path.islink(path):
                os.unlink(path)  # a planted link: remove the link, never what it points to
                return
            raise  # a link among the prefix folders: refuse to touch anything
        trash = f"{self._root}{TRASH}{uuid.uuid4().hex}"
        try:
            with _locked(folder_fd, exclusive=True):
                if not _is_live(path, folder_fd):
                    return  # another delete won
                # Renamed under the lock: the file disappears at once for readers,
                # and a replace waiting for the lock finds it gone. The trash name
                # is not a valid id, so ``list`` never shows it.
                os.rename(path, trash)
        finally:
            os.close(folder_fd)
        _remove_trash(trash)
        if "/" in file_id:
            self._remove_empty_prefix_folders(file_id)

    async def _delete(self, file_id: str) -> None:
        self._cache.discard(file_id)
        await self._run(self._remove_folder, file_id)

    # -- leftovers of crashed writers ------------------------------------------------

    def _sweep(self, older_than: timedelta, *, deep: bool) -> int:
        """Remove staging folders, trash and (``deep``) depotx 0.1 temporaries older than that."""
        now = time.time()
        limit = older_than.total_seconds()
        removed = 0
        candidates: list[str] = []
        try:
            with os.scandir(self._staging) as staged:
                candidates.extend(entry.path for entry in staged)
        except (FileNotFoundError, NotADirectoryError):
            pass
        removed += _sweep_pins(self._pins, now)
        try:
            with os.scandir(self.storage_path) as root:
                for entry in root:
                    if entry.name.startswith(TRASH):
                        candidates.append(entry.path)
                    elif (
                        deep
                        and is_valid_file_id(entry.name)
                        and entry.is_dir(follow_symlinks=False)
                    ):
                        with os.scandir(entry.path) as inside:
                            candidates.extend(
                                item.path
                                for item in inside
                                if item.name.startswith(_LEGACY_TEMP_PREFIXES)
                                and item.name.endswith(".tmp")
                            )
        except FileNotFoundError:
            return 0
        for path in candidates:
            if _age(path, now) < limit:
                continue
            if os.path.isdir(path) and not os.path.islink(path):
                _rmtree(path)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            removed += 1
            logger.info("depotx: %s: removed stale leftover %s", self._label(), path)
        with contextlib.suppress(OSError):
            os.rmdir(self._staging)
        return removed

    async def _sweep_at_start(self) -> None:
        """The first write sweeps the staging area: cheap, and crashes leave their mess there."""
        try:
            await self._run(functools.partial(self._sweep, self.temp_max_age, deep=False))
        except OSError as exc:
            logger.warning("depotx: %s: sweeping stale temporaries failed: %s", self._label(), exc)

    async def _cleanup(self, older_than: timedelta) -> int:
        """Sweep the staging area, deleted folders, and temporaries of depotx 0.1 in folders."""
        return await self._run(functools.partial(self._sweep, older_than, deep=True))
