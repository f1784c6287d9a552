"""Image work for ``ImageType``: dimensions, the pixel limit, thumbnails (Pillow).

Pillow needs a seekable file, so an upload is spooled to a
:class:`~tempfile.SpooledTemporaryFile` (memory up to :data:`SPOOL_MEMORY`,
disk beyond) rather than held in memory. Pillow calls block, so they run in a
worker thread.
"""

from __future__ import annotations

import asyncio
import io
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from .._exceptions import MissingDependencyError, ValidationError
from .._files import aclose_iterator

if TYPE_CHECKING:
    from .._files import StoredFile

__all__ = [
    "SPOOL_MEMORY",
    "ImageInfo",
    "measure",
    "measure_stored",
    "require_pillow",
    "spool",
    "thumbnail",
]

#: Bytes of an upload kept in memory before the spool moves to a temporary file.
SPOOL_MEMORY = 1024 * 1024

# Formats Pillow can write back; anything else is thumbnailed as PNG.
_SAVE_AS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "BMP": "bmp", "TIFF": "tiff"}


def require_pillow() -> Any:
    """The ``PIL.Image`` module, or :class:`~depotx.MissingDependencyError` naming the extra."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise MissingDependencyError("image", "pillow") from exc
    return Image


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int


async def spool(chunks: AsyncIterator[bytes], max_size: int | None) -> IO[bytes]:
    """Copy ``chunks`` to a spooled temporary file, refusing more than ``max_size`` bytes.

    The caller closes the returned file. Writes past :data:`SPOOL_MEMORY` go to
    disk, so they run in a worker thread.
    """
    target: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)  # noqa: SIM115
    written = 0
    try:
        async for chunk in chunks:
            written += len(chunk)
            if max_size is not None and written > max_size:
                raise ValidationError("max_size", f"the file is larger than {max_size} bytes")
            if written > SPOOL_MEMORY:
                await asyncio.to_thread(target.write, chunk)
            else:
                target.write(chunk)
    except BaseException:
        target.close()
        raise
    finally:
        await aclose_iterator(chunks)
    target.seek(0)
    return target


def measure(source: IO[bytes], max_pixels: int | None) -> ImageInfo:
    """Read the image header (not the pixels) and enforce ``max_pixels``. Blocking."""
    image_module = require_pillow()
    from PIL import UnidentifiedImageError

    source.seek(0)
    try:
        with image_module.open(source) as image:
            width, height = image.size
            fmt = image.format or "PNG"
    except image_module.DecompressionBombError as exc:
        raise ValidationError("max_pixels", f"the image is too large to decode: {exc}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValidationError("image", "the content is not an image Pillow can read") from exc
    finally:
        source.seek(0)
    if max_pixels is not None and width * height > max_pixels:
        raise ValidationError(
            "max_pixels", f"the image has {width}x{height} pixels, more than {max_pixels}"
        )
    return ImageInfo(fmt, width, height)


def thumbnail(source: IO[bytes], size: tuple[int, int]) -> tuple[bytes, str, int, int]:
    """A copy of the image fitting in ``size`` (aspect ratio kept): bytes, extension, width, height.

    Thumbnails are small, so they are returned as bytes. Blocking.
    """
    image_module = require_pillow()
    source.seek(0)
    try:
        with image_module.open(source) as image:
            fmt = image.format if image.format in _SAVE_AS else "PNG"
            copy = image.copy()
    finally:
        source.seek(0)
    copy.thumbnail(size)
    if fmt == "JPEG" and copy.mode not in ("RGB", "L"):
        copy = copy.convert("RGB")
    out = io.BytesIO()
    copy.save(out, format=fmt)
    return out.getvalue(), _SAVE_AS[fmt], copy.width, copy.height


async def measure_stored(stored: StoredFile, max_pixels: int | None) -> tuple[int, int]:
    """Dimensions of a stored image, spooled rather than read into memory."""
    source = await spool(stored.iter_bytes(), max_size=None)
    try:
        info = await asyncio.to_thread(measure, source, max_pixels)
    finally:
        source.close()
    return info.width, info.height
