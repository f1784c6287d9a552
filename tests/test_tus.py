"""``TusApp``: tus 1.0.0 resumable uploads, one test per rule of the protocol and its extensions.

Requests go through httpx's ASGI transport, or straight to the ASGI app where a
test needs a body that stalls or a client that disconnects. The real client
(tus-js-client under Node, against uvicorn) is in ``test_tus_client.py``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from depotx import (
    FileStorage,
    LocalFileStorage,
    MemoryFileStorage,
    StorageManager,
    TusApp,
    TusUpload,
)
from depotx.uploads import _tus

V = {"Tus-Resumable": "1.0.0"}
OCTETS = {**V, "Content-Type": "application/offset+octet-stream"}
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 200


def meta(**values: str) -> str:
    return ",".join(f"{key} {base64.b64encode(v.encode()).decode()}" for key, v in values.items())


@pytest.fixture
def manager() -> StorageManager:
    manager = StorageManager()
    manager.register("files", MemoryFileStorage())
    return manager


@pytest.fixture
def staging(tmp_path: Path) -> FileStorage:
    return LocalFileStorage(tmp_path / "staging")


def mounted(app: TusApp) -> Starlette:
    return Starlette(routes=[Mount("/tus", app)])


@pytest.fixture
async def client(manager: StorageManager, staging: FileStorage) -> AsyncIterator[httpx.AsyncClient]:
    app = TusApp(manager, staging=staging, max_size=10_000_000)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=mounted(app)), base_url="http://test"
    ) as client:
        yield client


async def create(client: httpx.AsyncClient, length: int | None, **metadata: str) -> str:
    headers = {**V, "Upload-Metadata": meta(**metadata)}
    if length is None:
        headers["Upload-Defer-Length"] = "1"
    else:
        headers["Upload-Length"] = str(length)
    response = await client.post("/tus/", headers=headers)
    assert response.status_code == 201, response.text
    location = response.headers["location"]
    assert location.startswith("/tus/")
    return location


async def patch(
    client: httpx.AsyncClient, url: str, offset: int, body: bytes, **headers: str
) -> httpx.Response:
    return await client.patch(
        url, content=body, headers={**OCTETS, "Upload-Offset": str(offset), **headers}
    )


async def staged(staging: FileStorage) -> list[str]:
    return [key async for key in staging.list()]


# -- discovery and versions ---------------------------------------------------------------


async def test_options_tells_version_extensions_limit_and_checksums(
    client: httpx.AsyncClient,
) -> None:
    response = await client.options("/tus/")
    assert response.status_code == 204
    assert response.headers["tus-version"] == "1.0.0"
    assert set(response.headers["tus-extension"].split(",")) == {
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "termination",
        "expiration",
        "checksum",
    }
    assert response.headers["tus-max-size"] == "10000000"
    assert set(response.headers["tus-checksum-algorithm"].split(",")) == {"sha1", "sha256", "md5"}


@pytest.mark.parametrize("version", [None, "0.2.2", "2.0.0"])
async def test_an_unsupported_version_is_412_with_tus_version(
    client: httpx.AsyncClient, version: str | None
) -> None:
    headers = {"Upload-Length": "5"}
    if version is not None:
        headers["Tus-Resumable"] = version
    response = await client.post("/tus/", headers=headers)
    assert response.status_code == 412
    assert response.headers["tus-version"] == "1.0.0"
    assert response.headers["cache-control"] == "no-store"


# -- creation and core --------------------------------------------------------------------


async def test_create_patch_in_pieces_and_the_file_is_stored_when_complete(
    client: httpx.AsyncClient, manager: StorageManager, staging: FileStorage
) -> None:
    data = PNG + bytes(range(256)) * 40
    url = await create(client, len(data), filename="photo é.png", filetype="text/plain")
    head = await client.head(url, headers=V)
    assert head.status_code == 200
    assert head.headers["upload-offset"] == "0"
    assert head.headers["upload-length"] == str(len(data))
    assert head.headers["upload-metadata"] == meta(filename="photo é.png", filetype="text/plain")
    assert head.headers["cache-control"] == "no-store"
    assert head.headers["tus-resumable"] == "1.0.0"
    assert "upload-expires" in head.headers
    assert head.content == b""

    first = await patch(client, url, 0, data[:3000])
    assert first.status_code == 204
    assert first.headers["upload-offset"] == "3000"
    assert "upload-expires" in first.headers
    assert "depot-file-id" not in first.headers
    assert not [k async for k in manager.get("files").list()]  # not a file until complete

    last = await patch(client, url, 3000, data[3000:])
    assert last.status_code == 204
    assert last.headers["upload-offset"] == str(len(data))
    file_id = last.headers["depot-file-id"]
    assert last.headers["depot-file-path"] == f"files/{file_id}"
    assert last.headers["depot-file-url"] == f"/depot/files/{file_id}"
    async with await manager.get_file(f"files/{file_id}") as stored:
        assert await stored.read() == data
        assert stored.filename == "photo é.png"
        assert stored.content_type == "image/png"  # detected from the bytes, not the claim
    # The chunks are gone; the record stays (until cleanup) so a HEAD still answers.
    assert [key.rsplit("/", 1)[1] for key in await staged(staging)] == ["done", "info"]
    again = await client.head(url, headers=V)
    assert again.headers["upload-offset"] == str(len(data))
    assert again.headers["depot-file-id"] == file_id


async def test_offset_mismatch_is_409_and_changes_nothing(client: httpx.AsyncClient) -> None:
    url = await create(client, 10)
    assert (await patch(client, url, 0, b"abcd")).status_code == 204
    for offset in (0, 2, 9):
        response = await patch(client, url, offset, b"zz")
        assert response.status_code == 409
        assert response.headers["upload-offset"] == "4"
    assert (await client.head(url, headers=V)).headers["upload-offset"] == "4"


async def test_patch_needs_the_offset_content_type_and_a_numeric_offset(
    client: httpx.AsyncClient,
) -> None:
    url = await create(client, 10)
    wrong_type = await client.patch(
        url, content=b"ab", headers={**V, "Content-Type": "text/plain", "Upload-Offset": "0"}
    )
    assert wrong_type.status_code == 415
    for offset in ("", "-1", "1e3", "x"):
        response = await client.patch(
            url, content=b"ab", headers={**OCTETS, "Upload-Offset": offset}
        )
        assert response.status_code == 400


async def test_post_needs_a_length_or_a_deferral_and_bad_metadata_is_400(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.post("/tus/", headers=V)).status_code == 400
    assert (await client.post("/tus/", headers={**V, "Upload-Length": "-3"})).status_code == 400
    for bad in ("filename not-base64!", "a YQ==,a YQ==", "bad key YQ=="):
        response = await client.post(
            "/tus/", headers={**V, "Upload-Length": "3", "Upload-Metadata": bad}
        )
        assert response.status_code == 400, bad


async def test_unknown_uploads_and_paths_are_404(client: httpx.AsyncClient) -> None:
    assert (await client.head("/tus/" + "0" * 32, headers=V)).status_code == 404
    assert (await client.head("/tus/../etc/passwd", headers=V)).status_code == 404
    assert (await client.head("/tus/not-an-upload", headers=V)).status_code == 404
    assert (await client.get("/tus/", headers=V)).status_code == 405


async def test_creation_with_upload_stores_the_first_bytes(
    client: httpx.AsyncClient, manager: StorageManager
) -> None:
    response = await client.post(
        "/tus/",
        content=b"hello",
        headers={**OCTETS, "Upload-Length": "11", "Upload-Metadata": meta(filename="h.txt")},
    )
    assert response.status_code == 201
    assert response.headers["upload-offset"] == "5"
    url = response.headers["location"]
    done = await patch(client, url, 5, b" world")
    async with await manager.get_file(done.headers["depot-file-path"]) as stored:
        assert await stored.read() == b"hello world"
        assert stored.filename == "h.txt"


async def test_an_empty_upload_is_a_file_at_once(
    client: httpx.AsyncClient, manager: StorageManager
) -> None:
    response = await client.post("/tus/", headers={**V, "Upload-Length": "0"})
    url = response.headers["location"]
    head = await client.head(url, headers=V)
    async with await manager.get_file(head.headers["depot-file-path"]) as stored:
        assert await stored.read() == b""


async def test_x_http_method_override(client: httpx.AsyncClient) -> None:
    url = await create(client, 4)
    response = await client.post(
        url,
        content=b"abcd",
        headers={**OCTETS, "Upload-Offset": "0", "X-HTTP-Method-Override": "PATCH"},
    )
    assert response.status_code == 204
    assert "depot-file-id" in response.headers


# -- defer length -------------------------------------------------------------------------


async def test_deferred_length_is_set_once_by_a_later_patch(
    client: httpx.AsyncClient, manager: StorageManager
) -> None:
    url = await create(client, None, filename="later.bin")
    head = await client.head(url, headers=V)
    assert head.headers["upload-defer-length"] == "1"
    assert "upload-length" not in head.headers
    assert (await patch(client, url, 0, b"12345")).status_code == 204
    assert (await patch(client, url, 5, b"678", **{"Upload-Length": "4"})).status_code == 400
    done = await patch(client, url, 5, b"678", **{"Upload-Length": "8"})
    assert done.status_code == 204
    assert (await client.head(url, headers=V)).headers["upload-length"] == "8"
    async with await manager.get_file(done.headers["depot-file-path"]) as stored:
        assert await stored.read() == b"12345678"
    changed = await patch(client, url, 8, b"", **{"Upload-Length": "9"})
    assert changed.status_code == 400


# -- size limit ---------------------------------------------------------------------------


async def test_a_length_over_the_limit_is_413_in_words(client: httpx.AsyncClient) -> None:
    response = await client.post("/tus/", headers={**V, "Upload-Length": "10000001"})
    assert response.status_code == 413
    assert "upload limit of 9.5 MiB" in response.text


async def test_bytes_past_the_length_or_the_limit_are_refused_and_dropped(
    manager: StorageManager, staging: FileStorage
) -> None:
    app = TusApp(manager, staging=staging, max_size=10)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=mounted(app)), base_url="http://test"
    ) as client:
        url = await create(client, 4)
        assert (await patch(client, url, 0, b"abcde")).status_code == 413
        assert (await client.head(url, headers=V)).headers["upload-offset"] == "0"
        deferred = await create(client, None)
        too_much = await patch(client, deferred, 0, b"x" * 11)
        assert too_much.status_code == 413
        assert "upload limit" in too_much.text
        assert (await client.head(deferred, headers=V)).headers["upload-offset"] == "0"


# -- checksum -----------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "md5"])
async def test_checksum_match_stores_and_mismatch_is_460_and_dropped(
    client: httpx.AsyncClient, algorithm: str
) -> None:
    url = await create(client, 8)
    good = base64.b64encode(hashlib.new(algorithm, b"abcd").digest()).decode()
    bad = base64.b64encode(hashlib.new(algorithm, b"abcX").digest()).decode()
    wrong = await patch(client, url, 0, b"abcd", **{"Upload-Checksum": f"{algorithm} {bad}"})
    assert wrong.status_code == 460
    assert (await client.head(url, headers=V)).headers["upload-offset"] == "0"
    right = await patch(client, url, 0, b"abcd", **{"Upload-Checksum": f"{algorithm} {good}"})
    assert right.status_code == 204
    assert right.headers["upload-offset"] == "4"


async def test_unsupported_or_malformed_checksums_are_400(client: httpx.AsyncClient) -> None:
    url = await create(client, 4)
    for value in ("crc32 AAAA", "sha1 ***", "sha1 " + base64.b64encode(b"short").decode()):
        response = await patch(client, url, 0, b"abcd", **{"Upload-Checksum": value})
        assert response.status_code == 400, value
    assert (await client.head(url, headers=V)).headers["upload-offset"] == "0"


# -- termination and expiration -----------------------------------------------------------


async def test_delete_terminates_the_upload_and_its_bytes(
    client: httpx.AsyncClient, staging: FileStorage
) -> None:
    url = await create(client, 10)
    await patch(client, url, 0, b"abc")
    response = await client.delete(url, headers=V)
    assert response.status_code == 204
    assert (await client.head(url, headers=V)).status_code == 404
    assert (await patch(client, url, 3, b"def")).status_code == 404
    assert await staged(staging) == []


async def test_expired_uploads_answer_410_and_cleanup_removes_them(
    manager: StorageManager, staging: FileStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = TusApp(manager, staging=staging, expires_after=timedelta(hours=1))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=mounted(app)), base_url="http://test"
    ) as client:
        stale = await create(client, 10)
        await patch(client, stale, 0, b"abc")
        finished = await create(client, 3)
        await patch(client, finished, 0, b"xyz")
        real_now = _tus.utcnow
        monkeypatch.setattr(_tus, "utcnow", lambda: real_now() + timedelta(minutes=30))
        fresh = await create(client, 10)
        assert await app.cleanup() == 0
        monkeypatch.setattr(_tus, "utcnow", lambda: real_now() + timedelta(minutes=90))
        assert (await client.head(fresh, headers=V)).status_code == 200
        assert await app.cleanup() == 2  # the stale upload and the finished one's record
        assert (await client.head(stale, headers=V)).status_code == 404
        assert (await client.head(fresh, headers=V)).status_code == 200
        monkeypatch.setattr(_tus, "utcnow", lambda: real_now() + timedelta(minutes=200))
        assert (await client.head(fresh, headers=V)).status_code == 410
        assert await staged(staging) == []
        assert len([k async for k in manager.get("files").list()]) == 1  # the file stays


# -- storages -----------------------------------------------------------------------------


async def test_a_client_picks_only_an_allowed_storage(
    manager: StorageManager, staging: FileStorage
) -> None:
    manager.register("other", MemoryFileStorage())
    manager.register("secret", MemoryFileStorage())
    app = TusApp(manager, "files", staging=staging, allowed_storages=["files", "other"])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=mounted(app)), base_url="http://test"
    ) as client:
        url = await create(client, 2, storage="other")
        done = await patch(client, url, 0, b"hi")
        assert done.headers["depot-file-path"].startswith("other/")
        response = await client.post(
            "/tus/", headers={**V, "Upload-Length": "2", "Upload-Metadata": meta(storage="secret")}
        )
        assert response.status_code == 400


async def test_on_complete_runs_once_with_the_stored_path(
    manager: StorageManager, staging: FileStorage
) -> None:
    seen: list[TusUpload] = []

    async def record(upload: TusUpload) -> None:
        seen.append(upload)

    app = TusApp(manager, staging=staging, on_complete=record)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=mounted(app)), base_url="http://test"
    ) as client:
        url = await create(client, 3, filename="a.txt", owner="42")
        done = await patch(client, url, 0, b"abc")
        await client.head(url, headers=V)
    assert [(u.path, u.filename, u.metadata["owner"]) for u in seen] == [
        (done.headers["depot-file-path"], "a.txt", "42")
    ]


# -- CORS ---------------------------------------------------------------------------------


async def test_cors_for_allowed_origins_only(manager: StorageManager, staging: FileStorage) -> None:
    app = TusApp(manager, staging=staging, cors_origins=["https://app.example"])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=mounted(app)), base_url="http://test"
    ) as client:
        preflight = await client.options(
            "/tus/",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "PATCH",
            },
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        assert "PATCH" in preflight.headers["access-control-allow-methods"]
        assert "Upload-Offset" in preflight.headers["access-control-allow-headers"]
        created = await client.post(
            "/tus/", headers={**V, "Upload-Length": "1", "Origin": "https://app.example"}
        )
        exposed = created.headers["access-control-expose-headers"]
        for header in ("Location", "Upload-Offset", "Upload-Length", "Tus-Resumable"):
            assert header in exposed
        other = await client.post(
            "/tus/", headers={**V, "Upload-Length": "1", "Origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in other.headers


# -- races, disconnects, restarts (straight ASGI calls) -----------------------------------


class Gate:
    """An ASGI receive() that sends ``parts`` and waits on ``release`` before the last."""

    def __init__(self, parts: Iterable[bytes], *, disconnect: bool = False) -> None:
        self.parts = list(parts)
        self.release = asyncio.Event()
        self.disconnect = disconnect
        self.waiting = asyncio.Event()

    async def __call__(self) -> dict[str, Any]:
        if len(self.parts) <= 1:
            self.waiting.set()
            await self.release.wait()
        if not self.parts:
            if self.disconnect:
                return {"type": "http.disconnect"}
            return {"type": "http.request", "body": b"", "more_body": False}
        body = self.parts.pop(0)
        more = bool(self.parts) or self.disconnect
        return {"type": "http.request", "body": body, "more_body": more}


async def call(
    app: TusApp, method: str, path: str, receive: Any, headers: dict[str, str]
) -> dict[str, Any]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    await app(scope, receive, send)
    if not sent:
        return {"status": None, "headers": {}}
    start = sent[0]
    return {
        "status": start["status"],
        "headers": {k.decode(): v.decode() for k, v in start["headers"]},
    }


async def new_upload(app: TusApp, length: int) -> str:
    async def empty() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    answer = await call(app, "POST", "/", empty, {**V, "Upload-Length": str(length)})
    assert answer["status"] == 201
    return str(answer["headers"]["location"]).rsplit("/", 1)[1]


async def test_two_patches_at_one_offset_one_wins_the_other_is_409(
    manager: StorageManager, storage: FileStorage
) -> None:
    """On every backend as staging, and across two app instances (two servers)."""
    one = TusApp(manager, staging=storage)
    two = TusApp(manager, staging=storage)
    upload_id = await new_upload(one, 8)
    path = f"/{upload_id}"
    headers = {**OCTETS, "Upload-Offset": "0"}
    # In one process: the second request is refused before its body is read.
    first = Gate([b"ab", b"cd"])
    running = asyncio.ensure_future(call(one, "PATCH", path, first, headers))
    await first.waiting.wait()
    same = await call(one, "PATCH", path, Gate([b"xy"]), headers)
    assert same["status"] == 409
    first.release.set()
    assert (await running)["status"] == 204
    # Across processes: both bodies are read, the staging storage's create-only
    # write lets exactly one chunk in.
    gates = [Gate([b"ef", b"gh"]), Gate([b"EF", b"GH"])]
    at4 = {**OCTETS, "Upload-Offset": "4"}
    tasks = [
        asyncio.ensure_future(call(app, "PATCH", path, gate, at4))
        for app, gate in zip((one, two), gates, strict=True)
    ]
    for gate in gates:
        await gate.waiting.wait()
    for gate in gates:
        gate.release.set()
    statuses = sorted([(await task)["status"] for task in tasks])
    assert statuses == [204, 409]
    winner = next(a for a in [await t for t in tasks] if a["status"] == 204)
    async with await manager.get_file(winner["headers"]["depot-file-path"]) as stored:
        assert await stored.read() in (b"abcdefgh", b"abcdEFGH")


async def test_a_disconnect_mid_patch_keeps_the_bytes_received(
    manager: StorageManager, staging: FileStorage
) -> None:
    app = TusApp(manager, staging=staging)
    upload_id = await new_upload(app, 100)
    gate = Gate([b"x" * 30, b"y" * 20], disconnect=True)
    gate.release.set()
    answer = await call(app, "PATCH", f"/{upload_id}", gate, {**OCTETS, "Upload-Offset": "0"})
    assert answer["status"] is None  # nobody to answer
    head = await call(app, "HEAD", f"/{upload_id}", Gate([]), V)
    assert head["headers"]["upload-offset"] == "50"
    # With a checksum the partial chunk cannot be verified: it is dropped.
    gate = Gate([b"z" * 10], disconnect=True)
    gate.release.set()
    digest = base64.b64encode(hashlib.sha1(b"z" * 20).digest()).decode()
    headers = {**OCTETS, "Upload-Offset": "50", "Upload-Checksum": f"sha1 {digest}"}
    await call(app, "PATCH", f"/{upload_id}", gate, headers)
    head = await call(app, "HEAD", f"/{upload_id}", Gate([]), V)
    assert head["headers"]["upload-offset"] == "50"


async def test_an_upload_resumes_on_a_restarted_server(
    manager: StorageManager, storage: FileStorage
) -> None:
    before = TusApp(manager, staging=storage)
    upload_id = await new_upload(before, 6)
    gate = Gate([b"abc"])
    gate.release.set()
    await call(before, "PATCH", f"/{upload_id}", gate, {**OCTETS, "Upload-Offset": "0"})
    after = TusApp(manager, staging=storage)  # a new process over the same staging
    head = await call(after, "HEAD", f"/{upload_id}", Gate([]), V)
    assert head["headers"]["upload-offset"] == "3"
    gate = Gate([b"def"])
    gate.release.set()
    done = await call(after, "PATCH", f"/{upload_id}", gate, {**OCTETS, "Upload-Offset": "3"})
    async with await manager.get_file(done["headers"]["depot-file-path"]) as stored:
        assert await stored.read() == b"abcdef"


async def test_a_finish_that_failed_is_completed_by_the_next_head(
    manager: StorageManager, staging: FileStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = TusApp(manager, staging=staging)
    target = manager.get("files")
    upload_id = await new_upload(app, 4)
    real_create = target.create
    failures = [RuntimeError("the target storage is down")]

    async def flaky(*args: Any, **kwargs: Any) -> str:
        if failures:
            from depotx import BackendError

            raise BackendError(str(failures.pop()))
        return await real_create(*args, **kwargs)

    monkeypatch.setattr(target, "create", flaky)
    gate = Gate([b"abcd"])
    gate.release.set()
    failed = await call(app, "PATCH", f"/{upload_id}", gate, {**OCTETS, "Upload-Offset": "0"})
    assert failed["status"] == 502
    assert [k async for k in target.list()] == []
    head = await call(app, "HEAD", f"/{upload_id}", Gate([]), V)
    assert head["headers"]["upload-offset"] == "4"
    async with await manager.get_file(head["headers"]["depot-file-path"]) as stored:
        assert await stored.read() == b"abcd"


async def test_the_fastapi_example_takes_tus_uploads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from depotx import DepotManager

    monkeypatch.setenv("EXAMPLE_FILES", str(tmp_path / "files"))
    DepotManager.clear()
    try:
        path = Path(__file__).parent.parent / "examples" / "fastapi_app.py"
        spec = importlib.util.spec_from_file_location("fastapi_tus_example", path)
        assert spec is not None
        assert spec.loader is not None
        example = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(example)
        transport = httpx.ASGITransport(app=example.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            url = await create(client, 9, filename="notes.txt")
            assert (await patch(client, url, 0, b"resum")).status_code == 204
            done = await patch(client, url, 5, b"able")
            assert example.finished == [done.headers["depot-file-path"]]
            download = await client.get(done.headers["depot-file-url"])
            assert download.content == b"resumable"
    finally:
        await DepotManager.aclose()
        DepotManager.clear()


# -- S3: the chunks are put together inside S3 --------------------------------------------


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        ([12], [(True, [(0, 0, 10)]), (False, [(0, 10, 12)])]),
        ([6, 6, 1], [(True, [(0, 0, 6)]), (True, [(1, 0, 6)]), (False, [(2, 0, 1)])]),
        ([3, 6, 3], [(False, [(0, 0, 3), (1, 0, 2)]), (False, [(1, 2, 6), (2, 0, 1)]),
                     (False, [(2, 1, 3)])]),
        ([2, 2], [(False, [(0, 0, 2), (1, 0, 2)])]),
    ],
)  # fmt: skip
def test_compose_plan(sizes: list[int], expected: list[Any]) -> None:
    from depotx.storages.s3 import compose_plan

    assert compose_plan(sizes, 5, 10) == expected


@pytest.mark.parametrize("sizes", [[7, 1, 1, 1, 9, 30, 2], [1] * 23, [50], [5, 5, 5], [4, 11, 4]])
def test_compose_plan_parts_are_valid_and_cover_every_byte_once(sizes: list[int]) -> None:
    from depotx.storages.s3 import compose_plan

    plan = compose_plan(sizes, 5, 10)
    flat = [(index, start, end) for _, ranges in plan for index, start, end in ranges]
    covered = [(index, byte) for index, start, end in flat for byte in range(start, end)]
    assert covered == [(index, byte) for index, size in enumerate(sizes) for byte in range(size)]
    for _copy, ranges in plan[:-1]:
        assert 5 <= sum(end - start for _, start, end in ranges) <= 10
    for copy, ranges in plan:
        assert not copy or len(ranges) == 1


async def test_s3_staging_and_target_finish_inside_s3(tmp_path: Path) -> None:
    """Chunks of 5 MiB and more are copied by S3 (UploadPartCopy), never read back."""
    from tests.backends.s3 import FACTORIES

    MiB = 1024 * 1024
    staging = await FACTORIES["s3"](tmp_path)
    target = await FACTORIES["s3-prefix"](tmp_path)
    manager = StorageManager()
    manager.register("files", target)
    copies: list[str] = []
    reads: list[str] = []
    real_get = staging.get

    async def counting_get(file_id: str) -> Any:
        stored = await real_get(file_id)
        real_iter = stored.iter_bytes

        def iter_bytes(start: int = 0, end: int | None = None, **kw: Any) -> Any:
            reads.append(f"{file_id}[{start}:{end}]")
            return real_iter(start, end, **kw)

        stored.iter_bytes = iter_bytes  # type: ignore[method-assign]
        return stored

    staging.get = counting_get  # type: ignore[method-assign]
    client = await target._client()  # type: ignore[attr-defined]
    real_copy = client.upload_part_copy

    async def counting_copy(**kwargs: Any) -> Any:
        copies.append(kwargs["CopySourceRange"])
        return await real_copy(**kwargs)

    client.upload_part_copy = counting_copy
    data = PNG + bytes(range(256)) * (13 * MiB // 256)
    app = TusApp(manager, staging=staging)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=mounted(app)), base_url="http://test"
        ) as http:
            url = await create(http, len(data), filename="big.png")
            offset = 0
            for size in (6 * MiB, 5 * MiB, len(data) - 11 * MiB):
                response = await patch(http, url, offset, data[offset : offset + size])
                assert response.status_code == 204, response.text
                offset += size
            path = response.headers["depot-file-path"]
        assert copies == [f"bytes=0-{6 * MiB - 1}", f"bytes=0-{5 * MiB - 1}"]
        # Read back: the first chunk's first bytes (its stream is closed once the type is
        # detected) and the small last chunk, to send it as the last part; nothing else.
        last = len(data) - 11 * MiB
        chunk_reads = [read.split("/chunks/")[1] for read in reads if "/chunks/" in read]
        assert chunk_reads == [f"{0:020d}[0:None]", f"{11 * MiB:020d}[0:{last}]"]
        async with await manager.get_file(path) as stored:
            assert stored.content_type == "image/png"
            assert stored.filename == "big.png"
            assert hashlib.sha256(await stored.read()).digest() == hashlib.sha256(data).digest()
        assert not [key async for key in staging.list() if "/chunks/" in key]
    finally:
        await staging.aclose()
        await target.aclose()


async def test_local_staging_and_target_put_the_file_together_in_one_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks are concatenated by the kernel (copy_file_range), hashed on the way."""
    target = LocalFileStorage(tmp_path / "files")
    manager = StorageManager()
    manager.register("files", target)
    composed: list[bool] = []
    real = LocalFileStorage._compose

    async def spy(self: LocalFileStorage, *args: Any, **kwargs: Any) -> bool:
        composed.append(await real(self, *args, **kwargs))
        return composed[-1]

    monkeypatch.setattr(LocalFileStorage, "_compose", spy)
    app = TusApp(manager, staging=LocalFileStorage(tmp_path / "staging"))
    big = bytes(range(256)) * 20_000  # 5 MB: read from disk; the small chunks from memory
    data = PNG + big + b"tail"
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=mounted(app)), base_url="http://test"
    ) as client:
        url = await create(client, len(data), filename="joined.png")
        offset = 0
        for size in (len(PNG), len(big), 4):
            response = await patch(client, url, offset, data[offset : offset + size])
            assert response.status_code == 204
            offset += size
    assert composed == [True]
    async with await manager.get_file(response.headers["depot-file-path"]) as stored:
        assert await stored.read() == data
        assert stored.checksum == hashlib.sha256(data).hexdigest()
        assert stored.content_type == "image/png"
        assert stored.filename == "joined.png"
