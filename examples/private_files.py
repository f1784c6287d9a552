"""Private files with FastAPI: a login-protected download route and signed, expiring links.

Run it (``pip install 'depotx[server]' fastapi``)::

    DEPOTX_SECRET_KEY=change-me-to-a-long-random-secret uvicorn examples.private_files:app

then::

    curl -F file=@invoice.pdf -H 'Authorization: Bearer alice' localhost:8000/invoices
    curl -H 'Authorization: Bearer alice' localhost:8000/invoices/<id>        # the file
    curl -H 'Authorization: Bearer bob' localhost:8000/invoices/<id>          # 404
    curl -H 'Authorization: Bearer alice' localhost:8000/invoices/<id>/link   # a signed URL
    curl 'localhost:8000<signed url>'                             # the file, for 10 minutes

The login is a stand-in (a bearer token naming the user); use your app's own.
"""

from __future__ import annotations

import os
from datetime import timedelta

from fastapi import Depends, FastAPI, Header, HTTPException, UploadFile

from depotx import StorageManager, StoredFile, StoredFileNotFoundError, StoredFileResponse

manager = StorageManager(
    secret_key=os.environ.get("DEPOTX_SECRET_KEY", "dev-only-secret-0123456789")
)
# private: the middleware refuses every unsigned request for these files.
invoices = manager.configure(
    "invoices",
    {
        "depot.storage_path": os.environ.get("INVOICES_PATH", "./private-files"),
        "depot.private": "true",
    },
)

api = FastAPI()


def current_user(authorization: str = Header(default="")) -> str:
    scheme, _, user = authorization.partition(" ")
    if scheme.lower() != "bearer" or not user:
        raise HTTPException(401, "log in first")
    return user


@api.post("/invoices", status_code=201)
async def upload(file: UploadFile, user: str = Depends(current_user)) -> dict[str, str]:
    file_id = await invoices.create(file, metadata={"owner": user})
    return {"id": file_id}


async def _owned(file_id: str, user: str) -> StoredFile:
    try:
        stored = await invoices.get(file_id)
    except (StoredFileNotFoundError, ValueError):
        raise HTTPException(404) from None
    if stored.metadata.get("owner") != user:
        await stored.aclose()
        raise HTTPException(404)  # not 403: do not reveal that it exists
    return stored


@api.get("/invoices/{file_id}")
async def download(file_id: str, user: str = Depends(current_user)) -> StoredFileResponse:
    """Served from this route, with ETags, ranges and the disposition rules."""
    return StoredFileResponse(await _owned(file_id, user), disposition="attachment")


@api.get("/invoices/{file_id}/link")
async def link(file_id: str, user: str = Depends(current_user)) -> dict[str, str]:
    """A URL anyone holding it can use for 10 minutes: for emails, <img>, other services."""
    stored = await _owned(file_id, user)
    await stored.aclose()
    url = manager.url_for(f"invoices/{file_id}", expires_in=timedelta(minutes=10), download=True)
    return {"url": url}


# The middleware serves the signed links at /depot/invoices/<id>?expires=...&sig=...
app = manager.make_middleware(api)
