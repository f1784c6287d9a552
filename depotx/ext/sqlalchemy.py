"""File and image columns for SQLAlchemy that follow the session (extra ``sqlalchemy``).

::

    from depotx.ext.sqlalchemy import FileType, ImageType

    class Document(Base):
        __tablename__ = "documents"
        id: Mapped[int] = mapped_column(primary_key=True)
        file: Mapped[AttachedFile | None] = mapped_column(FileType(storage="docs"))

    doc = Document(file=upload)   # bytes, a file, an UploadFile, a FileIntent, "storage/fileid"
    session.add(doc)
    await session.commit()        # stored during the flush; removed again on rollback
    doc.file.url, doc.file.size, await doc.file.read()

Importing this module installs the session events (once, for every
``Session``); they do nothing for sessions whose models have no file column.
"""

from __future__ import annotations

try:
    import sqlalchemy  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    from .._exceptions import MissingDependencyError

    raise MissingDependencyError("sqlalchemy", "sqlalchemy") from exc

from ._attached import AttachedFile, AttachedImage, Thumbnail
from ._sqlalchemy_lifecycle import delete_orphans
from ._sqlalchemy_types import AsyncSessionRequiredError, FileType, ImageType, PendingFile

__all__ = [
    "AsyncSessionRequiredError",
    "AttachedFile",
    "AttachedImage",
    "FileType",
    "ImageType",
    "PendingFile",
    "Thumbnail",
    "delete_orphans",
]

# One public home, as httpx does: reprs, docs and Alembic's rendered imports
# name depotx.ext.sqlalchemy, never the private module a class lives in.
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
