"""The column types: ``FileType`` and ``ImageType``, and how their values are stored as JSON.

The column only describes where files go and which rules they must pass; the
work of storing and deleting files happens in the session events of
``_sqlalchemy_lifecycle``. Everything here is resolved at use time, so a column
can be declared before the storages are configured, and an alias re-pointed later.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import CompileError
from sqlalchemy.types import TypeDecorator, TypeEngine

from .._exceptions import ConfigurationError, DepotError, ValidationError
from .._ids import split_path
from .._manager import StorageManager
from ..storages.base import FileStorage
from ._attached import AttachedFile, AttachedImage, Thumbnail
from ._images import require_pillow

__all__ = ["AsyncSessionRequiredError", "FileType", "ImageType", "PendingFile"]


class AsyncSessionRequiredError(DepotError, RuntimeError):
    """File content was assigned where it cannot be stored: a sync ``Session``.

    Content is uploaded during the flush, which needs the event loop that an
    ``AsyncSession`` provides. With a sync ``Session``, upload first and assign
    the ``"storage/fileid"`` path.
    """

    def __init__(self) -> None:
        super().__init__(
            "file content can only be stored by an AsyncSession, whose flush runs on the event "
            "loop; with a sync Session upload the file first "
            "(file_id = await storage.create(content)) and assign its path, "
            "row.attachment = f'{storage_name}/{file_id}'"
        )


@dataclass(frozen=True, eq=False)
class PendingFile:
    """What a file attribute holds between the assignment and the flush.

    Either ``content`` to store (bytes, a file, an ``UploadFile``, a
    ``FileIntent``, a ``StoredFile``, an ``AttachedFile`` to copy), the
    ``path`` of a file that is already stored, or the ``token`` of a direct
    upload to finalize. The flush replaces it with an :class:`AttachedFile`.
    """

    content: Any = None
    path: str | None = None
    token: str | None = None


def _has_json(dialect: Dialect) -> bool:
    try:
        dialect.type_compiler_instance.process(JSON())
    except (CompileError, NotImplementedError):
        return False
    return True


def _content_type_matches(content_type: str, allowed: Iterable[str]) -> bool:
    essence = content_type.split(";", 1)[0].strip().lower()
    major = essence.split("/", 1)[0]
    for pattern in allowed:
        pattern = pattern.strip().lower()
        if pattern == essence or pattern in ("*", "*/*") or pattern == f"{major}/*":
            return True
    return False


class FileType(TypeDecorator[AttachedFile]):
    """A column holding one file: ``mapped_column(FileType(storage="docs"))``.

    ``storage`` is a storage or alias name looked up in ``manager`` (default
    ``depotx.DepotManager``) each time a file is stored, a configured
    :class:`~depotx.FileStorage`, or ``None`` for the default storage.
    ``max_size`` (bytes) and ``allowed_types`` (``"application/pdf"``,
    ``"image/*"``; checked on the type detected from the content, not the
    client's claim) are enforced before anything is stored.

    In the database the value is JSON (a ``JSON`` column where the dialect has
    one, text elsewhere); in Python it is an :class:`AttachedFile`. The
    options live in the model, not the schema, so the type renders as plain
    ``FileType()`` in migrations.
    """

    impl = JSON
    cache_ok = True

    def __init__(
        self,
        storage: str | FileStorage | None = None,
        *,
        manager: StorageManager | None = None,
        max_size: int | None = None,
        allowed_types: Iterable[str] | None = None,
    ) -> None:
        super().__init__()
        if storage is not None and not isinstance(storage, (str, FileStorage)):
            raise ConfigurationError(
                f"storage must be a storage name, an alias or a FileStorage, not {storage!r}"
            )
        if max_size is not None and max_size < 0:
            raise ConfigurationError(f"max_size must be positive, got {max_size}")
        self._storage = storage
        self._manager = manager
        self.max_size = max_size
        self.allowed_types: tuple[str, ...] | None = (
            tuple(allowed_types) if allowed_types is not None else None
        )

    # -- storage resolution --------------------------------------------------------

    @property
    def manager(self) -> StorageManager:
        """The manager names are resolved through (``depotx.DepotManager`` unless given)."""
        if self._manager is not None:
            return self._manager
        from .._manager import DepotManager

        return DepotManager

    def resolve_storage(self) -> tuple[str, FileStorage]:
        """The storage files go to now, and its real name (aliases resolved) for their paths."""
        manager = self.manager
        storage = self._storage
        if isinstance(storage, FileStorage):
            name = storage.name
            if name is None or name not in manager.names or manager.get(name) is not storage:
                raise ConfigurationError(
                    f"{storage!r} is not configured in {manager!r}: a FileType storage must be "
                    "registered (manager.configure) so its files have 'storage/fileid' paths"
                )
            return name, storage
        name = manager.resolve_alias(storage) if storage is not None else manager.get_default()
        return name, manager.get(name)

    def reference(self, path: str) -> AttachedFile:
        """A value naming an already stored file, built without I/O (aliases resolved)."""
        storage_name, file_id = split_path(path)
        real = self.manager.resolve_alias(storage_name)
        return self._attached(path=f"{real}/{file_id}", storage=real, file_id=file_id)

    def _attached(self, **fields: Any) -> AttachedFile:
        return AttachedFile(manager=self._manager, **fields)

    # -- validation ------------------------------------------------------------------

    def check_size(self, size: int) -> None:
        if self.max_size is not None and size > self.max_size:
            raise ValidationError(
                "max_size", f"the file has {size} bytes, more than the {self.max_size} allowed"
            )

    def check_type(self, content_type: str) -> None:
        allowed = self.allowed_types
        if allowed is not None and not _content_type_matches(content_type, allowed):
            raise ValidationError(
                "allowed_types",
                f"the content is {content_type.split(';')[0]}, not one of {', '.join(allowed)}",
            )

    # -- database conversion -----------------------------------------------------------

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if _has_json(dialect):
            return dialect.type_descriptor(JSON(none_as_null=True))
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if isinstance(value, PendingFile):
            raise DepotError(
                "a pending file reached the database unstored: assign files through an "
                "ORM Session (import depotx.ext.sqlalchemy before flushing)"
            )
        if isinstance(value, AttachedFile):
            data = value.to_dict()
        elif isinstance(value, Mapping):  # Core inserts may pass the JSON itself
            data = dict(value)
        else:
            raise TypeError(f"{type(self).__name__} stores AttachedFile values, not {value!r}")
        return data if _has_json(dialect) else json.dumps(data)

    def process_result_value(self, value: Any, dialect: Dialect) -> AttachedFile | None:
        if value is None:
            return None
        if isinstance(value, (str, bytes)):
            value = json.loads(value)
        return self.from_dict(value)

    def from_dict(self, data: Mapping[str, Any]) -> AttachedFile:
        return self._attached(**_common_fields(data))

    def process_literal_param(self, value: Any, dialect: Dialect) -> str:
        return json.dumps(self.process_bind_param(value, dialect))

    @property
    def python_type(self) -> type[Any]:
        return AttachedFile

    def __repr__(self) -> str:
        # The schema only needs the JSON column; storage and rules stay in the
        # model, so migrations render a plain, importable FileType().
        return f"{type(self).__name__}()"


def _common_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "path": data["path"],
        "storage": data["storage"],
        "file_id": data["file_id"],
        "filename": data.get("filename"),
        "content_type": data.get("content_type"),
        "size": data.get("size"),
        "checksum": data.get("checksum"),
    }


class ImageType(FileType):
    """A column holding an image, with its dimensions and optional thumbnails.

    ``thumbnails={"small": (128, 128)}`` stores a resized copy (aspect ratio
    kept) per name beside the image; ``max_pixels`` refuses images with more
    pixels (decompression bombs) before anything is stored. Needs Pillow
    (``pip install 'depotx[image]'``).
    """

    cache_ok = True

    def __init__(
        self,
        storage: str | FileStorage | None = None,
        *,
        manager: StorageManager | None = None,
        max_size: int | None = None,
        allowed_types: Iterable[str] | None = None,
        max_pixels: int | None = None,
        thumbnails: Mapping[str, tuple[int, int]] | None = None,
    ) -> None:
        require_pillow()
        super().__init__(storage, manager=manager, max_size=max_size, allowed_types=allowed_types)
        self.max_pixels = max_pixels
        sizes: dict[str, tuple[int, int]] = {}
        for name, size in (thumbnails or {}).items():
            width, height = size
            if not name or "/" in name or width <= 0 or height <= 0:
                raise ConfigurationError(f"invalid thumbnail {name!r}: {size!r}")
            sizes[name] = (int(width), int(height))
        self.thumbnail_sizes: tuple[tuple[str, tuple[int, int]], ...] = tuple(sizes.items())

    def _attached(self, **fields: Any) -> AttachedImage:
        return AttachedImage(manager=self._manager, **fields)

    @property
    def python_type(self) -> type[Any]:
        return AttachedImage

    def from_dict(self, data: Mapping[str, Any]) -> AttachedImage:
        thumbnails = {
            name: Thumbnail(
                name=name,
                path=thumb["path"],
                width=thumb.get("width"),
                height=thumb.get("height"),
                manager=self._manager,
            )
            for name, thumb in (data.get("thumbnails") or {}).items()
        }
        return AttachedImage(
            manager=self._manager,
            width=data.get("width"),
            height=data.get("height"),
            thumbnails=thumbnails,
            **_common_fields(data),
        )
