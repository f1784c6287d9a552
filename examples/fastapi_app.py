"""Serve uploaded files from a FastAPI app with DepotMiddleware.

Run:  uvicorn examples.fastapi_app:app
Then: curl -F file=@README.md http://127.0.0.1:8000/upload
      curl -F file=@big.iso -F title=backup http://127.0.0.1:8000/upload-streamed
      any tus client (tus-js-client, Uppy, tus-py-client) at http://127.0.0.1:8000/tus/
"""

from __future__ import annotations

import os

from fastapi import FastAPI, HTTPException, Request, UploadFile

from depotx import (
    DepotManager,
    DepotMiddleware,
    LocalFileStorage,
    TusApp,
    TusUpload,
    ValidationError,
    receive_upload,
)

FILES = os.environ.get("EXAMPLE_FILES", "./example-files")
DepotManager.configure("default", {"depot.storage_path": FILES})

#: What finished resumable uploads became; an app would insert rows in its database.
finished: list[str] = []


async def record(upload: TusUpload) -> None:
    finished.append(upload.path)


app = FastAPI()
app.add_middleware(DepotMiddleware, cache_max_age=3600)
# Resumable uploads (tus 1.0): unfinished ones are kept beside the files, across restarts.
app.mount(
    "/tus",
    TusApp(
        DepotManager,
        staging=LocalFileStorage(FILES + "-tus"),
        max_size=10 * 1024**3,
        on_complete=record,
    ),
)


@app.post("/upload", status_code=201)
async def upload(file: UploadFile) -> dict[str, str]:
    """The familiar way: FastAPI spools the file to a temporary file first."""
    file_id = await DepotManager.get().create(file)
    return {"url": DepotManager.url_for(f"default/{file_id}")}


@app.post("/upload-streamed", status_code=201)
async def upload_streamed(request: Request) -> dict[str, str]:
    """Each byte written once: parsed as it arrives and streamed into the storage.

    No temporary file and flat memory whatever the size; the limit stops the
    upload as soon as it is passed, and nothing is stored then.
    """
    try:
        received = await receive_upload(
            request, DepotManager.get(), field="file", max_size=10 * 1024**3
        )
    except ValidationError as exc:
        raise HTTPException(413 if exc.rule == "max_size" else 400, str(exc)) from exc
    if not received.files:
        raise HTTPException(400, "send a file in the field 'file'")
    file_id = received.file_ids[0]
    return {
        "url": DepotManager.url_for(f"default/{file_id}"),
        "title": received.fields.get("title", ""),
    }
