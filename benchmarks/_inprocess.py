"""Scenarios that run inside the harness process: storage calls, no HTTP.

Each function measures one contender once; the harness interleaves and repeats
them. They are plain coroutines so the smoke test can run one directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiofiles

from depotx.storages.local import LocalFileStorage

from ._procs import PeakRSS

__all__ = [
    "CHUNK",
    "MiB",
    "create_local",
    "loop_lag",
    "raw_aiofiles_copy",
    "s3_depotx",
    "s3_raw",
    "stream",
]

MiB = 1024 * 1024
CHUNK = MiB
_BLOCK = os.urandom(CHUNK)


async def stream(size: int, chunk: int = CHUNK) -> AsyncIterator[bytes]:
    """An async stream of ``size`` bytes in ``chunk``-sized pieces, as a request body is.

    Always the same block: producing the bytes costs nothing, so only the
    consumer is measured.
    """
    block = _BLOCK if chunk == CHUNK else os.urandom(chunk)
    left = size
    while left > 0:
        piece = block if left >= chunk else block[:left]
        left -= len(piece)
        yield piece
        await asyncio.sleep(0)


def _figures(size: int, elapsed: float, peak: PeakRSS) -> dict[str, Any]:
    growth = peak.growth
    return {
        "mib_s": round(size / MiB / elapsed, 1),
        "seconds": round(elapsed, 3),
        "rss_growth_mib": None if growth is None else round(growth / MiB, 1),
    }


async def create_local(root: Path, size: int, checksum: str = "sha256") -> dict[str, Any]:
    """``LocalFileStorage.create`` of an async stream: content type sniffed, checksum included."""
    storage = LocalFileStorage(root / "depotx")
    storage.checksum_algorithm = checksum
    with PeakRSS(os.getpid()) as peak:
        began = time.perf_counter()
        file_id = await storage.create(stream(size), filename="big.bin")
        elapsed = time.perf_counter() - began
    async with await storage.get(file_id) as stored:
        if stored.content_length != size:
            raise RuntimeError(f"create stored {stored.content_length} bytes of {size}")
    await storage.delete(file_id)
    return _figures(size, elapsed, peak)


async def raw_aiofiles_copy(root: Path, size: int) -> dict[str, Any]:
    """The peer: the same stream copied to a file with aiofiles, 1 MiB writes, no checksum."""
    await asyncio.to_thread(root.mkdir, parents=True, exist_ok=True)
    path = root / f"raw-{uuid.uuid4().hex}.bin"
    with PeakRSS(os.getpid()) as peak:
        began = time.perf_counter()
        async with aiofiles.open(path, "wb") as out:
            async for chunk in stream(size):
                await out.write(chunk)
        elapsed = time.perf_counter() - began
    written = path.stat().st_size
    path.unlink()
    if written != size:
        raise RuntimeError(f"aiofiles wrote {written} bytes of {size}")
    return _figures(size, elapsed, peak)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


async def loop_lag(
    root: Path, *, upload_size: int, small_count: int, small_size: int = 4096
) -> dict[str, Any]:
    """Event-loop lag while a large upload and many small create+get run at once.

    A ticker asks to wake every 5 ms and records how late it woke: anything that
    blocks the loop (hashing, libmagic, disk I/O done inline) shows up as lag.
    Every small file is read back and compared, so "intact" is checked, not assumed.
    """
    storage = LocalFileStorage(root / "lag")
    lags: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        while not done.is_set():
            planned = loop.time() + 0.005
            await asyncio.sleep(0.005)
            lags.append(max(0.0, loop.time() - planned))

    async def small(index: int) -> bool:
        payload = index.to_bytes(4, "big") * (small_size // 4)
        file_id = await storage.create(payload, filename=f"small-{index}.bin")
        async with await storage.get(file_id) as stored:
            return await stored.read() == payload and stored.filename == f"small-{index}.bin"

    async def big() -> str:
        return await storage.create(stream(upload_size), filename="upload.bin")

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)  # a few idle ticks first
    idle = list(lags)
    began = time.perf_counter()
    big_task = asyncio.ensure_future(big())
    try:
        intact = await asyncio.gather(*(small(i) for i in range(small_count)))
        big_id = await big_task
    finally:
        big_task.cancel()  # a no-op once it finished; stops it if a small one failed
        done.set()
        await tick
    elapsed = time.perf_counter() - began
    async with await storage.get(big_id) as stored:
        big_ok = stored.content_length == upload_size
    busy = lags[len(idle) :] or [0.0]
    return {
        "seconds": round(elapsed, 3),
        "small_intact": sum(bool(ok) for ok in intact),
        "small_count": small_count,
        "upload_intact": big_ok,
        "lag_p50_ms": round(statistics.median(busy) * 1000, 2),
        "lag_p99_ms": round(_percentile(busy, 0.99) * 1000, 2),
        "lag_max_ms": round(max(busy) * 1000, 2),
        "ticks": len(busy),
    }


# -- S3 ------------------------------------------------------------------------------


class _StreamReader:
    """``upload_fileobj`` wants a file: the same stream behind an async ``read``."""

    def __init__(self, size: int) -> None:
        self._chunks = stream(size)
        self._buffer = bytearray()
        self._done = False

    async def read(self, n: int = -1) -> bytes:
        while not self._done and (n < 0 or len(self._buffer) < n):
            chunk = await anext(self._chunks, None)
            if chunk is None:
                self._done = True
            else:
                self._buffer += chunk
        if n < 0:
            n = len(self._buffer)
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data


def _s3_options(endpoint: str) -> dict[str, Any]:
    return {
        "endpoint_url": endpoint,
        "aws_access_key_id": "bench",
        "aws_secret_access_key": "bench",
        "region_name": "us-east-1",
    }


async def ensure_bucket(endpoint: str, bucket: str) -> None:
    import aioboto3

    async with aioboto3.Session().client("s3", **_s3_options(endpoint)) as client:
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            await client.create_bucket(Bucket=bucket)


async def s3_raw(
    endpoint: str, bucket: str, size: int, part_size: int, concurrency: int = 4
) -> dict[str, Any]:
    """The peer: aioboto3 ``upload_fileobj`` then ``get_object``, same parts and concurrency."""
    import aioboto3
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(
        multipart_threshold=part_size, multipart_chunksize=part_size, max_concurrency=concurrency
    )
    key = f"raw-{uuid.uuid4().hex}"
    async with aioboto3.Session().client("s3", **_s3_options(endpoint)) as client:
        began = time.perf_counter()
        await client.upload_fileobj(_StreamReader(size), bucket, key, Config=config)
        put = time.perf_counter() - began
        began = time.perf_counter()
        response = await client.get_object(Bucket=bucket, Key=key)
        got = 0
        async for chunk in response["Body"].iter_chunks(CHUNK):
            got += len(chunk)
        get = time.perf_counter() - began
        await client.delete_object(Bucket=bucket, Key=key)
    if got != size:
        raise RuntimeError(f"get_object returned {got} bytes of {size}")
    return {"put_mib_s": round(size / MiB / put, 1), "get_mib_s": round(size / MiB / get, 1)}


async def s3_depotx(
    endpoint: str, bucket: str, size: int, part_size: int, concurrency: int = 4
) -> dict[str, Any]:
    """depotx ``S3Storage.create`` then ``get`` + ``iter_bytes``, same parts and concurrency."""
    from depotx.storages.s3 import S3Storage

    storage = S3Storage(
        bucket=bucket,
        endpoint_url=endpoint,
        access_key_id="bench",
        secret_access_key="bench",
        region_name="us-east-1",
        part_size=part_size,
        max_concurrency=concurrency,
    )
    try:
        # Open the client before the clock starts, as the peer does: loading
        # botocore's service model is a one-off cost, not upload speed.
        await storage.exists(str(uuid.uuid4()))
        began = time.perf_counter()
        file_id = await storage.create(stream(size), filename="big.bin")
        put = time.perf_counter() - began
        began = time.perf_counter()
        got = 0
        async with await storage.get(file_id) as stored:
            async for chunk in stored.iter_bytes(chunk_size=CHUNK):
                got += len(chunk)
        get = time.perf_counter() - began
        await storage.delete(file_id)
    finally:
        await storage.aclose()
    if got != size:
        raise RuntimeError(f"S3Storage returned {got} bytes of {size}")
    return {"put_mib_s": round(size / MiB / put, 1), "get_mib_s": round(size / MiB / get, 1)}


async def azure_container(connection_string: str, container: str) -> None:
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob.aio import BlobServiceClient

    async with BlobServiceClient.from_connection_string(connection_string) as service:
        try:
            await service.create_container(container)
        except ResourceExistsError:
            return


async def azure_depotx(connection_string: str, container: str, size: int) -> dict[str, Any]:
    """depotx ``AzureBlobStorage.create`` then ``get`` + ``iter_bytes``: 8 MiB blocks, 4 at once."""
    from depotx.storages.azure import AzureBlobStorage

    storage = AzureBlobStorage(container=container, connection_string=connection_string)
    try:
        await storage.exists(str(uuid.uuid4()))  # open the client before the clock starts
        began = time.perf_counter()
        file_id = await storage.create(stream(size), filename="big.bin")
        put = time.perf_counter() - began
        began = time.perf_counter()
        got = 0
        async with await storage.get(file_id) as stored:
            async for chunk in stored.iter_bytes(chunk_size=CHUNK):
                got += len(chunk)
        get = time.perf_counter() - began
        await storage.delete(file_id)
    finally:
        await storage.aclose()
    if got != size:
        raise RuntimeError(f"AzureBlobStorage returned {got} bytes of {size}")
    return {"put_mib_s": round(size / MiB / put, 1), "get_mib_s": round(size / MiB / get, 1)}


async def azure_raw(connection_string: str, container: str, size: int) -> dict[str, Any]:
    """The peer: the SDK's own ``upload_blob`` (same block size and concurrency) and
    ``download_blob().chunks()``."""
    from azure.storage.blob.aio import BlobServiceClient

    name = f"raw-{uuid.uuid4().hex}"
    async with BlobServiceClient.from_connection_string(
        connection_string, max_block_size=8 * MiB, max_single_put_size=8 * MiB
    ) as service:
        blob = service.get_container_client(container).get_blob_client(name)
        await blob.exists()
        began = time.perf_counter()
        await blob.upload_blob(stream(size), length=size, max_concurrency=4)
        put = time.perf_counter() - began
        began = time.perf_counter()
        got = 0
        download = await blob.download_blob()
        async for chunk in download.chunks():
            got += len(chunk)
        get = time.perf_counter() - began
        await blob.delete_blob()
    if got != size:
        raise RuntimeError(f"download_blob returned {got} bytes of {size}")
    return {"put_mib_s": round(size / MiB / put, 1), "get_mib_s": round(size / MiB / get, 1)}


async def gcs_depotx(endpoint: str, bucket: str, size: int) -> dict[str, Any]:
    """depotx ``GCSStorage.create`` (a resumable upload in 8 MiB chunks) then ``get`` +
    ``iter_bytes`` (the first MiB, then one ranged GET pinned to the generation)."""
    from depotx.storages.gcs import GCSStorage

    storage = GCSStorage(bucket=bucket, api_endpoint=endpoint, create_bucket=True)
    try:
        await storage.exists(str(uuid.uuid4()))  # open the client before the clock starts
        began = time.perf_counter()
        file_id = await storage.create(stream(size), filename="big.bin")
        put = time.perf_counter() - began
        began = time.perf_counter()
        got = 0
        async with await storage.get(file_id) as stored:
            async for chunk in stored.iter_bytes(chunk_size=CHUNK):
                got += len(chunk)
        get = time.perf_counter() - began
        await storage.delete(file_id)
    finally:
        await storage.aclose()
    if got != size:
        raise RuntimeError(f"GCSStorage returned {got} bytes of {size}")
    return {"put_mib_s": round(size / MiB / put, 1), "get_mib_s": round(size / MiB / get, 1)}


async def gcs_raw(endpoint: str, bucket: str, size: int) -> dict[str, Any]:
    """The peer: gcloud-aio-storage's own ``upload`` (a resumable upload of the whole
    stream in one PUT, as it does above 5 MB) and ``download_stream``."""
    import io

    from gcloud.aio.storage import Storage

    name = f"raw-{uuid.uuid4().hex}"
    # It uploads a sized synchronous stream: the bytes are made before the clock starts.
    data = io.BytesIO(_BLOCK * (size // CHUNK) + _BLOCK[: size % CHUNK])
    async with Storage(api_root=endpoint) as client:
        began = time.perf_counter()
        await client.upload(bucket, name, data, content_type="application/octet-stream")
        put = time.perf_counter() - began
        began = time.perf_counter()
        got = 0
        body = await client.download_stream(bucket, name)
        async with body:  # its own read(), on the response it releases on exit
            while chunk := await body.read(CHUNK):
                got += len(chunk)
        get = time.perf_counter() - began
        await client.delete(bucket, name)
    if got != size:
        raise RuntimeError(f"download_stream returned {got} bytes of {size}")
    return {"put_mib_s": round(size / MiB / put, 1), "get_mib_s": round(size / MiB / get, 1)}


async def s3_small_latency(endpoint: str, bucket: str, count: int) -> dict[str, Any]:
    """Open and read a 1 KiB object ``count`` times through depotx and through raw
    ``get_object``, alternating, on one moto server; the median of each, in ms."""
    import statistics

    import aioboto3

    from depotx.storages.s3 import S3Storage

    storage = S3Storage(
        bucket=bucket,
        endpoint_url=endpoint,
        access_key_id="bench",
        secret_access_key="bench",
        region_name="us-east-1",
    )
    ours: list[float] = []
    theirs: list[float] = []
    try:
        file_id = await storage.create(b"x" * 1024, "small.bin")
        key = storage._key(file_id)
        async with aioboto3.Session().client("s3", **_s3_options(endpoint)) as client:
            for _ in range(10):  # warm both connection pools
                async with await storage.get(file_id) as stored:
                    await stored.read()
                await (await client.get_object(Bucket=bucket, Key=key))["Body"].read()
            for _ in range(count):
                began = time.perf_counter()
                async with await storage.get(file_id) as stored:
                    data = await stored.read()
                ours.append(time.perf_counter() - began)
                began = time.perf_counter()
                raw = await (await client.get_object(Bucket=bucket, Key=key))["Body"].read()
                theirs.append(time.perf_counter() - began)
                if data != raw:
                    raise RuntimeError("depotx and get_object disagree on the bytes")
        await storage.delete(file_id)
    finally:
        await storage.aclose()
    return {
        "depotx_ms": round(statistics.median(ours) * 1000, 3),
        "raw_ms": round(statistics.median(theirs) * 1000, 3),
    }


# -- moving a storage: depotx migrate against filedepot's loop ---------------------------


async def make_migration_source(root: Path, count: int, largest: int) -> int:
    """``count`` files of mixed sizes (up to ``largest``) in local storage; their total bytes."""
    storage = LocalFileStorage(root)
    total = 0
    try:
        for n in range(count):
            size = (n * 7919) % largest
            await storage.create(_BLOCK[:size] if size <= CHUNK else os.urandom(size), f"{n}.bin")
            total += size
    finally:
        await storage.aclose()
    return total


def _depotx_s3(endpoint: str, bucket: str, prefix: str) -> Any:
    from depotx.storages.s3 import S3Storage

    return S3Storage(
        bucket=bucket,
        endpoint_url=endpoint,
        access_key_id="bench",
        secret_access_key="bench",
        region_name="us-east-1",
        prefix=prefix,
    )


def _filedepot_s3(endpoint: str, bucket: str, prefix: str) -> Any:
    from depot.io.boto3 import S3Storage

    return S3Storage(
        "bench",
        "bench",
        bucket=bucket,
        region_name="us-east-1",
        endpoint_url=endpoint,
        prefix=prefix,
        policy="private",
    )


async def migrate_depotx(
    source_root: Path | None,
    endpoint: str,
    bucket: str,
    source_prefix: str,
    destination_prefix: str | None = None,
    concurrency: int = 8,
) -> dict[str, Any]:
    """``depotx.migrate`` from local storage (or an S3 prefix) to a fresh S3 prefix."""
    from depotx import migrate

    source: Any = (
        LocalFileStorage(source_root)
        if source_root is not None
        else _depotx_s3(endpoint, bucket, source_prefix)
    )
    destination = _depotx_s3(endpoint, bucket, destination_prefix or f"to-{uuid.uuid4().hex}/")
    try:
        await destination.exists(str(uuid.uuid4()))  # open the client before the clock
        began = time.perf_counter()
        report = await migrate(source, destination, concurrency=concurrency)
        elapsed = time.perf_counter() - began
    finally:
        await source.aclose()
        await destination.aclose()
    if not report.ok:
        raise RuntimeError(f"migrate failed: {list(report.failed.items())[:3]}")
    return {"files_s": len(report.copied) / elapsed, "mib_s": report.bytes / MiB / elapsed}


def migrate_filedepot(
    source_root: Path | None, endpoint: str, bucket: str, source_prefix: str
) -> dict[str, Any]:
    """The loop filedepot's guide gives: ``backup.replace(stored, stored)`` for every id."""
    from depot.io.local import LocalFileStorage as FiledepotLocal

    source = (
        FiledepotLocal(str(source_root))
        if source_root is not None
        else _filedepot_s3(endpoint, bucket, source_prefix)
    )
    backup = _filedepot_s3(endpoint, bucket, f"fd-{uuid.uuid4().hex}/")
    began = time.perf_counter()
    copied = 0
    size = 0
    for file_id in source.list():
        stored = source.get(file_id)
        backup.replace(stored, stored)
        copied += 1
        size += stored.content_length
    elapsed = time.perf_counter() - began
    return {"files_s": copied / elapsed, "mib_s": size / MiB / elapsed}
