"""What reading a ``FileType``/``ImageType`` column gives: an immutable description of the file.

The value is what the row recorded when the file was stored, so listing rows
never touches the storage; :meth:`AttachedFile.open` goes to the storage only
when the content is wanted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._exceptions import ValidationError

if TYPE_CHECKING:
    from .._files import StoredFile
    from .._manager import StorageManager

__all__ = ["AttachedFile", "AttachedImage", "Thumbnail"]


@dataclass(frozen=True)
class Thumbnail:
    """A resized copy of an attached image, stored in the same storage."""

    name: str
    path: str
    width: int | None = None
    height: int | None = None
    manager: StorageManager | None = field(default=None, compare=False, repr=False)

    @property
    def url(self) -> str:
        """Where a client fetches the thumbnail (``url_for``: public URL or the middleware)."""
        return _manager_of(self.manager).url_for(self.path)


def _manager_of(manager: StorageManager | None) -> StorageManager:
    if manager is not None:
        return manager
    from .._manager import DepotManager

    return DepotManager


@dataclass(frozen=True)
class AttachedFile:
    """A file attached to a row: its path and what was known of it when it was stored.

    Immutable, so SQLAlchemy sees a change only when a new value is assigned,
    never when a field is edited in place. ``filename``, ``content_type``,
    ``size`` and ``checksum`` are ``None`` only for a ``"storage/fileid"`` path
    assigned through a sync ``Session``, which records the path without I/O;
    :meth:`open` always returns the full metadata.
    """

    path: str
    storage: str
    file_id: str
    filename: str | None = None
    content_type: str | None = None
    size: int | None = None
    checksum: str | None = None
    manager: StorageManager | None = field(default=None, compare=False, repr=False, hash=False)

    @property
    def url(self) -> str:
        """Where a client fetches the file: the public URL, else the middleware route."""
        return _manager_of(self.manager).url_for(self.path)

    async def open(self) -> StoredFile:
        """Open the stored file; close it (``async with``) when done."""
        return await _manager_of(self.manager).get_file(self.path)

    async def read(self) -> bytes:
        """The whole content, in memory: for small files; stream big ones with :meth:`open`."""
        async with await self.open() as stored:
            return await stored.read()

    def to_dict(self) -> dict[str, Any]:
        """The JSON stored in the database column."""
        value: dict[str, Any] = {
            "storage": self.storage,
            "file_id": self.file_id,
            "path": self.path,
            "filename": self.filename,
            "content_type": self.content_type,
            "size": self.size,
            "checksum": self.checksum,
        }
        return value

    def all_paths(self) -> list[str]:
        """Every stored file that belongs to this value (the file, and thumbnails of images)."""
        return [self.path]


@dataclass(frozen=True)
class AttachedImage(AttachedFile):
    """An attached image: adds its dimensions and the paths of its thumbnails."""

    width: int | None = None
    height: int | None = None
    thumbnails: Mapping[str, Thumbnail] = field(default_factory=dict, hash=False)

    async def get_dimensions(self) -> tuple[int, int]:
        """``(width, height)``; read from the stored image if the row does not record them."""
        if self.width is not None and self.height is not None:
            return self.width, self.height
        from ._images import measure_stored

        async with await self.open() as stored:
            try:
                return await measure_stored(stored, max_pixels=None)
            except ValidationError as exc:
                raise ValidationError("image", f"{self.path} is not a readable image") from exc

    def to_dict(self) -> dict[str, Any]:
        value = super().to_dict()
        value["width"] = self.width
        value["height"] = self.height
        value["thumbnails"] = {
            name: {"path": thumb.path, "width": thumb.width, "height": thumb.height}
            for name, thumb in self.thumbnails.items()
        }
        return value

    def all_paths(self) -> list[str]:
        return [self.path, *(thumb.path for thumb in self.thumbnails.values())]
