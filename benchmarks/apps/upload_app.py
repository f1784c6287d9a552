"""Two upload endpoints over local storage ``bench`` at ``BENCH_ROOT``, same storage.

- ``POST /streamed``: ``depotx.receive_upload``, parsed as it arrives, written once;
- ``POST /spooled``: the usual way, Starlette's ``request.form()`` (which spools the
  file to a temporary file) then ``storage.create(upload)``;
- ``/tus/``: ``depotx.TusApp``, resumable, its chunks staged beside the storage.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from depotx import LocalFileStorage, StorageManager, TusApp, receive_upload

manager = StorageManager()
storage = manager.configure(
    "bench", {"depot.backend": "local", "depot.storage_path": os.environ["BENCH_ROOT"]}
)


async def streamed(request: Request) -> JSONResponse:
    received = await receive_upload(request, storage)
    return JSONResponse({"id": received.file_ids[0]}, status_code=201)


async def spooled(request: Request) -> JSONResponse:
    async with request.form(max_files=1) as form:
        upload = form["file"]
        assert isinstance(upload, UploadFile)
        file_id = await storage.create(upload)
    return JSONResponse({"id": file_id}, status_code=201)


async def ready(request: Request) -> JSONResponse:
    return JSONResponse({})


app = Starlette(
    routes=[
        Route("/", ready),
        Route("/streamed", streamed, methods=["POST"]),
        Route("/spooled", spooled, methods=["POST"]),
        Mount(
            "/tus",
            TusApp(manager, "bench", staging=LocalFileStorage(os.environ["BENCH_ROOT"] + "-tus")),
        ),
    ]
)
