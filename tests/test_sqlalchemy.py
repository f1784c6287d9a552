"""FileType columns on a real SQLite database (aiosqlite), with AsyncSession.

Every cleanup claim is checked in the storage itself: after a rollback, a
replace or a delete, the file is really gone (or really still there).
"""

from __future__ import annotations

import io
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiofiles
import pytest
from sqlalchemy import Integer, String, create_engine, delete, select
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from starlette.datastructures import Headers, UploadFile

from depotx import (
    ConfigurationError,
    FileIntent,
    InvalidFileIdError,
    LocalFileStorage,
    StorageManager,
    StoredFileNotFoundError,
    ValidationError,
)
from depotx.ext.sqlalchemy import (
    AsyncSessionRequiredError,
    AttachedFile,
    FileType,
    PendingFile,
    delete_orphans,
)

MANAGER = StorageManager()
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<<>>\n%%EOF\n"
HTML = b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>\n"


class Base(DeclarativeBase):
    pass


class Document(Base):
    __tablename__ = "documents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(50), default="")
    file: Mapped[AttachedFile | None] = mapped_column(FileType(storage="docs", manager=MANAGER))
    on_disk: Mapped[AttachedFile | None] = mapped_column(
        FileType(storage="current", manager=MANAGER, max_size=1000)
    )
    pdf: Mapped[AttachedFile | None] = mapped_column(
        FileType(storage="docs", manager=MANAGER, allowed_types=["application/pdf"])
    )


@pytest.fixture(autouse=True)
def manager(tmp_path: Path) -> StorageManager:
    MANAGER.clear()
    MANAGER.configure("docs", {"depot.backend": "memory"})
    MANAGER.configure("disk", {"depot.storage_path": str(tmp_path / "files")})
    MANAGER.alias("current", "disk")
    return MANAGER


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def exists(path: str) -> bool:
    storage_name, file_id = path.split("/", 1)
    return await MANAGER.get(storage_name).exists(file_id)


async def file_ids(name: str) -> list[str]:
    return [file_id async for file_id in MANAGER.get(name).list()]


# -- round trips ------------------------------------------------------------------------------


async def test_bytes_round_trip(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        doc = Document(file=b"hello world")
        assert isinstance(doc.file, PendingFile)  # stored only at flush
        session.add(doc)
        await session.commit()
        attached = doc.file
        assert isinstance(attached, AttachedFile)
        assert attached.storage == "docs"
        assert attached.path == f"docs/{attached.file_id}"
        assert attached.size == 11
        assert attached.filename == "unnamed"
        assert attached.content_type.startswith("text/plain")
        assert attached.url == f"/depot/docs/{attached.file_id}"
        assert await attached.read() == b"hello world"
        async with await attached.open() as stored:
            assert stored.checksum == attached.checksum
            assert stored.metadata["depotx_table"] == "documents"
            assert stored.metadata["depotx_column"] == "file"
    async with sessions() as session:
        loaded = await session.get(Document, doc.id)
        assert loaded is not None
        assert loaded.file == attached  # the JSON in the database describes the same file


async def _binary_file(tmp_path: Path) -> object:
    source = tmp_path / "report.pdf"
    source.write_bytes(PDF)
    return source.open("rb")


async def _async_file(tmp_path: Path) -> object:
    source = tmp_path / "report.pdf"
    source.write_bytes(PDF)
    return await aiofiles.open(source, "rb")


async def _upload_file(tmp_path: Path) -> object:
    return UploadFile(
        io.BytesIO(PDF),
        filename="report.pdf",
        headers=Headers({"content-type": "application/pdf"}),
    )


async def _file_intent(tmp_path: Path) -> object:
    return FileIntent(PDF, filename="report.pdf", content_type="application/pdf")


async def _stored_file(tmp_path: Path) -> object:
    other = MANAGER.get("docs")
    file_id = await other.create(PDF, filename="report.pdf")
    return await other.get(file_id)


async def _pre_uploaded_path(tmp_path: Path) -> object:
    file_id = await MANAGER.get("disk").create(PDF, filename="report.pdf")
    return f"current/{file_id}"  # an alias: recorded under the real storage name


@pytest.mark.parametrize(
    "make",
    [_binary_file, _async_file, _upload_file, _file_intent, _stored_file, _pre_uploaded_path],
    ids=["binary-file", "async-file", "upload-file", "file-intent", "stored-file", "path"],
)
async def test_each_content_kind_round_trips(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, make: object
) -> None:
    content = await make(tmp_path)  # type: ignore[operator]
    try:
        async with sessions() as session:
            doc = Document(on_disk=content)
            session.add(doc)
            await session.commit()
    finally:
        close = getattr(content, "close", None)
        if close is not None:
            result = close()
            if hasattr(result, "__await__"):
                await result
        aclose = getattr(content, "aclose", None)
        if aclose is not None:
            await aclose()
    attached = doc.on_disk
    assert isinstance(attached, AttachedFile)
    assert attached.storage == "disk"  # the alias "current" resolved when stored
    assert attached.filename == "report.pdf"
    assert attached.content_type == "application/pdf"
    assert attached.size == len(PDF)
    assert await attached.read() == PDF
    async with sessions() as session:
        loaded = (await session.execute(select(Document))).scalar_one()
        assert loaded.on_disk == attached


async def test_attached_file_from_another_row_is_copied(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        first = Document(file=b"shared?")
        session.add(first)
        await session.commit()
        second = Document(file=first.file)
        session.add(second)
        await session.commit()
        assert first.file is not None
        assert second.file is not None
        assert second.file.path != first.file.path  # a copy: deleting one keeps the other
        await session.delete(first)
        await session.commit()
        assert await second.file.read() == b"shared?"


async def test_storage_given_as_instance(sessions: async_sessionmaker[AsyncSession]) -> None:
    column = FileType(storage=MANAGER.get("disk"), manager=MANAGER)
    assert column.resolve_storage()[0] == "disk"
    with pytest.raises(ConfigurationError, match="not configured"):
        FileType(storage=LocalFileStorage("/tmp/unregistered"), manager=MANAGER).resolve_storage()


async def test_malformed_path_is_refused_at_assignment() -> None:
    with pytest.raises(InvalidFileIdError):
        Document(file="docs/../../etc/passwd")


async def test_missing_path_fails_the_flush(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        session.add(Document(file="docs/no-such-file"))
        with pytest.raises(StoredFileNotFoundError):
            await session.flush()


# -- lifecycle -----------------------------------------------------------------------------------


async def test_rollback_deletes_files_stored_in_the_transaction(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        doc = Document(file=b"draft", on_disk=b"draft on disk")
        session.add(doc)
        await session.flush()
        assert doc.file is not None
        assert doc.on_disk is not None
        paths = [doc.file.path, doc.on_disk.path]
        assert [await exists(p) for p in paths] == [True, True]
        await session.rollback()
    assert [await exists(p) for p in paths] == [False, False]


async def test_closing_without_commit_deletes_files(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        doc = Document(file=b"abandoned")
        session.add(doc)
        await session.flush()
        assert doc.file is not None
        path = doc.file.path
    assert not await exists(path)


async def test_rollback_after_failed_insert_deletes_files(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        session.add(Document(id=1, file=b"first"))
        await session.commit()
    async with sessions() as session:
        clash = Document(id=1, file=b"second")
        session.add(clash)
        with pytest.raises(Exception, match="UNIQUE"):
            await session.flush()
        await session.rollback()
    async with sessions() as session:
        first = await session.get(Document, 1)
    assert first is not None
    assert first.file is not None
    assert await file_ids("docs") == [first.file.file_id]  # "second" was removed


async def test_savepoint_rollback_deletes_only_its_files(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        kept = Document(file=b"kept")
        session.add(kept)
        await session.flush()
        savepoint = await session.begin_nested()
        dropped = Document(file=b"dropped")
        session.add(dropped)
        await session.flush()
        assert dropped.file is not None
        dropped_path = dropped.file.path
        await savepoint.rollback()
        assert not await exists(dropped_path)
        await session.commit()
        assert kept.file is not None
        assert await exists(kept.file.path)


async def test_replace_deletes_old_file_only_after_commit(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        doc = Document(file=b"v1")
        session.add(doc)
        await session.commit()
        assert doc.file is not None
        old = doc.file.path
        doc.file = b"v2"
        await session.flush()
        assert await exists(old)  # not before the commit
        await session.commit()
        assert not await exists(old)
        assert await doc.file.read() == b"v2"


async def test_replace_then_rollback_keeps_old_file(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        doc = Document(file=b"v1")
        session.add(doc)
        await session.commit()
        assert doc.file is not None
        old = doc.file.path
        doc.file = b"v2"
        await session.flush()
        new = doc.file.path
        await session.rollback()
    assert await exists(old)
    assert not await exists(new)


async def test_replace_over_expired_attribute(engine: AsyncEngine) -> None:
    sessions = async_sessionmaker(engine)  # expire_on_commit=True: values unloaded after commit
    async with sessions() as session:
        doc = Document(file=b"v1")
        session.add(doc)
        await session.commit()
        await session.refresh(doc)
        assert doc.file is not None
        old = doc.file.path
        await session.commit()  # expires doc.file
        doc.file = b"v2"  # the old value is not loaded: found in the database at flush
        await session.commit()
    assert not await exists(old)
    assert len(await file_ids("docs")) == 1


async def test_set_to_none_deletes_after_commit(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        doc = Document(file=b"bye")
        session.add(doc)
        await session.commit()
        assert doc.file is not None
        old = doc.file.path
        doc.file = None
        await session.commit()
    assert not await exists(old)


async def test_deleting_the_row_deletes_its_files(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        doc = Document(file=b"a", on_disk=b"b")
        session.add(doc)
        await session.commit()
        assert doc.file is not None
        assert doc.on_disk is not None
        paths = [doc.file.path, doc.on_disk.path]
    async with sessions() as session:  # a fresh session: the row is loaded, then deleted
        loaded = await session.get(Document, doc.id)
        await session.delete(loaded)
        await session.flush()
        assert [await exists(p) for p in paths] == [True, True]
        await session.commit()
    assert [await exists(p) for p in paths] == [False, False]


async def test_delete_rolled_back_keeps_files(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        doc = Document(file=b"still here")
        session.add(doc)
        await session.commit()
        assert doc.file is not None
        path = doc.file.path
        await session.delete(doc)
        await session.flush()
        await session.rollback()
    assert await exists(path)


async def test_delete_orphans_after_bulk_delete(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    storage = MANAGER.get("docs")
    unrelated = await storage.create(b"not a column's file")
    async with sessions() as session:
        gone = Document(title="gone", file=b"orphan to be")
        kept = Document(title="kept", file=b"referenced")
        session.add_all([gone, kept])
        await session.commit()
        assert gone.file is not None
        assert kept.file is not None
        await session.execute(delete(Document).where(Document.title == "gone"))
        await session.commit()
        assert await exists(gone.file.path)  # bulk statements bypass the session events
        assert await delete_orphans(session, Document.file) == []  # too recent by default
        deleted = await delete_orphans(session, Document.file, older_than=timedelta(0))
    assert deleted == [gone.file.path]
    assert not await exists(gone.file.path)
    assert await exists(kept.file.path)
    assert await storage.exists(unrelated)  # no marker: never touched


# -- validation ---------------------------------------------------------------------------------


async def test_max_size_is_checked_while_streaming(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 5000)
    async with sessions() as session:
        with big.open("rb") as handle:
            doc = Document(on_disk=handle)
            session.add(doc)
            with pytest.raises(ValidationError, match="max_size") as caught:
                await session.flush()
        assert caught.value.rule == "max_size"
        assert await file_ids("disk") == []  # nothing half-written was left
        doc.on_disk = b"small enough"  # the session is still usable
        await session.commit()
    assert len(await file_ids("disk")) == 1


async def test_allowed_types_use_the_sniffed_type(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        lying = Document(
            pdf=FileIntent(HTML, filename="invoice.pdf", content_type="application/pdf")
        )
        session.add(lying)
        with pytest.raises(ValidationError) as caught:
            await session.flush()
        assert caught.value.rule == "allowed_types"
        assert await file_ids("docs") == []
        lying.pdf = FileIntent(PDF, filename="invoice.pdf")
        await session.commit()
        assert lying.pdf is not None
        assert lying.pdf.content_type == "application/pdf"


async def test_failure_in_second_column_undoes_the_first(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        session.add(Document(file=b"fine", pdf=HTML))
        with pytest.raises(ValidationError):
            await session.flush()
        assert await file_ids("docs") == []


# -- schema and migrations -----------------------------------------------------------------------


def test_alembic_autogenerate_renders_a_plain_import() -> None:
    from alembic.autogenerate import produce_migrations, render_python_code
    from alembic.migration import MigrationContext

    engine = create_engine("sqlite://")
    with engine.connect() as conn:
        context = MigrationContext.configure(conn)
        code = render_python_code(produce_migrations(context, Base.metadata).upgrade_ops)
    engine.dispose()
    assert "sa.Column('file', depotx.ext.sqlalchemy.FileType(), nullable=True)" in code
    assert "depotx.ext.sqlalchemy.FileType()" in code
    assert "_sqlalchemy_types" not in code  # never a private module in a migration


def test_text_fallback_for_dialects_without_json() -> None:
    from sqlalchemy.engine.default import DefaultDialect
    from sqlalchemy.types import Text

    dialect = DefaultDialect()
    column = FileType(storage="docs", manager=MANAGER)
    assert isinstance(column.load_dialect_impl(dialect), Text)
    value = AttachedFile(path="docs/abc", storage="docs", file_id="abc", size=3)
    stored = column.process_bind_param(value, dialect)
    assert isinstance(stored, str)
    assert column.process_result_value(stored, dialect) == value


# -- sync Session --------------------------------------------------------------------------------


@pytest.fixture
def sync_session(tmp_path: Path) -> Session:
    engine = create_engine(f"sqlite:///{tmp_path / 'sync.db'}")
    Base.metadata.create_all(engine)
    with Session(engine, expire_on_commit=False) as session:
        yield session  # type: ignore[misc]
    engine.dispose()


def test_sync_session_path_assignment(sync_session: Session) -> None:
    import asyncio

    storage = MANAGER.get("disk")
    first = asyncio.run(storage.create(b"uploaded first", filename="a.txt"))
    second = asyncio.run(storage.create(b"and again", filename="b.txt"))
    doc = Document(on_disk=f"current/{first}")
    sync_session.add(doc)
    sync_session.commit()
    assert doc.on_disk is not None
    assert (doc.on_disk.path, doc.on_disk.storage, doc.on_disk.file_id) == (
        f"disk/{first}",
        "disk",
        first,
    )
    # "Upload first, assign the path" records the metadata with a sync Session too.
    assert doc.on_disk.filename == "a.txt"
    assert doc.on_disk.content_type == "text/plain; charset=utf-8"
    assert doc.on_disk.size == len(b"uploaded first")
    assert asyncio.run(doc.on_disk.read()) == b"uploaded first"
    doc.on_disk = f"disk/{second}"
    sync_session.commit()
    assert not asyncio.run(storage.exists(first))  # the replaced file went after commit
    loaded = sync_session.execute(select(Document)).scalar_one()
    assert loaded.on_disk is not None
    assert loaded.on_disk.file_id == second


def test_sync_session_path_assignment_checks_the_rules(sync_session: Session) -> None:
    import asyncio

    from depotx import ValidationError

    big = asyncio.run(MANAGER.get("disk").create(b"x" * 2000, filename="big.bin"))
    sync_session.add(Document(on_disk=f"disk/{big}"))  # on_disk allows 1000 bytes
    with pytest.raises(ValidationError, match="max_size"):
        sync_session.flush()
    sync_session.rollback()


def test_sync_session_refuses_content_at_assignment(sync_session: Session) -> None:
    doc = Document()
    sync_session.add(doc)
    with pytest.raises(AsyncSessionRequiredError, match="upload the file first"):
        doc.file = b"content"


def test_sync_session_refuses_content_at_flush(sync_session: Session) -> None:
    sync_session.add(Document(file=b"content"))  # assigned before the session was known
    with pytest.raises(AsyncSessionRequiredError, match=r"storage\.create"):
        sync_session.flush()
    sync_session.rollback()


# -- shared paths and consumed handles ---------------------------------------------------


async def test_a_path_taken_from_another_row_is_shared_not_stolen(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        b = Document(title="b", file=b"b's file")
        session.add(b)
        await session.commit()
        assert b.file is not None
        c = Document(title="c", file=b.file.path)  # the same file, by its path
        session.add(c)
        await session.commit()
        assert c.file is not None
        assert c.file.path == b.file.path
        await session.delete(c)
        await session.commit()
        assert await exists(b.file.path), "deleting c must not delete b's file"
        async with await MANAGER.get_file(b.file.path) as stored:
            assert await stored.read() == b"b's file"
        # The last row to let go of it deletes it.
        path = b.file.path
        await session.delete(b)
        await session.commit()
        assert not await exists(path)


async def test_replacing_a_shared_file_keeps_it_for_the_other_row(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        b = Document(title="b", file=b"shared")
        session.add(b)
        await session.commit()
        assert b.file is not None
        c = Document(title="c", file=b.file.path)
        session.add(c)
        await session.commit()
        b.file = b"b's new file"
        await session.commit()
        assert c.file is not None
        assert await exists(c.file.path)


async def test_assigned_files_and_stored_files_are_closed(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    source = tmp_path / "cv.pdf"
    source.write_bytes(b"%PDF-1.4 cv")
    handle = source.open("rb")
    async with sessions() as session:
        original = Document(title="a", file=b"original")
        session.add(original)
        await session.commit()
        assert original.file is not None
        opened = await MANAGER.get_file(original.file.path)
        doc = Document(title="cv", file=handle)
        copy = Document(title="copy", file=opened)
        session.add_all([doc, copy])
        await session.commit()
    assert handle.closed
    assert opened.closed


# -- the FastAPI example ---------------------------------------------------------------------------


async def test_fastapi_example_upload_list_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    import httpx

    path = Path(__file__).parent.parent / "examples" / "fastapi_sqlalchemy" / "app.py"
    spec = importlib.util.spec_from_file_location("example_fastapi_sqlalchemy", path)
    assert spec is not None
    assert spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, example)  # SQLAlchemy resolves annotations there
    spec.loader.exec_module(example)

    app = example.create_app(f"sqlite+aiosqlite:///{tmp_path / 'ex.db'}", str(tmp_path / "files"))
    api = app.app  # inside the depotx middleware
    async with api.router.lifespan_context(api):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            created = await client.post(
                "/documents", files={"file": ("notes.txt", b"hello from FastAPI", "text/plain")}
            )
            assert created.status_code == 201, created.text
            body = created.json()
            assert body["filename"] == "notes.txt"
            assert body["size"] == 18
            listed = await client.get("/documents")
            assert [doc["id"] for doc in listed.json()] == [body["id"]]
            download = await client.get(body["url"])  # served by the middleware
            assert download.status_code == 200
            assert download.content == b"hello from FastAPI"
            assert (await client.delete(f"/documents/{body['id']}")).status_code == 204
            assert (await client.get(body["url"])).status_code == 404  # deleted after commit
            assert (await client.get("/documents")).json() == []


async def test_shared_unicode_keys_are_recognised(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    storage = MANAGER.get("docs")
    key = "rapports/été 2026.pdf"
    await storage.create(b"%PDF-1.4 shared", "r.pdf", file_id=key)
    async with sessions() as session:
        b = Document(title="b", file=f"docs/{key}")
        c = Document(title="c", file=f"docs/{key}")
        session.add_all([b, c])
        await session.commit()
        await session.delete(c)
        await session.commit()
        assert await exists(f"docs/{key}"), "b still references it"
        await session.delete(b)
        await session.commit()
        assert not await exists(f"docs/{key}")


# -- direct uploads: a ticket's token assigned to a column ------------------------------------


async def _direct_upload(data: bytes, filename: str, claimed: str | None = None) -> str:
    """A browser's direct upload to the ``docs`` storage, through the middleware; its token."""
    import httpx

    from depotx import MemoryFileStorage

    MANAGER.set_secret_key("sqlalchemy-direct-secret")
    if not MANAGER.has_upload_staging or MANAGER._upload_staging is None:
        MANAGER.set_upload_staging(MemoryFileStorage())
    ticket = await MANAGER.get("docs").prepare_upload(filename, claimed, max_size=10_000)

    async def nothing(scope: object, receive: object, send: object) -> None:
        raise AssertionError("the middleware answers uploads itself")

    transport = httpx.ASGITransport(app=MANAGER.make_middleware(nothing))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        form = ticket.to_dict()["upload"]
        response = await client.post(
            form["url"], files={"file": (filename, data)}, headers=form["headers"]
        )
        assert response.status_code == 201, response.text
    return ticket.token


async def test_a_direct_upload_token_is_finalized_and_attached_at_flush(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    token = await _direct_upload(PDF, "scan.pdf", "image/png")
    async with sessions() as session:
        doc = Document(file=token)
        assert isinstance(doc.file, PendingFile)
        session.add(doc)
        await session.commit()
        assert isinstance(doc.file, AttachedFile)
        assert doc.file.filename == "scan.pdf"
        assert doc.file.content_type == "application/pdf"  # sniffed, not the claim
        assert doc.file.size == len(PDF)
        assert await exists(doc.file.path)
        assert await file_ids("docs") == [doc.file.file_id]


async def test_a_rolled_back_direct_upload_is_deleted(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    token = await _direct_upload(PDF, "scan.pdf")
    async with sessions() as session:
        doc = Document(file=token)
        session.add(doc)
        await session.flush()
        path = doc.file.path  # type: ignore[union-attr]
        assert await exists(path)
        await session.rollback()
    assert not await exists(path)
    assert await file_ids("docs") == []


async def test_a_direct_upload_breaking_a_column_rule_is_refused_and_deleted(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    token = await _direct_upload(HTML, "invoice.pdf", "application/pdf")
    async with sessions() as session:
        session.add(Document(pdf=token))
        with pytest.raises(ValidationError, match="allowed_types"):
            await session.flush()
        await session.rollback()
    assert await file_ids("docs") == []
