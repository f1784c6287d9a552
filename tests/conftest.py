"""Fixtures shared by the test suite.

``storage`` is parametrized over every backend, so each contract test in
``test_contract.py`` runs once per backend. Backends whose service is not
available here are not silently dropped: their parameter is skipped with the
reason shown in pytest's summary.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from depotx import FileStorage, LocalFileStorage, MemoryFileStorage, StorageManager

StorageFactory = Callable[[Path], Awaitable[FileStorage]]


async def _memory(tmp_path: Path) -> FileStorage:
    return MemoryFileStorage()


async def _local(tmp_path: Path) -> FileStorage:
    return LocalFileStorage(tmp_path / "store")


#: Backend name → factory; every contract test runs once per entry.
BACKEND_FACTORIES: dict[str, StorageFactory] = {"memory": _memory, "local": _local}

# Backends with services of their own (S3 on moto, GridFS on mongomock or a real
# MongoDB) keep their factories in ``tests/backends/<name>.py`` as ``FACTORIES``.
for _path in sorted((Path(__file__).parent / "backends").glob("[!_]*.py")):
    _spec = importlib.util.spec_from_file_location(f"depotx_test_backends.{_path.stem}", _path)
    assert _spec is not None
    assert _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
    BACKEND_FACTORIES.update(_module.FACTORIES)


@pytest.fixture(params=sorted(BACKEND_FACTORIES))
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FileStorage]:
    factory = BACKEND_FACTORIES[request.param]
    store = await factory(tmp_path)
    try:
        yield store
    finally:
        await store.aclose()


@pytest.fixture
def manager() -> StorageManager:
    return StorageManager()
