"""``http.response.pathsend``: local files sent by the ASGI server itself (Granian).

The server opens the path after the send returns, so the path handed to it is a
hard link to the version depotx opened (``LocalFileStorage.pin``): a replace in
between cannot make it send other bytes than the headers describe.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from depotx import LocalFileStorage, StorageManager
from depotx.storages import local as local_module
from tests._net import free_port, listening, stop_process

KiB = 1024


async def _answer(app: Any, path: str, extensions: dict[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "extensions": extensions,
    }
    await app(scope, receive, send)
    return sent


async def test_the_path_is_the_version_opened_and_goes_away(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_module, "PATHSEND_HOLD", 0.2)
    manager = StorageManager()
    storage = manager.configure("files", {"depot.storage_path": str(tmp_path)})
    assert isinstance(storage, LocalFileStorage)
    old = os.urandom(256 * KiB)
    file_id = await storage.create(old, "v1.bin")
    app = manager.make_middleware(None)
    sent = await _answer(app, f"/depot/files/{file_id}", {"http.response.pathsend": {}})
    start, body = sent
    assert start["status"] == 200
    assert dict(start["headers"])[b"content-length"] == str(len(old)).encode()
    assert body["type"] == "http.response.pathsend"
    pinned = Path(body["path"])
    # Replaced before the server opened the path: the path still holds what was described.
    await storage.replace(file_id, b"new and shorter", "v2.bin")
    assert pinned.read_bytes() == old
    assert [i async for i in storage.list()] == [file_id]  # the link is never listed
    await asyncio.sleep(0.4)
    assert not pinned.exists()  # removed after the hold

    # Without the extension, small files, ranges and HEAD: answered here, as before.
    plain = await _answer(app, f"/depot/files/{file_id}", {})
    assert plain[1]["type"] == "http.response.body"
    small = await storage.create(b"tiny", "t.txt")
    tiny = await _answer(app, f"/depot/files/{small}", {"http.response.pathsend": {}})
    assert tiny[1] == {"type": "http.response.body", "body": b"tiny"}
    off = manager.make_middleware(None, pathsend=False)
    big = await storage.create(old, "big.bin")
    streamed = await _answer(off, f"/depot/files/{big}", {"http.response.pathsend": {}})
    assert streamed[1]["type"] == "http.response.body"
    await manager.aclose()


async def test_cleanup_removes_links_a_dead_process_left(tmp_path: Path) -> None:
    storage = LocalFileStorage(tmp_path)
    file_id = await storage.create(os.urandom(100 * KiB), "a.bin")
    folder = tmp_path / local_module.PATHSEND
    folder.mkdir()
    async with await storage.get(file_id) as stored:
        kept = Path(storage.pin(stored) or "")
    stale = folder / "1000-deadbeef"
    os.link(kept, stale)
    assert await storage.cleanup() >= 1
    assert not stale.exists()
    assert kept.exists()  # its removal time has not come


def test_granian_sends_the_file_itself(tmp_path: Path) -> None:
    granian = shutil.which("granian", path=str(Path(sys.executable).parent))
    if granian is None:
        pytest.skip("granian is not installed (pip install granian): pathsend not run")
    root = tmp_path / "files"
    data = os.urandom(3 * 1024 * KiB + 5)
    storage = LocalFileStorage(root)
    file_id = asyncio.run(storage.create(data, "big.bin"))
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "pathsend_app.py").write_text(
        textwrap.dedent(
            f"""
            from depotx import StorageManager

            manager = StorageManager()
            manager.configure("files", {{"depot.storage_path": {str(root)!r}}})


            async def fallback(scope, receive, send):
                raise RuntimeError("not reached")


            app = manager.make_middleware(fallback)
            """
        )
    )
    port = free_port()
    process = subprocess.Popen(
        [
            *(granian, "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port)),
            *("--workers", "1", "pathsend_app:app"),
        ],
        cwd=app_dir,
        env={**os.environ, "PYTHONPATH": str(app_dir)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert listening(port, timeout=30), "granian did not start"
        url = f"http://127.0.0.1:{port}/depot/files/{file_id}"
        for _ in range(3):
            response = httpx.get(url, timeout=30)
            assert response.status_code == 200
            assert hashlib.sha256(response.content).digest() == hashlib.sha256(data).digest()
        pins = list((root / local_module.PATHSEND).iterdir())
        assert pins, "the file went through pathsend: its links are there"
        part = httpx.get(url, headers={"Range": "bytes=10-19"}, timeout=30)
        assert (part.status_code, part.content) == (206, data[10:20])  # ranges: streamed here
    finally:
        stop_process(process)
