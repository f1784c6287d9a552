"""Cutting an upload's chunk stream into parts of one size: S3 parts, Azure blocks, GCS chunks."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any

__all__ = ["PartReader", "large_bodies", "no_chunks"]


class PartReader:
    """Cut a chunk stream into parts of ``size`` bytes (the last one may be shorter)."""

    def __init__(self, chunks: AsyncIterator[bytes], size: int, digest: Any | None) -> None:
        self._chunks = chunks
        self._size = size
        self.digest = digest
        # Chunks as they came, joined once per part: appending to a bytearray and
        # slicing it copied every 8 MiB part three times on the event loop.
        self._pending: list[bytes] = []
        self._have = 0
        self.exhausted = False

    async def read(self) -> bytes:
        while not self.exhausted and self._have < self._size:
            chunk = await anext(self._chunks, None)
            if chunk is None:
                self.exhausted = True
                break
            if self.digest is not None:
                self.digest.update(chunk)
            self._pending.append(chunk)
            self._have += len(chunk)
        if self._have <= self._size:
            parts, self._pending, self._have = self._pending, [], 0
            return b"".join(parts)
        # The last chunk straddles the part boundary: split only that one.
        overflow = self._have - self._size
        last = self._pending[-1]
        cut = len(last) - overflow
        parts = [*self._pending[:-1], last[:cut]]
        self._pending, self._have = [last[cut:]], overflow
        return b"".join(parts)

    @property
    def done(self) -> bool:
        return self.exhausted and not self._have


@contextlib.contextmanager
def large_bodies() -> Iterator[None]:
    """Silence aiohttp's advice against sending a part (up to megabytes) as bytes.

    A part is one ``bytes`` object already, whatever aiohttp is given (the Azure
    SDK passes each block so too); copying it into the socket is what sending it
    costs anyway.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Sending a large body directly", category=ResourceWarning
        )
        yield


async def no_chunks() -> AsyncIterator[bytes]:
    """An empty chunk stream: the ``Upload`` of a copy made inside the service, whose
    name, type and metadata are written but whose bytes never pass through the app."""
    return
    yield b""  # pragma: no cover
