"""The depotx error tree.

Every error raised by depotx derives from :class:`DepotError`, and each one also
derives from the built-in exception a caller would naturally catch, so code that
does not know about depotx keeps working::

    DepotError
    ├── ConfigurationError        (ValueError)   bad or unknown option, name configured twice
    ├── StorageNotFoundError      (LookupError)  no storage or alias by that name
    ├── InvalidFileIdError        (ValueError)   a file id or path that no storage could hold
    ├── StoredFileNotFoundError   (FileNotFoundError)  a well-formed id with no file behind it
    ├── StoredFileExistsError     (FileExistsError)    a create-only write found the id taken
    ├── StoredFileChangedError    (RuntimeError) the file was replaced after it was opened
    ├── MissingDependencyError    (ImportError)  an optional extra is not installed
    ├── ValidationError           (ValueError)   content refused by a rule (size, type, ...)
    └── BackendError              (OSError)      the storage itself failed; the cause is chained

Errors that say "you asked for something wrong" (configuration, ids, missing
files) are raised before any I/O where possible; :class:`BackendError` always
carries the original exception as ``__cause__`` so nothing is lost in logs.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "ConfigurationError",
    "DepotError",
    "InvalidFileIdError",
    "MissingDependencyError",
    "StorageNotFoundError",
    "StoredFileChangedError",
    "StoredFileExistsError",
    "StoredFileNotFoundError",
    "UploadTokenError",
    "ValidationError",
]


class DepotError(Exception):
    """Base class of every error depotx raises."""


class ConfigurationError(DepotError, ValueError):
    """A storage was configured with an unknown option, a bad value or a taken name."""


class StorageNotFoundError(DepotError, LookupError):
    """No storage or alias is configured under the requested name."""

    def __init__(self, name: str, known: list[str] | None = None) -> None:
        self.name = name
        hint = f"; configured: {', '.join(sorted(known))}" if known else "; none is configured"
        super().__init__(f"no storage named {name!r}{hint}")


class InvalidFileIdError(DepotError, ValueError):
    """A file id (or ``"storage/fileid"`` path) that cannot name a stored file.

    Raised before any I/O, so a hostile id never reaches a backend.
    """


class StoredFileNotFoundError(DepotError, FileNotFoundError):
    """A well-formed file id that names no file in the storage."""

    def __init__(self, file_id: str, storage: str | None = None) -> None:
        self.file_id = file_id
        where = f" in storage {storage!r}" if storage else ""
        super().__init__(f"file {file_id!r} does not exist{where}")


class StoredFileExistsError(DepotError, FileExistsError):
    """A create-only write found its id already taken; the existing file is untouched.

    Of several concurrent creates of one id exactly one wins; the others raise
    this and store nothing.
    """

    def __init__(self, file_id: str, storage: str | None = None) -> None:
        self.file_id = file_id
        where = f" in storage {storage!r}" if storage else ""
        super().__init__(f"file {file_id!r} already exists{where}")


class StoredFileChangedError(DepotError, RuntimeError):
    """The file was replaced after this ``StoredFile`` was opened.

    A backend that cannot pin a version when it opens a file (an object store
    without versioning) checks the version when it reads, and raises this
    instead of yielding a single byte of another version. Nothing was read yet
    when it is raised by the first chunk, so the caller can simply ``get`` the
    file again (the middleware does, before sending headers).
    """

    def __init__(self, file_id: str, storage: str | None = None) -> None:
        self.file_id = file_id
        where = f" in storage {storage!r}" if storage else ""
        super().__init__(f"file {file_id!r}{where} was replaced while it was being read")


class MissingDependencyError(DepotError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, extra: str, package: str) -> None:
        self.extra = extra
        self.package = package
        super().__init__(
            f"this feature needs {package!r}, which is not installed: pip install 'depotx[{extra}]'"
        )


class ValidationError(DepotError, ValueError):
    """Content was refused by a validation rule; the message names the rule."""

    def __init__(self, rule: str, message: str) -> None:
        self.rule = rule
        super().__init__(f"{rule}: {message}")


class UploadTokenError(DepotError, ValueError):
    """A direct-upload token that is malformed, tampered with, expired or for another storage.

    The message says which; the token itself is never repeated in it.
    """


class BackendError(DepotError, OSError):
    """The storage backend failed (disk, network, service); the cause is chained."""
