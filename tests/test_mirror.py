"""The mirror storage: writes to every storage, reads from the primary, failures recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from depotx import (
    BackendError,
    ConfigurationError,
    FileStorage,
    MemoryFileStorage,
    StorageManager,
    migrate,
)
from depotx.storages.mirror import MirrorStorage
from depotx.testing import StorageContract


class TestMirrorContract(StorageContract):
    """A mirror passes the whole contract, through its primary."""

    @pytest.fixture
    async def storage(self, tmp_path: Path) -> AsyncIterator[FileStorage]:
        manager = StorageManager()
        manager.configure_many(
            {
                "depot.both.backend": "mirror",
                "depot.both.primary": "old",
                "depot.both.mirrors": "new",
                "depot.old.backend": "memory",
                "depot.new.storage_path": str(tmp_path / "new"),
            }
        )
        yield manager.get("both")
        await manager.aclose()


@pytest.fixture
def manager(tmp_path: Path) -> StorageManager:
    manager = StorageManager()
    manager.configure("old", {"depot.backend": "memory"})
    manager.configure("new", {"depot.storage_path": str(tmp_path / "new")})
    return manager


async def _read(storage: FileStorage, file_id: str) -> bytes:
    async with await storage.get(file_id) as stored:
        return await stored.read()


async def test_writes_reach_every_storage_and_reads_come_from_the_primary(
    manager: StorageManager,
) -> None:
    mirror = manager.configure(
        "both", {"depot.backend": "mirror", "depot.primary": "old", "depot.mirrors": "new"}
    )
    old, new = manager.get("old"), manager.get("new")
    file_id = await mirror.create(b"v1", "a.txt", metadata={"k": "v"})
    assert await _read(old, file_id) == await _read(new, file_id) == b"v1"
    async with await old.get(file_id) as a, await new.get(file_id) as b:
        assert (b.filename, b.metadata, b.last_modified) == (
            a.filename,
            a.metadata,
            a.last_modified,
        )
    await mirror.replace(file_id, b"v2")
    await mirror.put("k/ey.txt", b"put")
    assert await _read(new, file_id) == b"v2"
    assert await _read(new, "k/ey.txt") == b"put"
    await mirror.delete(file_id)
    assert not await old.exists(file_id)
    assert not await new.exists(file_id)


async def test_reads_fall_back_to_a_mirror_for_files_not_yet_on_the_primary(
    manager: StorageManager,
) -> None:
    # The other direction of a move: the new storage is primary, the old one catches up.
    mirror = manager.configure(
        "both", {"depot.backend": "mirror", "depot.primary": "new", "depot.mirrors": "old"}
    )
    legacy = await manager.get("old").create(b"not migrated yet")
    assert await mirror.exists(legacy)
    assert await _read(mirror, legacy) == b"not migrated yet"
    strict_reads = manager.configure(
        "strict",
        {
            "depot.backend": "mirror",
            "depot.primary": "new",
            "depot.mirrors": "old",
            "depot.read_fallback": "false",
        },
    )
    assert not await strict_reads.exists(legacy)


class Failing(MemoryFileStorage):
    async def _store(self, file_id: str, upload: Any, *, mode: str) -> None:
        raise OSError(5, "mirror disk failed")


async def test_a_failing_mirror_is_recorded_for_repair_or_fails_a_strict_write(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    manager = StorageManager()
    manager.configure("old", {"depot.backend": "memory"})
    manager.register("new", Failing())
    repair = tmp_path / "repair.txt"
    mirror = manager.configure(
        "both",
        {
            "depot.backend": "mirror",
            "depot.primary": "old",
            "depot.mirrors": "new",
            "depot.repair_file": str(repair),
        },
    )
    assert isinstance(mirror, MirrorStorage)
    with caplog.at_level("WARNING", logger="depotx.mirror"):
        file_id = await mirror.create(b"kept on the primary")
    assert await _read(manager.get("old"), file_id) == b"kept on the primary"
    assert mirror.failures["new"] == [file_id]
    assert repair.read_text().split() == [file_id]
    assert any("recorded for repair" in r.getMessage() for r in caplog.records)
    # The repair: migrate exactly the recorded ids once the mirror works again.
    healthy = MemoryFileStorage()
    report = await migrate(manager.get("old"), healthy, ids=repair.read_text().split())
    assert report.copied == [file_id]
    strict = manager.configure(
        "strict",
        {
            "depot.backend": "mirror",
            "depot.primary": "old",
            "depot.mirrors": "new",
            "depot.strict": "true",
        },
    )
    with pytest.raises(BackendError, match="mirror disk failed"):
        await strict.create(b"x")


def test_mirror_configuration_errors() -> None:
    manager = StorageManager()
    manager.configure("old", {"depot.backend": "memory"})
    with pytest.raises(ConfigurationError, match="before the mirror"):
        manager.configure(
            "m", {"depot.backend": "mirror", "depot.primary": "old", "depot.mirrors": "nope"}
        )
    with pytest.raises(ConfigurationError, match="distinct"):
        manager.configure(
            "m", {"depot.backend": "mirror", "depot.primary": "old", "depot.mirrors": "old"}
        )
