"""Direct uploads in a real browser: ``depotx-upload.js`` in headless Chromium.

``examples/direct_uploads.py`` runs under uvicorn; the page asks for a ticket,
uploads with ``depotxUpload`` and finalizes. The same front-end code runs against
S3 (moto's server over HTTP: a presigned POST, and a multipart upload of three
parts) and against local storage (the ticket then points at the app's middleware).

Needs Debian's ``chromium`` and ``chromium-driver`` and ``selenium``; without them
the tests are skipped with the reason, never passed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from tests.backends.s3 import REGION, moto_endpoint
from tests.test_browser import _missing, screenshot, wait_for

pytestmark = pytest.mark.browser

ROOT = Path(__file__).parent.parent
MiB = 1024 * 1024


@contextlib.contextmanager
def example_app(env: dict[str, str]) -> Iterator[str]:
    """``examples/direct_uploads.py`` under uvicorn on a free port; its URL."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "examples.direct_uploads:app",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ],
        cwd=ROOT,
        env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = None
        deadline = time.monotonic() + 30
        while url is None:
            assert time.monotonic() < deadline, "the example did not start in 30 s"
            ready, _, _ = select.select([process.stdout], [], [], 1)
            if ready:
                line = process.stdout.readline()
                assert line, "the example exited"
                if "Uvicorn running on " in line:
                    url = line.split("Uvicorn running on ")[1].split()[0]
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[Any]:
    reason = _missing()
    if reason is not None:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    browser = webdriver.Chrome(
        options=options, service=Service(executable_path="/usr/bin/chromedriver")
    )
    browser.set_page_load_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()


def upload_through_the_page(driver: Any, url: str, path: Path, name: str) -> dict[str, str]:
    from selenium.webdriver.common.by import By

    driver.get(url)
    driver.find_element(By.ID, "file").send_keys(str(path))
    result = driver.find_element(By.ID, "result")
    wait_for(lambda: result.text.startswith(("stored", "failed")), 120, "the upload to finish")
    screenshot(driver, name)
    assert result.text.startswith("stored "), result.text
    return {
        "path": str(result.get_attribute("data-path")),
        "url": str(result.get_attribute("data-url")),
    }


def s3_bucket() -> tuple[str, str]:
    """A fresh moto bucket whose CORS rules let any page upload to it."""
    endpoint = moto_endpoint()
    bucket = f"depotx-direct-{uuid.uuid4().hex[:12]}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    try:
        client.create_bucket(Bucket=bucket)
        client.put_bucket_cors(
            Bucket=bucket,
            CORSConfiguration={
                "CORSRules": [
                    {
                        "AllowedOrigins": ["*"],
                        "AllowedMethods": ["GET", "HEAD", "POST", "PUT"],
                        "AllowedHeaders": ["*"],
                        "ExposeHeaders": ["ETag"],
                    }
                ]
            },
        )
    finally:
        client.close()
    return endpoint, bucket


def s3_object(endpoint: str, bucket: str, key: str) -> bytes:
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    try:
        return bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    finally:
        client.close()


@pytest.mark.parametrize(("size", "kind"), [(300 * 1024, "post"), (12 * MiB, "multipart")])
def test_the_snippet_uploads_to_s3_directly(
    driver: Any, tmp_path: Path, size: int, kind: str
) -> None:
    endpoint, bucket = s3_bucket()
    source = tmp_path / f"direct-{kind}.png"
    source.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(size))
    env = {
        "EXAMPLE_S3_BUCKET": bucket,
        "EXAMPLE_S3_ENDPOINT": endpoint,
        "EXAMPLE_MULTIPART_THRESHOLD": str(5 * MiB),
        "EXAMPLE_PART_SIZE": str(5 * MiB),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    with example_app(env) as url:
        stored = upload_through_the_page(driver, url, source, f"direct-s3-{kind}")
        assert stored["path"].startswith("attachments/")
        file_id = stored["path"].split("/", 1)[1]
        # The bytes went to the bucket: they are there under the file id, with our metadata.
        assert hashlib.sha256(s3_object(endpoint, bucket, file_id)).digest() == (
            hashlib.sha256(source.read_bytes()).digest()
        )
        served = httpx.get(url.rstrip("/") + stored["url"])
        assert served.status_code == 200
        assert served.headers["content-type"] == "image/png"


def test_the_same_snippet_uploads_through_the_app_for_local_storage(
    driver: Any, tmp_path: Path
) -> None:
    source = tmp_path / "through the app é.txt"
    source.write_text("stored on disk, through the middleware\n")
    env = {
        "EXAMPLE_FILES": str(tmp_path / "files"),
        "EXAMPLE_STAGING": str(tmp_path / "staging"),
    }
    with example_app(env) as url:
        stored = upload_through_the_page(driver, url, source, "direct-local")
        served = httpx.get(url.rstrip("/") + stored["url"])
        assert served.content == source.read_bytes()
        assert served.headers["content-type"].startswith("text/plain")
    assert list((tmp_path / "staging").rglob("file")) == []  # staging emptied by finalize


def test_the_serve_page_uploads_to_an_s3_storage_directly(driver: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    from tests._uvicorn import running_server
    from tests.test_browser import drop_files

    endpoint, bucket = s3_bucket()
    settings = {
        "depot.backend": "s3",
        "depot.bucket": bucket,
        "depot.endpoint_url": endpoint,
        "depot.region_name": REGION,
        "depot.access_key_id": "testing",
        "depot.secret_access_key": "testing",
        "depot.direct_multipart_threshold": str(5 * MiB),
        "depot.part_size": str(5 * MiB),
    }
    image = tmp_path / "to the bucket.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200_000))
    big = tmp_path / "parts.bin"
    big.write_bytes(os.urandom(11 * MiB))
    with running_server(tmp_path / "files", configured={"bucket": settings}) as (_, base):
        driver.get(base + "/?storage=bucket")
        assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-direct") == "1"
        drop_files(driver, image, big)
        wait_for(
            lambda: len(driver.find_elements(By.CSS_SELECTOR, "#uploads li.done")) == 2,
            120,
            "both direct uploads to be stored",
        )
        wait_for(
            lambda: len(driver.find_elements(By.CSS_SELECTOR, "#files tbody tr")) == 2,
            30,
            "both files listed",
        )
        screenshot(driver, "6-serve-direct-s3")
        listed = httpx.get(base + "/files?storage=bucket").json()
        assert sorted(item["filename"] for item in listed) == sorted([image.name, big.name])
        for item in listed:
            source = image if item["filename"] == image.name else big
            key = item["path"].split("/", 1)[1]
            assert s3_object(endpoint, bucket, key) == source.read_bytes()
        assert httpx.get(base + "/files").json() == []  # nothing went to the default storage


def test_the_serve_page_uploads_to_an_azure_container_directly(driver: Any, tmp_path: Path) -> None:
    """A ``PUT`` ticket (a SAS URL to ``Put Blob``) sent by the same snippet, in Chromium."""
    import asyncio

    from selenium.webdriver.common.by import By

    from tests._uvicorn import running_server
    from tests.backends._azure import azurite_endpoint, connection_string
    from tests.test_browser import drop_files

    pytest.importorskip("azure.storage.blob", reason="pip install 'depotx[azure]'")
    connection = connection_string(azurite_endpoint())
    container = f"direct-{uuid.uuid4().hex[:12]}"

    async def prepare() -> None:
        from azure.storage.blob import CorsRule
        from azure.storage.blob.aio import BlobServiceClient

        async with BlobServiceClient.from_connection_string(connection) as service:
            await service.set_service_properties(
                cors=[CorsRule(["*"], ["GET", "HEAD", "PUT"], allowed_headers=["*"])]
            )
            await service.create_container(container)

    async def blob(name: str) -> bytes:
        from azure.storage.blob.aio import BlobServiceClient

        async with BlobServiceClient.from_connection_string(connection) as service:
            download = await service.get_blob_client(container, name).download_blob()
            return bytes(await download.readall())

    asyncio.run(prepare())
    settings = {
        "depot.backend": "azure",
        "depot.container": container,
        "depot.connection_string": connection,
    }
    image = tmp_path / "to the container.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(300_000))
    with running_server(tmp_path / "files", configured={"blobs": settings}) as (_, base):
        driver.get(base + "/?storage=blobs")
        assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-direct") == "1"
        drop_files(driver, image)
        wait_for(
            lambda: len(driver.find_elements(By.CSS_SELECTOR, "#uploads li.done")) == 1,
            60,
            "the direct upload to be stored",
        )
        screenshot(driver, "7-serve-direct-azure")
        listed = httpx.get(base + "/files?storage=blobs").json()
        assert [item["filename"] for item in listed] == [image.name]
        assert asyncio.run(blob(listed[0]["path"].split("/", 1)[1])) == image.read_bytes()
        assert listed[0]["content_type"] == "image/png"
