"""S3 backend behaviour beyond the shared contract, against moto's server over real HTTP.

moto's in-process mode cannot serve aiobotocore (see ``tests/backends/s3.py``), so
every test here talks HTTP to a ``ThreadedMotoServer`` on 127.0.0.1 that this
module starts on a free port and stops when it is done.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.server
import os
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

from depotx import (
    BackendError,
    ConfigurationError,
    FileStorage,
    StorageManager,
    StoredFileChangedError,
    StoredFileExistsError,
    StoredFileNotFoundError,
    ValidationError,
)
from depotx.storages.s3 import S3Storage
from depotx.testing import StorageContract
from tests.backends.s3 import serialize_writes

MiB = 1024 * 1024
KEYS = {"access_key_id": "testing", "secret_access_key": "testing"}
REGION = "us-east-1"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    serialize_writes(server)
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def boto(endpoint: str) -> Iterator[Any]:
    """A plain boto3 client, to look at the bucket behind the backend's back."""
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    yield client
    client.close()


@pytest.fixture
def bucket(boto: Any) -> str:
    name = f"depotx-{uuid.uuid4().hex[:16]}"
    boto.create_bucket(Bucket=name)
    return name


@pytest.fixture
async def s3(endpoint: str, bucket: str) -> AsyncIterator[S3Storage]:
    storage = S3Storage(bucket=bucket, endpoint_url=endpoint, region_name=REGION, **KEYS)
    yield storage
    await storage.aclose()


def make(endpoint: str, bucket: str, **options: Any) -> S3Storage:
    return S3Storage(
        bucket=bucket, endpoint_url=endpoint, region_name=REGION, **{**KEYS, **options}
    )


async def chunks(*parts: bytes, fail_after: int | None = None) -> AsyncIterator[bytes]:
    for index, part in enumerate(parts):
        if fail_after is not None and index == fail_after:
            raise RuntimeError("source failed mid-upload")
        yield part


def uploads_in_progress(boto: Any, bucket: str) -> list[Any]:
    return list(boto.list_multipart_uploads(Bucket=bucket).get("Uploads", []))


def object_keys(boto: Any, bucket: str) -> list[str]:
    return [item["Key"] for item in boto.list_objects_v2(Bucket=bucket).get("Contents", [])]


async def spy_parts(storage: S3Storage, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the part numbers the storage sends (and let a test fail some)."""
    client = await storage._client()
    sent: list[int] = []
    real = client.upload_part

    async def upload_part(**kwargs: Any) -> Any:
        sent.append(kwargs["PartNumber"])
        return await real(**kwargs)

    monkeypatch.setattr(client, "upload_part", upload_part)
    return sent


# -- the contract on an unversioned bucket ---------------------------------------------


class TestUnversionedBucketContract(StorageContract):
    """The whole contract on a plain (unversioned) bucket, the most common setup.

    Without versions S3 cannot keep serving the old bytes once a key is replaced,
    so a reader is pinned by If-Match instead: its read fails with
    ``StoredFileChangedError`` before yielding a byte of another version. The two
    contract tests about readers during a replace assert exactly that here.
    """

    pins_versions = False

    @pytest.fixture
    async def storage(self, endpoint: str, bucket: str) -> AsyncIterator[FileStorage]:
        storage = make(endpoint, bucket, prefix="up/")
        yield storage
        await storage.aclose()

    async def test_a_reader_opened_for_metadata_fails_before_another_versions_bytes(
        self, storage: FileStorage
    ) -> None:
        file_id = await storage.create(b"v1" * 1000, "v1.bin")
        async with await storage.get(file_id, metadata_only=True) as reader:
            await storage.replace(file_id, b"v2", "v2.bin")
            with pytest.raises(StoredFileChangedError):
                await reader.read()


# -- reads: one request -------------------------------------------------------------------


async def calls_to(storage: S3Storage, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every S3 operation the storage's client makes, by name."""
    client = await storage._client()
    seen: list[str] = []
    real = client._make_api_call

    async def spy(operation: str, params: Any) -> Any:
        seen.append(operation)
        return await real(operation, params)

    monkeypatch.setattr(client, "_make_api_call", spy)
    return seen


async def test_get_and_read_is_one_getobject(
    s3: S3Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = await s3.create(b"x" * 1024, "small.bin")
    big = await s3.create(os.urandom(3 * 1024 * 1024), "big.bin")
    seen = await calls_to(s3, monkeypatch)
    async with await s3.get(small) as stored:
        assert await stored.read() == b"x" * 1024
    assert seen == ["GetObject"]
    seen.clear()
    async with await s3.get(big) as stored:
        total = 0
        async for chunk in stored.iter_bytes(chunk_size=65536):
            total += len(chunk)
    assert (seen, total) == (["GetObject"], 3 * 1024 * 1024)
    seen.clear()
    # A range after opening: the opening body is given up, the range asked for.
    async with await s3.get(big) as stored:
        assert len(b"".join([c async for c in stored.iter_bytes(10, 20)])) == 10
    assert seen == ["GetObject", "GetObject"]
    seen.clear()
    # Opened and closed unread: nothing more is asked.
    async with await s3.get(small):
        pass
    async with await s3.get(small, metadata_only=True) as stored:
        assert stored.content_length == 1024
    assert seen == ["GetObject", "HeadObject"]


async def test_the_middleware_asks_s3_once_per_request(
    s3: S3Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    from depotx import StorageManager

    manager = StorageManager()
    manager.register("s3", s3)
    file_id = await s3.create(b"hello" * 200, "h.txt")
    seen = await calls_to(s3, monkeypatch)

    async def nothing(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("not reached")

    transport = httpx.ASGITransport(app=manager.make_middleware(nothing))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        url = manager.url_for(f"s3/{file_id}")
        got = await client.get(url)
        assert (got.status_code, seen) == (200, ["GetObject"])
        seen.clear()
        head = await client.head(url)
        assert (head.status_code, seen) == (200, ["HeadObject"])
        seen.clear()
        again = await client.get(url, headers={"If-None-Match": got.headers["etag"]})
        assert (again.status_code, seen) == (304, ["HeadObject"])
        seen.clear()
        part = await client.get(url, headers={"Range": "bytes=0-9"})
        assert (part.status_code, part.content, seen) == (
            206,
            b"hellohello",
            ["HeadObject", "GetObject"],
        )


# -- uploads -----------------------------------------------------------------------------


async def test_small_content_is_one_put_with_its_sha256(
    s3: S3Storage, boto: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = await spy_parts(s3, monkeypatch)
    file_id = await s3.create(b"small", "s.txt")
    assert sent == []
    head = boto.head_object(Bucket=bucket, Key=file_id)
    assert head["Metadata"]["x-depotx-checksum"] == hashlib.sha256(b"small").hexdigest()
    async with await s3.get(file_id) as stored:
        assert stored.checksum == hashlib.sha256(b"small").hexdigest()


async def test_multipart_above_the_part_size(
    endpoint: str, bucket: str, boto: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(11 * MiB + 17)
    async with make(endpoint, bucket, part_size=5 * MiB, max_concurrency=2) as storage:
        assert isinstance(storage, S3Storage)
        sent = await spy_parts(storage, monkeypatch)
        pieces = [data[i : i + 700_000] for i in range(0, len(data), 700_000)]
        file_id = await storage.create(chunks(*pieces), "big.bin", "application/octet-stream")
        assert sorted(sent) == [1, 2, 3]
        head = boto.head_object(Bucket=bucket, Key=file_id)
        assert head["ETag"].strip('"').endswith("-3"), "stored as a 3-part multipart upload"
        assert head["ContentLength"] == len(data)
        assert uploads_in_progress(boto, bucket) == []
        async with await storage.get(file_id) as stored:
            assert stored.filename == "big.bin"
            assert stored.checksum == head["ETag"].strip('"')
            # A range across the first part boundary, then the whole content.
            start, end = 5 * MiB - 10, 5 * MiB + 10
            assert b"".join([c async for c in stored.iter_bytes(start, end)]) == data[start:end]
            assert await stored.read() == data


async def test_multipart_keeps_at_most_max_concurrency_parts_in_flight(
    endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with make(endpoint, bucket, part_size=5 * MiB, max_concurrency=2) as storage:
        assert isinstance(storage, S3Storage)
        client = await storage._client()
        real = client.upload_part
        in_flight = 0
        peak = 0

        async def upload_part(**kwargs: Any) -> Any:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                await asyncio.sleep(0.05)  # slow network: the source outpaces the uploads
                return await real(**kwargs)
            finally:
                in_flight -= 1

        monkeypatch.setattr(client, "upload_part", upload_part)
        part = os.urandom(5 * MiB)
        file_id = await storage.create(chunks(part, part, part, part, b"end"), "x.bin")
        assert peak == 2
        async with await storage.get(file_id) as stored:
            assert stored.content_length == 4 * len(part) + 3


async def test_source_failure_mid_multipart_aborts_the_upload(
    endpoint: str, bucket: str, boto: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with make(endpoint, bucket, part_size=5 * MiB) as storage:
        assert isinstance(storage, S3Storage)
        sent = await spy_parts(storage, monkeypatch)
        part = os.urandom(6 * MiB)
        with pytest.raises(RuntimeError, match="mid-upload"):
            await storage.create(chunks(part, part, part, fail_after=2), "half.bin")
        assert sent, "the failure came after parts were uploaded"
        assert uploads_in_progress(boto, bucket) == []
        assert object_keys(boto, bucket) == []


async def test_part_failure_aborts_and_raises_backend_error(
    endpoint: str, bucket: str, boto: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with make(endpoint, bucket, part_size=5 * MiB) as storage:
        assert isinstance(storage, S3Storage)
        client = await storage._client()
        real = client.upload_part

        async def upload_part(**kwargs: Any) -> Any:
            if kwargs["PartNumber"] == 2:
                raise ClientError(
                    {"Error": {"Code": "InternalError", "Message": "injected"}}, "UploadPart"
                )
            return await real(**kwargs)

        monkeypatch.setattr(client, "upload_part", upload_part)
        data = os.urandom(11 * MiB)
        with pytest.raises(BackendError, match="unavailable") as caught:
            await storage.create(data, "x.bin")
        assert isinstance(caught.value.__cause__, ClientError)
        assert uploads_in_progress(boto, bucket) == []
        assert object_keys(boto, bucket) == []


async def test_cancelled_multipart_is_aborted(
    endpoint: str, bucket: str, boto: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with make(endpoint, bucket, part_size=5 * MiB) as storage:
        assert isinstance(storage, S3Storage)
        client = await storage._client()
        real = client.upload_part
        first_part_sent = asyncio.Event()

        async def upload_part(**kwargs: Any) -> Any:
            response = await real(**kwargs)
            first_part_sent.set()
            return response

        monkeypatch.setattr(client, "upload_part", upload_part)

        async def stalled() -> AsyncIterator[bytes]:
            yield os.urandom(6 * MiB)
            await asyncio.Event().wait()  # a client that stops sending
            yield b"never"

        task = asyncio.ensure_future(storage.create(stalled(), "stalled.bin"))
        await asyncio.wait_for(first_part_sent.wait(), 30)
        assert uploads_in_progress(boto, bucket) != []
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert uploads_in_progress(boto, bucket) == []
        assert object_keys(boto, bucket) == []


async def test_replace_with_multipart_failure_keeps_the_old_object(
    endpoint: str, bucket: str
) -> None:
    async with make(endpoint, bucket, part_size=5 * MiB) as storage:
        file_id = await storage.create(b"old", "old.txt")
        part = os.urandom(6 * MiB)
        with pytest.raises(RuntimeError, match="mid-upload"):
            await storage.replace(file_id, chunks(part, part, fail_after=1))
        async with await storage.get(file_id) as stored:
            assert (stored.filename, await stored.read()) == ("old.txt", b"old")


# -- reading -------------------------------------------------------------------------------


async def test_empty_range_sends_no_request(s3: S3Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    file_id = await s3.create(b"0123456789")
    client = await s3._client()
    real = client.get_object
    calls: list[dict[str, Any]] = []

    async def get_object(**kwargs: Any) -> Any:
        calls.append(kwargs)
        return await real(**kwargs)

    monkeypatch.setattr(client, "get_object", get_object)
    async with await s3.get(file_id, metadata_only=True) as stored:
        assert [c async for c in stored.iter_bytes(4, 4)] == []
        assert calls == [], "opened for metadata, a HEAD only; an empty range reads nothing"
        assert b"".join([c async for c in stored.iter_bytes(2, 5)]) == b"234"
        assert b"".join([c async for c in stored.iter_bytes()]) == b"0123456789"
    assert len(calls) == 2
    assert calls[0]["Range"] == "bytes=2-4"
    assert calls[0]["IfMatch"].startswith('"')
    # A whole-file read asks for no range, and is pinned all the same.
    assert "Range" not in calls[1]
    assert calls[1]["IfMatch"] == calls[0]["IfMatch"]


async def test_read_after_delete_is_not_found(s3: S3Storage) -> None:
    file_id = await s3.create(b"soon gone")
    async with await s3.get(file_id, metadata_only=True) as stored:
        await s3.delete(file_id)
        with pytest.raises(StoredFileNotFoundError):
            await stored.read()


async def test_a_file_opened_whole_keeps_its_bytes_after_a_delete(s3: S3Storage) -> None:
    """Like an open file on disk: the GetObject that opened it is already answering."""
    file_id = await s3.create(b"soon gone")
    async with await s3.get(file_id) as stored:
        await s3.delete(file_id)
        assert await stored.read() == b"soon gone"


async def test_no_such_key_is_not_found(s3: S3Storage) -> None:
    with pytest.raises(StoredFileNotFoundError):
        await s3.get(str(uuid.uuid4()))
    assert not await s3.exists(str(uuid.uuid4()))


async def test_versioned_bucket_pins_the_reader(endpoint: str, bucket: str, boto: Any) -> None:
    boto.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    async with make(endpoint, bucket) as storage:
        file_id = await storage.create(b"first version")
        async with await storage.get(file_id) as reader:
            await storage.replace(file_id, b"second")
            assert await reader.read() == b"first version"


# -- errors ----------------------------------------------------------------------------------


async def test_missing_bucket_is_a_clear_error(endpoint: str) -> None:
    async with make(endpoint, "depotx-no-such-bucket") as storage:
        for call in (
            storage.get(str(uuid.uuid4())),
            storage.exists(str(uuid.uuid4())),
            storage.create(b"x"),
        ):
            with pytest.raises(BackendError, match="'depotx-no-such-bucket' does not exist"):
                await call
        with pytest.raises(BackendError, match="create_bucket"):
            [file_id async for file_id in storage.list()]


async def test_create_bucket_option(endpoint: str, boto: Any) -> None:
    name = f"depotx-{uuid.uuid4().hex[:16]}"
    async with make(endpoint, name, create_bucket=True, policy="public-read") as storage:
        file_id = await storage.create(b"x")
    assert object_keys(boto, name) == [file_id]
    # Public ACLs allowed on the new bucket, public bucket policies still blocked.
    block = boto.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
    assert block["BlockPublicAcls"] is False
    assert block["BlockPublicPolicy"] is True


class _Unavailable(http.server.BaseHTTPRequestHandler):
    """An S3 that always answers 503 SlowDown, counting the requests."""

    requests = 0
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
        b"<Message>Please reduce your request rate.</Message></Error>"
    )

    def _answer(self) -> None:
        # The body is not read: botocore sends "Expect: 100-continue" and waits for
        # the final answer before sending it; HTTP/1.0 closes the connection after.
        type(self).requests += 1
        self.send_response(503)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(self.body)

    do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test counts requests instead."""


@pytest.fixture
def unavailable() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Unavailable.requests = 0
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


async def test_throttling_is_retried_then_backend_error(unavailable: str) -> None:
    storage = make(unavailable, "depotx-busy", config={"retries": {"total_max_attempts": 3}})
    assert storage._config.retries == {"mode": "standard", "total_max_attempts": 3}
    async with storage:
        with pytest.raises(BackendError, match="unavailable or throttling") as caught:
            await storage.create(b"x")
        assert isinstance(caught.value.__cause__, ClientError)
        assert _Unavailable.requests == 3, "standard mode: 3 attempts, then the error"
        _Unavailable.requests = 0
        with pytest.raises(BackendError, match="unavailable or throttling"):
            await storage.get(str(uuid.uuid4()))
        assert _Unavailable.requests == 3


async def test_unreachable_endpoint_is_backend_error() -> None:
    storage = make("http://127.0.0.1:9", "depotx-x", config={"retries": {"total_max_attempts": 1}})
    async with storage:
        with pytest.raises(BackendError, match="Could not connect"):
            await storage.exists(str(uuid.uuid4()))


async def test_no_credentials_is_a_configuration_error(
    endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    storage = S3Storage(
        bucket=bucket, endpoint_url=endpoint, region_name=REGION, public_url_mode="presigned"
    )
    async with storage:
        with pytest.raises(ConfigurationError, match="credentials"):
            await storage.get(str(uuid.uuid4()))
        with pytest.raises(ConfigurationError, match="credentials"):
            storage.public_url(str(uuid.uuid4()))


async def test_metadata_too_large_for_s3_is_refused_before_upload(
    s3: S3Storage, boto: Any, bucket: str
) -> None:
    with pytest.raises(ValidationError, match="2048"):
        await s3.create(b"x", metadata={"notes": "n" * 2100})
    assert object_keys(boto, bucket) == []
    file_id = await s3.create(b"x", metadata={"Owner": "Zoë", "emoji": "📄"})
    async with await s3.get(file_id) as stored:
        assert stored.metadata == {"Owner": "Zoë", "emoji": "📄"}


# -- URLs ------------------------------------------------------------------------------------


async def test_presigned_url_serves_the_file(endpoint: str, bucket: str) -> None:
    async with make(endpoint, bucket, public_url_mode="presigned", presigned_expires=60) as s:
        file_id = await s.create(b"signed bytes", "s.txt")
        url = s.public_url(file_id)
        assert url is not None
        query = parse_qs(urlsplit(url).query)
        assert query["X-Amz-Expires"] == ["60"]
        assert "X-Amz-Signature" in query
        async with await s.get(file_id) as stored:
            assert stored.public_url is not None
            assert stored.public_url.split("?")[0] == url.split("?")[0]
        async with httpx.AsyncClient() as http:
            response = await http.get(url)
        assert response.status_code == 200
        assert response.content == b"signed bytes"


async def test_public_read_objects_get_their_plain_url(
    endpoint: str, bucket: str, boto: Any
) -> None:
    async with make(
        endpoint, bucket, policy="public-read", public_url_mode="public", prefix="pub/"
    ) as storage:
        file_id = await storage.create(b"for everyone")
        url = storage.public_url(file_id)
        assert url == f"{endpoint}/{bucket}/pub/{file_id}"
        grants = boto.get_object_acl(Bucket=bucket, Key=f"pub/{file_id}")["Grants"]
        assert any(
            g["Grantee"].get("URI", "").endswith("/global/AllUsers") and g["Permission"] == "READ"
            for g in grants
        )
        async with httpx.AsyncClient() as http:
            response = await http.get(url)
        assert (response.status_code, response.content) == (200, b"for everyone")


async def test_private_policy_grants_nobody_else(s3: S3Storage, boto: Any, bucket: str) -> None:
    file_id = await s3.create(b"mine")
    grants = boto.get_object_acl(Bucket=bucket, Key=file_id)["Grants"]
    assert [g["Permission"] for g in grants] == ["FULL_CONTROL"]
    assert s3.public_url(file_id) is None


def test_custom_domain_urls_without_io() -> None:
    storage = S3Storage(
        bucket="assets",
        prefix="files/",
        public_url_mode="public",
        custom_domain="cdn.example.com",
        endpoint_url="http://127.0.0.1:9",  # never contacted
    )
    file_id = str(uuid.uuid4())
    assert storage.public_url(file_id) == f"https://cdn.example.com/files/{file_id}"
    other = S3Storage(bucket="b", public_url_mode="public", custom_domain="http://cdn.local/x/")
    assert other.public_url(file_id) == f"http://cdn.local/x/{file_id}"
    assert storage._s3 is None
    assert storage._session is None


def test_aws_virtual_host_url() -> None:
    storage = S3Storage(
        bucket="my-assets",
        region_name="eu-west-1",
        policy="public-read",
        public_url_mode="public",
        addressing_style="virtual",
    )
    file_id = str(uuid.uuid4())
    url = storage.public_url(file_id)
    assert url is not None
    assert url.startswith("https://my-assets.s3.")
    assert url.endswith(f".amazonaws.com/{file_id}")


def test_url_options_that_would_give_dead_links_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="403"):
        S3Storage(bucket="b", public_url_mode="public")  # private objects, no CDN
    with pytest.raises(ConfigurationError, match="custom_domain"):
        S3Storage(bucket="b", public_url_mode="presigned", custom_domain="cdn.example.com")
    # A bucket policy that makes objects public: no ACL is sent, plain URLs are fine.
    assert S3Storage(bucket="b", policy="none", public_url_mode="public").policy is None


# -- options and layout ----------------------------------------------------------------------


async def test_prefix_and_storage_class(endpoint: str, bucket: str, boto: Any) -> None:
    boto.put_object(Bucket=bucket, Key="other/0123", Body=b"not ours")
    async with make(endpoint, bucket, prefix="media/", storage_class="STANDARD_IA") as storage:
        file_id = await storage.create(b"x")
        assert [i async for i in storage.list()] == [file_id]
    head = boto.head_object(Bucket=bucket, Key=f"media/{file_id}")
    assert head["StorageClass"] == "STANDARD_IA"


async def test_object_layout_is_filedepots(s3: S3Storage, boto: Any, bucket: str) -> None:
    name = "rapport d'été.pdf"
    before = datetime.now(timezone.utc).replace(microsecond=0, tzinfo=None)
    file_id = await s3.create(b"%PDF-1.4", name, "application/pdf")
    head = boto.head_object(Bucket=bucket, Key=file_id)
    assert head["ContentType"] == "application/pdf"
    assert head["Metadata"]["x-depot-filename"] == "rapport%20d%27%C3%A9t%C3%A9.pdf"
    stamp = datetime.strptime(head["Metadata"]["x-depot-modified"], "%Y-%m-%d %H:%M:%S")
    assert before <= stamp <= datetime.now(timezone.utc).replace(tzinfo=None)
    # Encoded once (filedepot quotes the already-quoted name a second time).
    assert head["ContentDisposition"] == (
        "inline; filename=\"rapport d'ete.pdf\"; filename*=UTF-8''rapport%20d%27%C3%A9t%C3%A9.pdf"
    )


async def test_constructor_does_no_io_and_client_reopens_after_aclose(
    endpoint: str, bucket: str
) -> None:
    storage = make(endpoint, bucket)
    assert storage._s3 is None
    file_id = await storage.create(b"x")
    await storage.aclose()
    assert storage._s3 is None
    assert await storage.exists(file_id)  # reopened lazily
    await storage.aclose()


async def test_string_options_from_config(endpoint: str, bucket: str) -> None:
    manager = StorageManager()
    storage = manager.configure(
        "files",
        {
            "depot.backend": "s3",
            "depot.bucket": bucket,
            "depot.endpoint_url": endpoint,
            "depot.region_name": REGION,
            "depot.access_key_id": "testing",
            "depot.secret_access_key": "testing",
            "depot.part_size": str(6 * MiB),
            "depot.max_concurrency": "3",
            "depot.create_bucket": "false",
            "depot.verify": "false",
            "depot.use_ssl": "false",
            "depot.config": '{"connect_timeout": 5, "retries": {"max_attempts": 2}}',
            "depot.public_url_mode": "presigned",
            "depot.presigned_expires": "120",
            "depot.addressing_style": "path",
            "depot.policy": "none",
        },
    )
    assert isinstance(storage, S3Storage)
    assert (storage.part_size, storage.max_concurrency) == (6 * MiB, 3)
    assert (storage.create_bucket, storage.presigned_expires, storage.policy) == (False, 120, None)
    assert storage._client_kwargs["verify"] is False
    assert storage._client_kwargs["use_ssl"] is False
    assert storage._config.connect_timeout == 5
    assert storage._config.retries == {"mode": "standard", "max_attempts": 2}
    async with manager:
        file_id = await storage.create(b"configured")
        assert "X-Amz-Expires=120" in manager.url_for(f"files/{file_id}")
    with pytest.raises(ConfigurationError, match="part_size"):
        StorageManager().configure(
            "x", {"depot.backend": "s3", "depot.bucket": "b", "depot.part_size": "1024"}
        )
    with pytest.raises(ConfigurationError, match="public_url_mode"):
        StorageManager().configure(
            "x", {"depot.backend": "s3", "depot.bucket": "b", "depot.public_url_mode": "cdn"}
        )
    with pytest.raises(ConfigurationError, match="bogus"):
        StorageManager().configure(
            "x", {"depot.backend": "s3", "depot.bucket": "b", "depot.config": '{"bogus": 1}'}
        )


def test_filedepot_class_paths_and_option_names() -> None:
    manager = StorageManager()
    boto3_style = manager.configure(
        "old",
        {
            "depot.backend": "depot.io.boto3.S3Storage",
            "depot.access_key_id": "AKIDEXAMPLE",
            "depot.secret_access_key": "secret",
            "depot.region_name": "eu-west-1",
            "depot.endpoint_url": "http://127.0.0.1:9",
            "depot.policy": "public-read",
            "depot.storage_class": "STANDARD",
            "depot.prefix": "files/",
        },
    )
    assert isinstance(boto3_style, S3Storage)
    assert boto3_style.bucket == "filedepot-akidexample"  # filedepot's default bucket name
    assert (boto3_style.policy, boto3_style.prefix) == ("public-read", "files/")
    boto2_style = manager.configure(
        "older",
        {
            "depot.backend": "depot.io.awss3.S3Storage",
            "depot.access_key_id": "AKID",
            "depot.secret_access_key": "secret",
            "depot.bucket": "legacy",
            "depot.host": "storage.example.com",
            "depot.encrypt_key": "true",
        },
    )
    assert isinstance(boto2_style, S3Storage)
    assert boto2_style._client_kwargs["endpoint_url"] == "https://storage.example.com"
    assert boto2_style.server_side_encryption == "AES256"
    assert boto2_style._s3 is None


# -- filedepot interoperability --------------------------------------------------------------


@pytest.fixture
def filedepot_storage(endpoint: str, bucket: str) -> Any:
    pytest.importorskip("depot.io.boto3", reason="filedepot is a test dependency")
    from depot.io.boto3 import S3Storage as FiledepotS3Storage

    return FiledepotS3Storage(
        "testing", "testing", bucket=bucket, region_name=REGION, endpoint_url=endpoint
    )


async def test_serves_a_bucket_written_by_filedepot(
    endpoint: str, bucket: str, filedepot_storage: Any
) -> None:
    name = "café menu.txt"
    legacy_id = await asyncio.to_thread(
        filedepot_storage.create, b"written by filedepot", name, "text/plain"
    )
    async with make(endpoint, bucket) as storage:
        assert [i async for i in storage.list()] == [legacy_id]
        async with await storage.get(legacy_id) as stored:
            assert stored.filename == name
            assert stored.content_type == "text/plain"
            assert stored.content_length == 20
            assert stored.last_modified.tzinfo is not None
            assert stored.checksum
            assert '"' not in stored.checksum  # the ETag, unquoted
            assert stored.metadata == {}
            assert await stored.read() == b"written by filedepot"
        await storage.replace(legacy_id, b"replaced by depotx")
        async with await storage.get(legacy_id) as stored:
            assert (stored.filename, await stored.read()) == (name, b"replaced by depotx")


async def test_filedepot_reads_what_depotx_writes(
    endpoint: str, bucket: str, filedepot_storage: Any
) -> None:
    name = "naïve résumé.pdf"
    async with make(endpoint, bucket) as storage:
        file_id = await storage.create(b"%PDF-1.4 from depotx", name, "application/pdf")

    def read_with_filedepot() -> tuple[str, str, int, bytes, list[str]]:
        stored = filedepot_storage.get(file_id)
        try:
            return (
                stored.filename,
                stored.content_type,
                stored.content_length,
                stored.read(),
                filedepot_storage.list(),
            )
        finally:
            stored.close()

    filename, content_type, length, data, listed = await asyncio.to_thread(read_with_filedepot)
    assert (filename, content_type, length) == (name, "application/pdf", 20)
    assert data == b"%PDF-1.4 from depotx"
    assert listed == [file_id]


async def test_frozen_endpoint_fails_fast_with_the_default_timeouts() -> None:
    """A service that accepts connections and never answers: a quick 503, not 3 minutes."""
    import socket
    import time

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)  # accepted by the kernel, never read: a frozen endpoint
    try:
        port = listener.getsockname()[1]
        storage = make(f"http://127.0.0.1:{port}", "depotx-frozen", read_timeout=0.5)
        assert storage._config.read_timeout == 0.5
        assert make("http://127.0.0.1:9", "b")._config.connect_timeout == 5.0
        started = time.monotonic()
        async with storage:
            with pytest.raises(BackendError, match="exists") as caught:
                await storage.exists(str(uuid.uuid4()))
        # three attempts of 0.5 s, plus backoff; botocore's defaults took 182 s
        assert time.monotonic() - started < 10
        assert "timeout" in type(caught.value.__cause__).__name__.lower()
    finally:
        listener.close()


async def test_cleanup_aborts_stale_multipart_uploads(
    s3: S3Storage, boto: Any, bucket: str
) -> None:
    boto.create_multipart_upload(Bucket=bucket, Key="crashed-upload")
    assert len(uploads_in_progress(boto, bucket)) == 1
    # moto dates every upload 2010-11-10: a cut-off before that keeps it ...
    assert await s3.cleanup(older_than=timedelta(days=365 * 60)) == 0
    assert len(uploads_in_progress(boto, bucket)) == 1
    # ... and the default (one day) removes it.
    assert await s3.cleanup() == 1
    assert uploads_in_progress(boto, bucket) == []


async def test_create_sends_if_none_match_and_reports_a_taken_key(
    s3: S3Storage, monkeypatch: pytest.MonkeyPatch, boto: Any, bucket: str
) -> None:
    existing = await s3.create(b"first", "first.txt")
    monkeypatch.setattr(s3, "_new_id", lambda: existing)
    with pytest.raises(StoredFileExistsError):
        await s3.create(b"second", "second.txt")
    with pytest.raises(StoredFileExistsError):
        await s3.create(chunks(b"x" * (5 * 1024 * 1024), b"y" * 10), "big.bin")
    assert uploads_in_progress(boto, bucket) == [], "the losing multipart upload was aborted"
    assert boto.get_object(Bucket=bucket, Key=existing)["Body"].read() == b"first"


async def test_without_conditional_writes_create_checks_first(
    endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = make(endpoint, bucket, conditional_writes=False)
    async with storage:
        existing = await storage.create(b"first")
        sent: list[dict[str, Any]] = []
        client = await storage._client()
        original = client.put_object

        async def put_object(**kwargs: Any) -> Any:
            sent.append(kwargs)
            return await original(**kwargs)

        monkeypatch.setattr(client, "put_object", put_object)
        await storage.create(b"new")
        assert "IfNoneMatch" not in sent[0]
        monkeypatch.setattr(storage, "_new_id", lambda: existing)
        with pytest.raises(StoredFileExistsError):
            await storage.create(b"second")


_PAGE = b"<!doctype html><html><body><script>alert(document.domain)</script></body></html>"


async def test_active_content_is_an_attachment_in_the_bucket_too(
    s3: S3Storage, boto: Any, bucket: str
) -> None:
    """Public and presigned URLs serve what the bucket saved: the same rule as the middleware."""
    page = await s3.create(_PAGE, "page.html", "text/html")
    svg = await s3.create(b"<svg xmlns='http://www.w3.org/2000/svg'/>", "x.svg", "image/svg+xml")
    image = await s3.create(b"\x89PNG\r\n\x1a\n", "a.png", "image/png")
    for file_id, disposition in ((page, "attachment"), (svg, "attachment"), (image, "inline")):
        head = boto.head_object(Bucket=bucket, Key=file_id)
        assert head["ContentDisposition"].startswith(disposition + ";"), file_id


async def test_presigned_redirects_override_the_disposition_of_foreign_objects(
    endpoint: str, bucket: str, boto: Any
) -> None:
    """An HTML object written by another tool with ``inline``: the redirect makes it a download."""
    from depotx import StorageManager

    file_id = str(uuid.uuid4())
    boto.put_object(
        Bucket=bucket,
        Key=file_id,
        Body=_PAGE,
        ContentType="text/html",
        ContentDisposition='inline; filename="page.html"',
        Metadata={"x-depot-filename": "page.html"},
    )
    manager = StorageManager()
    manager.register("b", make(endpoint, bucket, public_url_mode="presigned"))

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("not for the app")

    app = manager.make_middleware(inner)
    transport = httpx.ASGITransport(app=app)
    async with (
        manager,
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
        httpx.AsyncClient() as http,
    ):
        redirect = await client.get(f"/depot/b/{file_id}")
        assert redirect.status_code == 307
        location = redirect.headers["location"]
        assert "response-content-disposition=attachment" in location
        served = await http.get(location)
        assert served.status_code == 200
        assert served.headers["content-disposition"].startswith("attachment;")


async def test_many_ranges_of_an_s3_file_are_one_request(
    s3: S3Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    from depotx import StorageManager

    data = os.urandom(200_000)
    file_id = await s3.create(data, "d.bin")
    client = await s3._client()
    calls: list[str | None] = []
    original = client.get_object

    async def get_object(**kwargs: Any) -> Any:
        calls.append(kwargs.get("Range"))
        return await original(**kwargs)

    monkeypatch.setattr(client, "get_object", get_object)
    manager = StorageManager()
    manager.register("s3", s3)

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("not for the app")

    transport = httpx.ASGITransport(app=manager.make_middleware(inner))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client_:
        hundred = ",".join(f"{n * 1000}-{n * 1000 + 9}" for n in range(100))
        response = await client_.get(f"/depot/s3/{file_id}", headers={"Range": f"bytes={hundred}"})
        assert response.status_code == 200  # too many ranges for a remote file: sent whole
        assert response.content == data
        assert calls == [None]
        calls.clear()
        few = await client_.get(f"/depot/s3/{file_id}", headers={"Range": "bytes=0-9,5000-5009"})
        assert few.status_code == 206
        assert len(calls) == 2
