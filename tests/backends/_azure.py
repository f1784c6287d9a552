"""Azure Blob storages for the tests: depotx's Azure backend against Azurite, over real HTTP.

Not in the shared ``storage`` parameters (this file starts with ``_``): without
blob versioning a reader cannot keep an old version after a replace, so the
contract runs in ``tests/test_azure.py`` with ``pins_versions = False``.

Azurite (npm package ``azurite``, installed into ``tests/js`` by ``npm ci``, run
with Node) is started once on 127.0.0.1 on a free port and stopped when the test
process exits. Where Node or Azurite is missing, both parameters skip and say why.

- ``azure``: a fresh container per test, no prefix;
- ``azure-prefix``: a key prefix, in a container holding blobs outside it and
  under it that are not valid ids (``list()`` must skip both).
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from depotx import FileStorage
from tests._net import free_port, listening, stop_process

AZURITE = Path(__file__).parent.parent / "js" / "node_modules" / ".bin" / "azurite-blob"
#: Azurite's well-known development account (public, documented by Microsoft).
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

_process: subprocess.Popen[bytes] | None = None
_endpoint: str | None = None
_lock = threading.Lock()


def missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed: Azurite (the Azure emulator) cannot run"
    if not AZURITE.exists():
        return "Azurite is not installed: run npm ci --prefix tests/js"
    return None


def start_azurite(port: int, location: str) -> subprocess.Popen[bytes]:
    """Azurite's blob service on 127.0.0.1:``port``, its data in ``location``; once listening."""
    process = subprocess.Popen(
        [
            str(AZURITE),
            *("--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", location),
            *("--silent", "--skipApiVersionCheck", "--loose"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if not listening(port, timeout=30):
        stop_azurite(process)
        pytest.skip("Azurite did not start on 127.0.0.1 within 30 s")
    return process


def stop_azurite(process: subprocess.Popen[bytes]) -> None:
    """Stop Azurite as a service stops (SIGTERM: it saves what it committed)."""
    stop_process(process)


def azurite_endpoint() -> str:
    """The blob endpoint of the shared Azurite, starting it on first use."""
    global _process, _endpoint
    with _lock:
        if _endpoint is None:
            reason = missing()
            if reason is not None:
                pytest.skip(reason)
            port = free_port()
            location = tempfile.mkdtemp(prefix="depotx-azurite-")
            _process = start_azurite(port, location)
            atexit.register(_stop, _process, location)
            _endpoint = f"http://127.0.0.1:{port}/{ACCOUNT}"
        return _endpoint


def _stop(process: subprocess.Popen[bytes], location: str) -> None:
    stop_azurite(process)
    shutil.rmtree(location, ignore_errors=True)


def connection_string(endpoint: str) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
        f"BlobEndpoint={endpoint};"
    )


def make(container: str | None = None, **options: object) -> FileStorage:
    from depotx.storages.azure import AzureBlobStorage

    return AzureBlobStorage(
        container=container or f"depotx-{uuid.uuid4().hex[:16]}",
        connection_string=connection_string(azurite_endpoint()),
        create_container=True,
        **options,  # type: ignore[arg-type]
    )


async def _plain(tmp_path: Path) -> FileStorage:
    return make()


async def _prefixed(tmp_path: Path) -> FileStorage:
    storage = make(prefix="depot/files/")
    container = await storage._container()  # type: ignore[attr-defined]
    # Outside the prefix, and under it but not an id (a control character); names with
    # "..", "//" or "\\" cannot be made here: URL normalisation breaks their signature.
    for name in ("elsewhere/0123", "README", "depot/files/bad\u007fname"):
        await container.upload_blob(name, b"not a file of this storage")
    return storage


AZURE_FACTORIES: dict[str, Callable[[Path], Awaitable[FileStorage]]] = {
    "azure": _plain,
    "azure-prefix": _prefixed,
}
