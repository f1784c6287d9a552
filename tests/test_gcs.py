"""Google Cloud Storage: the whole contract and GCS's own rules, against the emulator over HTTP.

The bucket keeps no old generations (no versioning): a reader is pinned by
``generation=``, so a read after a replace fails with ``StoredFileChangedError``
before a byte of the other version (``pins_versions = False``), unless it already
holds the bytes (``get`` brings the first MiB).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote

import httpx
import pytest

from depotx import (
    BackendError,
    ConfigurationError,
    FileStorage,
    InvalidFileIdError,
    StorageManager,
    StoredFileChangedError,
    StoredFileNotFoundError,
)
from depotx.testing import StorageContract
from tests._net import free_port
from tests.backends._gcs import (
    GCS_FACTORIES,
    emulator_endpoint,
    make,
    missing,
    service_account,
    start_emulator,
    stop_emulator,
)

gcs_module = pytest.importorskip("depotx.storages.gcs", reason="pip install 'depotx[gcs]'")
GCSStorage = gcs_module.GCSStorage
sign_url_v4 = gcs_module.sign_url_v4


class TestGCSContract(StorageContract):
    pins_versions = False

    @pytest.fixture(params=sorted(GCS_FACTORIES))
    async def storage(
        self, request: pytest.FixtureRequest, tmp_path: Path
    ) -> AsyncIterator[FileStorage]:
        storage = await GCS_FACTORIES[request.param](tmp_path)
        yield storage
        await storage.aclose()


# -- configuration -------------------------------------------------------------------------


async def test_configured_by_short_name_and_by_filedepots_class_path(tmp_path: Path) -> None:
    key_file = tmp_path / "service-account.json"
    key_file.write_text(json.dumps(service_account()))
    manager = StorageManager()
    endpoint = emulator_endpoint()
    bucket = f"depotx-{uuid.uuid4().hex[:12]}"
    short = manager.configure(
        "short",
        {
            "depot.backend": "gcs",
            "depot.bucket": bucket,
            "depot.api_endpoint": endpoint,
            "depot.create_bucket": "true",
            "depot.prefix": "files/",
            "depot.credentials": json.dumps(service_account()),  # JSON text: a dict
        },
    )
    # filedepot's own keys, as its docs show them; policy stays private unless given.
    legacy = manager.configure(
        "legacy",
        {
            "depot.backend": "depot.io.gcs.GCSStorage",
            "depot.project_id": "depotx-tests",
            "depot.credentials": str(key_file),  # a path
            "depot.bucket": bucket,
            "depot.storage_class": "STANDARD",
            "depot.prefix": "files/",
            "depot.api_endpoint": endpoint,
        },
    )
    assert isinstance(short, GCSStorage)
    assert isinstance(legacy, GCSStorage)
    assert legacy.policy == "private"
    assert legacy.project_id == "depotx-tests"
    file_id = await short.create(b"configured", "c.txt")
    async with await manager.get_file(f"legacy/{file_id}") as stored:
        assert await stored.read() == b"configured"
    assert legacy._sign("GET", "x", 60).startswith(f"{endpoint}/{bucket}/x?")  # the key file
    with pytest.raises(InvalidFileIdError, match="at most 1024 bytes"):
        await short.exists("/".join(["a" * 255] * 4))  # 1,023 + 6 for the prefix
    await manager.aclose()


def test_bad_options_are_refused_in_words() -> None:
    from depotx.storages.gcs import GCSStorage as Storage

    with pytest.raises(ConfigurationError, match=r"needs depot\.bucket"):
        StorageManager().configure("g", {"depot.backend": "gcs"})
    with pytest.raises(ConfigurationError, match=r"unknown policy 'public'"):
        Storage(bucket="b", policy="public")
    with pytest.raises(ConfigurationError, match="prefix must end with"):
        Storage(bucket="b", prefix="no-slash")
    with pytest.raises(ConfigurationError, match="multiple of 256 KiB"):
        Storage(bucket="b", chunk_size=1_000_000)
    with pytest.raises(ConfigurationError, match="custom_domain is used by public_url_mode"):
        Storage(bucket="b", custom_domain="cdn.example.com")
    unsigned = Storage(bucket="b", public_url_mode="presigned", credentials={"type": "x"})
    with pytest.raises(ConfigurationError, match="signed with a service account's key"):
        unsigned.public_url("some-id")
    assert "private_key" not in repr(make(credentials=service_account()))


@pytest.mark.parametrize("form", ["host:port", "http://host:port"])
async def test_storage_emulator_host_in_both_forms(
    monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    endpoint = emulator_endpoint()
    host = endpoint.removeprefix("http://")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", host if form == "host:port" else endpoint)
    storage = GCSStorage(
        bucket=f"depotx-{uuid.uuid4().hex[:12]}",
        create_bucket=True,
        public_url_mode="public",
        credentials=service_account(),
    )
    try:
        assert storage.api_endpoint == endpoint
        file_id = await storage.create(b"via the environment", "env.txt")
        url = storage.public_url(file_id)
        assert url == f"{endpoint}/{storage.bucket}/{file_id}"  # public URLs point there too
        async with httpx.AsyncClient() as client:
            assert (await client.get(url)).content == b"via the environment"
    finally:
        await storage.aclose()


# -- filedepot's own GCSStorage, both directions -------------------------------------------


@pytest.fixture
def filedepot_gcs(monkeypatch: pytest.MonkeyPatch) -> Any:
    """filedepot's ``GCSStorage`` on the emulator (google-cloud-storage, sync).

    filedepot insists on service-account credentials; the emulator takes none, so
    its credential loader hands google-cloud-storage anonymous ones.
    """
    gcs = pytest.importorskip("depot.io.gcs")
    from google.auth.credentials import AnonymousCredentials

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator_endpoint())
    monkeypatch.setattr(
        gcs.service_account.Credentials,
        "from_service_account_info",
        staticmethod(lambda info: AnonymousCredentials()),
    )
    return gcs.GCSStorage


async def test_filedepot_reads_what_depotx_writes_and_back(filedepot_gcs: Any) -> None:
    bucket = f"depotx-{uuid.uuid4().hex[:12]}"
    theirs = await asyncio.to_thread(
        filedepot_gcs,
        project_id="depotx-tests",
        credentials=service_account(),
        bucket=bucket,
        policy="private",
        prefix="files/",
    )
    ours = make(bucket=bucket, prefix="files/")
    try:
        # filedepot wrote it: depotx reads it as it is.
        old_id = await asyncio.to_thread(
            theirs.create, b"%PDF-1.4 from filedepot", "résumé 2026.pdf", "application/pdf"
        )
        async with await ours.get(old_id) as stored:
            assert stored.filename == "résumé 2026.pdf"
            assert stored.content_type == "application/pdf"
            assert await stored.read() == b"%PDF-1.4 from filedepot"
            assert abs((stored.last_modified - datetime.now(timezone.utc)).total_seconds()) < 60

        # depotx wrote it: filedepot reads it as it is.
        new_id = await ours.create(b"depotx bytes", "naïve name.txt", "text/plain")
        stored_there = await asyncio.to_thread(theirs.get, new_id)
        assert stored_there.filename == "naïve name.txt"
        assert stored_there.content_type == "text/plain"
        assert stored_there.content_length == len(b"depotx bytes")
        async with await ours.get(new_id) as mine:
            assert stored_there.last_modified == mine.last_modified.replace(tzinfo=None)
        assert await asyncio.to_thread(stored_there.read) == b"depotx bytes"

        # filedepot lists object names, prefix and all; depotx lists ids.
        assert sorted(await asyncio.to_thread(theirs.list)) == sorted(
            [f"files/{old_id}", f"files/{new_id}"]
        )
        assert [i async for i in ours.list()] == sorted([old_id, new_id])

        # A replace by either side is seen by the other.
        await ours.replace(old_id, b"replaced by depotx")
        assert await asyncio.to_thread(theirs.get(old_id).read) == b"replaced by depotx"
        assert (await asyncio.to_thread(theirs.get, old_id)).filename == "résumé 2026.pdf"
        await asyncio.to_thread(theirs.delete, new_id)
        assert not await ours.exists(new_id)
    finally:
        await ours.aclose()


# -- URLs -------------------------------------------------------------------------------


def test_v4_signatures_are_googles_own() -> None:
    """The same inputs give the very URL google-cloud-storage signs (its own V4 code)."""
    from google.cloud.storage._signing import generate_signed_url_v4
    from google.oauth2 import service_account as google_accounts

    account = service_account()
    credentials = google_accounts.Credentials.from_service_account_info(account)
    when = datetime(2026, 12, 7, 10, 11, 12, tzinfo=timezone.utc)
    cases: list[dict[str, Any]] = [
        {"method": "GET", "name": "files/a b/ü~x.png", "query": {}, "headers": {}},
        {
            "method": "GET",
            "name": "x",
            "query": {"response-content-disposition": 'attachment; filename="a.html"'},
            "headers": {},
        },
        {
            "method": "PUT",
            "name": "depotx-upload\\1800000000-abc",
            "query": {},
            "headers": {
                "Content-Type": "image/png",
                "x-goog-content-length-range": "0,1000",
                "x-goog-if-generation-match": "0",
            },
        },
    ]
    for case in cases:
        ours = sign_url_v4(
            method=case["method"],
            endpoint="https://storage.googleapis.com",
            path=f"/bucket/{case['name']}",
            client_email=account["client_email"],
            private_key=account["private_key"],
            expires=900,
            headers=case["headers"],
            query=case["query"],
            now=when,
        )
        googles = generate_signed_url_v4(
            credentials,
            resource="/bucket/" + quote(case["name"], safe="/~"),
            expiration=900,
            api_access_endpoint="https://storage.googleapis.com",
            method=case["method"],
            headers=dict(case["headers"]),
            query_parameters=dict(case["query"]),
            _request_timestamp=when.strftime("%Y%m%dT%H%M%SZ"),
        )
        assert ours == googles


async def test_presigned_and_public_urls_serve_the_file_with_the_disposition_rule() -> None:
    presigned = make(public_url_mode="presigned")
    try:
        page = await presigned.create(b"<html>x</html>", "page.html")
        async with await presigned.get(page) as stored:
            url = stored.public_url
        assert url is not None
        assert url.startswith(f"{presigned.api_endpoint}/{presigned.bucket}/{page}?")
        query = parse_qs(url.split("?", 1)[1])
        assert query["X-Goog-Algorithm"] == ["GOOG4-RSA-SHA256"]
        assert query["response-content-disposition"][0].startswith("attachment")
        async with httpx.AsyncClient() as client:
            served = await client.get(url)
            assert served.status_code == 200
            assert served.content == b"<html>x</html>"
            assert served.headers["content-disposition"].startswith("attachment")
        async with await presigned.get(page) as stored:
            temporary = presigned.temporary_url(
                stored, expires_in=60, download=True, filename="other.html"
            )
        assert temporary is not None
        assert "X-Goog-Expires=60&" in temporary
        assert "other.html" in unquote(temporary)
    finally:
        await presigned.aclose()
    public = make(public_url_mode="public")
    cdn = make(public_url_mode="public", custom_domain="cdn.example.com")
    try:
        file_id = await public.create(b"open", "open.txt")
        assert public.public_url(file_id) == f"{public.api_endpoint}/{public.bucket}/{file_id}"
        assert cdn.public_url("a/b c") == "https://cdn.example.com/a/b%20c"
    finally:
        await public.aclose()
        await cdn.aclose()


# -- serving through the middleware -----------------------------------------------------------


async def nothing(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("not reached")


async def test_the_middleware_proxies_ranges_conditionals_and_heads() -> None:
    storage = make()
    manager = StorageManager()
    manager.register("gcs", storage)
    data = os.urandom(3 * 1024 * 1024 + 17)  # past the first MiB that get() brings
    file_id = await storage.create(data, "d.bin")
    transport = httpx.ASGITransport(app=manager.make_middleware(nothing))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        url = manager.url_for(f"gcs/{file_id}")
        whole = await client.get(url)
        assert whole.status_code == 200
        assert whole.content == data
        tail = len(data) - 100
        part = await client.get(url, headers={"Range": f"bytes=1000-1999,{tail}-"})
        assert part.status_code == 206
        assert data[1000:2000] in part.content
        assert data[tail:] in part.content
        again = await client.get(url, headers={"If-None-Match": whole.headers["etag"]})
        assert again.status_code == 304
        head = await client.head(url)
        assert head.headers["content-length"] == str(len(data))
        assert head.content == b""
        missing_file = await client.get(manager.url_for("gcs/" + str(uuid.uuid4())))
        assert missing_file.status_code == 404
        assert "no-store" in missing_file.headers["cache-control"]
    await manager.aclose()


@pytest.mark.parametrize("mode", ["public", "presigned"])
async def test_the_middleware_redirects_to_the_bucket(mode: str) -> None:
    storage = make(public_url_mode=mode)
    manager = StorageManager()
    manager.register("gcs", storage)
    file_id = await storage.create(b"<svg/>", "i.svg", "image/svg+xml")
    transport = httpx.ASGITransport(app=manager.make_middleware(nothing))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        answer = await client.get(f"/depot/gcs/{file_id}")
    assert answer.status_code in (302, 307), answer.text
    location = answer.headers["location"]
    assert location.startswith(f"{storage.api_endpoint}/{storage.bucket}/{file_id}")
    async with httpx.AsyncClient() as client:
        served = await client.get(location)
    assert served.content == b"<svg/>"
    if mode == "presigned":  # active content: an attachment, whoever links to it
        assert served.headers["content-disposition"].startswith("attachment")
    await manager.aclose()


# -- reads are pinned, listings page ----------------------------------------------------------


async def test_a_read_after_a_replace_gets_no_byte_of_the_new_version() -> None:
    storage = make()
    try:
        old = os.urandom(3 * 1024 * 1024)
        file_id = await storage.create(old, "v1.bin")
        async with await storage.get(file_id) as reader:
            await storage.replace(file_id, b"v2" * 2_000_000, "v2.bin")
            got = bytearray()

            async def read_all() -> None:
                async for chunk in reader.iter_bytes():
                    got.extend(chunk)

            with pytest.raises(StoredFileChangedError):
                await read_all()
            assert bytes(got) == old[: len(got)]  # only the first MiB get() brought
            assert len(got) <= 1024 * 1024
    finally:
        await storage.aclose()


async def test_listing_follows_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gcs_module, "PAGE_SIZE", 2)
    storage = make()
    try:
        ids = sorted([f"k/{n}" for n in range(5)] + ["a", "z"])
        for file_id in ids:
            await storage.create(b"x", file_id=file_id)
        assert [i async for i in storage.list()] == ids
        assert [i async for i in storage.list(delimiter="/")] == ["a", "k/", "z"]
        assert [i async for i in storage.list("k/", start_after="k/2")] == ["k/3", "k/4"]
    finally:
        await storage.aclose()


# -- direct uploads: a signed PUT to the bucket ------------------------------------------------


async def test_direct_upload_with_a_signed_put() -> None:
    storage = make()
    manager = StorageManager(secret_key="s" * 32)
    manager.register("gcs", storage)
    try:
        assert not await storage.exists("x")  # the bucket is created on first use
        ticket = await storage.prepare_upload("photo.png", "image/png", max_size=1000)
        shape = ticket.to_dict()["upload"]
        assert shape["method"] == "PUT"
        assert shape["file_field"] is None
        assert shape["headers"] == {
            "Content-Type": "image/png",
            "x-goog-content-length-range": "0,1000",
            "x-goog-if-generation-match": "0",
        }
        assert "depotx-upload%5C" in shape["url"]
        png = b"\x89PNG\r\n\x1a\n" + bytes(200)
        async with httpx.AsyncClient() as client:
            too_big = await client.put(shape["url"], content=bytes(1001), headers=shape["headers"])
            assert too_big.status_code == 400  # refused before it is stored
            sent = await client.put(shape["url"], content=png, headers=shape["headers"])
            assert sent.status_code == 200, sent.text
            replay = await client.put(shape["url"], content=b"other", headers=shape["headers"])
            assert replay.status_code == 412  # a ticket writes once
        assert [i async for i in storage.list()] == []  # not a file until finalized
        file_id = await manager.finalize_upload(ticket.token)
        assert file_id == f"gcs/{ticket_file_id(manager, ticket.token)}"
        assert await storage.finalize_upload(ticket.token) == file_id.split("/", 1)[1]
        async with await manager.get_file(file_id) as stored:
            assert stored.filename == "photo.png"
            assert stored.content_type == "image/png"
            assert stored.checksum == hashlib.sha256(png).hexdigest()
            assert await stored.read() == png
        assert [i async for i in storage.list()] == [file_id.split("/", 1)[1]]
        # An HTML page claimed as a PNG is stored as what it is.
        html = await storage.prepare_upload("x.png", "image/png", max_size=1000)
        form = html.to_dict()["upload"]
        async with httpx.AsyncClient() as client:
            await client.put(form["url"], content=b"<html><script>", headers=form["headers"])
        html_id = await storage.finalize_upload(html.token)
        async with await storage.get(html_id) as stored:
            assert stored.content_type.startswith("text/html")
        # An abandoned ticket: cleanup removes its upload once it expired.
        stale = await storage.prepare_upload("s.bin", max_size=10, expires_in=1)
        async with httpx.AsyncClient() as client:
            form = stale.to_dict()["upload"]
            await client.put(form["url"], content=b"abc", headers=form["headers"])
        await asyncio.sleep(2.1)
        assert await storage.cleanup() == 1
    finally:
        await manager.aclose()


def ticket_file_id(manager: StorageManager, token: str) -> str:
    from depotx.uploads._direct import read_grant

    return read_grant(manager, token).file_id


# -- failures: the emulator stopped mid-upload ---------------------------------------------


async def test_a_service_that_dies_mid_upload_leaves_nothing_and_comes_back(
    tmp_path: Path,
) -> None:
    reason = missing()
    if reason is not None:
        pytest.skip(reason)
    port = free_port()
    data = str(tmp_path / "gcs")
    process = start_emulator(port, data)
    storage = GCSStorage(
        bucket="failures",
        api_endpoint=f"http://127.0.0.1:{port}",
        create_bucket=True,
        chunk_size=256 * 1024,
        connect_timeout=2,
        read_timeout=3,
        max_retries=1,
    )
    try:
        await storage.create(b"before", file_id="kept.txt")
        sent = 0

        async def body() -> Any:
            nonlocal sent
            for _ in range(40):
                if sent == 1024 * 1024:
                    stop_emulator(process)  # the service goes away mid-upload
                sent += 256 * 1024
                yield b"x" * (256 * 1024)
                await asyncio.sleep(0)

        with pytest.raises(BackendError) as failure:
            await storage.create(body(), "big.bin", file_id="half.bin")
        assert failure.value.__cause__ is not None
        process = start_emulator(port, data)
        assert not await storage.exists("half.bin")  # nothing half-written is visible
        with pytest.raises(StoredFileNotFoundError):
            await storage.get("half.bin")
        async with await storage.get("kept.txt") as stored:
            assert await stored.read() == b"before"  # usable again, data kept
        assert [i async for i in storage.list()] == ["kept.txt"]
        await storage.create(b"after", file_id="again.txt")
        assert await storage.exists("again.txt")
    finally:
        await storage.aclose()
        stop_emulator(process)


async def test_a_service_that_is_down_is_a_backend_error_at_once() -> None:
    storage = GCSStorage(
        bucket="nowhere", api_endpoint=f"http://127.0.0.1:{free_port()}", max_retries=0
    )
    try:
        with pytest.raises(BackendError, match=r"nowhere|Cannot connect") as failure:
            await storage.get("some-file")
        assert failure.value.__cause__ is not None
        with pytest.raises(BackendError):
            await storage.create(b"x")
    finally:
        await storage.aclose()


async def test_without_a_key_direct_uploads_go_through_the_app(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tokens from the metadata server sign nothing: the ticket then names the app's route."""
    from depotx.uploads._direct import presigns

    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    storage = make(credentials=None)
    manager = StorageManager(secret_key="s" * 32)
    manager.register("gcs", storage)
    try:
        assert not presigns(storage)
        ticket = await storage.prepare_upload("a.txt", max_size=100)
        assert ticket.to_dict()["upload"]["url"] == "/depot/.upload"
    finally:
        await manager.aclose()
