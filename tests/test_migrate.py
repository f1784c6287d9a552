"""``migrate``: every file of one storage copied to another, ids and metadata kept, resumable."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from depotx import (
    FileStorage,
    LocalFileStorage,
    MemoryFileStorage,
    MigrationProgress,
    migrate,
)
from tests.conftest import BACKEND_FACTORIES

_KINDS = ("local", "memory", "s3", "gridfs-mongomock")
#: Every ordered pair of the four backends.
PAIRS = [(a, b) for a in _KINDS for b in _KINDS if a != b]


@pytest.fixture(params=PAIRS, ids=["->".join(pair) for pair in PAIRS])
async def pair(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[FileStorage, FileStorage]]:
    source_kind, destination_kind = request.param
    (tmp_path / "src").mkdir()
    (tmp_path / "dst").mkdir()
    source = await BACKEND_FACTORIES[source_kind](tmp_path / "src")
    destination = await BACKEND_FACTORIES[destination_kind](tmp_path / "dst")
    source.name, destination.name = "src", "dst"
    try:
        yield source, destination
    finally:
        await source.aclose()
        await destination.aclose()


async def _fill(storage: FileStorage) -> dict[str, bytes]:
    """Mixed files: empty to 2 MiB, generated ids and unicode keys, custom metadata."""
    files: dict[str, bytes] = {}
    for size in (0, 1, 1024, 300_000, 2 * 1024 * 1024):
        data = os.urandom(size)
        file_id = await storage.create(data, f"f{size}.bin", metadata={"size": str(size)})
        files[file_id] = data
    for key in ("uploads/2026/été.txt", "uploads/rapport ✓.pdf"):
        await storage.create(key.encode() * 10, key.rsplit("/", 1)[-1], file_id=key)
        files[key] = key.encode() * 10
    return files


async def _same(source: FileStorage, destination: FileStorage, file_id: str) -> None:
    async with await source.get(file_id) as a, await destination.get(file_id) as b:
        assert await b.read() == await a.read(), file_id
        assert (b.filename, b.content_type, b.metadata) == (a.filename, a.content_type, a.metadata)
        assert b.last_modified == a.last_modified, "the date is kept"


async def test_every_file_is_copied_with_its_id_and_metadata(
    pair: tuple[FileStorage, FileStorage], tmp_path: Path
) -> None:
    source, destination = pair
    files = await _fill(source)
    # Dated in the past, so a kept date cannot be mistaken for the copy's own.
    old = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=400)
    dated = await source.create(b"old", "old.txt")
    upload_id = "dated/" + dated
    from depotx._content import prepare_upload

    upload = await prepare_upload(b"from 2025", "old.txt", "text/plain")
    upload.last_modified = old
    await source._write(upload_id, upload, mode="create")
    files[dated] = b"old"
    files[upload_id] = b"from 2025"

    seen: list[MigrationProgress] = []
    report = await migrate(
        source,
        destination,
        verify=True,
        journal=tmp_path / "journal.sqlite",
        on_progress=seen.append,
    )
    assert report.ok, report.failed
    assert sorted(report.copied) == sorted(files)
    assert report.bytes == sum(len(data) for data in files.values())
    assert seen[-1].files_done == seen[-1].total_files == len(files)
    for file_id in files:
        await _same(source, destination, file_id)
    async with await destination.get(upload_id) as stored:
        assert stored.last_modified == old
    # A second run finds everything done (the journal), and copies nothing.
    again = await migrate(source, destination, journal=tmp_path / "journal.sqlite")
    assert (again.copied, sorted(again.skipped)) == ([], sorted(files))


async def test_an_interrupted_migration_resumes_without_copying_twice(tmp_path: Path) -> None:
    source = MemoryFileStorage()
    destination = LocalFileStorage(tmp_path / "dst")
    files = {await source.create(os.urandom(10_000)): None for _ in range(40)}
    journal = tmp_path / "journal.sqlite"
    progressed = asyncio.Event()

    def stop_after_ten(progress: MigrationProgress) -> None:
        if progress.files_done >= 10:
            progressed.set()

    task = asyncio.ensure_future(
        migrate(source, destination, journal=journal, concurrency=2, on_progress=stop_after_ten)
    )
    await progressed.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    first = {i async for i in destination.list()}
    assert 10 <= len(first) < 40
    resumed = await migrate(source, destination, journal=journal, concurrency=2)
    assert resumed.ok
    assert not set(resumed.copied) & first, "nothing copied twice"
    assert {i async for i in destination.list()} == set(files)
    for file_id in files:
        await _same(source, destination, file_id)


async def test_verify_catches_a_corrupted_copy(tmp_path: Path) -> None:
    source = MemoryFileStorage()
    destination = LocalFileStorage(tmp_path / "dst", cache_size=0)
    file_id = await source.create(b"precious bytes")
    journal = tmp_path / "journal.sqlite"
    assert (await migrate(source, destination, journal=journal)).ok
    content = tmp_path / "dst" / file_id / "file"
    content.write_bytes(b"precious bytez")  # same size, other bytes: a flipped bit
    unverified = await migrate(source, destination, journal=journal)
    assert unverified.ok, "the journal alone trusts what it recorded"
    verified = await migrate(source, destination, journal=journal, verify=True)
    assert list(verified.failed) == [file_id]
    assert "other content" in verified.failed[file_id]


async def test_a_different_file_at_the_destination_is_kept_unless_overwrite(
    tmp_path: Path,
) -> None:
    source = MemoryFileStorage()
    destination = MemoryFileStorage()
    await source.create(b"new", file_id="a.txt")
    await destination.create(b"theirs", file_id="a.txt")
    refused = await migrate(source, destination)
    assert "other content" in refused.failed["a.txt"]
    async with await destination.get("a.txt") as stored:
        assert await stored.read() == b"theirs"
    forced = await migrate(source, destination, overwrite=True)
    assert forced.copied == ["a.txt"]
    async with await destination.get("a.txt") as stored:
        assert await stored.read() == b"new"


async def test_a_source_replaced_during_its_copy_is_copied_again(tmp_path: Path) -> None:
    source = MemoryFileStorage()
    destination = LocalFileStorage(tmp_path / "dst")
    file_id = await source.create(b"version one" * 1000, "v1.txt")
    replaced = False
    original = source._get

    async def replacing_get(fid: str) -> Any:
        nonlocal replaced
        stored = await original(fid)
        if not replaced:
            replaced = True
            await source.replace(fid, b"version two" * 1000, "v2.txt")
        return stored

    source._get = replacing_get  # type: ignore[method-assign]
    report = await migrate(source, destination)
    assert report.ok, report.failed
    async with await destination.get(file_id) as stored:
        assert (stored.filename, await stored.read()) == ("v2.txt", b"version two" * 1000)


async def test_dry_run_and_delete_source(tmp_path: Path) -> None:
    source = MemoryFileStorage()
    destination = MemoryFileStorage()
    ids = [await source.create(b"x" * n) for n in (1, 2, 3)]
    plan = await migrate(source, destination, dry_run=True)
    assert plan.planned == {ids[0]: 1, ids[1]: 2, ids[2]: 3}
    assert [i async for i in destination.list()] == []
    with pytest.raises(ValueError, match="verify"):
        await migrate(source, destination, delete_source=True)
    moved = await migrate(source, destination, verify=True, delete_source=True)
    assert sorted(moved.copied) == sorted(ids)
    assert [i async for i in source.list()] == []


async def test_a_journal_belongs_to_one_pair(tmp_path: Path) -> None:
    a, b, c = MemoryFileStorage(), MemoryFileStorage(), MemoryFileStorage()
    a.name, b.name, c.name = "a", "b", "c"
    await migrate(a, b, journal=tmp_path / "j.sqlite")
    from depotx import DepotError

    with pytest.raises(DepotError, match="belongs to a migration"):
        await migrate(a, c, journal=tmp_path / "j.sqlite")


def _cli(tmp_path: Path, *argv: str, tty: bool = False) -> tuple[int, str, str]:
    config = tmp_path / "app.ini"
    config.write_text(
        "[app:main]\n"
        f"depot.old.storage_path = {tmp_path / 'old'}\n"
        f"depot.new.storage_path = {tmp_path / 'new'}\n"
    )
    command = [sys.executable, "-m", "depotx.cli", "--config", str(config), *argv]
    if not tty:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        return done.returncode, done.stdout, done.stderr
    import pty

    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=secondary, cwd=tmp_path, text=True
    )
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(primary, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(primary)
    out = ""
    if process.stdout is not None:
        out = process.stdout.read()
        process.stdout.close()
    code = process.wait(60)
    return code, out, b"".join(chunks).decode()


def test_the_cli_migrates_resumes_and_reports(tmp_path: Path) -> None:
    old = LocalFileStorage(tmp_path / "old")
    ids = [asyncio.run(old.create(os.urandom(5000), f"{n}.bin")) for n in range(12)]
    code, out, err = _cli(tmp_path, "migrate", "old", "new", "--dry-run")
    assert code == 0
    assert "would copy 12 files" in out
    code, out, err = _cli(tmp_path, "migrate", "old", "new", "--verify")
    assert code == 0, err
    assert out.startswith("copied 12, skipped 0, failed 0")
    assert "journal: .depotx-migrate-old-new.sqlite" in err
    assert "12/12 files" in err  # the plain progress line, not a terminal
    assert "\r" not in err
    code, out, _ = _cli(tmp_path, "migrate", "old", "new", "--json")
    assert code == 0
    assert json.loads(out)["skipped"] == 12
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == sorted(ids)


def test_the_cli_draws_progress_on_a_terminal(tmp_path: Path) -> None:
    old = LocalFileStorage(tmp_path / "old")
    for n in range(5):
        asyncio.run(old.create(b"x" * n))
    code, _out, err = _cli(tmp_path, "migrate", "old", "new", tty=True)
    assert code == 0
    assert "\r\x1b[K" in err  # redrawn in place
    assert "5/5 files" in err


def test_the_cli_fails_when_a_file_fails(tmp_path: Path) -> None:
    old = LocalFileStorage(tmp_path / "old")
    new = LocalFileStorage(tmp_path / "new")
    asyncio.run(old.create(b"mine", file_id="a.txt"))
    asyncio.run(new.create(b"theirs", file_id="a.txt"))
    code, _out, err = _cli(tmp_path, "migrate", "old", "new")
    assert code == 1
    assert "failed: a.txt: at the destination with other content" in err


async def test_s3_to_s3_on_one_service_copies_inside_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from depotx.storages import s3 as s3_module
    from depotx.storages.s3 import S3Storage
    from tests.backends.s3 import CREDENTIALS, REGION, make_bucket, moto_endpoint

    endpoint = await asyncio.to_thread(moto_endpoint)

    def bucket_storage(bucket: str, prefix: str = "") -> S3Storage:
        return S3Storage(
            bucket=bucket,
            endpoint_url=endpoint,
            region_name=REGION,
            addressing_style="path",
            prefix=prefix,
            **CREDENTIALS,
        )

    source = bucket_storage(await asyncio.to_thread(make_bucket, endpoint, versioned=False))
    destination = bucket_storage(
        await asyncio.to_thread(make_bucket, endpoint, versioned=False), prefix="moved/"
    )
    big = os.urandom(11 * 1024 * 1024)
    ids = [
        await source.create(b"small", "s.txt", metadata={"k": "v"}),
        await source.create(big, "big.bin"),
        await source.create(b"keyed", file_id="a/b/c.txt"),
    ]
    # Multipart copy above a limit (5 GiB for real; 1 MiB here, to run it).
    monkeypatch.setattr(s3_module, "COPY_OBJECT_LIMIT", 1024 * 1024)
    client = await destination._client()
    streamed: list[str] = []
    for name in ("put_object", "upload_part"):
        original = getattr(client, name)

        async def spy(*args: Any, __original: Any = original, __name: str = name, **kw: Any) -> Any:
            streamed.append(__name)
            return await __original(*args, **kw)

        monkeypatch.setattr(client, name, spy)
    report = await migrate(source, destination, verify=True)
    assert report.ok, report.failed
    assert sorted(report.copied) == sorted(ids)
    assert streamed == [], "no byte went through the app"
    for file_id in ids:
        await _same(source, destination, file_id)
    await source.aclose()
    await destination.aclose()


@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_a_killed_migration_resumes_from_its_journal(tmp_path: Path, how: str) -> None:
    """SIGKILL (no cleanup of any kind) or Ctrl-C mid-run, then the same command again."""
    import sqlite3
    import time

    old = LocalFileStorage(tmp_path / "old")

    async def fill() -> dict[str, bytes]:
        files = {}
        for n in range(300):
            data = os.urandom(20_000 + n)
            files[await old.create(data, f"{n}.bin")] = data
        return files

    files = asyncio.run(fill())
    config = tmp_path / "app.ini"
    config.write_text(
        f"[app:main]\ndepot.old.storage_path = {tmp_path / 'old'}\n"
        f"depot.new.storage_path = {tmp_path / 'new'}\n"
    )
    journal = tmp_path / "journal.sqlite"
    command = [
        sys.executable,
        "-m",
        "depotx.cli",
        "--config",
        str(config),
        "migrate",
        "old",
        "new",
        "--concurrency",
        "1",
        "--journal",
        str(journal),
        "--json",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        recorded = 0
        while recorded < 50:
            assert time.monotonic() < deadline, "the migration did not get going"
            time.sleep(0.02)
            if journal.exists():
                with contextlib.closing(sqlite3.connect(journal)) as db:
                    try:
                        recorded = db.execute("SELECT count(*) FROM files").fetchone()[0]
                    except sqlite3.OperationalError:
                        recorded = 0
        if how == "SIGKILL":
            process.kill()
        else:
            import signal

            process.send_signal(signal.SIGINT)  # Ctrl-C: stops cleanly
            assert process.wait(30) == 130
    finally:
        process.wait(10)
    with contextlib.closing(sqlite3.connect(journal)) as db:
        done_before = {row[0] for row in db.execute("SELECT file_id FROM files")}
    assert 50 <= len(done_before) < 300
    again = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["failed"] == {}
    assert summary["copied"] + summary["skipped"] == 300
    assert summary["skipped"] >= len(done_before), "what the journal holds is not copied again"
    new = LocalFileStorage(tmp_path / "new")

    async def check() -> None:
        assert {i async for i in new.list()} == set(files)
        for file_id, data in files.items():
            async with await new.get(file_id) as stored:
                assert await stored.read() == data

    asyncio.run(check())


async def test_two_thousand_mixed_files_including_filedepots(tmp_path: Path) -> None:
    """2,000 files from 0 B to 20 MiB, unicode keys and files filedepot wrote, there and back."""
    depot_local = pytest.importorskip("depot.io.local")
    # fsync off: 4,000 synced writes measure the disk, not the migration.
    source = LocalFileStorage(tmp_path / "src", fsync=False)
    theirs = depot_local.LocalFileStorage(str(tmp_path / "src"))
    expected: dict[str, bytes] = {}
    for n in range(1990):
        size = (n * 7919) % 70_000
        data = os.urandom(size) if n % 50 == 0 else bytes([n % 256]) * size
        key = f"docs/{n % 7}/файл {n}.bin" if n % 3 == 0 else None
        file_id = await source.create(data, f"{n}.bin", file_id=key)
        expected[file_id] = data
    for n in range(8):  # written by filedepot itself
        file_id = theirs.create(f"filedepot {n}".encode(), f"fd{n}.txt", "text/plain")
        expected[file_id] = f"filedepot {n}".encode()
    for _ in range(2):
        file_id = await source.create(os.urandom(20 * 1024 * 1024), "big.bin")
        expected[file_id] = b""  # checked by size and hash below
    middle = MemoryFileStorage()
    back = LocalFileStorage(tmp_path / "back", fsync=False)
    first = await migrate(source, middle, concurrency=8, verify=True)
    assert first.ok, list(first.failed.items())[:3]
    assert len(first.copied) == 2000
    second = await migrate(middle, back, concurrency=8)
    assert second.ok
    for file_id, data in expected.items():
        async with await source.get(file_id) as a, await back.get(file_id) as b:
            assert (b.filename, b.content_type) == (a.filename, a.content_type)
            assert b.content_length == a.content_length
            if data:
                assert await b.read() == data
    # filedepot reads the copies it did not write, and the ones it did.
    copies = depot_local.LocalFileStorage(str(tmp_path / "back"))
    fd_ids = [i for i, d in expected.items() if d.startswith(b"filedepot")]
    assert all(copies.get(i).read().startswith(b"filedepot") for i in fd_ids)


def test_default_concurrency_suits_the_pair(tmp_path: Path) -> None:
    from depotx.migrate import default_concurrency

    local = LocalFileStorage(tmp_path)
    assert default_concurrency(local, MemoryFileStorage()) == 4
    from depotx.storages.s3 import S3Storage

    remote = S3Storage(bucket="b", access_key_id="k", secret_access_key="s")
    assert default_concurrency(local, remote) == 8
