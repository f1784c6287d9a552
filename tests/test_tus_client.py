"""TusApp with the official client: tus-js-client under Node against ``depotx serve`` (uvicorn).

A 50 MiB file goes up in 5 MiB chunks; the client process is killed midway
(its connection dies mid-``PATCH``), and a new client process resumes the
upload through the same fingerprint; the stored bytes must hash like the
original. Needs Node.js and ``npm ci --prefix tests/js`` (``.ci/run`` does
both); without them the tests are skipped with the reason, never passed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests._uvicorn import running_server

JS = Path(__file__).parent / "js"
SCRIPT = JS / "tus_upload.mjs"
MiB = 1024 * 1024


def _missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed (apt-get install nodejs)"
    if not (JS / "node_modules" / "tus-js-client").is_dir():
        return "tus-js-client is not installed: run npm ci --prefix tests/js"
    return None


@pytest.fixture
def client_ready() -> None:
    reason = _missing()
    if reason is not None:
        pytest.skip(reason)


def node(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["node", str(SCRIPT), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout: float = 120) -> list[str]:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, f"tus-js-client failed: {err}"
    return out.splitlines()


def big_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for _ in range(size // MiB):
            block = os.urandom(MiB)
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


def stored_digest(base: str, path: str) -> str:
    digest = hashlib.sha256()
    with httpx.stream("GET", f"{base}/depot/{path}", timeout=60) as response:
        assert response.status_code == 200
        for chunk in response.iter_bytes():
            digest.update(chunk)
    return digest.hexdigest()


@pytest.mark.usefixtures("client_ready")
def test_a_50_mib_upload_killed_midway_resumes_with_the_same_fingerprint(tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    expected = big_file(source, 50 * MiB)
    store = tmp_path / "tus-urls.json"
    with running_server(tmp_path / "files") as (_, base):
        endpoint = f"{base}/tus/"
        first = node("upload", endpoint, str(source), str(store))
        assert first.stdout is not None
        url = None
        accepted = 0
        deadline = time.monotonic() + 120
        while accepted < 20 * MiB:
            assert time.monotonic() < deadline, "the upload did not reach 20 MiB in 120 s"
            line = first.stdout.readline()
            assert line, f"the client stopped early: {first.stderr.read() if first.stderr else ''}"
            kind, _, value = line.strip().partition(" ")
            if kind == "url":
                url = value
            elif kind == "accepted":
                accepted = int(value)
        first.kill()  # mid-PATCH of the next chunk: the connection dies with it
        first.wait(timeout=10)
        for stream in (first.stdout, first.stderr):
            if stream is not None:
                stream.close()
        assert url is not None
        # The server kept what it stored, at least every accepted chunk.
        time.sleep(0.5)  # let the server notice the disconnect
        head = httpx.head(url, headers={"Tus-Resumable": "1.0.0"})
        offset = int(head.headers["upload-offset"])
        assert 20 * MiB <= offset < 50 * MiB
        assert "depot-file-path" not in head.headers
        assert httpx.get(f"{base}/files").json() == []  # no file until complete

        lines = finish(node("resume", endpoint, str(source), str(store)))
        assert f"resuming {url}" in lines
        chunks = [int(line.split()[1]) for line in lines if line.startswith("accepted ")]
        assert chunks, "the resumed client sent nothing"
        assert chunks[-1] == 50 * MiB
        # Resumed from the stored offset, not from zero: fewer than 50 MiB sent again.
        assert len(chunks) <= -(-(50 * MiB - offset) // (5 * MiB))
        done = [line.split()[1] for line in lines if line.startswith("done ")]
        assert len(done) == 1
        assert done[0].startswith("default/")
        assert stored_digest(base, done[0]) == expected
        info = httpx.get(f"{base}/files").json()
        assert [(item["filename"], item["size"]) for item in info] == [("big.bin", 50 * MiB)]


@pytest.mark.usefixtures("client_ready")
def test_terminate_deletes_the_upload(tmp_path: Path) -> None:
    source = tmp_path / "doomed.bin"
    big_file(source, 12 * MiB)
    with running_server(tmp_path / "files") as (_, base):
        lines = finish(node("terminate", f"{base}/tus/", str(source), str(tmp_path / "u.json")))
        url = next(line.split()[1] for line in lines if line.startswith("terminated "))
        head = httpx.head(url, headers={"Tus-Resumable": "1.0.0"})
        assert head.status_code == 404
        assert httpx.get(f"{base}/files").json() == []
        assert list((tmp_path / "tus-staging").glob("*/*")) == []


@pytest.mark.usefixtures("client_ready")
def test_the_page_vendors_the_client_the_tests_run() -> None:
    """``depotx/static/vendor/tus.min.js`` is tus-js-client's own build, at the tested version."""
    import json

    installed = JS / "node_modules" / "tus-js-client"
    version = json.loads((installed / "package.json").read_text())["version"]
    vendored = (Path(__file__).parent.parent / "depotx" / "static" / "vendor").resolve()
    header, _, body = (vendored / "tus.min.js").read_text().partition("\n")
    assert header.startswith(f"/*! tus-js-client {version} ")
    original = (installed / "dist" / "tus.min.js").read_text()
    assert body == original.replace("\n//# sourceMappingURL=tus.min.js.map", "").rstrip() + "\n"
    assert (vendored / "tus-js-client.LICENSE").read_text() == (installed / "LICENSE").read_text()
