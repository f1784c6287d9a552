"""DepotMiddleware through httpx's ASGI transport (and raw ASGI where a client cannot reach)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from depotx import (
    ConfigurationError,
    DepotMiddleware,
    MemoryFileStorage,
    StorageManager,
    StoredFile,
    StoredFileChangedError,
    StoredFileResponse,
)
from depotx._files import BytesStoredFile
from depotx._http import format_http_date, make_etag

CONTENT = bytes(range(256)) * 40  # 10 240 bytes


class TrackingStorage(MemoryFileStorage):
    """A memory storage that records backend calls and can be told to fail."""

    def __init__(self) -> None:
        super().__init__()
        self.gets = 0
        self.reads: list[tuple[int, int]] = []
        self.chunks_read = 0
        self.released = 0
        self.fail_get: BaseException | None = None
        self.fail_read: BaseException | None = None
        self.fail_read_after = 0  # chunks yielded before fail_read is raised
        self.changed_first_chunks = 0  # how many opened versions raise "changed"
        self.public: str | None = None  # what StoredFile.public_url carries

    async def _get(self, file_id: str) -> StoredFile:
        self.gets += 1
        if self.fail_get is not None:
            raise self.fail_get
        entry = self._files.get(file_id)
        if entry is None:
            return await super()._get(file_id)  # raises StoredFileNotFoundError
        changed = self.changed_first_chunks > 0
        self.changed_first_chunks -= 1
        return _TrackedFile(
            self,
            changed,
            file_id,
            entry.data,
            filename=entry.filename,
            content_type=entry.content_type,
            last_modified=entry.last_modified,
            checksum=entry.checksum,
            public_url=self.public,
            storage=self,
        )


class _TrackedFile(BytesStoredFile):
    def __init__(self, tracker: TrackingStorage, changed: bool, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tracker = tracker
        self.changed = changed

    async def _iter_range(self, start: int, end: int, chunk_size: int) -> AsyncIterator[bytes]:
        self.tracker.reads.append((start, end))
        if self.changed:
            raise StoredFileChangedError(self.file_id, "tracked")
        count = 0
        async for chunk in super()._iter_range(start, end, chunk_size):
            if self.tracker.fail_read is not None and count >= self.tracker.fail_read_after:
                raise self.tracker.fail_read
            count += 1
            self.tracker.chunks_read += 1
            yield chunk

    async def _release(self) -> None:
        self.tracker.released += 1


class PublicStorage(MemoryFileStorage):
    """A storage with a public URL for every file, like S3 or a CDN."""

    def public_url(self, file_id: str) -> str | None:
        return f"https://cdn.example.com/bucket/{file_id}?sig=a%2Bb"


async def inner_app(scope: Scope, receive: Receive, send: Send) -> None:
    assert scope["type"] == "http"
    response = PlainTextResponse(f"app:{scope['path']}")
    await response(scope, receive, send)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    manager = StorageManager()
    manager.configure("files", {"depot.backend": "memory"})
    manager.configure("disk", {"depot.storage_path": str(tmp_path / "disk")})
    manager.alias("avatars", "files")
    tracked = TrackingStorage()
    tracked.name = "tracked"
    manager.register("tracked", tracked)  # a custom backend instance, registered as is
    public = PublicStorage()
    manager.register("public", public)
    ids = {
        "files": await manager.get("files").create(CONTENT, "data.bin", "application/x-test"),
        "disk": await manager.get("disk").create(CONTENT, "data.bin", "application/x-test"),
        "tracked": await tracked.create(CONTENT, "data.bin", "application/x-test"),
        "public": await public.create(b"hello", "hello.txt"),
    }
    yield {"manager": manager, "ids": ids, "tracked": tracked}
    await manager.aclose()


def client_for(app: Any, root_path: str = "") -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, root_path=root_path), base_url="http://testserver"
    )


def response_app(manager: StorageManager) -> Starlette:
    """The same files served by ``StoredFileResponse`` from an app's own route."""

    async def download(request: Request) -> Response:
        try:
            storage = manager.get(request.path_params["storage"])
            stored = await storage.get(request.path_params["file_id"])
        except (LookupError, ValueError):
            return PlainTextResponse("Not Found", status_code=404)
        return StoredFileResponse(stored, cache_control="private, max-age=3600")

    return Starlette(
        routes=[Route("/depot/{storage}/{file_id}", download, methods=["GET", "HEAD"])]
    )


#: What a test marked with this serves through: the middleware, and StoredFileResponse.
both_ways = pytest.mark.parametrize("client", ["middleware", "response"], indirect=True)


@pytest.fixture
async def client(
    setup: dict[str, Any], request: pytest.FixtureRequest
) -> AsyncIterator[httpx.AsyncClient]:
    """The middleware's client; with ``both_ways``, also ``StoredFileResponse``'s."""
    if getattr(request, "param", "middleware") == "response":
        app: Any = response_app(setup["manager"])
    else:
        app = DepotMiddleware(inner_app, manager=setup["manager"])
    async with client_for(app) as c:
        yield c


# -- GET and HEAD ----------------------------------------------------------------------------


@pytest.mark.parametrize("storage_name", ["files", "disk"])
@both_ways
async def test_get_streams_the_file_with_all_headers(
    setup: dict[str, Any], client: httpx.AsyncClient, storage_name: str
) -> None:
    file_id = setup["ids"][storage_name]
    async with await setup["manager"].get(storage_name).get(file_id) as stored:
        etag = make_etag(stored.checksum)
        last_modified = format_http_date(stored.last_modified)
    response = await client.get(f"/depot/{storage_name}/{file_id}")
    assert response.status_code == 200
    assert response.content == CONTENT
    headers = response.headers
    assert headers["content-type"] == "application/x-test"
    assert headers["content-length"] == str(len(CONTENT))
    assert headers["etag"] == etag
    assert etag.startswith('"')
    assert not etag.startswith("W/")
    assert headers["last-modified"] == last_modified
    assert headers["last-modified"].endswith(" GMT")
    assert headers["cache-control"] == "private, max-age=3600"
    assert headers["accept-ranges"] == "bytes"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["content-disposition"] == 'inline; filename="data.bin"'


@both_ways
async def test_text_content_type_is_kept_as_recorded(
    setup: dict[str, Any], client: httpx.AsyncClient
) -> None:
    storage = setup["manager"].get("files")
    file_id = await storage.create(b"caf\xc3\xa9", "menu.txt", "text/plain; charset=utf-8")
    response = await client.get(f"/depot/files/{file_id}")
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == "café"


async def test_many_chunks_are_streamed_in_order(setup: dict[str, Any]) -> None:
    tracked = setup["tracked"]
    app = DepotMiddleware(inner_app, manager=setup["manager"], chunk_size=1000)
    async with client_for(app) as c:
        response = await c.get(f"/depot/tracked/{setup['ids']['tracked']}")
    assert response.content == CONTENT
    assert tracked.chunks_read == 11
    assert tracked.released == 1


@both_ways
async def test_empty_file(setup: dict[str, Any], client: httpx.AsyncClient) -> None:
    file_id = await setup["manager"].get("files").create(b"", "empty.txt", "text/plain")
    response = await client.get(f"/depot/files/{file_id}")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == "0"
    assert (
        await client.get(f"/depot/files/{file_id}", headers={"Range": "bytes=0-"})
    ).status_code == 416


@both_ways
async def test_head_sends_headers_only_and_reads_no_content(
    setup: dict[str, Any], client: httpx.AsyncClient
) -> None:
    tracked = setup["tracked"]
    url = f"/depot/tracked/{setup['ids']['tracked']}"
    get = await client.get(url)
    tracked.reads.clear()
    head = await client.head(url, headers={"Range": "bytes=0-9"})  # Range is for GET only
    assert head.status_code == 200
    assert head.content == b""
    assert tracked.reads == []
    for name in (
        "content-type",
        "content-length",
        "etag",
        "last-modified",
        "cache-control",
        "content-disposition",
        "accept-ranges",
        "x-content-type-options",
    ):
        assert head.headers[name] == get.headers[name], name
    assert tracked.released == 2


async def test_alias_serves_the_target_storage(
    setup: dict[str, Any], client: httpx.AsyncClient
) -> None:
    response = await client.get(f"/depot/avatars/{setup['ids']['files']}")
    assert response.status_code == 200
    assert response.content == CONTENT


async def test_cache_options(setup: dict[str, Any]) -> None:
    app = DepotMiddleware(inner_app, manager=setup["manager"], cache_max_age=60, cache_public=True)
    async with client_for(app) as c:
        response = await c.get(f"/depot/files/{setup['ids']['files']}")
    assert response.headers["cache-control"] == "public, max-age=60"


# -- routing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/", "/other", "/depotx/files/{id}", "/depot123/files/{id}", "/x/depot/files/{id}"],
)
async def test_paths_outside_the_mountpoint_pass_through(
    setup: dict[str, Any], client: httpx.AsyncClient, path: str
) -> None:
    path = path.replace("{id}", setup["ids"]["files"])
    response = await client.get(path)
    assert response.status_code == 200
    assert response.text == f"app:{path}"


@pytest.mark.parametrize(
    "path",
    [
        "/depot",
        "/depot/",
        "/depot/files",
        "/depot/files/",
        "/depot/nosuchstorage/{id}",
        "/depot/files/{id}/extra",
        "/depot/files/a/b",
        "/depot//{id}",
        "/depot/files/..%2f..%2fetc%2fpasswd",
    ],
)
async def test_everything_under_the_mountpoint_is_answered_by_the_middleware(
    setup: dict[str, Any], client: httpx.AsyncClient, path: str
) -> None:
    """The app behind the middleware never sees attacker-made paths under it."""
    path = path.replace("{id}", setup["ids"]["files"])
    response = await client.get(path)
    assert response.status_code == 404
    assert not response.text.startswith("app:")
    assert response.headers["cache-control"] == "no-store"
    head = await client.head(path)
    assert head.status_code == 404
    assert head.content == b""


async def test_websocket_and_lifespan_scopes_pass_through(setup: dict[str, Any]) -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    middleware = DepotMiddleware(app, manager=setup["manager"])

    async def receive() -> Message:
        raise AssertionError("the middleware must not receive for other scopes")

    async def send(message: Message) -> None:
        raise AssertionError("the middleware must not send for other scopes")

    path = f"/depot/files/{setup['ids']['files']}"
    await middleware({"type": "websocket", "path": path, "headers": []}, receive, send)
    await middleware({"type": "lifespan"}, receive, send)
    assert seen == ["websocket", "lifespan"]


async def test_root_path_is_honoured(setup: dict[str, Any]) -> None:
    app = DepotMiddleware(inner_app, manager=setup["manager"])
    async with client_for(app, root_path="/prefix") as c:
        response = await c.get(f"/prefix/depot/files/{setup['ids']['files']}")
        assert response.status_code == 200
        assert response.content == CONTENT
        other = await c.get("/prefix/other")
        assert other.text == "app:/prefix/other"


async def test_mountpoint_is_the_managers_setting(setup: dict[str, Any]) -> None:
    manager = StorageManager(mountpoint="/media/")
    manager.register("files", setup["manager"].get("files"))
    file_id = setup["ids"]["files"]
    # Before any middleware exists, url_for already knows.
    assert manager.url_for(f"files/{file_id}") == f"/media/files/{file_id}"
    app = DepotMiddleware(inner_app, manager=manager)
    assert app.mountpoint == "/media"
    async with client_for(app) as c:
        assert (await c.get(manager.url_for(f"files/{file_id}"))).content == CONTENT
        assert (await c.get(f"/depot/files/{file_id}")).text.startswith("app:")
    # Agreeing is fine; disagreeing is refused instead of silently re-pointing url_for.
    DepotMiddleware(inner_app, manager=manager, mountpoint="/media")
    with pytest.raises(ConfigurationError, match="differs from the manager"):
        DepotMiddleware(inner_app, manager=manager, mountpoint="/other")
    assert manager.url_for(f"files/{file_id}") == f"/media/files/{file_id}"


def test_mountpoint_from_settings() -> None:
    manager = StorageManager()
    manager.configure_many({"depot.mountpoint": "/files", "depot.a.backend": "memory"})
    assert manager.mountpoint == "/files"
    assert manager.url_for("a/x1").startswith("/files/a/")


def test_relative_or_root_mountpoint_is_refused(setup: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        DepotMiddleware(inner_app, manager=setup["manager"], mountpoint="depot")
    with pytest.raises(ConfigurationError):
        DepotMiddleware(inner_app, manager=setup["manager"], mountpoint="/")
    with pytest.raises(ConfigurationError):
        StorageManager(mountpoint="relative")


async def test_make_middleware_and_starlette_middleware_list(setup: dict[str, Any]) -> None:
    manager = setup["manager"]
    file_id = setup["ids"]["files"]
    wrapped = manager.make_middleware(inner_app, mountpoint="/made")
    assert isinstance(wrapped, DepotMiddleware)
    async with client_for(wrapped) as c:
        assert (await c.get(f"/made/files/{file_id}")).content == CONTENT

    async def home(request: Any) -> PlainTextResponse:
        return PlainTextResponse("home")

    app = Starlette(
        routes=[Route("/", home)],
        middleware=[Middleware(DepotMiddleware, manager=manager, mountpoint="/made")],
    )
    async with client_for(app) as c:
        assert (await c.get("/")).text == "home"
        assert (await c.get(f"/made/files/{file_id}")).content == CONTENT


# -- 404 and 405 ------------------------------------------------------------------------------


async def test_unknown_storage_unknown_and_malformed_ids_are_404(
    setup: dict[str, Any], client: httpx.AsyncClient
) -> None:
    tracked = setup["tracked"]
    for path in (
        "/depot/nope/" + setup["ids"]["files"],
        "/depot/tracked/00000000-0000-0000-0000-000000000000",  # well-formed, absent
        "/depot/tracked/a%00b",
        "/depot/tracked/" + "a" * 256,  # a segment over 255 bytes
        "/depot/tracked/a%5Cb",  # a backslash
        "/depot/tracked/a//b",
        "/depot/tracked/a%2Fb",  # "/" spelled as %2F: not the key "a/b"
    ):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert response.text == "Not Found"
        head = await client.head(path)
        assert head.status_code == 404
        assert head.content == b""
    assert tracked.gets == 2  # only the well-formed unknown id reached the backend


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
async def test_other_methods_are_405_with_allow(
    setup: dict[str, Any], client: httpx.AsyncClient, method: str
) -> None:
    tracked = setup["tracked"]
    response = await client.request(method, f"/depot/tracked/{setup['ids']['tracked']}")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert tracked.gets == 0


# -- conditional requests -----------------------------------------------------------------------


@both_ways
async def test_if_none_match_gives_304_with_validators_and_no_body(
    setup: dict[str, Any], client: httpx.AsyncClient
) -> None:
    url = f"/depot/files/{setup['ids']['files']}"
    first = await client.get(url)
    etag = first.headers["etag"]
    for value in (etag, f"W/{etag}", f'"nope", {etag}', "*"):
        for method in ("GET", "HEAD"):
            response = await client.request(method, url, headers={"If-None-Match": value})
            assert response.status_code == 304, value
            assert response.content == b""
            assert response.headers["etag"] == etag
            assert response.headers["cache-control"] == first.headers["cache-control"]
            assert response.headers["last-modified"] == first.headers["last-modified"]
            assert "content-type" not in response.headers
            assert "content-disposition" not in response.headers


@both_ways
async def test_if_modified_since(setup: dict[str, Any], client: httpx.AsyncClient) -> None:
    url = f"/depot/files/{setup['ids']['files']}"
    last_modified = (await client.get(url)).headers["last-modified"]
    assert (await client.get(url, headers={"If-Modified-Since": last_modified})).status_code == 304
    old = "Sun, 06 Nov 1994 08:49:37 GMT"
    assert (await client.get(url, headers={"If-Modified-Since": old})).status_code == 200
    # A malformed date is ignored, not a 400.
    bad = await client.get(url, headers={"If-Modified-Since": "last tuesday"})
    assert bad.status_code == 200
    # If-None-Match present and not matching: If-Modified-Since is not looked at.
    both = await client.get(
        url, headers={"If-None-Match": '"nope"', "If-Modified-Since": last_modified}
    )
    assert both.status_code == 200
    assert both.content == CONTENT


@both_ways
async def test_if_match_and_if_unmodified_since_give_412(
    setup: dict[str, Any], client: httpx.AsyncClient
) -> None:
    url = f"/depot/files/{setup['ids']['files']}"
    etag = (await client.get(url)).headers["etag"]
    assert (await client.get(url, headers={"If-Match": etag})).status_code == 200
    failed = await client.get(url, headers={"If-Match": '"nope"'})
    assert failed.status_code == 412
    assert failed.text == "Precondition Failed"
    head = await client.head(url, headers={"If-Match": '"nope"'})
    assert head.status_code == 412
    assert head.content == b""
    old = "Sun, 06 Nov 1994 08:49:37 GMT"
    assert (await client.get(url, headers={"If-Unmodified-Since": old})).status_code == 412


# -- ranges -----------------------------------------------------------------------------------


@pytest.mark.parametrize("storage_name", ["files", "disk", "tracked"])
@both_ways
async def test_single_range_is_206_and_reads_only_that_part(
    setup: dict[str, Any], client: httpx.AsyncClient, storage_name: str
) -> None:
    url = f"/depot/{storage_name}/{setup['ids'][storage_name]}"
    size = len(CONTENT)
    for value, start, end in (
        ("bytes=100-199", 100, 200),
        ("bytes=10000-", 10000, size),
        ("bytes=-40", size - 40, size),
        ("bytes=10200-99999", 10200, size),
    ):
        response = await client.get(url, headers={"Range": value})
        assert response.status_code == 206, value
        assert response.content == CONTENT[start:end]
        assert response.headers["content-range"] == f"bytes {start}-{end - 1}/{size}"
        assert response.headers["content-length"] == str(end - start)
        assert response.headers["content-type"] == "application/x-test"
    if storage_name == "tracked":
        assert setup["tracked"].reads == [
            (100, 200),
            (10000, size),
            (size - 40, size),
            (10200, size),
        ]


@both_ways
async def test_unsatisfiable_range_is_416(setup: dict[str, Any], client: httpx.AsyncClient) -> None:
    url = f"/depot/files/{setup['ids']['files']}"
    response = await client.get(url, headers={"Range": "bytes=20000-"})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{len(CONTENT)}"


@both_ways
async def test_malformed_range_is_ignored(setup: dict[str, Any], client: httpx.AsyncClient) -> None:
    url = f"/depot/files/{setup['ids']['files']}"
    for value in ("bytes=abc", "lines=1-2", "bytes=9-1"):
        response = await client.get(url, headers={"Range": value})
        assert response.status_code == 200
        assert response.content == CONTENT


@both_ways
async def test_if_range(setup: dict[str, Any], client: httpx.AsyncClient) -> None:
    url = f"/depot/files/{setup['ids']['files']}"
    full = await client.get(url)
    partial = await client.get(
        url, headers={"Range": "bytes=0-9", "If-Range": full.headers["etag"]}
    )
    assert partial.status_code == 206
    assert partial.content == CONTENT[:10]
    for validator in ('"stale"', f"W/{full.headers['etag']}", "Sun, 06 Nov 1994 08:49:37 GMT"):
        stale = await client.get(url, headers={"Range": "bytes=0-9", "If-Range": validator})
        assert stale.status_code == 200
        assert stale.content == CONTENT


@both_ways
async def test_multiple_ranges_are_multipart_byteranges(
    setup: dict[str, Any], client: httpx.AsyncClient
) -> None:
    url = f"/depot/disk/{setup['ids']['disk']}"
    response = await client.get(url, headers={"Range": "bytes=0-9,100-109,-5"})
    assert response.status_code == 206
    content_type = response.headers["content-type"]
    assert content_type.startswith("multipart/byteranges; boundary=")
    boundary = content_type.split("boundary=")[1]
    body = response.content
    assert response.headers["content-length"] == str(len(body))
    size = len(CONTENT)
    expected = b""
    for start, end in ((0, 10), (100, 110), (size - 5, size)):
        expected += (
            (
                f"--{boundary}\r\nContent-Type: application/x-test\r\n"
                f"Content-Range: bytes {start}-{end - 1}/{size}\r\n\r\n"
            ).encode()
            + CONTENT[start:end]
            + b"\r\n"
        )
    expected += f"--{boundary}--".encode()
    assert body == expected


# -- disposition and active content -------------------------------------------------------------


@both_ways
async def test_active_content_is_an_attachment_unless_allowed(
    setup: dict[str, Any], client: httpx.AsyncClient
) -> None:
    storage = setup["manager"].get("files")
    html = await storage.create(b"<script>alert(1)</script>", "page.html", "text/html")
    svg = await storage.create(b"<svg/>", "pic.svg", "image/svg+xml")
    png = await storage.create(b"\x89PNG\r\n\x1a\n", "pic.png", "image/png")
    for file_id, name in ((html, "page.html"), (svg, "pic.svg")):
        response = await client.get(f"/depot/files/{file_id}")
        assert response.headers["content-disposition"] == f'attachment; filename="{name}"'
        assert response.headers["x-content-type-options"] == "nosniff"
    response = await client.get(f"/depot/files/{png}")
    assert response.headers["content-disposition"] == 'inline; filename="pic.png"'
    storage.inline_active_content = True
    response = await client.get(f"/depot/files/{html}")
    assert response.headers["content-disposition"] == 'inline; filename="page.html"'
    assert response.headers["content-type"] == "text/html"


@both_ways
async def test_non_ascii_and_hostile_filenames(
    setup: dict[str, Any], client: httpx.AsyncClient
) -> None:
    storage = setup["manager"].get("files")
    file_id = await storage.create(b"x", 'naïve "quote".txt', "text/plain")
    response = await client.get(f"/depot/files/{file_id}")
    assert response.headers["content-disposition"] == (
        "inline; filename=\"naive _quote_.txt\"; filename*=UTF-8''na%C3%AFve%20%22quote%22.txt"
    )


# -- public URLs --------------------------------------------------------------------------------


async def test_public_url_redirects_temporarily_without_a_backend_call(
    setup: dict[str, Any], client: httpx.AsyncClient
) -> None:
    file_id = setup["ids"]["public"]
    for method in ("GET", "HEAD"):
        response = await client.request(method, f"/depot/public/{file_id}")
        assert response.status_code == 307
        assert response.headers["location"] == f"https://cdn.example.com/bucket/{file_id}?sig=a%2Bb"
        assert response.headers["cache-control"] == "no-store"
        assert response.content == b""


async def test_stored_file_public_url_redirects(
    setup: dict[str, Any], client: httpx.AsyncClient
) -> None:
    tracked = setup["tracked"]
    tracked.public = "https://signed.example.com/x?X-Amz-Signature=abc"
    response = await client.get(f"/depot/tracked/{setup['ids']['tracked']}")
    assert response.status_code == 307
    assert response.headers["location"] == tracked.public
    assert tracked.reads == []
    assert tracked.released == 1


async def test_redirects_off_proxies_the_file(setup: dict[str, Any]) -> None:
    app = DepotMiddleware(inner_app, manager=setup["manager"], redirect_to_public_url=False)
    async with client_for(app) as c:
        response = await c.get(f"/depot/public/{setup['ids']['public']}")
    assert response.status_code == 200
    assert response.content == b"hello"


# -- backend failures -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "error", "status"),
    [
        ("get", OSError("disk on fire at /secret/path"), 502),
        ("get", RuntimeError("driver bug /secret/path"), 502),
        ("get", TimeoutError("slow /secret/path"), 503),
        ("get", ConnectionRefusedError("down /secret/path"), 503),
        ("read", OSError("EIO /secret/path"), 502),
        ("read", ValueError("odd /secret/path"), 502),
    ],
)
async def test_backend_failures_are_502_or_503_logged_without_internals(
    setup: dict[str, Any],
    client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    where: str,
    error: BaseException,
    status: int,
) -> None:
    tracked = setup["tracked"]
    if where == "get":
        tracked.fail_get = error
    else:
        tracked.fail_read = error
    url = f"/depot/tracked/{setup['ids']['tracked']}"
    with caplog.at_level(logging.ERROR, logger="depotx"):
        response = await client.get(url)
    assert response.status_code == status
    assert "secret" not in response.text
    assert response.text in ("Bad Gateway", "Service Unavailable")
    record = next(r for r in caplog.records if r.name == "depotx")
    assert "secret/path" in record.getMessage() or (
        record.exc_info is not None and "secret/path" in str(record.exc_info[1].__cause__)
    )
    head = await client.head(url)
    if where == "get":
        assert head.status_code == status
    assert head.content == b""
    assert tracked.released == (tracked.gets if where == "read" else 0)


async def test_failure_after_headers_aborts_and_releases(
    setup: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    tracked = setup["tracked"]
    tracked.fail_read = OSError("lost connection")
    tracked.fail_read_after = 2
    app = DepotMiddleware(inner_app, manager=setup["manager"], chunk_size=1000)
    with caplog.at_level(logging.ERROR, logger="depotx"):
        sent = await _drive(
            app, f"/depot/tracked/{setup['ids']['tracked']}", spec_version="2.4", stop_after=1000
        )
    # The status line was out before the failure: the body is cut short (the
    # server closes the connection), never completed with wrong bytes.
    assert sent[0]["status"] == 200
    body = sent[1:]
    assert b"".join(m["body"] for m in body) == CONTENT[:2000]
    assert all(m.get("more_body") for m in body)
    assert any("aborted" in r.getMessage() for r in caplog.records)
    assert tracked.released == 1


async def test_malformed_ids_never_reach_the_backend(setup: dict[str, Any]) -> None:
    tracked = setup["tracked"]
    app = DepotMiddleware(inner_app, manager=setup["manager"])
    for file_id in ("..", ".", "a//b", "a\x00b", "a\\b", "x/../y"):
        sent = await _drive(app, f"/depot/tracked/{file_id}", spec_version="2.4", stop_after=1000)
        assert sent[0]["status"] == 404, file_id
    assert tracked.gets == 0


async def test_changed_on_first_chunk_is_retried_with_matching_headers(
    setup: dict[str, Any], client: httpx.AsyncClient
) -> None:
    tracked = setup["tracked"]
    file_id = setup["ids"]["tracked"]
    new_content = b"version two" * 100
    await tracked.replace(file_id, new_content, content_type="application/x-test")
    tracked.gets = tracked.released = 0
    tracked.changed_first_chunks = 2
    response = await client.get(f"/depot/tracked/{file_id}")
    assert response.status_code == 200
    assert response.content == new_content
    assert response.headers["content-length"] == str(len(new_content))
    assert response.headers["etag"] == make_etag(tracked._files[file_id].checksum)
    assert tracked.gets == 3
    assert tracked.released == 3


async def test_changed_every_time_gives_up_with_503(
    setup: dict[str, Any], client: httpx.AsyncClient
) -> None:
    tracked = setup["tracked"]
    tracked.changed_first_chunks = 100
    response = await client.get(f"/depot/tracked/{setup['ids']['tracked']}")
    assert response.status_code == 503
    assert tracked.gets == 3
    assert tracked.released == 3


# -- client disconnects -------------------------------------------------------------------------


async def _drive(
    app: DepotMiddleware, path: str, *, spec_version: str, stop_after: int
) -> list[Message]:
    """Run one GET by hand; the client goes away after ``stop_after`` body messages."""
    sent: list[Message] = []
    gone = asyncio.Event()
    request_sent = False

    async def receive() -> Message:
        nonlocal request_sent
        if not request_sent:
            request_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if gone.is_set() and spec_version >= "2.4":
            raise OSError("client disconnected")
        sent.append(message)
        if sum(m["type"] == "http.response.body" for m in sent) >= stop_after:
            gone.set()
        await asyncio.sleep(0)  # let the watcher see the disconnect, as a real server would

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": spec_version},
        "method": "GET",
        "path": path,
        "root_path": "",
        "headers": [],
        "query_string": b"",
    }
    await asyncio.wait_for(app(scope, receive, send), timeout=10)
    return sent


@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
async def test_client_disconnect_mid_download_releases_the_stream(
    setup: dict[str, Any], spec_version: str
) -> None:
    tracked = setup["tracked"]
    app = DepotMiddleware(inner_app, manager=setup["manager"], chunk_size=100)
    sent = await _drive(
        app, f"/depot/tracked/{setup['ids']['tracked']}", spec_version=spec_version, stop_after=3
    )
    assert sent[0]["status"] == 200
    assert tracked.released == 1
    # 103 chunks in the file; reading stopped right after the client left.
    assert tracked.chunks_read <= 5
    # The response was never completed: every body message promised more.
    assert all(m.get("more_body") for m in sent[1:])


@pytest.mark.parametrize("storage_name", ["files", "disk"])
async def test_a_replaced_file_is_served_with_its_new_headers(
    setup: dict[str, Any], client: httpx.AsyncClient, storage_name: str
) -> None:
    """Headers are prepared once per version: a replace must never serve the old ones."""
    manager: StorageManager = setup["manager"]
    file_id = setup["ids"][storage_name]
    url = f"/depot/{storage_name}/{file_id}"
    first = await client.get(url)
    assert first.content == CONTENT
    await manager.get(storage_name).replace(file_id, b"<svg></svg>", "new.svg", "image/svg+xml")
    second = await client.get(url)
    assert second.content == b"<svg></svg>"
    assert second.headers["etag"] != first.headers["etag"]
    assert second.headers["content-type"] == "image/svg+xml"
    assert second.headers["content-length"] == "11"
    assert second.headers["content-disposition"].startswith("attachment")
    assert "new.svg" in second.headers["content-disposition"]
    stale = await client.get(url, headers={"if-none-match": first.headers["etag"]})
    assert stale.status_code == 200


# -- hardening: what third-party HTTP tools found ---------------------------------------


def _count(response: httpx.Response, name: str) -> int:
    return len(response.headers.get_list(name))


async def test_error_answers_are_never_cacheable(
    setup: dict[str, Any], client: httpx.AsyncClient
) -> None:
    url = f"/depot/files/{setup['ids']['files']}"
    answers = {
        404: await client.get("/depot/files/no-such-id"),
        405: await client.post(url),
        412: await client.get(url, headers={"If-Match": '"other"'}),
        416: await client.get(url, headers={"Range": "bytes=999999-"}),
    }
    for status, response in answers.items():
        assert response.status_code == status
        assert response.headers["cache-control"] == "no-store", status
        assert "max-age" not in response.headers["cache-control"]
        assert _count(response, "x-content-type-options") == 1, status
        assert "content-disposition" not in response.headers, status
        assert "accept-ranges" not in response.headers, status
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert answers[416].headers["content-range"] == f"bytes */{len(CONTENT)}"
    # What did succeed is cacheable as configured.
    ok = await client.get(url)
    assert ok.headers["cache-control"] == "private, max-age=3600"
    assert _count(ok, "x-content-type-options") == 1


@pytest.mark.parametrize("value", ["garbage", "0", '"unterminated', "W/"])
@both_ways
async def test_a_malformed_if_match_matches_nothing(
    setup: dict[str, Any], client: httpx.AsyncClient, value: str
) -> None:
    url = f"/depot/files/{setup['ids']['files']}"
    response = await client.get(url, headers={"If-Match": value})
    assert response.status_code == 412
    # ... and it no longer switches off If-Unmodified-Since either
    future = "Sun, 06 Nov 2094 08:49:37 GMT"
    both = await client.get(url, headers={"If-Match": value, "If-Unmodified-Since": future})
    assert both.status_code == 412


@both_ways
async def test_a_huge_number_in_range_is_never_a_5xx(
    setup: dict[str, Any], client: httpx.AsyncClient
) -> None:
    url = f"/depot/files/{setup['ids']['files']}"
    nines = "9" * 5000
    start = await client.get(url, headers={"Range": f"bytes={nines}-"})
    assert start.status_code == 416
    suffix = await client.get(url, headers={"Range": f"bytes=-{nines}"})
    assert suffix.status_code == 206
    assert suffix.content == CONTENT
    end = await client.get(url, headers={"Range": f"bytes=10-{nines}"})
    assert (end.status_code, end.content) == (206, CONTENT[10:])


@both_ways
async def test_multipart_ranges_come_in_the_requested_order(
    setup: dict[str, Any], client: httpx.AsyncClient
) -> None:
    url = f"/depot/disk/{setup['ids']['disk']}"
    response = await client.get(url, headers={"Range": "bytes=5000-5009,0-9"})
    assert response.status_code == 206
    body = response.content
    first = body.index(b"Content-Range: bytes 5000-5009/")
    second = body.index(b"Content-Range: bytes 0-9/")
    assert first < second
    assert body.index(CONTENT[5000:5010]) < body.index(CONTENT[:10], first)
