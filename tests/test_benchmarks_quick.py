"""The benchmark harness runs: one tiny in-process scenario, end to end.

Benchmarks are not tests (no ratio is asserted here); this only proves that
``python -m benchmarks`` has not rotted: the scenario code imports, measures,
cleans up after itself, and the table renders what it measured.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks import run
from benchmarks._inprocess import MiB, create_local, raw_aiofiles_copy


async def test_create_versus_aiofiles_at_8_mib(tmp_path: Path) -> None:
    ours = await create_local(tmp_path, 8 * MiB)
    theirs = await raw_aiofiles_copy(tmp_path, 8 * MiB)

    for figures in (ours, theirs):
        assert figures["mib_s"] > 0
        assert figures["seconds"] > 0
    # Both sides delete what they wrote: a benchmark must not fill the disk.
    assert [path for path in tmp_path.rglob("*") if path.is_file()] == []

    row = run._ratio_row("create 8 MiB", "MiB/s", ours["mib_s"], "aiofiles", theirs["mib_s"], 0.7)
    assert row.ratio == ours["mib_s"] / theirs["mib_s"]
    table = run.format_table([row])
    assert "create 8 MiB" in table
    assert ("| yes |" in table) == (row.ratio >= 0.7)
