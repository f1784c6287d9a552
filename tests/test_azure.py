"""Azure Blob: the whole contract and Azure's own rules, against Azurite over HTTP.

Azurite has no blob versioning: a reader is pinned by ``If-Match`` on the ETag,
so a read after a replace fails with ``StoredFileChangedError`` before a byte of
the other version (``pins_versions = False``), unless it already holds the bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from depotx import (
    BackendError,
    ConfigurationError,
    FileStorage,
    InvalidFileIdError,
    StorageManager,
    StoredFileNotFoundError,
    ValidationError,
)
from depotx.testing import StorageContract
from depotx.uploads._direct import presigns
from tests._net import free_port
from tests.backends._azure import (
    AZURE_FACTORIES,
    azurite_endpoint,
    connection_string,
    make,
    missing,
    start_azurite,
    stop_azurite,
)


class TestAzureContract(StorageContract):
    pins_versions = False

    @pytest.fixture(params=sorted(AZURE_FACTORIES))
    async def storage(
        self, request: pytest.FixtureRequest, tmp_path: Path
    ) -> AsyncIterator[FileStorage]:
        storage = await AZURE_FACTORIES[request.param](tmp_path)
        yield storage
        await storage.aclose()


# -- configuration, URLs, serving ---------------------------------------------------------


async def test_configured_from_settings_and_options_checked() -> None:
    manager = StorageManager()
    storage = manager.configure(
        "blobs",
        {
            "depot.backend": "azure",
            "depot.container": f"depotx-{uuid.uuid4().hex[:12]}",
            "depot.connection_string": connection_string(azurite_endpoint()),
            "depot.create_container": "true",
            "depot.prefix": "files/",
        },
    )
    file_id = await storage.create(b"configured", "c.txt")
    async with await manager.get_file(f"blobs/{file_id}") as stored:
        assert await stored.read() == b"configured"
    with pytest.raises(InvalidFileIdError, match="at most 1024 characters"):
        await storage.exists("/".join(["a" * 255] * 4))  # 1,029 with the prefix
    await manager.aclose()
    with pytest.raises(
        ConfigurationError, match=r"account_url \(with a credential\) or connection_string"
    ):
        manager.configure("nothing", {"depot.backend": "azure", "depot.container": "x"})
    with pytest.raises(ConfigurationError, match="prefix must end with"):
        make(prefix="no-slash")


async def test_presigned_urls_are_sas_urls_with_the_disposition_rule() -> None:
    storage = make(public_url_mode="presigned")
    try:
        page = await storage.create(b"<html>x</html>", "page.html")
        async with await storage.get(page) as stored:
            url = stored.public_url
        assert url is not None
        assert "sig=" in url
        async with httpx.AsyncClient() as client:
            served = await client.get(url)
            assert served.status_code == 200
            assert served.content == b"<html>x</html>"
            assert served.headers["content-disposition"].startswith("attachment")
            tampered = await client.get(url.replace("sp=r", "sp=rw"))
            assert tampered.status_code == 403
    finally:
        await storage.aclose()


async def test_the_middleware_serves_and_asks_once(monkeypatch: pytest.MonkeyPatch) -> None:
    storage = make()
    manager = StorageManager()
    manager.register("blobs", storage)
    data = os.urandom(300_000)
    file_id = await storage.create(data, "d.bin")

    async def nothing(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("not reached")

    transport = httpx.ASGITransport(app=manager.make_middleware(nothing))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        url = manager.url_for(f"blobs/{file_id}")
        whole = await client.get(url)
        assert whole.content == data
        part = await client.get(url, headers={"Range": "bytes=10-19"})
        assert (part.status_code, part.content) == (206, data[10:20])
        again = await client.get(url, headers={"If-None-Match": whole.headers["etag"]})
        assert again.status_code == 304
        head = await client.head(url)
        assert head.headers["content-length"] == str(len(data))
    await manager.aclose()


# -- failures: the emulator stopped mid-upload ---------------------------------------------


async def test_a_service_that_dies_mid_upload_leaves_nothing_and_comes_back() -> None:
    reason = missing()
    if reason is not None:
        pytest.skip(reason)
    from depotx.storages.azure import AzureBlobStorage

    port = free_port()
    location = tempfile.mkdtemp(prefix="depotx-azurite-failure-")
    process = start_azurite(port, location)
    storage = AzureBlobStorage(
        container="failures",
        connection_string=connection_string(f"http://127.0.0.1:{port}/devstoreaccount1"),
        create_container=True,
        block_size=256 * 1024,
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
                    stop_azurite(process)  # the service goes away mid-upload
                sent += 256 * 1024
                yield b"x" * (256 * 1024)
                await asyncio.sleep(0)

        with pytest.raises(BackendError) as failure:
            await storage.create(body(), "big.bin", file_id="half.bin")
        assert failure.value.__cause__ is not None
        process = start_azurite(port, location)
        assert not await storage.exists("half.bin")  # nothing half-written is visible
        with pytest.raises(StoredFileNotFoundError):
            await storage.get("half.bin")
        async with await storage.get("kept.txt") as stored:
            assert await stored.read() == b"before"  # usable again, data kept
        assert [i async for i in storage.list()] == ["kept.txt"]
    finally:
        await storage.aclose()
        stop_azurite(process)


# -- direct uploads: a SAS URL to Put Blob ---------------------------------------------------


async def test_direct_upload_with_a_sas_put() -> None:
    from depotx.uploads._direct import read_grant

    storage = make(prefix="files/")
    manager = StorageManager(secret_key="s" * 32)
    manager.register("blobs", storage)
    try:
        assert not await storage.exists("x")  # the container is created on first use
        assert presigns(storage)
        ticket = await storage.prepare_upload("photo.png", "image/png", max_size=1000)
        form = ticket.to_dict()["upload"]
        assert form["method"] == "PUT"
        assert form["headers"] == {
            "x-ms-blob-type": "BlockBlob",
            "Content-Type": "image/png",
            "If-None-Match": "*",
        }
        assert "/files/depotx-upload%7F" in form["url"]
        assert "sp=cw" in form["url"]  # create and write: not read, not delete
        png = b"\x89PNG\r\n\x1a\n" + bytes(200)
        async with httpx.AsyncClient() as client:
            sent = await client.put(form["url"], content=png, headers=form["headers"])
            assert sent.status_code == 201, sent.text
            replay = await client.put(form["url"], content=b"other", headers=form["headers"])
            assert replay.status_code == 409  # a ticket writes once
            elsewhere = form["url"].replace("depotx-upload%7F", "depotx-upload%7Fother")
            forged = await client.put(elsewhere, content=png, headers=form["headers"])
            assert forged.status_code == 403  # the SAS names its blob
        assert [i async for i in storage.list()] == []  # not a file until finalized
        file_id = await storage.finalize_upload(ticket.token)
        assert file_id == read_grant(manager, ticket.token).file_id
        assert await storage.finalize_upload(ticket.token) == file_id
        async with await storage.get(file_id) as stored:
            assert stored.filename == "photo.png"
            assert stored.content_type == "image/png"
            assert stored.checksum == hashlib.sha256(png).hexdigest()
            assert await stored.read() == png
        assert [i async for i in storage.list()] == [file_id]

        # A SAS cannot limit the size: finalize refuses it, and deletes it.
        big = await storage.prepare_upload("big.bin", max_size=10)
        form = big.to_dict()["upload"]
        async with httpx.AsyncClient() as client:
            await client.put(form["url"], content=bytes(11), headers=form["headers"])
        with pytest.raises(ValidationError, match="10 bytes"):
            await storage.finalize_upload(big.token)
        with pytest.raises(ValidationError, match="nothing was uploaded"):
            await storage.finalize_upload(big.token)

        # An abandoned ticket: cleanup removes its upload once it expired.
        stale = await storage.prepare_upload("s.bin", max_size=10, expires_in=1)
        form = stale.to_dict()["upload"]
        async with httpx.AsyncClient() as client:
            await client.put(form["url"], content=b"abc", headers=form["headers"])
        await asyncio.sleep(2.1)
        assert await storage.cleanup() == 1
    finally:
        await manager.aclose()


async def test_without_the_account_key_direct_uploads_go_through_the_app() -> None:
    from depotx.storages.azure import AzureBlobStorage

    storage = AzureBlobStorage(
        container="x", account_url="https://acct.blob.core.windows.net", credential=None
    )
    assert not presigns(storage)  # DefaultAzureCredential signs no SAS


@pytest.mark.parametrize("mode", ["public", "presigned"])
async def test_the_middleware_redirects_to_the_container(mode: str) -> None:
    from azure.storage.blob.aio import BlobServiceClient

    container = f"depotx-{uuid.uuid4().hex[:12]}"
    connection = connection_string(azurite_endpoint())
    async with BlobServiceClient.from_connection_string(connection) as service:
        # Public URLs serve only from a container that allows anonymous reads.
        await service.create_container(
            container, public_access="blob" if mode == "public" else None
        )
    storage = make(container, public_url_mode=mode)
    manager = StorageManager()
    manager.register("blobs", storage)

    async def nothing(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("not reached")

    file_id = await storage.create(b"<svg/>", "i.svg", "image/svg+xml")
    transport = httpx.ASGITransport(app=manager.make_middleware(nothing))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        answer = await client.get(f"/depot/blobs/{file_id}")
    assert answer.status_code == 307, answer.text
    location = answer.headers["location"]
    assert location.startswith(f"{azurite_endpoint()}/{container}/{file_id}")
    async with httpx.AsyncClient() as client:
        served = await client.get(location)
    assert served.status_code == 200
    assert served.content == b"<svg/>"
    # Active content is an attachment, whoever links to it: the blob's own settings.
    assert served.headers["content-disposition"].startswith("attachment")
    await manager.aclose()
