"""The few MongoDB driver calls the GridFS backend makes, for motor and PyMongo's async API alike.

Motor (``AsyncIOMotorClient``) is in maintenance; PyMongo's native async API
(``pymongo.AsyncMongoClient``, PyMongo 4.13+) is its successor. Their
collection and cursor methods have the same shape (awaitable ``find_one``,
``insert_many``, ``update_many``...; cursors iterated with ``async for``), so
the backend only needs this module for what differs: which client class to
create, how a client and a cursor are closed, and where the bucket's two
collections live. Everything is typed ``Any`` here on purpose: the objects come
from one of two drivers (or mongomock-motor in tests) that share no base class.
"""

from __future__ import annotations

import inspect
from typing import Any, Literal
from urllib.parse import unquote

from bson import ObjectId
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

_pymongo_client: Any
_motor_client: Any
try:
    from pymongo import AsyncMongoClient as _pymongo_client
except ImportError:  # PyMongo older than 4.10: motor is the only async driver
    _pymongo_client = None

try:
    from motor.motor_asyncio import AsyncIOMotorClient as _motor_client
except ImportError:  # PyMongo's async API alone is enough
    _motor_client = None

__all__ = [
    "AVAILABLE_DRIVERS",
    "BulkWriteError",
    "Driver",
    "DuplicateKeyError",
    "ObjectId",
    "PyMongoError",
    "bucket_collections",
    "close_client",
    "close_cursor",
    "create_client",
    "default_database_name",
    "is_duplicate_key",
]

Driver = Literal["auto", "pymongo", "motor"]

#: The async drivers importable here, preferred first.
AVAILABLE_DRIVERS: tuple[str, ...] = tuple(
    name
    for name, cls in (("pymongo", _pymongo_client), ("motor", _motor_client))
    if cls is not None
)


def create_client(uri: str, driver: Driver) -> Any:
    """A client for ``uri``; neither driver connects before the first operation."""
    name = AVAILABLE_DRIVERS[0] if driver == "auto" else driver
    if name == "pymongo" and _pymongo_client is not None:
        return _pymongo_client(uri)
    if name == "motor" and _motor_client is not None:
        return _motor_client(uri)
    raise ValueError(
        f"driver {driver!r} is not installed; available: {', '.join(AVAILABLE_DRIVERS)}"
    )


async def close_client(client: Any) -> None:
    """Close a client: PyMongo's async ``close()`` is a coroutine, motor's is not."""
    result = client.close()
    if inspect.isawaitable(result):
        await result


async def close_cursor(cursor: Any) -> None:
    """Release a server-side cursor early (a ranged read that stops before the end)."""
    result = cursor.close()
    if inspect.isawaitable(result):
        await result


def bucket_collections(database: Any, bucket: str) -> tuple[Any, Any]:
    """The GridFS bucket's ``<bucket>.files`` and ``<bucket>.chunks`` collections."""
    return database[f"{bucket}.files"], database[f"{bucket}.chunks"]


def default_database_name(uri: str) -> str | None:
    """The database named in a MongoDB URI's path, parsed without I/O.

    ``pymongo.uri_parser.parse_uri`` resolves ``mongodb+srv`` hosts through DNS,
    which a constructor must not do; the path is all we need, and its syntax is
    the same for both schemes (``mongodb://hosts/database?options``).
    """
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme not in ("mongodb", "mongodb+srv"):
        raise ValueError(f"not a MongoDB URI (mongodb:// or mongodb+srv://): {uri!r}")
    _, slash, path = rest.partition("/")
    if not slash:
        return None
    name = unquote(path.split("?", 1)[0])
    return name or None


def is_duplicate_key(exc: BaseException) -> bool:
    """Whether a write failed on a unique index (alone, or first in a bulk insert)."""
    if isinstance(exc, DuplicateKeyError):
        return True
    if isinstance(exc, BulkWriteError):
        errors = exc.details.get("writeErrors") or []
        return bool(errors) and errors[0].get("code") == 11000
    return False
