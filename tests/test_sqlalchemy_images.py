"""ImageType: dimensions, the pixel limit and thumbnails, with Pillow-made images."""

from __future__ import annotations

import io
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import Integer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from depotx import MissingDependencyError, StorageManager, ValidationError
from depotx.ext.sqlalchemy import AttachedImage, ImageType

MANAGER = StorageManager()


class Base(DeclarativeBase):
    pass


class Photo(Base):
    __tablename__ = "photos"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image: Mapped[AttachedImage | None] = mapped_column(
        ImageType(
            storage="pics",
            manager=MANAGER,
            max_pixels=1_000_000,
            thumbnails={"small": (64, 64), "wide": (200, 50)},
        )
    )


def make_image(width: int, height: int, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, format=fmt)
    return out.getvalue()


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    MANAGER.clear()
    MANAGER.configure("pics", {"depot.storage_path": str(tmp_path / "pics")})
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'photos.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield async_sessionmaker(engine, expire_on_commit=False)
    await engine.dispose()


async def stored_ids() -> list[str]:
    return [file_id async for file_id in MANAGER.get("pics").list()]


async def test_dimensions_and_thumbnails(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        photo = Photo(image=make_image(400, 300, "JPEG"))
        session.add(photo)
        await session.commit()
    image = photo.image
    assert isinstance(image, AttachedImage)
    assert (image.width, image.height) == (400, 300)
    assert await image.get_dimensions() == (400, 300)
    assert image.content_type == "image/jpeg"
    small, wide = image.thumbnails["small"], image.thumbnails["wide"]
    assert (small.width, small.height) == (64, 48)  # aspect ratio kept
    assert (wide.width, wide.height) == (67, 50)
    assert small.url == f"/depot/{small.path}"
    async with await MANAGER.get_file(small.path) as stored:
        assert stored.content_type == "image/jpeg"
        assert stored.metadata["depotx_thumbnail"] == "small"
        with Image.open(io.BytesIO(await stored.read())) as thumb:
            assert thumb.size == (64, 48)
    async with sessions() as session:  # the database keeps dimensions and thumbnails
        loaded = await session.get(Photo, photo.id)
        assert loaded is not None
        assert loaded.image == image
        assert loaded.image is not None
        assert loaded.image.thumbnails["wide"].path == wide.path


async def test_get_dimensions_reads_the_image_when_not_recorded(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    file_id = await MANAGER.get("pics").create(make_image(33, 17), filename="a.png")
    column = Photo.__table__.c.image.type
    reference = column.reference(f"pics/{file_id}")  # what a sync Session records
    assert isinstance(reference, AttachedImage)
    assert reference.width is None
    assert await reference.get_dimensions() == (33, 17)


async def test_pre_uploaded_image_gets_dimensions_and_thumbnails(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    file_id = await MANAGER.get("pics").create(make_image(120, 80), filename="up.png")
    async with sessions() as session:
        photo = Photo(image=f"pics/{file_id}")
        session.add(photo)
        await session.flush()
        assert photo.image is not None
        assert (photo.image.width, photo.image.height) == (120, 80)
        thumb = photo.image.thumbnails["small"].path
        await session.rollback()
    ids = await stored_ids()
    assert file_id in ids  # the caller's upload stays
    assert thumb.split("/")[1] not in ids  # the thumbnail made in the transaction went


async def test_too_many_pixels_is_refused_before_storing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        session.add(Photo(image=make_image(2000, 1000)))
        with pytest.raises(ValidationError) as caught:
            await session.flush()
    assert caught.value.rule == "max_pixels"
    assert await stored_ids() == []


async def test_not_an_image_is_refused(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        session.add(Photo(image=b"plain text, not pixels"))
        with pytest.raises(ValidationError) as caught:
            await session.flush()
    assert caught.value.rule == "image"
    assert await stored_ids() == []


async def test_deleting_the_row_deletes_thumbnails(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        photo = Photo(image=make_image(100, 100))
        session.add(photo)
        await session.commit()
        assert len(await stored_ids()) == 3
        await session.delete(photo)
        await session.commit()
    assert await stored_ids() == []


def test_image_type_without_pillow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(MissingDependencyError, match=r"depotx\[image\]"):
        ImageType()
