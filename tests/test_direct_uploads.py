"""Direct uploads: tickets, the upload itself (to moto over HTTP, or to the middleware), finalize.

moto does not enforce POST policies (shared/notes/moto.md): the policy each ticket
carries is checked as a document against S3's documented rules, and finalize is
shown to refuse (and delete) what the policy would have refused.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from depotx import (
    FileStorage,
    MemoryFileStorage,
    StorageManager,
    UploadTicket,
    UploadTokenError,
    ValidationError,
)
from tests.conftest import BACKEND_FACTORIES

SECRET = "direct-upload-tests-secret"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 100
HTML = b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>\n"
MiB = 1024 * 1024
APP_PATH_BACKENDS = sorted(name for name in BACKEND_FACTORIES if not name.startswith("s3"))


async def not_found_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b""})


@pytest.fixture(params=APP_PATH_BACKENDS)
async def through_app(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[StorageManager, FileStorage, httpx.AsyncClient]]:
    """A storage that cannot presign, its manager, and a client of the middleware."""
    manager = StorageManager(secret_key=SECRET)
    storage = await BACKEND_FACTORIES[request.param](tmp_path)
    manager.register("files", storage)
    manager.set_upload_staging(MemoryFileStorage())
    app = manager.make_middleware(not_found_app)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        yield manager, storage, client
    await manager.aclose()


async def send_form(client: httpx.AsyncClient, ticket: UploadTicket, data: bytes) -> httpx.Response:
    """What depotx-upload.js does with a form ticket: the fields, then the file."""
    form = ticket.to_dict()["upload"]
    return await client.post(
        form["url"],
        data=form["fields"],
        files={"file": ("upload", data, "application/octet-stream")},
        headers=form["headers"],
    )


async def ids(storage: FileStorage) -> list[str]:
    return [file_id async for file_id in storage.list()]


# -- storages without presigning: through the middleware --------------------------------------


async def test_through_the_app_upload_then_finalize_once(
    through_app: tuple[StorageManager, FileStorage, httpx.AsyncClient],
) -> None:
    manager, storage, client = through_app
    ticket = await storage.prepare_upload(
        "report.png", "image/png", max_size=1000, metadata={"owner": "7"}
    )
    shape = ticket.to_dict()
    assert shape["upload"] == {
        "method": "POST",
        "url": "/depot/.upload",
        "fields": {},
        "headers": {"Depot-Upload-Token": ticket.token},
        "file_field": "file",
    }
    assert shape["max_size"] == 1000
    assert ticket.token not in repr(ticket)
    response = await send_form(client, ticket, PNG)
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    assert await ids(storage) == []  # not a file until finalized
    file_id = await storage.finalize_upload(ticket.token)
    assert await storage.finalize_upload(ticket.token) == file_id  # twice: the same id
    async with await storage.get(file_id) as stored:
        assert await stored.read() == PNG
        assert stored.filename == "report.png"
        assert stored.content_type == "image/png"
        assert stored.metadata == {"owner": "7"}
    assert await ids(storage) == [file_id]
    assert await ids(manager.upload_staging) == []
    again = await send_form(client, ticket, PNG)
    assert again.status_code == 409 or again.status_code == 201
    assert await manager.finalize_upload(ticket.token) == f"files/{file_id}"


async def test_through_the_app_the_limit_is_enforced_while_streaming(
    through_app: tuple[StorageManager, FileStorage, httpx.AsyncClient],
) -> None:
    manager, storage, client = through_app
    ticket = await storage.prepare_upload("big.bin", max_size=100)
    response = await send_form(client, ticket, b"x" * 101)
    assert response.status_code == 413
    assert "upload limit of 100 B" in response.json()["error"]
    assert await ids(manager.upload_staging) == []
    with pytest.raises(ValidationError, match="nothing was uploaded"):
        await storage.finalize_upload(ticket.token)


async def test_a_disguised_html_upload_is_finalized_as_html_and_served_as_attachment(
    through_app: tuple[StorageManager, FileStorage, httpx.AsyncClient],
) -> None:
    manager, storage, client = through_app
    ticket = await storage.prepare_upload("cat.png", "image/png", max_size=1000)
    assert (await send_form(client, ticket, HTML)).status_code == 201
    file_id = await storage.finalize_upload(ticket.token)
    async with await storage.get(file_id) as stored:
        assert stored.content_type.startswith("text/html")
    served = await client.get(manager.url_for(f"files/{file_id}"))
    assert served.headers["content-disposition"].startswith("attachment")


async def test_bad_tokens_are_refused_with_clear_errors(
    through_app: tuple[StorageManager, FileStorage, httpx.AsyncClient],
) -> None:
    manager, storage, client = through_app
    ticket = await storage.prepare_upload("a.txt", max_size=10)
    body, signature = ticket.token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["max_size"] = 10**12
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    for token, message in [
        (f"{forged}.{signature}", "signature does not match"),
        (ticket.token[:-2] + "AA", "signature does not match"),
        ("not a token", "malformed"),
        ("", "malformed"),
    ]:
        with pytest.raises(UploadTokenError, match=message):
            await storage.finalize_upload(token)
    refused = await client.post(
        "/depot/.upload",
        files={"file": ("a.txt", b"x")},
        headers={"Depot-Upload-Token": f"{forged}.{signature}"},
    )
    assert refused.status_code == 403
    assert "signature" in refused.json()["error"]
    other = MemoryFileStorage()
    manager.register("other", other)
    with pytest.raises(UploadTokenError, match="for storage 'files'"):
        await other.finalize_upload(ticket.token)


async def test_expired_tickets_cannot_be_finalized_and_cleanup_sweeps_them(
    through_app: tuple[StorageManager, FileStorage, httpx.AsyncClient],
) -> None:
    manager, storage, client = through_app
    now = [time.time()]
    manager.clock = lambda: now[0]
    ticket = await storage.prepare_upload("late.txt", max_size=100, expires_in=60)
    assert (await send_form(client, ticket, b"too late")).status_code == 201
    kept = await storage.prepare_upload("kept.txt", max_size=100, expires_in=3600)
    assert (await send_form(client, kept, b"in time")).status_code == 201
    now[0] += 61
    with pytest.raises(UploadTokenError, match="expired"):
        await storage.finalize_upload(ticket.token)
    # cleanup compares staged expiries with the real time: move the first one's past it.
    staged = await ids(manager.upload_staging)
    assert len(staged) == 2
    expired = min(staged, key=lambda key: int(key.split("/")[1].split("-")[0]))
    async with await manager.upload_staging.get(expired) as stored:
        data = await stored.read()
    await manager.upload_staging.delete(expired)
    folder, name = expired.split("/")
    await manager.upload_staging.create(data, file_id=f"{folder}/1-{name.split('-', 1)[1]}")
    assert await storage.cleanup() == 1
    assert len(await ids(manager.upload_staging)) == 1
    assert await storage.finalize_upload(kept.token)


async def test_prepare_needs_a_secret_and_sane_arguments(tmp_path: Path) -> None:
    manager = StorageManager()
    storage = manager.register("files", MemoryFileStorage())
    from depotx import ConfigurationError

    with pytest.raises(ConfigurationError, match="secret"):
        await storage.prepare_upload("a.txt", max_size=10)
    with pytest.raises(ConfigurationError, match="StorageManager"):
        await MemoryFileStorage().prepare_upload("a.txt", max_size=10)
    manager.set_secret_key(SECRET)
    with pytest.raises(ValidationError, match="max_size"):
        await storage.prepare_upload("a.txt", max_size=10, size=11)
    with pytest.raises(ConfigurationError, match="7 days"):
        await storage.prepare_upload("a.txt", max_size=10, expires_in=timedelta(days=8))
    with pytest.raises(ValidationError, match="file name"):
        await storage.prepare_upload("", max_size=10)


# -- S3, against moto over HTTP ---------------------------------------------------------------


@pytest.fixture
async def s3(tmp_path: Path) -> AsyncIterator[tuple[StorageManager, Any]]:
    from tests.backends.s3 import FACTORIES

    manager = StorageManager(secret_key=SECRET)
    storage = await FACTORIES["s3-prefix"](tmp_path)
    storage.direct_multipart_threshold = 5 * MiB
    storage.part_size = 5 * MiB
    manager.register("bucket", storage)
    yield manager, storage
    await manager.aclose()


def policy_of(ticket: UploadTicket) -> dict[str, Any]:
    return dict(json.loads(base64.b64decode(ticket.fields["policy"])))


async def test_s3_presigned_post_then_finalize(s3: tuple[StorageManager, Any]) -> None:
    _, storage = s3
    ticket = await storage.prepare_upload(
        "photo.png", "image/png", max_size=2000, expires_in=600, metadata={"album": "x"}
    )
    shape = ticket.to_dict()["upload"]
    assert shape["url"].startswith(storage._client_kwargs["endpoint_url"])
    assert shape["headers"] == {}
    key = ticket.fields["key"]
    assert key.startswith("depot/files/depotx-upload\\")
    policy = policy_of(ticket)
    conditions = policy["conditions"]
    assert ["content-length-range", 0, 2000] in conditions
    assert {"Content-Type": "image/png"} in conditions
    assert {"key": key} in conditions
    assert {"bucket": storage.bucket} in conditions
    expiration = policy["expiration"]
    assert expiration.startswith(ticket.expires.strftime("%Y-%m-%dT%H:%M"))

    async with httpx.AsyncClient() as client:
        form = ticket.to_dict()["upload"]
        response = await client.post(
            form["url"], data=form["fields"], files={"file": ("photo.png", PNG)}
        )
    assert response.status_code in (200, 204), response.text
    assert await ids(storage) == []  # the staged object is never listed
    file_id = await storage.finalize_upload(ticket.token)
    assert await storage.finalize_upload(ticket.token) == file_id
    async with await storage.get(file_id) as stored:
        assert await stored.read() == PNG
        assert stored.content_type == "image/png"
        assert stored.filename == "photo.png"
        assert stored.checksum == hashlib.sha256(PNG).hexdigest()
        assert stored.metadata == {"album": "x"}
    assert await ids(storage) == [file_id]
    client_s3 = await storage._client()
    listed = await client_s3.list_objects_v2(Bucket=storage.bucket, Prefix="depot/files/depotx")
    assert listed.get("KeyCount", 0) == 0  # the staged object is gone


async def test_s3_finalize_refuses_what_the_policy_refuses_and_sniffs_the_type(
    s3: tuple[StorageManager, Any],
) -> None:
    _, storage = s3
    ticket = await storage.prepare_upload("small.png", "image/png", max_size=50)
    async with httpx.AsyncClient() as client:
        form = ticket.to_dict()["upload"]
        # moto stores it although the policy's content-length-range forbids it
        await client.post(form["url"], data=form["fields"], files={"file": ("x", b"y" * 51)})
    with pytest.raises(ValidationError, match="max_size"):
        await storage.finalize_upload(ticket.token)
    client_s3 = await storage._client()
    listed = await client_s3.list_objects_v2(Bucket=storage.bucket, Prefix="depot/files/depotx")
    assert listed.get("KeyCount", 0) == 0  # deleted, not left behind

    disguised = await storage.prepare_upload("cat.png", "image/png", max_size=1000)
    async with httpx.AsyncClient() as client:
        form = disguised.to_dict()["upload"]
        await client.post(form["url"], data=form["fields"], files={"file": ("cat.png", HTML)})
    file_id = await storage.finalize_upload(disguised.token)
    async with await storage.get(file_id) as stored:
        assert stored.content_type.startswith("text/html")
    head = await client_s3.head_object(Bucket=storage.bucket, Key=storage._key(file_id))
    assert head["ContentDisposition"].startswith("attachment")


async def test_s3_multipart_direct_upload(s3: tuple[StorageManager, Any]) -> None:
    _, storage = s3
    data = PNG + bytes(range(256)) * (12 * MiB // 256)
    ticket = await storage.prepare_upload("big.png", max_size=20 * MiB, size=len(data))
    shape = ticket.to_dict()
    assert shape["multipart"] == {"part_size": 5 * MiB, "part_count": 3}
    urls = await storage.presign_upload_parts(ticket.token, [3, 1, 2])
    assert sorted(urls) == [1, 2, 3]
    async with httpx.AsyncClient() as client:
        for number, url in urls.items():
            start = (number - 1) * 5 * MiB
            response = await client.put(url, content=data[start : start + 5 * MiB])
            assert response.status_code == 200, response.text
    assert await ids(storage) == []
    file_id = await storage.finalize_upload(ticket.token)
    assert await storage.finalize_upload(ticket.token) == file_id
    async with await storage.get(file_id) as stored:
        assert hashlib.sha256(await stored.read()).digest() == hashlib.sha256(data).digest()
        assert stored.content_type == "image/png"


async def test_s3_multipart_with_missing_parts_is_refused_and_aborted(
    s3: tuple[StorageManager, Any],
) -> None:
    _, storage = s3
    ticket = await storage.prepare_upload("big.bin", max_size=20 * MiB, size=12 * MiB)
    urls = await storage.presign_upload_parts(ticket.token, [1])
    async with httpx.AsyncClient() as client:
        await client.put(urls[1], content=b"x" * 5 * MiB)
    with pytest.raises(ValidationError, match="not the 12582912 announced"):
        await storage.finalize_upload(ticket.token)
    client_s3 = await storage._client()
    uploads = await client_s3.list_multipart_uploads(Bucket=storage.bucket)
    assert uploads.get("Uploads", []) == []
    form = await storage.prepare_upload("small.bin", max_size=10)
    with pytest.raises(UploadTokenError, match="form upload"):
        await storage.presign_upload_parts(form.token, [1])


async def test_s3_abort_and_cleanup_remove_abandoned_uploads(
    s3: tuple[StorageManager, Any],
) -> None:
    manager, storage = s3
    client_s3 = await storage._client()
    multipart = await storage.prepare_upload("a.bin", max_size=20 * MiB, size=6 * MiB)
    await storage.abort_upload(multipart.token)
    assert (await client_s3.list_multipart_uploads(Bucket=storage.bucket)).get("Uploads", []) == []
    # An abandoned upload whose ticket has expired: cleanup deletes it.
    manager.clock = lambda: time.time() - 3600  # tickets made "an hour ago"
    stale = await storage.prepare_upload("old.txt", max_size=100, expires_in=60)
    async with httpx.AsyncClient() as client:
        form = stale.to_dict()["upload"]
        await client.post(form["url"], data=form["fields"], files={"file": ("old.txt", b"old")})
    stale_parts = await storage.prepare_upload("old.bin", max_size=20 * MiB, size=6 * MiB)
    manager.clock = time.time
    fresh = await storage.prepare_upload("new.txt", max_size=100)
    async with httpx.AsyncClient() as client:
        form = fresh.to_dict()["upload"]
        await client.post(form["url"], data=form["fields"], files={"file": ("new.txt", b"new")})
    assert await storage.cleanup() == 2  # the stale object and the stale parts
    listed = await client_s3.list_objects_v2(Bucket=storage.bucket, Prefix="depot/files/depotx")
    assert [item["Key"] for item in listed["Contents"]] == [fresh.fields["key"]]
    assert (await client_s3.list_multipart_uploads(Bucket=storage.bucket)).get("Uploads", []) == []
    assert stale_parts.multipart
    assert await storage.finalize_upload(fresh.token)


async def test_s3_can_apply_cors_to_a_bucket_it_creates(tmp_path: Path) -> None:
    import uuid

    from depotx.storages.s3 import S3Storage
    from tests.backends.s3 import CREDENTIALS, REGION, moto_endpoint

    storage = S3Storage(
        bucket=f"depotx-cors-{uuid.uuid4().hex[:12]}",
        endpoint_url=moto_endpoint(),
        region_name=REGION,
        create_bucket=True,
        cors_origins="https://app.example, http://127.0.0.1:8000",
        **CREDENTIALS,
    )
    try:
        await storage.create(b"x", "x.txt")
        client = await storage._client()
        rules = (await client.get_bucket_cors(Bucket=storage.bucket))["CORSRules"]
        assert rules[0]["AllowedOrigins"] == ["https://app.example", "http://127.0.0.1:8000"]
        assert set(rules[0]["AllowedMethods"]) == {"GET", "HEAD", "POST", "PUT"}
        assert rules[0]["ExposeHeaders"] == ["ETag"]
    finally:
        await storage.aclose()
