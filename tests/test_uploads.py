"""``receive_upload``: multipart streamed straight into a storage, each byte written once."""

from __future__ import annotations

import tempfile
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import ClientDisconnect

from depotx import FileStorage, MemoryFileStorage, ValidationError, receive_upload

BOUNDARY = "depotxboundary"


def part(name: str, body: bytes, filename: str | None = None, ctype: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n"
    if ctype:
        head += f"Content-Type: {ctype}\r\n"
    return head.encode() + b"\r\n" + body + b"\r\n"


def form(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


class Body:
    """An ASGI receive() over ``data`` in messages of ``size``, counting what was read."""

    def __init__(self, data: bytes | Iterator[bytes], size: int = 65536) -> None:
        if isinstance(data, bytes):
            data = iter([data[i : i + size] for i in range(0, len(data), size)] or [b""])
        self.messages = data
        self.sent = 0
        self.disconnect_after: int | None = None

    async def __call__(self) -> dict[str, Any]:
        if self.disconnect_after is not None and self.sent >= self.disconnect_after:
            return {"type": "http.disconnect"}
        chunk = next(self.messages, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        self.sent += 1
        return {"type": "http.request", "body": chunk, "more_body": True}


def scope(content_type: str = f"multipart/form-data; boundary={BOUNDARY}") -> dict[str, Any]:
    return {"type": "http", "method": "POST", "headers": [(b"content-type", content_type.encode())]}


async def ids(storage: FileStorage) -> set[str]:
    return {file_id async for file_id in storage.list()}


async def test_files_and_fields_are_received(storage: FileStorage) -> None:
    body = form(
        part("title", "Quarterly report é".encode()),
        part("file", b"%PDF-1.4 report body", "C:\\Users\\me\\report.pdf", "text/plain"),
        part("note", b"second field"),
    )
    received = await receive_upload((scope(), Body(body, size=7)), storage)
    assert received.fields == {"title": "Quarterly report é", "note": "second field"}
    assert len(received.files) == 1
    stored_file = received.files[0]
    assert (stored_file.field, stored_file.filename, stored_file.size) == ("file", "report.pdf", 20)
    assert received.file_ids == [stored_file.file_id]
    async with await storage.get(stored_file.file_id) as stored:
        assert await stored.read() == b"%PDF-1.4 report body"
        assert stored.filename == "report.pdf"
        assert stored.content_type == "application/pdf"  # sniffed, not the client's claim


async def test_no_temporary_file_and_flat_memory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("receive_upload must not spool to a temporary file")

    monkeypatch.setattr(tempfile, "SpooledTemporaryFile", refuse)
    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)

    class Discarding(MemoryFileStorage):
        """Counts what it is given and keeps nothing: memory is the parser's alone."""

        async def _store(self, file_id: str, upload: Any, *, mode: str) -> None:
            self.total = 0
            async for chunk in upload.chunks:
                self.total += len(chunk)

    block = bytes(range(256)) * 256  # 64 KiB
    size = 64 * 1024 * 1024
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n'
    )

    def messages() -> Iterator[bytes]:
        yield head.encode()
        for _ in range(size // len(block)):
            yield block
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    storage = Discarding()
    tracemalloc.start()
    try:
        received = await receive_upload((scope(), Body(messages())), storage)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received.files[0].size == size
    assert storage.total == size
    assert peak < 8 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB for a 64 MiB upload"


async def test_the_size_limit_stops_the_upload_while_streaming(storage: FileStorage) -> None:
    block = b"x" * 65536
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'

    def endless() -> Iterator[bytes]:
        yield head.encode()
        while True:
            yield block

    body = Body(endless())
    with pytest.raises(ValidationError) as info:
        await receive_upload((scope(), body), storage, max_size=1024 * 1024)
    assert info.value.rule == "max_size"
    assert body.sent <= 1 + 1024 * 1024 // len(block) + 1, "it stopped at the limit"
    assert await ids(storage) == set()


async def test_a_disconnect_mid_file_leaves_nothing(storage: FileStorage) -> None:
    data = form(part("file", b"y" * 500_000, "a.bin"))
    body = Body(data, size=65536)
    body.disconnect_after = 3
    with pytest.raises(ClientDisconnect):
        await receive_upload((scope(), body), storage)
    assert await ids(storage) == set()


async def test_several_files_and_their_limits(storage: FileStorage) -> None:
    body = form(part("a", b"one", "1.txt"), part("b", b"two", "2.txt"))
    received = await receive_upload((scope(), Body(body)), storage, field=None, max_files=None)
    assert [f.filename for f in received.files] == ["1.txt", "2.txt"]
    for stored in received.files:
        await storage.delete(stored.file_id)
    with pytest.raises(ValidationError) as info:
        await receive_upload((scope(), Body(body)), storage, field=None, max_files=1)
    assert info.value.rule == "max_files"
    assert await ids(storage) == set(), "the first file is removed when the second is refused"
    with pytest.raises(ValidationError, match="unexpected file field 'a'"):
        await receive_upload((scope(), Body(body)), storage, field="file")
    assert await ids(storage) == set()


async def test_an_empty_file_input_is_skipped(storage: FileStorage) -> None:
    body = form(part("file", b"", ""), part("title", b"x"))
    received = await receive_upload((scope(), Body(body)), storage)
    assert received.files == []
    assert received.fields == {"title": "x"}


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b"{}"),
        ("multipart/form-data", b"no boundary"),
        (f"multipart/form-data; boundary={BOUNDARY}", b"--" + BOUNDARY.encode() + b"\r\nbroken"),
    ],
)
async def test_malformed_requests_are_validation_errors(
    storage: FileStorage, content_type: str, body: bytes
) -> None:
    with pytest.raises(ValidationError):
        await receive_upload((scope(content_type), Body(body)), storage)
    assert await ids(storage) == set()


async def test_the_fastapi_example_streams_uploads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from depotx import DepotManager

    monkeypatch.setenv("EXAMPLE_FILES", str(tmp_path / "files"))
    DepotManager.clear()
    try:
        path = Path(__file__).parent.parent / "examples" / "fastapi_app.py"
        spec = importlib.util.spec_from_file_location("fastapi_example", path)
        assert spec is not None
        assert spec.loader is not None
        example = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(example)
        transport = httpx.ASGITransport(app=example.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.post(
                "/upload-streamed",
                files={"file": ("notes.txt", b"streamed once")},
                data={"title": "notes"},
            )
            assert response.status_code == 201, response.text
            assert response.json()["title"] == "notes"
            download = await client.get(response.json()["url"])
            assert download.content == b"streamed once"
    finally:
        await DepotManager.aclose()
        DepotManager.clear()
