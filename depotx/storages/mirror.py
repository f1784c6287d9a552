"""A storage that writes to several: moving storages with no downtime.

``backend = mirror`` with ``primary`` and ``mirrors`` (names of other configured
storages). Writes (create, put, replace, delete) go to the primary first, then
to every mirror as a copy of the same file (id, name, type, metadata and date
kept); reads come from the primary, and with ``read_fallback`` from a mirror for
a file the primary does not have yet. A mirror that fails is logged and its id
recorded (``repair_file``: one id a line, for ``depotx migrate --ids``), or fails
the write when ``strict``.

The recipe: configure a mirror of old → new, run ``depotx migrate old new`` for
the backlog, re-point the alias to new, drop the mirror.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

from .._content import Upload
from .._exceptions import (
    ConfigurationError,
    DepotError,
    StorageNotFoundError,
    StoredFileNotFoundError,
)
from .._files import StoredFile
from .base import FileStorage, WriteMode

__all__ = ["MirrorStorage"]

logger = logging.getLogger("depotx.mirror")


class MirrorStorage(FileStorage):
    """Write to ``primary`` and ``mirrors``, read from ``primary`` (see the module docs).

    :param primary: the name of the storage that is read and written first.
    :param mirrors: the names of the storages every write is copied to.
    :param strict: a mirror that fails makes the write fail (after the primary
        succeeded: the caller sees the error, the primary keeps the file).
    :param read_fallback: read (and ``exists``) from a mirror when the primary
        does not have the file.
    :param repair_file: a path where the id of every failed mirror write is
        appended, one a line, for ``depotx migrate PRIMARY MIRROR --ids FILE``.
    """

    def __init__(
        self,
        *,
        primary: str,
        mirrors: list[str] | str,
        strict: bool = False,
        read_fallback: bool = True,
        repair_file: str | None = None,
    ) -> None:
        names = [m.strip() for m in mirrors.split(",")] if isinstance(mirrors, str) else mirrors
        names = [name for name in names if name]
        if not primary or not names:
            raise ConfigurationError("a mirror needs a primary and at least one mirror")
        if primary in names or len(set(names)) != len(names):
            raise ConfigurationError("a mirror's primary and mirrors must be distinct storages")
        self.primary_name = primary
        self.mirror_names = names
        self.strict = strict
        self.read_fallback = read_fallback
        self.repair_file = repair_file
        #: Ids whose copy to a mirror failed in this process, by mirror name.
        self.failures: dict[str, list[str]] = {name: [] for name in names}
        self._primary: FileStorage | None = None
        self._mirrors: list[FileStorage] = []

    def _bind(self, resolve: Callable[[str], FileStorage]) -> None:
        try:
            self._primary = resolve(self.primary_name)
            self._mirrors = [resolve(name) for name in self.mirror_names]
        except StorageNotFoundError as exc:
            raise ConfigurationError(
                f"mirror: {exc}; configure the storages a mirror names before the mirror"
            ) from exc
        if any(isinstance(s, MirrorStorage) for s in (self._primary, *self._mirrors)):
            raise ConfigurationError("a mirror cannot name another mirror")
        self.inline_active_content = self._primary.inline_active_content

    @property
    def primary(self) -> FileStorage:
        if self._primary is None:
            raise ConfigurationError(
                "this mirror is not bound to its storages: add it to a StorageManager "
                "(configure or register) after them"
            )
        return self._primary

    def _pairs(self) -> list[tuple[str, FileStorage]]:
        if self._primary is None:
            return []  # unbound: ``primary`` says so on first use
        return list(zip(self.mirror_names, self._mirrors, strict=True))

    # -- reads: the primary, then (with read_fallback) the mirrors ------------------------

    async def _get(self, file_id: str) -> StoredFile:
        try:
            return await self.primary.get(file_id)
        except StoredFileNotFoundError:
            if not self.read_fallback:
                raise
        for _, mirror in self._pairs():
            try:
                return await mirror.get(file_id)
            except StoredFileNotFoundError:
                continue
        raise StoredFileNotFoundError(file_id, self.name)

    async def _exists(self, file_id: str) -> bool:
        if await self.primary.exists(file_id):
            return True
        if self.read_fallback:
            for _, mirror in self._pairs():
                if await mirror.exists(file_id):
                    return True
        return False

    async def _list(
        self, prefix: str, start_after: str | None, delimiter: str | None
    ) -> AsyncIterator[str]:
        """The primary's listing: a mirror holds the same files, or is catching up."""
        async for file_id in self.primary.list(
            prefix, start_after=start_after, delimiter=delimiter
        ):
            yield file_id

    def public_url(self, file_id: str) -> str | None:
        return self.primary.public_url(self._validate_id(file_id))

    # -- writes: the primary first, then a copy to every mirror ----------------------------

    async def _store(self, file_id: str, upload: Upload, *, mode: WriteMode) -> None:
        await self.primary._write(file_id, upload, mode=mode)
        for name, mirror in self._pairs():
            try:
                async with await self.primary.get(file_id) as stored:
                    await mirror._write_copy(file_id, stored, mode="put")
            except (DepotError, OSError) as exc:
                self._failed(name, file_id, "copy", exc)

    async def _delete(self, file_id: str) -> None:
        await self.primary.delete(file_id)
        for name, mirror in self._pairs():
            try:
                await mirror.delete(file_id)
            except (DepotError, OSError) as exc:
                self._failed(name, file_id, "delete", exc)

    def _failed(self, mirror: str, file_id: str, action: str, exc: BaseException) -> None:
        self.failures[mirror].append(file_id)
        logger.warning(
            "depotx: mirror %s: %s of %r to %r failed (recorded for repair): %s",
            self._label(),
            action,
            file_id,
            mirror,
            exc,
        )
        if self.repair_file is not None:
            with open(self.repair_file, "a", encoding="utf-8") as out:
                out.write(file_id + "\n")
        if self.strict:
            raise exc

    async def aclose(self) -> None:
        """The storages a mirror names belong to the manager, which closes them."""

    def __repr__(self) -> str:
        return f"<MirrorStorage {self.primary_name!r} -> {self.mirror_names!r}>"
