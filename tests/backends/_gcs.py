"""GCS storages for the tests: depotx's GCS backend against gcp-storage-emulator, over HTTP.

Not in the shared ``storage`` parameters (this file starts with ``_``): a bucket
without versioning keeps no generation but the live one, so a reader cannot keep
an old version after a replace; the contract runs in ``tests/test_gcs.py`` with
``pins_versions = False``.

The emulator is started once, patched (``_gcs_emulator.py``) to honour
preconditions and generations as GCS does, on 127.0.0.1 on a free port, and
stopped when the test process exits. The requests go to it through
``api_endpoint``, as ``STORAGE_EMULATOR_HOST`` would send them.

- ``gcs``: a fresh bucket per test, no prefix;
- ``gcs-prefix``: a key prefix, in a bucket holding objects outside it and under
  it that are not valid ids (``list()`` must skip both).
"""

from __future__ import annotations

import atexit
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from depotx import FileStorage
from tests._net import free_port, listening, stop_process

ROOT = Path(__file__).parent.parent.parent

_process: subprocess.Popen[bytes] | None = None
_endpoint: str | None = None
_lock = threading.Lock()


def missing() -> str | None:
    for module, package in (
        ("gcp_storage_emulator", "gcp-storage-emulator"),
        ("gcloud.aio.auth", "gcloud-aio-storage"),
    ):
        if importlib.util.find_spec(module) is None:
            return f"{package} is not installed: pip install -e '.[gcs,test]'"
    return None


def start_emulator(port: int, data: str) -> subprocess.Popen[bytes]:
    """The patched emulator on 127.0.0.1:``port``, its objects in ``data``; once listening."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.backends._gcs_emulator", "--port", str(port), "--data", data],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if not listening(port, timeout=30):
        stop_emulator(process)
        pytest.skip("gcp-storage-emulator did not start on 127.0.0.1 within 30 s")
    return process


def stop_emulator(process: subprocess.Popen[bytes]) -> None:
    """Stop the emulator as a service stops (with ``--data``, it keeps what it stored)."""
    stop_process(process)


def emulator_endpoint() -> str:
    """The endpoint of the shared emulator, starting it on first use."""
    global _process, _endpoint
    with _lock:
        if _endpoint is None:
            reason = missing()
            if reason is not None:
                pytest.skip(reason)
            port = free_port()
            data = tempfile.mkdtemp(prefix="depotx-gcs-")
            _process = start_emulator(port, data)
            atexit.register(_stop, _process, data)
            _endpoint = f"http://127.0.0.1:{port}"
        return _endpoint


def _stop(process: subprocess.Popen[bytes], data: str) -> None:
    stop_emulator(process)
    shutil.rmtree(data, ignore_errors=True)


_keys: dict[str, Any] = {}


def service_account() -> dict[str, Any]:
    """A service account's JSON with a fresh RSA key: it signs URLs here, nothing else
    (the emulator needs no credentials, and checks no signature: tests check them)."""
    if not _keys:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        _keys.update(
            {
                "type": "service_account",
                "project_id": "depotx-tests",
                "private_key_id": "0" * 40,
                "private_key": pem,
                "client_email": "depotx-tests@depotx-tests.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": "https://oauth2.googleapis.com/token",
            }
        )
    return dict(_keys)


def make(bucket: str | None = None, **options: Any) -> FileStorage:
    from depotx.storages.gcs import GCSStorage

    options.setdefault("credentials", service_account())
    return GCSStorage(
        bucket=bucket or f"depotx-{uuid.uuid4().hex[:16]}",
        api_endpoint=emulator_endpoint(),
        create_bucket=True,
        **options,
    )


async def put_object(storage: Any, name: str, data: bytes) -> None:
    """An object written around depotx (another program's, or junk in the bucket)."""
    response = await storage._request(
        "POST",
        f"{storage.api_endpoint}/upload/storage/v1/b/{storage.bucket}/o",
        params={"uploadType": "media", "name": name},
        headers={"Content-Type": "application/octet-stream"},
        data=data,
    )
    response.release()


async def _plain(tmp_path: Path) -> FileStorage:
    return make()


async def _prefixed(tmp_path: Path) -> FileStorage:
    storage = make(prefix="depot/files/")
    await storage._client()  # type: ignore[attr-defined]
    for name in ("elsewhere/0123", "README", "depot/files/bad\\name", "depot/files/a//b"):
        await put_object(storage, name, b"not a file of this storage")
    return storage


GCS_FACTORIES: dict[str, Callable[[Path], Awaitable[FileStorage]]] = {
    "gcs": _plain,
    "gcs-prefix": _prefixed,
}
