"""Offload to the front server: ``X-Accel-Redirect`` (nginx) and ``X-Sendfile``.

Through the ASGI transport (what the middleware answers), and behind a real nginx
(Debian's package; ``.ci/run`` installs it, and without it those tests are
skipped with the reason): nginx then sends the bytes, ranges included.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from depotx import ConfigurationError, DepotMiddleware, StorageManager
from tests._net import free_port, listening, stop_process

SECRET = "offload-tests-secret-0123456789"


async def not_found(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b""})


@pytest.fixture
async def manager(tmp_path: Path) -> AsyncIterator[StorageManager]:
    manager = StorageManager(secret_key=SECRET)
    manager.configure("default", {"depot.storage_path": str(tmp_path / "files")})
    manager.configure(
        "vault", {"depot.storage_path": str(tmp_path / "vault"), "depot.private": "1"}
    )
    manager.configure("mem", {"depot.backend": "memory"})
    yield manager
    await manager.aclose()


def client_of(manager: StorageManager, **options: Any) -> httpx.AsyncClient:
    app = DepotMiddleware(not_found, manager=manager, **options)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_x_accel_redirect_hands_the_file_over_after_the_checks(
    manager: StorageManager,
) -> None:
    storage = manager.get()
    file_id = await storage.create(b"<html>x</html>", "page.html", file_id="docs/page.html")
    async with client_of(manager, offload="x-accel-redirect", offload_min_size=0) as client:
        response = await client.get("/depot/default/docs/page.html")
        assert response.status_code == 200
        assert response.content == b""
        assert response.headers["x-accel-redirect"] == "/_depotx/default/docs%5C/page.html/file"
        assert "content-length" not in response.headers or response.headers["content-length"] == "0"
        assert response.headers["content-disposition"].startswith("attachment")
        assert response.headers["content-type"].startswith("text/html")
        etag = response.headers["etag"]
        ranged = await client.get("/depot/default/docs/page.html", headers={"Range": "bytes=0-1"})
        assert ranged.status_code == 200  # the front server answers the range
        assert ranged.headers["content-type"].startswith("text/html")
        assert "content-range" not in ranged.headers
        cached = await client.get("/depot/default/docs/page.html", headers={"If-None-Match": etag})
        assert cached.status_code == 304  # answered here, nothing handed over
        assert "x-accel-redirect" not in cached.headers
        head = await client.head("/depot/default/docs/page.html")
        assert "x-accel-redirect" not in head.headers
        assert head.headers["content-length"] == "14"
    assert file_id == "docs/page.html"


async def test_offload_keeps_private_files_private_and_leaves_other_storages_alone(
    manager: StorageManager,
) -> None:
    secret = await manager.get("vault").create(b"secret", "s.txt")
    in_memory = await manager.get("mem").create(b"in memory", "m.txt")
    options = {"offload_location": "/internal/", "offload_min_size": 0}
    async with client_of(manager, offload="x-accel-redirect", **options) as c:
        assert (await c.get(f"/depot/vault/{secret}")).status_code == 403
        signed = await c.get(manager.url_for(f"vault/{secret}", expires_in=60))
        assert signed.headers["x-accel-redirect"] == f"/internal/vault/{secret}/file"
        assert signed.headers["cache-control"].startswith("private")
        memory = await c.get(f"/depot/mem/{in_memory}")
        assert memory.content == b"in memory"
        assert "x-accel-redirect" not in memory.headers


async def test_x_sendfile_names_the_absolute_path(manager: StorageManager, tmp_path: Path) -> None:
    file_id = await manager.get().create(b"bytes", "b.bin")
    async with client_of(manager, offload="x-sendfile", offload_min_size=0) as client:
        response = await client.get(f"/depot/default/{file_id}")
    assert response.headers["x-sendfile"] == f"{tmp_path}/files/{file_id}/file"
    assert Path(response.headers["x-sendfile"]).read_bytes() == b"bytes"


async def test_files_under_the_threshold_are_sent_from_here(manager: StorageManager) -> None:
    small = await manager.get().create(b"s" * 65535, "small.bin")
    large = await manager.get().create(b"l" * 65536, "large.bin")
    async with client_of(manager, offload="x-accel-redirect") as client:  # 64 KiB default
        sent = await client.get(f"/depot/default/{small}")
        assert (len(sent.content), "x-accel-redirect" in sent.headers) == (65535, False)
        handed = await client.get(f"/depot/default/{large}")
        assert (handed.content, "x-accel-redirect" in handed.headers) == (b"", True)


def test_offload_options_are_checked(manager: StorageManager) -> None:
    with pytest.raises(ConfigurationError, match="x-accel-redirect"):
        DepotMiddleware(not_found, manager=manager, offload="nginx")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="absolute"):
        DepotMiddleware(not_found, manager=manager, offload="x-sendfile", offload_location="x")
    with pytest.raises(ConfigurationError, match="offload_min_size"):
        DepotMiddleware(not_found, manager=manager, offload="x-sendfile", offload_min_size=-1)


# -- behind a real nginx ------------------------------------------------------------------------

APP = """
import sys
import uvicorn
from depotx import DepotMiddleware, StorageManager

manager = StorageManager(secret_key=sys.argv[3])
manager.configure("default", {"depot.storage_path": sys.argv[1]})

async def not_found(scope, receive, send):
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b""})

app = DepotMiddleware(not_found, manager=manager, offload="x-accel-redirect")
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""

NGINX = """
{user}
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{}}
http {{
  access_log off;
  client_body_temp_path {root}/body; proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fcgi; uwsgi_temp_path {root}/uwsgi; scgi_temp_path {root}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location /depot/ {{ proxy_pass http://127.0.0.1:{app_port}; }}
    location /_depotx/default/ {{
      internal;
      alias {files}/;
      add_header X-Content-Type-Options nosniff always;
    }}
  }}
}}
"""


@contextlib.contextmanager
def behind_nginx(root: Path, files: Path) -> Iterator[str]:
    """uvicorn with the offloading middleware, nginx in front; nginx's URL."""
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None
    )
    if nginx is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")
    app_port, port = free_port(), free_port()
    (root / "nginx.conf").write_text(
        NGINX.format(
            # As root, nginx's workers would run as nobody, who cannot read pytest's folders.
            user="user root;" if os.geteuid() == 0 else "",
            root=root,
            port=port,
            app_port=app_port,
            files=files,
        )
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", APP, str(files), str(app_port), SECRET]),
        subprocess.Popen([nginx, "-c", str(root / "nginx.conf")]),
    ]
    try:
        assert listening(app_port), "depotx did not start"
        assert listening(port), "nginx did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        for process in processes:
            stop_process(process)


async def test_nginx_sends_the_bytes_ranges_and_validators(tmp_path: Path) -> None:
    from depotx import LocalFileStorage

    files = tmp_path / "files"
    storage = LocalFileStorage(files)
    data = os.urandom(3 * 1024 * 1024)
    big = await storage.create(data, "big.bin")
    page = await storage.create(b"<html>hi</html>", "page é.html", file_id="docs/page.html")
    with behind_nginx(tmp_path, files) as base:
        async with httpx.AsyncClient(base_url=base) as client:
            whole = await client.get(f"/depot/default/{big}")
            assert whole.status_code == 200
            assert hashlib.sha256(whole.content).digest() == hashlib.sha256(data).digest()
            assert whole.headers["server"].startswith("nginx")
            assert whole.headers["content-length"] == str(len(data))
            assert whole.headers["cache-control"] == "private, max-age=3600"
            assert whole.headers["x-content-type-options"] == "nosniff"
            part = await client.get(f"/depot/default/{big}", headers={"Range": "bytes=100-199"})
            assert (part.status_code, part.content) == (206, data[100:200])
            again = await client.get(
                f"/depot/default/{big}", headers={"If-None-Match": whole.headers["etag"]}
            )
            assert again.status_code == 304
            html = await client.get(f"/depot/default/{page}")
            assert html.content == b"<html>hi</html>"
            assert html.headers["content-disposition"].startswith("attachment")
            assert html.headers["content-type"] == "text/html; charset=utf-8"
            # The internal location is not reachable from outside.
            direct = await client.get(f"/_depotx/default/{big}/file")
            assert direct.status_code == 404
            missing = await client.get("/depot/default/nope")
            assert missing.status_code == 404
