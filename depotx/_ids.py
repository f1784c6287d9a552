"""File ids and keys: validation and generation, shared by every backend.

Ids come from URLs and databases, so they are untrusted input. One check here
means no backend has to think about traversal, control characters or absurd
lengths, and a hostile id is refused before any I/O.

A file id is either generated (a uuid; GridFS makes ObjectIds) or a **key** the
application chose, such as ``uploads/2026/report.pdf``. The rules for keys
(docs/keys.md has them in one table):

- UTF-8, 1 to 1,024 bytes in all (S3's limit);
- segments separated by ``/``: no empty segment (so no leading, trailing or
  doubled ``/``), no ``.`` or ``..`` segment, each segment at most 255 bytes;
- no backslash, no control character (C0, C1, DEL), no bidirectional override
  or isolate (they make a name display as another), no unpaired surrogate.

Generated ids are keys too, so stores written by filedepot keep working.
"""

from __future__ import annotations

import inspect
import re
import uuid

from ._exceptions import InvalidFileIdError

__all__ = [
    "MAX_FILE_ID_BYTES",
    "MAX_SEGMENT_BYTES",
    "is_valid_file_id",
    "new_file_id",
    "split_path",
    "validate_file_id",
]

#: The longest key, in UTF-8 bytes: S3's limit on object keys.
MAX_FILE_ID_BYTES = 1024
#: The longest segment of a key, in UTF-8 bytes: a file name on every filesystem.
MAX_SEGMENT_BYTES = 255

# Characters no key may hold: backslash, C0, DEL, C1, bidi controls, surrogates.
_FORBIDDEN_RE = re.compile(
    "[\\\\\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


#: Ids found valid lately (up to ``_KNOWN_LIMIT`` of them, each at most
#: ``_KNOWN_LENGTH`` characters): serving checks one id three times a request (the
#: route, the storage's public method, the backend), and the same ids come back.
_KNOWN_VALID: dict[str, None] = {}
_KNOWN_LIMIT = 8192
_KNOWN_LENGTH = 160


def _problem(file_id: str) -> str | None:
    """Why ``file_id`` is not a valid key, or ``None`` if it is one."""
    if file_id in _KNOWN_VALID:
        return None
    problem = _find_problem(file_id)
    if problem is None and len(file_id) <= _KNOWN_LENGTH:
        if len(_KNOWN_VALID) >= _KNOWN_LIMIT:
            _KNOWN_VALID.clear()  # start over: cheaper than tracking the oldest
        _KNOWN_VALID[file_id] = None
    return problem


def _find_problem(file_id: str) -> str | None:
    if not file_id:
        return "a file id cannot be empty"
    found = _FORBIDDEN_RE.search(file_id)
    if found is not None:
        return (
            f"malformed file id {file_id!r}: {found.group()!r} is not allowed (no backslash, "
            "control or bidirectional-override characters)"
        )
    size = len(file_id.encode("utf-8"))
    if size > MAX_FILE_ID_BYTES:
        return f"file id is {size} bytes long; at most {MAX_FILE_ID_BYTES} are allowed"
    for segment in file_id.split("/"):
        if not segment:
            return (
                f"malformed file id {file_id!r}: empty segment (no leading, trailing or "
                "doubled '/')"
            )
        if segment in (".", ".."):
            return f"malformed file id {file_id!r}: '.' and '..' segments are not allowed"
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            return (
                f"malformed file id {file_id!r}: a segment is longer than {MAX_SEGMENT_BYTES} bytes"
            )
    return None


def is_valid_file_id(file_id: object) -> bool:
    return isinstance(file_id, str) and _problem(file_id) is None


def validate_file_id(file_id: object) -> str:
    """Return ``file_id`` unchanged, or raise :class:`InvalidFileIdError` saying why."""
    if isinstance(file_id, str):
        problem = _problem(file_id)
        if problem is None:
            return file_id
        raise InvalidFileIdError(problem)
    _refuse_coroutine(file_id, "a file id")
    raise InvalidFileIdError(f"a file id must be a string, not {type(file_id).__name__}")


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
    """Split ``"<storage>/<fileid>"`` at its first ``/``, validating the file id.

    The id may hold ``/`` itself: ``"docs/uploads/2026/report.pdf"`` is the key
    ``uploads/2026/report.pdf`` in storage ``docs``.
    """
    _refuse_coroutine(path, "a '<storage>/<fileid>' path")
    if not isinstance(path, str) or "/" not in path:
        raise InvalidFileIdError(f"expected a path of the form '<storage>/<fileid>', got {path!r}")
    storage, _, file_id = path.partition("/")
    if not storage:
        raise InvalidFileIdError(f"path {path!r} names no storage")
    return storage, validate_file_id(file_id)
