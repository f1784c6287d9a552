"""A real ``depotx serve`` (uvicorn) in a subprocess on 127.0.0.1, for end-to-end tests."""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import httpx

from tests._net import stop_process

SERVER = """
import json
import sys
from depotx import LocalFileStorage, StorageManager
from depotx.server import serve

options = json.loads(sys.argv[3])
manager = StorageManager()
manager.configure("default", {"depot.storage_path": sys.argv[1]})
for name in options.get("more_storages", ()):
    manager.configure(name, {"depot.backend": "memory"})
for name, settings in options.get("configured", {}).items():
    manager.configure(name, settings)
staging = LocalFileStorage(sys.argv[2])
serve(
    manager,
    host="127.0.0.1",
    port=0,
    log_level="warning",
    tus_staging=staging,
    max_upload_size=options.get("max_upload_size"),
)
"""


@contextlib.contextmanager
def running_server(
    root: Path,
    *,
    tus_staging: Path | None = None,
    more_storages: Sequence[str] = (),
    configured: Mapping[str, Mapping[str, str]] | None = None,
    max_upload_size: int | None = None,
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start the server on a free port; yield it and its URL (no trailing slash).

    ``root`` is the default (local) storage; ``more_storages`` are memory storages
    beside it, ``configured`` storages with settings of their own. Unfinished tus
    uploads go to ``tus_staging`` (default: ``root``'s sibling ``tus-staging``),
    never to the user's cache. The process is always stopped (terminate, then
    kill) when the block ends.
    """
    options = {
        "more_storages": list(more_storages),
        "configured": {name: dict(settings) for name, settings in (configured or {}).items()},
        "max_upload_size": max_upload_size,
    }
    staging = tus_staging if tus_staging is not None else root.parent / "tus-staging"
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(root), str(staging), json.dumps(options)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)
        assert ready, "depotx serve printed nothing within 30 s"
        line = process.stdout.readline()
        assert line.startswith("depotx: serving storage 'default' at http://127.0.0.1:"), line
        url = line.split(" at ")[1].split()[0].rstrip("/")
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/", timeout=2).raise_for_status()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not start listening"
                time.sleep(0.1)
        yield process, url
    finally:
        stop_process(process)
        if process.stdout is not None:
            process.stdout.close()
