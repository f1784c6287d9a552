"""Storage backends. ``s3`` and ``gridfs`` need their extras and are imported on demand."""

from .base import FileStorage
from .local import LocalFileStorage
from .memory import MemoryFileStorage

__all__ = ["FileStorage", "LocalFileStorage", "MemoryFileStorage"]
