"""Private files: signed expiring URLs, private storages, the authorize hook, and
``StoredFileResponse`` serving from an app's own route."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from depotx import (
    ConfigurationError,
    FileStorage,
    MemoryFileStorage,
    StorageManager,
    StoredFileResponse,
)
from depotx._signing import (
    BadSignature,
    SigningKeys,
    canonical,
    check_file_query,
    sign_file_query,
)

SECRET = "a-test-secret-of-enough-length"
OLD_SECRET = "the-previous-secret-still-valid"
CONTENT = bytes(range(256)) * 8  # 2 KiB


class Clock:
    """An injectable clock: signed URLs are made and checked against it."""

    def __init__(self, now: float = 1_900_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def not_here(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("requests under the mountpoint never reach the app")


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def manager(clock: Clock) -> StorageManager:
    return StorageManager(secret_key=SECRET, clock=clock)


# -- the signing rules, on their own ------------------------------------------------------


def test_canonical_form_cannot_be_shifted_between_fields() -> None:
    assert canonical("p", {"a": "bc", "d": ""}) != canonical("p", {"a": "b", "d": "c"})
    assert canonical("p", {"a": "x"}) != canonical("q", {"a": "x"})


def test_rotation_signs_with_the_first_and_accepts_any() -> None:
    keys = SigningKeys([SECRET.encode(), OLD_SECRET.encode()])
    old = SigningKeys([OLD_SECRET.encode()])
    fields = {"f": "v"}
    assert keys.sign("p", fields) == SigningKeys([SECRET.encode()]).sign("p", fields)
    assert keys.verify("p", fields, old.sign("p", fields))
    assert not SigningKeys([SECRET.encode()]).verify("p", fields, old.sign("p", fields))
    assert SECRET not in repr(keys)
    assert OLD_SECRET not in repr(keys)


def test_short_or_missing_secrets_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="16 bytes"):
        StorageManager(secret_key="short")
    with pytest.raises(ConfigurationError, match="no signing secret"):
        StorageManager(secret_key="")


# -- signed URLs through the middleware, on every backend ------------------------------------


async def test_signed_url_round_trip_on_every_backend(
    storage: FileStorage, clock: Clock, manager: StorageManager
) -> None:
    file_id = await storage.create(CONTENT, "report.pdf", "application/pdf")
    storage.private = True
    manager.register("files", storage)
    app = manager.make_middleware(not_here)
    url = manager.url_for(f"files/{file_id}", expires_in=600)
    assert url.startswith(f"/depot/files/{file_id}?expires=")
    async with client_for(app) as client:
        response = await client.get(url)
        assert response.status_code == 200
        assert response.content == CONTENT
        assert response.headers["cache-control"] == "private, max-age=600"
        unsigned = await client.get(f"/depot/files/{file_id}")
        assert unsigned.status_code == 403
        assert "etag" not in unsigned.headers
        assert unsigned.headers["cache-control"] == "no-store"
        ranged = await client.get(url, headers={"Range": "bytes=0-9"})
        assert (ranged.status_code, ranged.content) == (206, CONTENT[:10])
        clock.now += 601
        expired = await client.get(url)
        assert expired.status_code == 403


async def test_max_age_never_outlives_the_signature(manager: StorageManager, clock: Clock) -> None:
    storage = manager.configure("files", {"depot.backend": "memory", "depot.private": "true"})
    file_id = await storage.create(CONTENT)
    url = manager.url_for(f"files/{file_id}", expires_in=timedelta(hours=5))
    async with client_for(manager.make_middleware(not_here, cache_max_age=3600)) as client:
        assert (await client.get(url)).headers["cache-control"] == "private, max-age=3600"
        clock.now += 5 * 3600 - 30
        assert (await client.get(url)).headers["cache-control"] == "private, max-age=30"
        clock.now += 29
        assert (await client.get(url)).status_code == 200  # one second left
        clock.now += 1
        assert (await client.get(url)).status_code == 403  # the expiry itself: gone


async def test_download_and_filename_overrides_are_signed(manager: StorageManager) -> None:
    storage = manager.configure("files", {"depot.backend": "memory"})
    file_id = await storage.create(b"%PDF-1.4", "x.pdf", "application/pdf")
    url = manager.url_for(
        f"files/{file_id}", expires_in=60, download=True, filename="Rechnung März.pdf"
    )
    async with client_for(manager.make_middleware(not_here)) as client:
        response = await client.get(url)
        assert response.status_code == 200
        disposition = response.headers["content-disposition"]
        assert disposition.startswith("attachment;")
        assert "filename*=UTF-8''Rechnung%20M%C3%A4rz.pdf" in disposition
        plain = await client.get(f"/depot/files/{file_id}")
        assert plain.headers["content-disposition"].startswith("inline;")


def _tampered(url: str) -> list[str]:
    path, _, query = url.partition("?")
    params = parse_qs(query, keep_blank_values=True)
    signature = params["sig"][0]
    expires = params["expires"][0]
    other_sig = ("A" if signature[0] != "A" else "B") + signature[1:]
    return [
        path.replace("/files/", "/other/") + "?" + query,  # another storage
        path[:-1] + ("0" if path[-1] != "0" else "1") + "?" + query,  # another id
        path.upper().replace("/DEPOT/FILES/", "/depot/files/") + "?" + query,  # id case
        path + "?" + query.replace(f"expires={expires}", f"expires={int(expires) + 1}"),
        path + "?" + query.replace(f"expires={expires}", f"expires=0{expires}"),
        path + "?" + query.replace(f"expires={expires}", f"expires=%2B{expires}"),
        path + "?" + query + "&download=1",  # an override added
        path + "?" + query.replace("download=1", "download=true"),
        path + "?" + query.replace("download=1&", ""),  # an override removed
        path + "?" + query.replace("filename=", "filename=X"),
        path + "?" + query.replace(f"sig={signature}", f"sig={other_sig}"),
        path + "?" + query.replace(f"sig={signature}", f"sig={signature}="),  # padding
        path + "?" + query.replace(f"sig={signature}", ""),  # no signature
        path + "?" + query + f"&sig={signature}",  # given twice
        path,  # nothing at all
    ]


async def test_any_change_to_any_signed_part_fails(manager: StorageManager) -> None:
    storage = manager.configure("files", {"depot.backend": "memory", "depot.private": "true"})
    manager.configure("other", {"depot.backend": "memory"})
    file_id = await storage.create(CONTENT, "a.txt")
    url = manager.url_for(f"files/{file_id}", expires_in=60, download=True, filename="b.txt")
    async with client_for(manager.make_middleware(not_here)) as client:
        assert (await client.get(url)).status_code == 200
        for changed in _tampered(url):
            response = await client.get(changed)
            assert response.status_code in (403, 404), changed
            assert response.content in (b"Forbidden", b"Not Found"), changed
            assert "content-disposition" not in response.headers, changed


async def test_percent_encoding_of_the_same_values_is_the_same_request(
    manager: StorageManager,
) -> None:
    storage = manager.configure("files", {"depot.backend": "memory"})
    file_id = await storage.create(CONTENT, "a.txt")
    url = manager.url_for(f"files/{file_id}", expires_in=60, filename="a b.txt")
    assert "filename=a%20b.txt" in url
    async with client_for(manager.make_middleware(not_here)) as client:
        assert (await client.get(url.replace("a%20b.txt", "a+b.txt"))).status_code == 200
        assert (await client.get(url.replace("a%20b.txt", "a%20c.txt"))).status_code == 403


async def test_rotated_keys_keep_old_urls_working(clock: Clock) -> None:
    before = StorageManager(secret_key=OLD_SECRET, clock=clock)
    before.configure("files", {"depot.backend": "memory"})
    url = before.url_for("files/abc", expires_in=60)
    after = StorageManager(secret_key=f"{SECRET},{OLD_SECRET}", clock=clock)
    storage = after.configure("files", {"depot.backend": "memory", "depot.private": "true"})
    storage._new_id = lambda: "abc"  # type: ignore[method-assign]
    await storage.create(b"kept")
    async with client_for(after.make_middleware(not_here)) as client:
        assert (await client.get(url)).content == b"kept"
        assert (await client.get(after.url_for("files/abc", expires_in=60))).content == b"kept"
    dropped = StorageManager(secret_key=SECRET, clock=clock)
    dropped.register("files", storage)
    async with client_for(dropped.make_middleware(not_here)) as client:
        assert (await client.get(url)).status_code == 403


async def test_urls_sign_the_real_storage_not_the_alias(manager: StorageManager) -> None:
    storage = manager.configure("v1", {"depot.backend": "memory"})
    manager.configure("v2", {"depot.backend": "memory"})
    manager.alias("current", "v1")
    file_id = await storage.create(b"in v1")
    url = manager.url_for(f"current/{file_id}", expires_in=60)
    assert url.startswith("/depot/v1/")
    manager.alias("current", "v2")
    async with client_for(manager.make_middleware(not_here)) as client:
        assert (await client.get(url)).content == b"in v1"
        via_alias = url.replace("/depot/v1/", "/depot/current/")
        assert (await client.get(via_alias)).status_code == 403


def test_configuration_errors_come_at_startup(clock: Clock) -> None:
    bare = StorageManager(clock=clock)
    with pytest.raises(ConfigurationError, match="secret"):
        bare.configure("files", {"depot.backend": "memory", "depot.private": "true"})
    bare.configure("public", {"depot.backend": "memory"})
    with pytest.raises(ConfigurationError, match="secret"):
        bare.url_for("public/abc", expires_in=60)
    from_settings = StorageManager()
    from_settings.configure_many(
        {
            "depot.files.backend": "memory",
            "depot.files.private": "true",
            "depot.secret_key": f"{SECRET}, {OLD_SECRET}",
        }
    )
    with pytest.raises(ConfigurationError, match="expires_in"):
        from_settings.url_for("files/abc")
    with pytest.raises(ConfigurationError, match="expires_in"):
        from_settings.url_for("files/abc", download=True)
    assert SECRET not in repr(from_settings)
    from_env = StorageManager()
    from_env.configure_from_env(
        {"DEPOTX_SECRET_KEY": SECRET, "DEPOTX_F__BACKEND": "memory", "DEPOTX_F__PRIVATE": "1"}
    )
    assert from_env.url_for("f/abc", expires_in=5).startswith("/depot/f/abc?expires=")


def test_check_file_query_directly() -> None:
    keys = SigningKeys([SECRET.encode()])
    query = sign_file_query(keys, "s", "id1", expires=100)
    assert check_file_query(keys, "s", "id1", query, now=99) is not None
    assert check_file_query(keys, "s", "id1", "", now=99) is None
    assert check_file_query(keys, "s", "id1", "unrelated=1", now=99) is None


# -- the authorize hook --------------------------------------------------------------------


def test_a_verified_url_is_remembered_but_still_expires_and_forgeries_are_not() -> None:
    from depotx import _signing

    keys = SigningKeys([b"k" * 32])
    query = sign_file_query(keys, "docs", "a/b.pdf", expires=1000)
    assert check_file_query(keys, "docs", "a/b.pdf", query, now=10) is not None
    assert ("docs", "a/b.pdf", query) in keys._verified  # asked again: a lookup
    assert check_file_query(keys, "docs", "a/b.pdf", query, now=999) is not None
    with pytest.raises(BadSignature, match="expired"):
        check_file_query(keys, "docs", "a/b.pdf", query, now=1000)  # remembered, still expires
    with pytest.raises(BadSignature, match="does not match"):
        check_file_query(keys, "docs", "a/c.pdf", query, now=10)  # another file: checked
    forged = query[:-2] + ("AA" if not query.endswith("AA") else "BB")
    for _ in range(2):
        with pytest.raises(BadSignature, match="does not match"):
            check_file_query(keys, "docs", "a/b.pdf", forged, now=10)
    assert len(keys._verified) == 1  # only what verified is kept
    for n in range(_signing._VERIFIED_LIMIT + 10):
        other = sign_file_query(keys, "docs", f"f{n}", expires=1000)
        check_file_query(keys, "docs", f"f{n}", other, now=10)
    assert len(keys._verified) == _signing._VERIFIED_LIMIT  # bounded: the oldest go
    assert ("docs", "a/b.pdf", query) not in keys._verified
    assert check_file_query(keys, "docs", "a/b.pdf", query, now=10) is not None


def test_the_fast_signed_message_is_the_canonical_form() -> None:
    from depotx._signing import FILE_URL, _file_fields, _file_message

    for storage, file_id, expires, download, filename in (
        ("docs", "a/b.pdf", 7, False, None),
        ("médias", "été/ü.png", 1800000000, True, "x y.pdf"),
        ("s", "x", 1, False, ""),
    ):
        assert _file_message(storage, file_id, str(expires), download, filename) == canonical(
            FILE_URL, _file_fields(storage, file_id, expires, download, filename)
        )


async def test_authorize_hook_allows_denies_hides_and_fails_closed(
    manager: StorageManager, caplog: pytest.LogCaptureFixture
) -> None:
    storage = manager.configure("files", {"depot.backend": "memory", "depot.private": "true"})
    file_id = await storage.create(CONTENT)
    seen: list[tuple[str, str]] = []

    async def decide(scope: Scope, name: str, fid: str) -> bool:
        seen.append((name, fid))
        return dict(scope["headers"]).get(b"x-user") == b"owner"

    def broken(scope: Scope, name: str, fid: str) -> bool:
        raise RuntimeError("the session store is down")

    path = f"/depot/files/{file_id}"
    async with client_for(manager.make_middleware(not_here, authorize=decide)) as client:
        allowed = await client.get(path, headers={"X-User": "owner"})
        assert (allowed.status_code, allowed.content) == (200, CONTENT)
        assert allowed.headers["cache-control"] == "private, no-cache"
        assert (await client.get(path, headers={"X-User": "other"})).status_code == 403
    assert seen[0] == ("files", file_id)
    hidden = manager.make_middleware(not_here, authorize=decide, hide_forbidden=True)
    async with client_for(hidden) as client:
        assert (await client.get(path)).status_code == 404
    with caplog.at_level("ERROR", logger="depotx"):
        async with client_for(manager.make_middleware(not_here, authorize=broken)) as client:
            failed = await client.get(path)
    assert failed.status_code == 403
    assert "session store is down" not in failed.text
    assert any("authorize hook failed" in r.getMessage() for r in caplog.records)
    # A valid signature is an authorization of its own.
    async with client_for(manager.make_middleware(not_here, authorize=broken)) as client:
        signed = await client.get(manager.url_for(f"files/{file_id}", expires_in=60))
        assert signed.status_code == 200


def can_read(scope: Scope, name: str, file_id: str) -> bool:
    return file_id.startswith("ok")


async def test_authorize_from_settings_names_a_callable(manager: StorageManager) -> None:
    storage = manager.configure(
        "files",
        {"depot.backend": "memory", "depot.authorize": f"{__name__}:can_read"},
    )
    ids = iter(["ok-1", "no-1"])
    storage._new_id = lambda: next(ids)  # type: ignore[method-assign]
    await storage.create(b"yes")
    await storage.create(b"no")
    async with client_for(manager.make_middleware(not_here)) as client:
        assert (await client.get("/depot/files/ok-1")).content == b"yes"
        assert (await client.get("/depot/files/no-1")).status_code == 403
    with pytest.raises(ConfigurationError, match="authorize"):
        manager.configure("bad", {"depot.backend": "memory", "depot.authorize": "nope:missing"})


# -- StoredFileResponse ----------------------------------------------------------------------


@pytest.fixture
async def app_and_storage(tmp_path: Path) -> AsyncIterator[tuple[Starlette, FileStorage, str]]:
    manager = StorageManager()
    storage = manager.configure("disk", {"depot.storage_path": str(tmp_path / "files")})
    file_id = await storage.create(CONTENT, "data.bin", "application/x-test")
    page = await storage.create(b"<html><script>x</script></html>", "p.html", "text/html")

    async def download(request: Request) -> StoredFileResponse:
        if request.headers.get("x-user") != "owner":
            from starlette.exceptions import HTTPException

            raise HTTPException(403)
        stored = await storage.get(request.path_params["file_id"])
        return StoredFileResponse(
            stored,
            disposition=request.query_params.get("disposition"),  # type: ignore[arg-type]
        )

    app = Starlette(routes=[Route("/files/{file_id}", download, methods=["GET", "HEAD"])])
    yield app, storage, f"{file_id}|{page}"
    await manager.aclose()


async def test_stored_file_response_answers_as_the_middleware_does(
    app_and_storage: tuple[Starlette, FileStorage, str],
) -> None:
    app, _storage, ids = app_and_storage
    file_id, page = ids.split("|")
    owner = {"X-User": "owner"}
    async with client_for(app) as client:
        assert (await client.get(f"/files/{file_id}")).status_code == 403
        full = await client.get(f"/files/{file_id}", headers=owner)
        assert full.status_code == 200
        assert full.content == CONTENT
        assert full.headers["x-content-type-options"] == "nosniff"
        assert full.headers["cache-control"] == "private, no-cache"
        etag = full.headers["etag"]
        cond = await client.get(f"/files/{file_id}", headers={**owner, "If-None-Match": etag})
        assert (cond.status_code, cond.content) == (304, b"")
        failed = await client.get(f"/files/{file_id}", headers={**owner, "If-Match": '"x"'})
        assert failed.status_code == 412
        ranged = await client.get(f"/files/{file_id}", headers={**owner, "Range": "bytes=10-19"})
        assert (ranged.status_code, ranged.content) == (206, CONTENT[10:20])
        multi = await client.get(
            f"/files/{file_id}", headers={**owner, "Range": "bytes=1000-1009,0-9"}
        )
        assert multi.status_code == 206
        assert multi.headers["content-type"].startswith("multipart/byteranges")
        beyond = await client.get(f"/files/{file_id}", headers={**owner, "Range": "bytes=99999-"})
        assert beyond.status_code == 416
        head = await client.head(f"/files/{file_id}", headers=owner)
        assert (head.headers["content-length"], head.content) == (str(len(CONTENT)), b"")
        active = await client.get(f"/files/{page}?disposition=inline", headers=owner)
        assert active.headers["content-disposition"].startswith("attachment;")
        attach = await client.get(f"/files/{file_id}?disposition=attachment", headers=owner)
        assert attach.headers["content-disposition"].startswith("attachment;")


async def test_stored_file_response_retries_a_file_replaced_before_its_first_byte() -> None:
    from depotx import StoredFileChangedError
    from depotx._files import BytesStoredFile

    class Flaky(MemoryFileStorage):
        fail_next = True

        async def _get(self, file_id: str) -> Any:
            stored = await super()._get(file_id)
            if not self.fail_next:
                return stored
            self.fail_next = False

            class Changed(BytesStoredFile):
                async def _iter_range(self, start: int, end: int, chunk_size: int) -> Any:
                    raise StoredFileChangedError(file_id)
                    yield b""  # pragma: no cover

            return Changed(
                file_id,
                b"old!",
                filename="v1",
                content_type="text/plain",
                last_modified=stored.last_modified,
                checksum="old",
                storage=self,
            )

    storage = Flaky()
    file_id = await storage.create(b"new content", "v2.txt", "text/plain")
    stored = await storage.get(file_id)

    async def endpoint(request: Request) -> StoredFileResponse:
        return StoredFileResponse(stored)

    app = Starlette(routes=[Route("/f", endpoint)])
    async with client_for(app) as client:
        response = await client.get("/f")
    assert response.content == b"new content"
    assert stored.closed


async def test_fastapi_route_returns_a_stored_file_response(tmp_path: Path) -> None:
    from fastapi import FastAPI

    storage = MemoryFileStorage()
    file_id = await storage.create(b"invoice", "invoice.pdf", "application/pdf")
    api = FastAPI()

    @api.get("/invoices/{file_id}")
    async def invoice(file_id: str) -> StoredFileResponse:
        return StoredFileResponse(await storage.get(file_id), disposition="attachment")

    async with client_for(api) as client:
        response = await client.get(f"/invoices/{file_id}")
    assert response.status_code == 200
    assert response.content == b"invoice"
    assert response.headers["content-disposition"].startswith("attachment;")


# -- S3: private files redirect to presigned URLs that expire with the signature -------------


async def test_private_s3_redirects_to_a_short_lived_presigned_url(clock: Clock) -> None:
    from depotx.storages.s3 import S3Storage
    from tests.backends.s3 import CREDENTIALS, REGION, make_bucket, moto_endpoint

    endpoint = await asyncio.to_thread(moto_endpoint)
    bucket = await asyncio.to_thread(make_bucket, endpoint, versioned=False)
    import time

    clock.now = time.time()  # presigned URLs are dated by the real clock
    manager = StorageManager(secret_key=SECRET, clock=clock)
    storage = S3Storage(
        bucket=bucket,
        endpoint_url=endpoint,
        region_name=REGION,
        addressing_style="path",
        public_url_mode="presigned",
        presigned_expires=3600,
        **CREDENTIALS,
    )
    storage.private = True
    manager.register("s3", storage)
    async with manager:
        file_id = await storage.create(b"<svg xmlns='http://www.w3.org/2000/svg'/>", "x.svg")
        with pytest.raises(ConfigurationError, match="expires_in"):
            manager.url_for(f"s3/{file_id}")
        url = manager.url_for(f"s3/{file_id}", expires_in=120, filename="pic.svg")
        async with client_for(manager.make_middleware(not_here)) as client:
            assert (await client.get(f"/depot/s3/{file_id}")).status_code == 403
            redirect = await client.get(url)
        assert redirect.status_code == 307
        location = redirect.headers["location"]
        query = parse_qs(urlsplit(location).query)
        assert int(query["X-Amz-Expires"][0]) <= 120
        assert query["response-content-disposition"][0].startswith("attachment;")
        assert "pic.svg" in query["response-content-disposition"][0]
        async with httpx.AsyncClient() as http:
            served = await http.get(location)
        assert served.status_code == 200
        assert served.headers["content-disposition"].startswith("attachment;")


# -- the CLI ---------------------------------------------------------------------------------


def test_cli_url_prints_a_signed_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from depotx.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DEPOTX_SECRET_KEY", SECRET)
    monkeypatch.setenv("DEPOTX_DOCS__STORAGE_PATH", str(tmp_path / "docs"))
    monkeypatch.setenv("DEPOTX_DOCS__PRIVATE", "true")
    assert main(["url", "docs/abc-1"]) == 1
    assert "expires_in" in capsys.readouterr().err
    assert main(["url", "docs/abc-1", "--expires", "1h", "--download"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("/depot/docs/abc-1?expires=")
    assert "download=1" in out
    assert "&sig=" in out


async def test_the_private_files_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.setenv("INVOICES_PATH", str(tmp_path / "invoices"))
    path = Path(__file__).parent.parent / "examples" / "private_files.py"
    spec = importlib.util.spec_from_file_location("private_files_example", path)
    assert spec is not None
    assert spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    alice = {"Authorization": "Bearer alice"}
    async with client_for(example.app) as client:
        created = await client.post(
            "/invoices", files={"file": ("inv.pdf", b"%PDF-1.4 42")}, headers=alice
        )
        assert created.status_code == 201
        file_id = created.json()["id"]
        own = await client.get(f"/invoices/{file_id}", headers=alice)
        assert (own.status_code, own.content) == (200, b"%PDF-1.4 42")
        assert own.headers["content-disposition"].startswith("attachment;")
        other = await client.get(f"/invoices/{file_id}", headers={"Authorization": "Bearer bob"})
        assert other.status_code == 404
        assert (await client.get(f"/depot/invoices/{file_id}")).status_code == 403
        link = (await client.get(f"/invoices/{file_id}/link", headers=alice)).json()["url"]
        assert (await client.get(link)).content == b"%PDF-1.4 42"
    await example.manager.aclose()
