"""File id validation and generation, shared by every backend.

Ids come from URLs and databases, so they are untrusted input. One strict check
here means no backend has to think about traversal (``..``, ``/``), control
characters or absurd lengths, and a hostile id is refused before any I/O.
"""

from __future__ import annotations

import inspect
import re
import uuid

from ._exceptions import InvalidFileIdError

__all__ = [
    "MAX_FILE_ID_LENGTH",
    "is_valid_file_id",
    "new_file_id",
    "split_path",
    "validate_file_id",
]

#: Longer than any id a backend generates (uuid: 36, ObjectId: 24) and short
#: enough to be a single path component on every filesystem.
MAX_FILE_ID_LENGTH = 200

# A leading alphanumeric excludes "", ".", ".." and hidden-file tricks; the
# rest of the alphabet excludes separators, whitespace and control characters.
_FILE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def is_valid_file_id(file_id: object) -> bool:
    return (
        isinstance(file_id, str)
        and 0 < len(file_id) <= MAX_FILE_ID_LENGTH
        and _FILE_ID_RE.fullmatch(file_id) is not None
    )


def validate_file_id(file_id: object) -> str:
    """Return ``file_id`` unchanged, or raise :class:`InvalidFileIdError`."""
    if is_valid_file_id(file_id):
        return file_id  # type: ignore[return-value]
    _refuse_coroutine(file_id, "a file id")
    if not isinstance(file_id, str):
        raise InvalidFileIdError(f"a file id must be a string, not {type(file_id).__name__}")
    if len(file_id) > MAX_FILE_ID_LENGTH:
        raise InvalidFileIdError(
            f"file id is {len(file_id)} characters long; at most {MAX_FILE_ID_LENGTH} are allowed"
        )
    raise InvalidFileIdError(
        f"malformed file id {file_id!r}: ids are letters, digits, '.', '_' and '-', "
        "starting with a letter or digit"
    )


def _refuse_coroutine(value: object, what: str) -> None:
    """``url_for(storage.create(...))``: say what went wrong, not "malformed id '<coroutine>'"."""
    if inspect.iscoroutine(value):
        value.close()  # never awaited now: close it so Python does not warn about it too
        raise InvalidFileIdError(
            f"{what} was expected, got a coroutine ({value.__qualname__}): did you forget await?"
        )


def new_file_id() -> str:
    """A fresh uuid4 string, the id format filedepot uses for local, memory and S3."""
    return str(uuid.uuid4())


def split_path(path: str) -> tuple[str, str]:
    """Split ``"<storage>/<fileid>"`` into its parts, validating the file id."""
    _refuse_coroutine(path, "a '<storage>/<fileid>' path")
    if not isinstance(path, str) or path.count("/") != 1:
        raise InvalidFileIdError(f"expected a path of the form '<storage>/<fileid>', got {path!r}")
    storage, file_id = path.split("/")
    if not storage:
        raise InvalidFileIdError(f"path {path!r} names no storage")
    return storage, validate_file_id(file_id)
