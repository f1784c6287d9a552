"""Bits the benchmark servers share."""

from __future__ import annotations

from starlette.types import Send

NOT_FOUND = b"Not Found"


async def not_found(send: Send) -> None:
    """A minimal 404, so a wrong URL shows up as errors in the load generator."""
    await send(
        {
            "type": "http.response.start",
            "status": 404,
            "headers": [(b"content-length", str(len(NOT_FOUND)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": NOT_FOUND})
