"""The ``depotx serve`` app: through the ASGI transport, and as a real uvicorn server."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from depotx import StorageManager
from depotx.server import create_app
from tests._uvicorn import running_server

MiB = 1024 * 1024

# -- the app through httpx's ASGI transport --------------------------------------------------


@pytest.fixture
async def manager(tmp_path: Path) -> AsyncIterator[StorageManager]:
    manager = StorageManager()
    manager.configure("default", {"depot.storage_path": str(tmp_path / "files")})
    yield manager
    await manager.aclose()


def asgi_client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


async def stored_ids(manager: StorageManager) -> list[str]:
    return [file_id async for file_id in manager.get().list()]


async def test_upload_returns_json_and_the_file_downloads(manager: StorageManager) -> None:
    async with asgi_client(create_app(manager)) as client:
        response = await client.post(
            "/files", files={"file": ("notes.txt", b"hello depotx\n", "text/plain")}
        )
        assert response.status_code == 201
        data = response.json()
        assert set(data) >= {"id", "path", "url", "filename", "content_type", "size"}
        assert data["path"] == f"default/{data['id']}"
        assert data["url"] == f"http://testserver/depot/default/{data['id']}"
        assert response.headers["location"] == data["url"]
        assert data["filename"] == "notes.txt"
        assert data["size"] == 13
        assert data["content_type"].startswith("text/plain")
        download = await client.get(data["url"])
        assert download.content == b"hello depotx\n"
        listed = (await client.get("/files")).json()
        assert [item["id"] for item in listed] == [data["id"]]


async def test_index_page_lists_files_with_links_and_escapes_names(
    manager: StorageManager,
) -> None:
    file_id = await manager.get().create(b"x", '<script>alert("x")</script>.txt', "text/plain")
    async with asgi_client(create_app(manager)) as client:
        page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'enctype="multipart/form-data"' in page.text
    assert "<script>alert" not in page.text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;.txt" in page.text
    assert f'href="http://testserver/depot/default/{file_id}"' in page.text


async def test_the_page_shows_thumbnails_of_images_only_and_runs_only_its_own_scripts(
    manager: StorageManager,
) -> None:
    png = await manager.get().create(b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "a.png")
    svg = await manager.get().create(b'<svg xmlns="http://www.w3.org/2000/svg"/>', "b.svg")
    async with asgi_client(create_app(manager)) as client:
        page = await client.get("/")
        assert page.headers["cache-control"] == "no-store"
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert f'<img src="http://testserver/depot/default/{png}"' in page.text
        assert f'<img src="http://testserver/depot/default/{svg}"' not in page.text
        assert page.text.count('class="delete"') == 2
        assert (await client.get("/static/page.js")).status_code == 200
        script = await client.get("/static/vendor/tus.min.js")
        assert script.text.startswith("/*! tus-js-client 4.3.1")
        assert (await client.get("/static/vendor/tus-js-client.LICENSE")).status_code == 200


async def test_delete_a_file_by_its_id(manager: StorageManager) -> None:
    file_id = await manager.get().create(b"bye", "bye.txt", file_id="old/bye.txt")
    async with asgi_client(create_app(manager)) as client:
        assert (await client.delete("/files/old/bye.txt")).status_code == 204
        assert await stored_ids(manager) == []
        missing = await client.delete(f"/files/{file_id}")
        assert missing.status_code == 404
        assert missing.json() == {"error": "no file 'old/bye.txt' in storage 'default'"}
        assert (await client.delete("/files/x?storage=nope")).status_code == 404
        assert (await client.delete("/files/a/../b")).status_code == 404
        keep = await manager.get().create(b"keep", "keep.txt")
        cross_site = await client.delete(
            f"/files/{keep}", headers={"Origin": "https://evil.example"}
        )
        assert cross_site.status_code == 403
        assert await stored_ids(manager) == [keep]


async def test_storages_are_switched_by_a_query_parameter(manager: StorageManager) -> None:
    manager.configure("archive", {"depot.backend": "memory"})
    manager.set_secret_key("s3cr3t-for-tests")
    manager.configure("vault", {"depot.backend": "memory", "depot.private": "true"})
    await manager.get("archive").create(b"old", "old.txt")
    await manager.get("vault").create(b"hidden", "hidden.txt")
    async with asgi_client(create_app(manager)) as client:
        page = await client.get("/?storage=archive")
        assert 'data-storage="archive"' in page.text
        assert '<option value="archive" selected>' in page.text
        assert "old.txt" in page.text
        listed = (await client.get("/files?storage=archive")).json()
        assert [item["path"].split("/")[0] for item in listed] == ["archive"]
        vault = (await client.get("/files?storage=vault")).json()
        assert "?expires=" in vault[0]["url"]  # private: signed links, for an hour
        assert (await client.get(vault[0]["url"])).content == b"hidden"
        assert (await client.get("/?storage=nope")).status_code == 404
        assert (await client.get("/files?storage=nope")).json()["error"].startswith("no storage")
        posted = await client.post(
            "/files?storage=archive&next=page", files={"file": ("n.txt", b"new")}
        )
        assert posted.status_code == 303
        assert posted.headers["location"] == "/?storage=archive"


async def test_form_upload_redirects_back_to_the_page(manager: StorageManager) -> None:
    async with asgi_client(create_app(manager)) as client:
        response = await client.post(
            "/files?next=page", files={"file": ("a.bin", b"\x00\x01", "application/octet-stream")}
        )
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    assert len(await stored_ids(manager)) == 1


async def test_upload_without_a_file_field_is_400(manager: StorageManager) -> None:
    async with asgi_client(create_app(manager)) as client:
        response = await client.post("/files", data={"name": "x"})
    assert response.status_code == 400
    assert await stored_ids(manager) == []


async def test_upload_over_the_limit_is_413_and_stores_nothing(manager: StorageManager) -> None:
    async with asgi_client(create_app(manager, max_upload_size=1000)) as client:
        ok = await client.post("/files", files={"file": ("ok.bin", b"a" * 1000)})
        assert ok.status_code == 201
        # Just over: the parser reads it (within the multipart slack), the size check refuses.
        over = await client.post("/files", files={"file": ("over.bin", b"a" * 1001)})
        assert over.status_code == 413
        assert "1000" in over.json()["error"]
        # Declared far too large: refused from Content-Length before reading.
        declared = await client.post("/files", files={"file": ("big.bin", b"a" * (200 * 1024))})
        assert declared.status_code == 413

        # Chunked, no Content-Length: stopped while streaming.
        async def body() -> AsyncIterator[bytes]:
            yield b'--xx\r\nContent-Disposition: form-data; name="file"; filename="c.bin"\r\n\r\n'
            for _ in range(100):
                yield b"a" * 4096
            yield b"\r\n--xx--\r\n"

        chunked = await client.post(
            "/files", content=body(), headers={"Content-Type": "multipart/form-data; boundary=xx"}
        )
        assert chunked.status_code == 413
    assert len(await stored_ids(manager)) == 1  # only the upload within the limit


# -- hardening --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "status", "level"),
    [
        (OSError(28, "No space left on device"), 507, "ERROR"),
        (OSError(5, "Input/output error"), 502, "ERROR"),
    ],
)
async def test_storage_failures_are_mapped_with_one_log_line(
    manager: StorageManager,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    failure: OSError,
    status: int,
    level: str,
) -> None:
    storage = manager.get()

    async def failing(*args: Any, **kwargs: Any) -> None:
        raise failure

    monkeypatch.setattr(storage, "_store", failing)
    async with asgi_client(create_app(manager)) as client:
        with caplog.at_level("INFO", logger="depotx"):
            response = await client.post("/files", files={"file": ("a.txt", b"data")})
    assert response.status_code == status
    assert "Traceback" not in response.text
    failures = [r for r in caplog.records if "upload failed" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].levelname == level
    assert failures[0].exc_info is None, "one line, no traceback"
    assert await stored_ids(manager) == []


async def test_a_refused_upload_is_400(
    manager: StorageManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    from depotx import ValidationError

    async def refusing(*args: Any, **kwargs: Any) -> None:
        raise ValidationError("s3-metadata", "filename too long for S3 metadata")

    monkeypatch.setattr(manager.get(), "_store", refusing)
    async with asgi_client(create_app(manager)) as client:
        response = await client.post("/files", files={"file": ("a" * 1900 + ".txt", b"data")})
    assert response.status_code == 400
    assert "s3-metadata" in response.json()["error"]


async def test_a_client_disconnect_mid_upload_is_info_and_stores_nothing(
    manager: StorageManager, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(manager)
    messages = [
        {
            "type": "http.request",
            "body": b'--xx\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n\r\n'
            + b"a" * 1000,
            "more_body": True,
        },
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/files",
        "raw_path": b"/files",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"multipart/form-data; boundary=xx"),
        ],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    with caplog.at_level("INFO", logger="depotx"):
        await app(scope, receive, send)
    assert [r.levelname for r in caplog.records if "disconnected" in r.getMessage()] == ["INFO"]
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    assert await stored_ids(manager) == []


async def test_the_access_log_cannot_be_forged(
    manager: StorageManager, caplog: pytest.LogCaptureFixture
) -> None:
    async with asgi_client(create_app(manager)) as client:
        with caplog.at_level("INFO", logger="depotx.server"):
            await client.get('/x%0a127.0.0.1:1 "GET /admin HTTP/1.1" 200')
    lines = [r.getMessage() for r in caplog.records if r.name == "depotx.server"]
    assert len(lines) == 1
    assert "\n" not in lines[0]
    assert "\\x0a" in lines[0]


async def test_serve_answers_only_its_own_host_and_same_origin_posts(
    manager: StorageManager,
) -> None:
    app = create_app(manager, allowed_hosts=["127.0.0.1", "localhost"])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
        assert (await client.get("/")).status_code == 200
        rebound = await client.get("/", headers={"Host": "evil.example:8000"})
        assert rebound.status_code == 400
        cross = await client.post(
            "/files",
            files={"file": ("a.txt", b"x")},
            headers={"Origin": "https://evil.example"},
        )
        assert cross.status_code == 403
        same = await client.post(
            "/files", files={"file": ("a.txt", b"x")}, headers={"Origin": "http://127.0.0.1:8000"}
        )
        assert same.status_code == 201
        assert same.json()["url"].startswith("http://127.0.0.1:8000/")
    assert len(await stored_ids(manager)) == 1


async def test_the_listing_pages_and_never_loses_a_new_file(
    manager: StorageManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    from depotx import server as server_module

    monkeypatch.setattr(server_module, "PAGE_SIZE", 10)
    import json

    storage = manager.get()
    root = Path(storage.storage_path)  # type: ignore[attr-defined]
    for n in range(25):
        file_id = await storage.create(b"x", f"f{n:02}.txt")
        meta = root / file_id / "metadata.json"
        data = json.loads(meta.read_text())
        data["last_modified"] = f"2020-01-01 00:00:{n:02}"  # older than the fresh upload
        meta.write_text(json.dumps(data))
    async with asgi_client(create_app(manager)) as client:
        fresh = (await client.post("/files", files={"file": ("fresh.txt", b"new")})).json()
        first = await client.get("/files")
        assert first.headers["x-total-count"] == "26"
        assert 'rel="next"' in first.headers["link"]
        assert first.json()[0]["id"] == fresh["id"]  # newest first
        seen = []
        for page in (1, 2, 3):
            seen += [item["id"] for item in (await client.get(f"/files?page={page}")).json()]
        assert len(seen) == len(set(seen)) == 26
        by_name = await client.get("/files?sort=name&page=3")
        assert len(by_name.json()) == 6
        assert 'rel="prev"' in by_name.headers["link"]
        page = (await client.get("/")).text
        assert "1&ndash;10 of 26 files" in page
        assert 'id="next"' in page


# -- a real uvicorn server ----------------------------------------------------------------------


class Server:
    def __init__(self, process: subprocess.Popen[str], url: str, root: Path) -> None:
        self.process = process
        self.url = url
        self.root = root

    def rss_peak(self) -> int:
        """Peak resident memory of the server process so far, in bytes (VmHWM)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024

    def open_paths(self) -> list[str]:
        fd_dir = Path(f"/proc/{self.process.pid}/fd")
        paths = []
        for fd in fd_dir.iterdir():
            try:
                paths.append(os.readlink(fd))
            except OSError:
                continue  # closed while we looked
        return paths


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if not Path("/proc/self/status").exists():
        pytest.skip("measuring the server's memory needs Linux /proc")
    root = tmp_path_factory.mktemp("served")
    with running_server(root) as (process, url):
        yield Server(process, url, root)


class GeneratedFile:
    """``size`` bytes made up on the fly (a file-like object for httpx), hashed as they go."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.block = hashlib.sha256(b"depotx").digest() * (MiB // 32)  # 1 MiB pattern
        self.offset = 0
        self.digest = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        if n <= 0:
            return b""
        start = self.offset % len(self.block)
        chunk = (
            (self.block[start:] + self.block)[:n]
            if start + n > len(self.block)
            else (self.block[start : start + n])
        )
        # Vary the content along the file so a misplaced chunk changes the hash.
        chunk = (self.offset // MiB).to_bytes(4, "big") + chunk[4:] if len(chunk) > 4 else chunk
        self.offset += n
        self.left -= n
        self.digest.update(chunk)
        return chunk


def test_upload_and_download_over_real_http(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.post("/files", files={"file": ("hi.txt", b"hi there", "text/plain")})
        assert response.status_code == 201
        data = response.json()
        assert data["url"].startswith(server.url + "/depot/default/")
        download = client.get(data["url"])
        assert download.status_code == 200
        assert download.content == b"hi there"
        assert download.headers["etag"].startswith('"')
        again = client.get(data["url"], headers={"If-None-Match": download.headers["etag"]})
        assert again.status_code == 304
        assert again.content == b""
        ranged = client.get(data["url"], headers={"Range": "bytes=3-"})
        assert ranged.status_code == 206
        assert ranged.content == b"there"
        head = client.head(data["url"])
        assert head.headers["content-length"] == "8"
        assert head.content == b""
        page = client.get("/")
        assert "hi.txt" in page.text


@pytest.fixture(scope="module")
def big_file(server: Server) -> dict[str, Any]:
    """A 200 MiB upload, streamed from a generator (never held in the test's memory)."""
    size = 200 * MiB
    source = GeneratedFile(size)
    baseline = server.rss_peak()
    with httpx.Client(base_url=server.url, timeout=120) as client:
        response = client.post(
            "/files", files={"file": ("big.bin", source, "application/octet-stream")}
        )
    assert response.status_code == 201, response.text
    data = response.json()
    assert data["size"] == size
    return {
        "url": data["url"],
        "id": data["id"],
        "size": size,
        "sha256": source.digest.hexdigest(),
        "baseline": baseline,
        "after_upload": server.rss_peak(),
    }


def test_large_file_streams_with_bounded_server_memory(
    server: Server, big_file: dict[str, Any]
) -> None:
    digest = hashlib.sha256()
    received = 0
    with (
        httpx.Client(timeout=120) as client,
        client.stream("GET", big_file["url"]) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-length"] == str(big_file["size"])
        for chunk in response.iter_bytes():
            digest.update(chunk)
            received += len(chunk)
    assert received == big_file["size"]
    assert digest.hexdigest() == big_file["sha256"]
    peak = server.rss_peak()
    growth = peak - big_file["baseline"]
    print(
        f"\nserver RSS peak: baseline {big_file['baseline'] / MiB:.1f} MiB, "
        f"after 200 MiB upload {big_file['after_upload'] / MiB:.1f} MiB, "
        f"after 200 MiB download {peak / MiB:.1f} MiB (growth {growth / MiB:.1f} MiB)"
    )
    # Flat memory: far below the file size (chunks are 1 MiB; the upload spools to disk).
    assert growth < 64 * MiB


def test_client_disconnect_mid_download_releases_the_file(
    server: Server, big_file: dict[str, Any]
) -> None:
    content = str(server.root / big_file["id"] / "file")
    with httpx.Client(timeout=30) as client, client.stream("GET", big_file["url"]) as response:
        assert response.status_code == 200
        stream = response.iter_bytes()
        read = 0
        while read < 3 * MiB:
            read += len(next(stream))
        assert content in server.open_paths()  # the server is streaming it now
    # The response was closed with most of the 200 MiB unread: the server must let go.
    deadline = time.monotonic() + 10
    while content in server.open_paths():
        assert time.monotonic() < deadline, "the server kept the file open after the client left"
        time.sleep(0.05)
    # And it keeps serving.
    assert httpx.get(server.url + "/files", timeout=10).status_code == 200


def _rss(server: Server) -> int:
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def test_stalled_downloads_hold_little_memory(server: Server, big_file: dict[str, Any]) -> None:
    """Clients that never read: each costs the server about one chunk, not megabytes."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(big_file["url"])
    clients = 40
    # Warm up: one full download so buffers the server keeps anyway are counted before.
    with httpx.Client(timeout=60) as client, client.stream("GET", big_file["url"]) as response:
        for _ in response.iter_bytes():
            pass
    before = _rss(server)
    sockets = []
    try:
        for _ in range(clients):
            sock = socket.create_connection((url.hostname, url.port), timeout=10)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(f"GET {url.path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            sockets.append(sock)
        time.sleep(1.5)  # every response is now stuck on a full socket
        stalled = _rss(server) - before
    finally:
        for sock in sockets:
            sock.close()
    per_client = stalled / clients
    print(
        f"\nRSS growth with {clients} stalled downloads: {stalled / MiB:.1f} MiB "
        f"({per_client / 1024:.0f} KiB each)"
    )
    assert per_client < 640 * 1024  # 1 MiB chunks: 3.1 MiB each
    assert httpx.get(server.url + "/files", timeout=10).status_code == 200


async def test_keys_round_trip_through_a_real_http_client(server: Server) -> None:
    """Every valid key, percent-encoded by url_for, reaches the same file over real HTTP."""
    from depotx import LocalFileStorage

    manager = StorageManager()
    storage = manager.register("default", LocalFileStorage(server.root))
    keys = [
        "uploads/2026/report.pdf",
        "with space/and%percent/q?mark#hash+plus&amp=.txt",
        "фото/été ✓.txt",
        "/".join(["k" * 200] * 4) + "/" + "end" * 60,  # ~1,000 bytes
    ]
    for key in keys:
        await storage.create(key.encode(), "f.txt", "text/plain", file_id=key)
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        for key in keys:
            response = await client.get(manager.url_for(f"default/{key}"))
            assert response.status_code == 200, key
            assert response.content == key.encode()
            ranged = await client.get(
                manager.url_for(f"default/{key}"), headers={"Range": "bytes=0-1"}
            )
            assert ranged.status_code == 206
        # Other spellings of a key are not the key.
        for odd in (
            "/depot/default/uploads//2026/report.pdf",
            "/depot/default/uploads%2F2026%2Freport.pdf",
        ):  # ("./" never reaches a server: clients remove dot segments; the id rules refuse it)
            assert (await client.get(odd)).status_code == 404, odd
    for key in keys:
        await storage.delete(key)
    await storage.aclose()


async def test_direct_upload_routes_through_the_app(manager: StorageManager) -> None:
    app = create_app(manager, max_upload_size=1000)
    assert manager.signing_keys is not None  # serve made one up: tickets are signed
    manager.set_upload_staging(manager.get())  # any storage; keys under a hidden folder
    async with asgi_client(app) as client:
        ticket = (
            await client.post("/uploads/ticket", json={"filename": "a.txt", "size": 5})
        ).json()
        form = ticket["upload"]
        assert form["url"] == "/depot/.upload"
        sent = await client.post(
            form["url"], files={"file": ("a.txt", b"hello")}, headers=form["headers"]
        )
        assert sent.status_code == 201
        done = await client.post("/uploads/finalize", json={"token": ticket["token"]})
        assert done.status_code == 201
        assert done.json()["filename"] == "a.txt"
        assert (await client.get(done.json()["url"])).content == b"hello"
        assert (await client.post("/uploads/finalize", json={"token": "x.y"})).status_code == 403
        too_big = await client.post("/uploads/ticket", json={"filename": "b", "size": 1001})
        assert too_big.status_code == 413
        assert "upload limit" in too_big.json()["error"]
        parts = await client.post("/uploads/parts", json={"token": ticket["token"], "parts": [1]})
        assert parts.status_code == 403  # a form ticket has no parts
