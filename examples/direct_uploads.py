"""Direct uploads with FastAPI: the browser sends the bytes to the bucket, the app finalizes.

Run (local storage; the bytes go to the app's middleware, same front-end code):
    EXAMPLE_SECRET=change-me-to-a-long-secret uvicorn examples.direct_uploads:app
With S3 (a bucket whose CORS rules allow this page's origin):
    EXAMPLE_S3_BUCKET=my-bucket EXAMPLE_SECRET=... uvicorn examples.direct_uploads:app
Then open http://127.0.0.1:8000/ and pick a file.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse
from pydantic import BaseModel
from starlette.staticfiles import StaticFiles

import depotx
from depotx import DepotManager, DepotMiddleware, UploadTokenError, ValidationError

if os.environ.get("EXAMPLE_S3_BUCKET"):
    DepotManager.configure(
        "attachments",
        {
            "depot.backend": "s3",
            "depot.bucket": os.environ["EXAMPLE_S3_BUCKET"],
            "depot.endpoint_url": os.environ.get("EXAMPLE_S3_ENDPOINT") or None,
            "depot.region_name": os.environ.get("EXAMPLE_S3_REGION", "us-east-1"),
            # Files above this go up in parts (5 MiB at least), four at a time.
            "depot.direct_multipart_threshold": os.environ.get(
                "EXAMPLE_MULTIPART_THRESHOLD", str(64 * 1024 * 1024)
            ),
            "depot.part_size": os.environ.get("EXAMPLE_PART_SIZE", str(8 * 1024 * 1024)),
        },
    )
else:
    DepotManager.configure(
        "attachments",
        {"depot.storage_path": os.environ.get("EXAMPLE_FILES", "./example-files")},
    )
    if os.environ.get("EXAMPLE_STAGING"):
        DepotManager.set_upload_staging(depotx.LocalFileStorage(os.environ["EXAMPLE_STAGING"]))
DepotManager.set_secret_key(os.environ.get("EXAMPLE_SECRET", "example-secret-change-me-please"))

MAX_SIZE = 100 * 1024 * 1024

app = FastAPI()
app.add_middleware(DepotMiddleware)  # serves files, and takes uploads for non-S3 storages
app.mount("/static", StaticFiles(directory=Path(depotx.__file__).parent / "static"), name="static")


class TicketRequest(BaseModel):
    filename: str
    content_type: str | None = None
    size: int | None = None


class PartsRequest(BaseModel):
    token: str
    parts: list[int]


class Finalize(BaseModel):
    token: str


@app.post("/uploads/ticket")
async def ticket(request: TicketRequest) -> dict[str, object]:
    """Authorize the upload here (who may upload, how much); the ticket does the rest."""
    try:
        issued = await DepotManager.get("attachments").prepare_upload(
            request.filename, request.content_type, max_size=MAX_SIZE, size=request.size
        )
    except ValidationError as exc:
        raise HTTPException(413 if exc.rule == "max_size" else 400, str(exc)) from exc
    return issued.to_dict()


@app.post("/uploads/parts")
async def parts(request: PartsRequest) -> dict[str, object]:
    try:
        urls = await DepotManager.get("attachments").presign_upload_parts(
            request.token, request.parts
        )
    except UploadTokenError as exc:
        raise HTTPException(403, str(exc)) from exc
    return {"urls": urls}


@app.post("/documents", status_code=201)
async def attach(request: Finalize) -> dict[str, str]:
    """Finalize: in an app, assign the token to a FileType column instead."""
    try:
        path = await DepotManager.finalize_upload(request.token)
    except UploadTokenError as exc:
        raise HTTPException(403, str(exc)) from exc
    except ValidationError as exc:
        raise HTTPException(422, str(exc)) from exc
    return {"path": path, "url": DepotManager.url_for(path)}


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Direct upload</title></head>
<body>
<h1>Direct upload</h1>
<input id="file" type="file">
<progress id="bar" max="1" value="0"></progress>
<p id="result"></p>
<script src="/static/depotx-upload.js"></script>
<script>
// Ticket, upload (to the bucket or the app: same code), finalize.
;(function () {
  'use strict'
  var input = document.getElementById('file')
  var bar = document.getElementById('bar')
  var result = document.getElementById('result')

  function post(url, body) {
    return fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    }).then(function (response) {
      return response.json().then(function (data) {
        if (!response.ok) throw new Error(data.detail || 'error ' + response.status)
        return data
      })
    })
  }

  input.addEventListener('change', function () {
    var file = input.files[0]
    result.textContent = 'uploading'
    var wanted = { filename: file.name, content_type: file.type || null, size: file.size }
    post('/uploads/ticket', wanted)
      .then(function (ticket) {
        return depotxUpload(ticket, file, {
          onProgress: function (sent, total) {
            bar.value = total ? sent / total : 1
          },
          partUrls: function (numbers) {
            var asked = { token: ticket.token, parts: numbers }
            return post('/uploads/parts', asked).then(function (d) {
              return d.urls
            })
          },
        }).then(function () {
          return post('/documents', { token: ticket.token })
        })
      })
      .then(function (stored) {
        result.textContent = 'stored ' + stored.path
        result.dataset.path = stored.path
        result.dataset.url = stored.url
      })
      .catch(function (error) {
        result.textContent = 'failed: ' + error.message
      })
  })
})()
</script>
</body></html>
"""


@app.get("/", response_class=HTMLResponse)
async def page() -> str:
    return PAGE
