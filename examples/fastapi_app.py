"""Serve uploaded files from a FastAPI app with DepotMiddleware.

Run:  uvicorn examples.fastapi_app:app
Then: curl -F file=@README.md http://127.0.0.1:8000/upload
"""

from __future__ import annotations

from fastapi import FastAPI, UploadFile

from depotx import DepotManager, DepotMiddleware

DepotManager.configure("default", {"depot.storage_path": "./example-files"})

app = FastAPI()
app.add_middleware(DepotMiddleware, cache_max_age=3600)


@app.post("/upload", status_code=201)
async def upload(file: UploadFile) -> dict[str, str]:
    file_id = await DepotManager.get().create(file)
    return {"url": DepotManager.url_for(f"default/{file_id}")}
