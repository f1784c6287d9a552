"""The usage examples of genro-storage and fastapi-async-storages, translated line by line.

Each block says what the seed's own example does, then does it with depotx, on the
local storage (and the SQLAlchemy columns), as docs/coming-from-seeds.md maps it.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from sqlalchemy import Integer
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from starlette.datastructures import UploadFile

from depotx import StorageManager, StoredFileExistsError
from depotx.ext.sqlalchemy import AttachedImage, ImageType

IMAGES = StorageManager()


class Base(DeclarativeBase):
    pass


# class Example(Base): image = Column(ImageType(storage=storage))
class Example(Base):
    __tablename__ = "examples"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image: Mapped[AttachedImage | None] = mapped_column(ImageType(storage="images", manager=IMAGES))


async def test_genro_storage_usage(tmp_path: Path) -> None:
    manager = StorageManager()
    # storage.configure([{"name": "docs", "type": "local", "path": ...}])
    storage = manager.configure("docs", {"depot.storage_path": str(tmp_path / "docs")})
    # node = storage.node("docs:reports/2026/q1.txt")
    key = "reports/2026/q1.txt"
    # node.write("first quarter")
    await storage.put(key, b"first quarter")
    # node.exists -> True
    assert await storage.exists(key)
    # node.read() -> "first quarter"
    async with await manager.get_file(f"docs/{key}") as stored:
        assert await stored.read() == b"first quarter"
        # node.size -> 13
        assert stored.content_length == 13
    # node.write("revised") overwrites
    await storage.put(key, b"revised")
    async with await storage.get(key) as stored:
        assert await stored.read() == b"revised"
    # storage.node("docs:reports/2026/q2.txt").write(...), then list the folder
    await storage.put("reports/2026/q2.txt", b"second quarter")
    await storage.put("reports/2026/archive/old.txt", b"old")
    # storage.node("docs:reports/2026").list()
    children = [k async for k in storage.list("reports/2026/", delimiter="/")]
    assert children == ["reports/2026/archive/", "reports/2026/q1.txt", "reports/2026/q2.txt"]
    # node.delete()
    await storage.delete(key)
    assert not await storage.exists(key)
    await manager.aclose()


async def test_fastapi_async_storages_usage(tmp_path: Path) -> None:
    manager = StorageManager()
    # storage = FileSystemStorage(path=tmp_path)
    storage = manager.configure("default", {"depot.storage_path": str(tmp_path)})
    file = UploadFile(io.BytesIO(b"example content"), filename="example.txt")
    # name = await storage.upload(file, "uploads/example.txt")
    name = await storage.create(file, file_id="uploads/example.txt")
    assert name == "uploads/example.txt"
    # await storage.get_path(name) -> where it is served
    assert manager.url_for(f"default/{name}") == "/depot/default/uploads/example.txt"
    # await storage.get_size(name) -> 15
    async with await storage.get(name) as stored:
        assert stored.content_length == 15
    # async with storage.open(name) as f: await f.read()
    async with await storage.get(name) as stored:
        assert await stored.read() == b"example content"
    # uploading the same name again: depotx refuses to overwrite silently
    with pytest.raises(StoredFileExistsError):
        await storage.create(b"other", file_id=name)
    # await storage.delete(name)
    await storage.delete(name)
    assert not await storage.exists(name)
    await manager.aclose()


async def test_fastapi_async_storages_image_type(tmp_path: Path) -> None:
    pytest.importorskip("PIL", reason="ImageType needs Pillow (depotx[image])")
    from PIL import Image

    IMAGES.clear()
    IMAGES.configure("images", {"depot.storage_path": str(tmp_path / "images")})
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    png = io.BytesIO()
    Image.new("RGB", (30, 20), "red").save(png, "PNG")
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions() as session:
        # example = Example(image=UploadFile(...)); session.add(example); commit
        example = Example(image=UploadFile(io.BytesIO(png.getvalue()), filename="red.png"))
        session.add(example)
        await session.commit()
        # example.image.get_dimensions() -> (30, 20)
        assert example.image is not None
        assert await example.image.get_dimensions() == (30, 20)
    await engine.dispose()
    await IMAGES.aclose()
