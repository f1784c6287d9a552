"""depotx: async, Depot-style file storage for Python web apps.

Configure named storages once, store and read files through one async API,
and serve them with an ASGI middleware::

    from depotx import DepotManager

    DepotManager.configure("default", {"depot.storage_path": "./files"})
    storage = DepotManager.get()
    file_id = await storage.create(b"hello", filename="hello.txt")
    async with await storage.get(file_id) as stored:
        print(stored.filename, stored.content_type, await stored.read())
"""

from ._exceptions import (
    BackendError,
    ConfigurationError,
    DepotError,
    InvalidFileIdError,
    MissingDependencyError,
    StorageNotFoundError,
    StoredFileChangedError,
    StoredFileExistsError,
    StoredFileNotFoundError,
    UploadTokenError,
    ValidationError,
)
from ._files import FileIntent, StoredFile
from ._manager import DepotManager, StorageManager
from .middleware import DepotMiddleware
from .migrate import MigrationProgress, MigrationReport, migrate
from .responses import StoredFileResponse
from .storages.base import FileStorage
from .storages.local import LocalFileStorage
from .storages.memory import MemoryFileStorage
from .uploads import (
    ReceivedFile,
    ReceivedUpload,
    TusApp,
    TusUpload,
    UploadTicket,
    receive_upload,
)

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "ConfigurationError",
    "DepotError",
    "DepotManager",
    "DepotMiddleware",
    "FileIntent",
    "FileStorage",
    "InvalidFileIdError",
    "LocalFileStorage",
    "MemoryFileStorage",
    "MigrationProgress",
    "MigrationReport",
    "MissingDependencyError",
    "ReceivedFile",
    "ReceivedUpload",
    "StorageManager",
    "StorageNotFoundError",
    "StoredFile",
    "StoredFileChangedError",
    "StoredFileExistsError",
    "StoredFileNotFoundError",
    "StoredFileResponse",
    "TusApp",
    "TusUpload",
    "UploadTicket",
    "UploadTokenError",
    "ValidationError",
    "__version__",
    "migrate",
    "receive_upload",
]
