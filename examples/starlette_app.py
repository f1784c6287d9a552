"""Serve uploaded files from a Starlette app with DepotMiddleware.

Run:  uvicorn examples.starlette_app:app
Then: curl -F file=@README.md http://127.0.0.1:8000/upload
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from depotx import DepotManager, DepotMiddleware

DepotManager.configure("default", {"depot.storage_path": "./example-files"})


async def upload(request: Request) -> JSONResponse:
    async with request.form() as form:
        field = form["file"]
        if not isinstance(field, UploadFile):
            return JSONResponse({"error": "send a file in the 'file' field"}, status_code=400)
        file_id = await DepotManager.get().create(field)
    return JSONResponse({"url": DepotManager.url_for(f"default/{file_id}")}, status_code=201)


app = Starlette(
    routes=[Route("/upload", upload, methods=["POST"])],
    middleware=[Middleware(DepotMiddleware, cache_max_age=3600)],
)
