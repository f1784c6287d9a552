"""Content checksums: which hash a storage computes, and how it is written down.

``StoredFile.checksum`` (and so the ETag) is the hash of the content, computed
while it is stored. SHA-256 is the default and is written as bare hex, as every
file stored so far has it, so existing files keep their ETags. Other algorithms
are written self-describing, ``<algorithm>:<hex>``: a checksum always says what
it is. BLAKE3 (``depot.checksum = blake3``, extra ``depotx[blake3]``) is a
cryptographic hash several times faster than SHA-256, for stores where hashing
limits ``create``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from typing import Any, Protocol

from ._exceptions import ConfigurationError, MissingDependencyError

__all__ = [
    "ALGORITHMS",
    "DEFAULT_ALGORITHM",
    "Hasher",
    "check_algorithm",
    "is_content_checksum",
    "new_hasher",
]

ALGORITHMS = ("sha256", "blake3")
DEFAULT_ALGORITHM = "sha256"
_CONTENT_CHECKSUM = re.compile(r"(?:blake3:)?[0-9a-f]{64}")


class Hasher(Protocol):
    def update(self, data: bytes, /) -> Any: ...

    def hexdigest(self) -> str: ...


def check_algorithm(name: object) -> str:
    """``name`` if depotx can hash with it here, else a clear error."""
    algorithm = str(name).strip().lower()
    if algorithm not in ALGORITHMS:
        raise ConfigurationError(
            f"unknown checksum algorithm {name!r}: use one of {', '.join(ALGORITHMS)}"
        )
    if algorithm == "blake3" and importlib.util.find_spec("blake3") is None:
        raise MissingDependencyError("blake3", "blake3")
    return algorithm


class _Blake3:
    """BLAKE3, written ``blake3:<hex>``; large updates hashed on every core."""

    __slots__ = ("_hash",)

    def __init__(self) -> None:
        import blake3

        self._hash = blake3.blake3(max_threads=blake3.blake3.AUTO)

    def update(self, data: bytes, /) -> None:
        self._hash.update(data)

    def hexdigest(self) -> str:
        return "blake3:" + str(self._hash.hexdigest())


def new_hasher(algorithm: str) -> Hasher:
    """A fresh hasher whose ``hexdigest()`` is the checksum as stored."""
    if algorithm == "blake3":
        return _Blake3()
    return hashlib.sha256()


def is_content_checksum(checksum: str) -> bool:
    """Whether ``checksum`` is a hash of the content (not an ETag or a made-up identity)."""
    return _CONTENT_CHECKSUM.fullmatch(checksum) is not None
