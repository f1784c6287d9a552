"""S3 contract factories: depotx's S3 backend against moto's server, over real HTTP.

moto's in-process mode (``mock_aws``) cannot serve aiobotocore: it answers with
botocore's synchronous ``AWSResponse`` where aiobotocore awaits the body
(aio-libs/aiobotocore#1320, getmoto/moto#8694), so every call fails with
``TypeError: object bytes can't be used in 'await' expression``. Both
configurations therefore run against one ``ThreadedMotoServer`` on 127.0.0.1
(a free port), started on first use and stopped when the test process exits:

- ``s3``: path-style addressing, no key prefix, a versioned bucket;
- ``s3-prefix``: a key prefix, in a bucket shared with objects outside the prefix
  and keys under it that are not valid file ids (``list()`` must skip both).

Both buckets are versioned, so a reader is pinned to the version it opened and
the contract's "reader keeps its version" holds. Unversioned buckets (If-Match
pinning, ``StoredFileChangedError``) run the contract in ``tests/test_s3.py``.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import boto3
from moto.server import ThreadedMotoServer

from depotx import FileStorage
from depotx.storages.s3 import S3Storage

CREDENTIALS = {"access_key_id": "testing", "secret_access_key": "testing"}
REGION = "us-east-1"

_server: ThreadedMotoServer | None = None
_endpoint: str | None = None
_lock = threading.Lock()


def serialize_writes(server: ThreadedMotoServer) -> None:
    """Make each of moto's writes one atomic step, as S3's own are.

    moto checks a conditional write (``If-None-Match``, ``If-Match``) and stores
    the object in two steps on a threaded server, so two racing writes can both
    pass the check where S3 lets one win (shared/notes/moto.md). One lock around
    the requests that change objects makes moto judge them one at a time; what a
    race test then checks is depotx's handling of the 412, not moto's own race.
    """
    wsgi = server._server
    app = wsgi.app
    writes = threading.Lock()

    def locked(environ: dict[str, object], start_response: Callable[..., object]) -> object:
        if environ.get("REQUEST_METHOD") in ("PUT", "POST", "DELETE"):
            with writes:
                return list(app(environ, start_response))
        return app(environ, start_response)

    wsgi.app = locked


def moto_endpoint() -> str:
    """The shared moto server's URL, starting it on first use."""
    global _server, _endpoint
    with _lock:
        if _endpoint is None:
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            server.start()
            serialize_writes(server)
            atexit.register(server.stop)
            host, port = server.get_host_and_port()
            _server, _endpoint = server, f"http://{host}:{port}"
        return _endpoint


def make_bucket(endpoint: str, *, versioned: bool, objects: dict[str, bytes] | None = None) -> str:
    """Create a fresh bucket (blocking; call through ``asyncio.to_thread``)."""
    name = f"depotx-{uuid.uuid4().hex[:16]}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    try:
        client.create_bucket(Bucket=name)
        if versioned:
            client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        for key, body in (objects or {}).items():
            client.put_object(Bucket=name, Key=key, Body=body)
    finally:
        client.close()
    return name


async def _plain(tmp_path: Path) -> FileStorage:
    endpoint = await asyncio.to_thread(moto_endpoint)
    bucket = await asyncio.to_thread(make_bucket, endpoint, versioned=True)
    return S3Storage(
        bucket=bucket,
        endpoint_url=endpoint,
        region_name=REGION,
        addressing_style="path",
        **CREDENTIALS,
    )


async def _prefixed(tmp_path: Path) -> FileStorage:
    endpoint = await asyncio.to_thread(moto_endpoint)
    bucket = await asyncio.to_thread(
        make_bucket,
        endpoint,
        versioned=True,
        objects={
            "elsewhere/0123": b"outside the prefix",
            "README": b"outside the prefix",
            "depot/files/..": b"under the prefix, not an id (a dot-dot segment)",
            "depot/files/back\\slash": b"under the prefix, not an id (backslash)",
        },
    )
    return S3Storage(
        bucket=bucket,
        endpoint_url=endpoint,
        region_name=REGION,
        prefix="depot/files/",
        **CREDENTIALS,
    )


FACTORIES: dict[str, Callable[[Path], Awaitable[FileStorage]]] = {
    "s3": _plain,
    "s3-prefix": _prefixed,
}
