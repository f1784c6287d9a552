"""A FastAPI app keeping uploaded documents beside database rows.

Run it (``pip install 'depotx[sqlalchemy,server]' fastapi aiosqlite``)::

    uvicorn --factory examples.fastapi_sqlalchemy.app:create_app

``DATABASE_URL`` and ``DEPOT_PATH`` override where rows and files go.

- ``POST /documents`` (multipart ``file``): stores the upload in the row's
  ``FileType`` column, inside the normal commit; a failed commit removes it.
- ``GET /documents``: lists rows with each file's name, size and URL.
- ``GET /depot/<storage>/<fileid>``: served by the depotx middleware.
- ``DELETE /documents/{id}``: deletes the row; the file goes after the commit.
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, UploadFile
from sqlalchemy import Integer, select
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from depotx import StorageManager, ValidationError
from depotx.ext.sqlalchemy import AttachedFile, FileType

manager = StorageManager()


class Base(DeclarativeBase):
    pass


class Document(Base):
    __tablename__ = "documents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    file: Mapped[AttachedFile] = mapped_column(
        FileType(storage="documents", manager=manager, max_size=10 * 1024 * 1024)
    )


def describe(doc: Document) -> dict[str, Any]:
    return {
        "id": doc.id,
        "filename": doc.file.filename,
        "content_type": doc.file.content_type,
        "size": doc.file.size,
        "url": doc.file.url,
    }


async def create_tables(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)


def create_app(database_url: str | None = None, storage_path: str | None = None) -> Any:
    """The FastAPI app wrapped in the depotx middleware (which serves ``/depot/...``).

    Configuring the storage here, not at import, keeps importing the module free
    of side effects; the lifespan creates the tables and closes everything.
    """
    database_url = database_url or os.environ.get(
        "DATABASE_URL", "sqlite+aiosqlite:///./documents.db"
    )
    manager.clear()
    manager.configure(
        "documents",
        {"depot.storage_path": storage_path or os.environ.get("DEPOT_PATH", "./depot-files")},
    )
    engine = create_async_engine(database_url)
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await create_tables(engine)
        yield
        await engine.dispose()
        await manager.aclose()

    api = FastAPI(lifespan=lifespan)

    async def get_session() -> AsyncIterator[AsyncSession]:
        async with sessions() as session:
            yield session

    Session = Annotated[AsyncSession, Depends(get_session)]

    @api.post("/documents", status_code=201)
    async def upload(file: UploadFile, session: Session) -> dict[str, Any]:
        doc = Document(file=file)
        session.add(doc)
        try:
            await session.commit()  # the upload is streamed to storage here
        except ValidationError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        return describe(doc)

    @api.get("/documents")
    async def list_documents(session: Session) -> list[dict[str, Any]]:
        rows = await session.scalars(select(Document).order_by(Document.id))
        return [describe(doc) for doc in rows]

    @api.delete("/documents/{doc_id}", status_code=204)
    async def remove(doc_id: int, session: Session) -> None:
        doc = await session.get(Document, doc_id)
        if doc is None:
            raise HTTPException(status_code=404)
        await session.delete(doc)
        await session.commit()

    return manager.make_middleware(api)
