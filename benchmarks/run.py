"""The benchmark harness: run every scenario against its peers and print the table.

``python -m benchmarks [--quick] [--json PATH] [--rounds N] [--only GROUPS]``

Each pair is run ``--rounds`` times (at least 3), interleaved, and the table
shows medians: the machine is shared and noisy, so one run proves nothing.
Servers are separate processes on 127.0.0.1 (uvicorn + httptools + uvloop, one
worker, no access log; gunicorn sync with one worker for filedepot), bounded in
time and stopped by PID. Nothing here fails on a ratio; a scenario whose code is
missing (the S3 backend not installed yet, say) is reported as skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from . import _inprocess
from ._load import LoadResult, have_wrk, run_load
from ._procs import PeakRSS, Server, free_port, python_argv, running

__all__ = ["Row", "Settings", "main"]

MiB = 1024 * 1024
KiB = 1024
T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    """How long and how big: ``--quick`` shrinks everything but the number of rounds."""

    rounds: int = 3
    http_seconds: float = 5.0
    big_seconds: float = 5.0
    small_connections: int = 32
    create_size: int = 1024 * MiB
    lag_upload: int = 256 * MiB
    lag_small: int = 1000
    big_file: int = 100 * MiB
    s3_size: int = 64 * MiB
    s3_part: int = 8 * MiB
    s3_small_count: int = 200
    upload_size: int = 1024 * MiB
    migrate_files: int = 1000
    migrate_largest: int = 512 * KiB
    force_python_client: bool = False

    @classmethod
    def quick(cls, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "http_seconds": 1.0,
            "big_seconds": 1.0,
            "create_size": 64 * MiB,
            "lag_upload": 64 * MiB,
            "lag_small": 1000,
            "s3_size": 16 * MiB,
            "s3_small_count": 50,
            "upload_size": 64 * MiB,
            "migrate_files": 100,
            "migrate_largest": 128 * KiB,
            **overrides,
        }
        return cls(**values)


@dataclass
class Row:
    """One line of the table: depotx against one peer, with the target and its verdict."""

    scenario: str
    unit: str
    depotx: float | None
    peer: str
    peer_value: float | None
    target: str
    met: bool | None
    ratio: float | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "unit": self.unit,
            "depotx": self.depotx,
            "peer": self.peer,
            "peer_value": self.peer_value,
            "ratio": self.ratio,
            "target": self.target,
            "met": self.met,
            "notes": self.notes,
        }


def _median(values: Sequence[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def _ratio_row(
    scenario: str,
    unit: str,
    ours: float | None,
    peer: str,
    theirs: float | None,
    minimum: float,
    *,
    extra_ok: bool = True,
    extra_target: str = "",
) -> Row:
    ratio = ours / theirs if ours is not None and theirs else None
    met = None if ratio is None else (ratio >= minimum and extra_ok)
    target = f">= {minimum:g}x" + (f", {extra_target}" if extra_target else "")
    return Row(scenario, unit, ours, peer, theirs, target, met, ratio)


def _latency_row(
    scenario: str, ours: float | None, peer: str, theirs: float | None, maximum: float
) -> Row:
    """A row where lower is better: depotx's time over the peer's, at most ``maximum``."""
    ratio = ours / theirs if ours is not None and theirs else None
    met = None if ratio is None else ratio <= maximum
    return Row(scenario, "ms", ours, peer, theirs, f"<= {maximum:g}x", met, ratio)


def _limit_row(scenario: str, unit: str, ours: float | None, limit: float, peer: str = "-") -> Row:
    met = None if ours is None else ours < limit
    return Row(scenario, unit, ours, peer, None, f"< {limit:g} {unit}", met)


def _interleave(
    rounds: int, contenders: Sequence[str], measure: Callable[[str], T]
) -> dict[str, list[T]]:
    """Run every contender once per round, rotating who goes first."""
    results: dict[str, list[T]] = {name: [] for name in contenders}
    for round_index in range(rounds):
        shift = round_index % len(contenders)
        for name in [*contenders[shift:], *contenders[:shift]]:
            results[name].append(measure(name))
    return results


def _run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on uvloop when installed, the loop the servers use too."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    result: T = uvloop.run(coro)
    return result


def _importable(module: str) -> str | None:
    """``None`` if ``module`` imports, else why not."""
    try:
        importlib.import_module(module)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- HTTP scenarios ---------------------------------------------------------------------


@dataclass
class _HttpFiles:
    small: str
    medium: str
    mib: str
    big: str


async def _make_files(root: Path, big_size: int) -> _HttpFiles:
    from depotx.storages.local import LocalFileStorage

    storage = LocalFileStorage(root)

    async def make(size: int) -> str:
        return await storage.create(
            _inprocess.stream(size, min(size, _inprocess.CHUNK)),
            filename=f"file-{size}.bin",
            content_type="application/octet-stream",
        )

    return _HttpFiles(
        small=await make(KiB),
        medium=await make(64 * KiB),
        mib=await make(MiB),
        big=await make(big_size),
    )


def _uvicorn(app: str, port: int) -> list[str]:
    return python_argv(
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
        "--lifespan",
        "off",
    )


def _granian(app: str, port: int, *extra: str) -> list[str]:
    """Granian, one worker, asyncio's uvloop: it offers ``http.response.pathsend``."""
    return python_argv(
        "-m",
        "granian",
        "--interface",
        "asgi",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--loop",
        "uvloop",
        "--log-level",
        "warning",
        *extra,
        app,
    )


def _gunicorn(app: str, port: int) -> list[str]:
    return python_argv(
        "-m",
        "gunicorn",
        "--workers",
        "1",
        "--worker-class",
        "sync",
        "--bind",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
        app,
    )


#: Contenders that are another URL on the depotx server: (storage, signed).
_DEPOTX_VARIANTS = {"depotx-signed": ("signed", True), "depotx-authorize": ("authorized", False)}


def _path_for(contender: str, file_id: str, root: str = "") -> str:
    if contender in ("starlette", "granian-static"):
        return f"/static/{file_id}/file"
    storage, signed = _DEPOTX_VARIANTS.get(contender, ("bench", False))
    if signed:
        from benchmarks.apps._common import make_manager

        return make_manager(root).url_for(f"{storage}/{file_id}", expires_in=3600)
    return f"/depot/{storage}/{file_id}"


def _check(url: str, headers: dict[str, str], expect_status: int, expect_length: int) -> str:
    """One request before loading: the contender answers what the scenario says it does."""
    import httpx

    response = httpx.get(url, headers=headers, timeout=30.0)
    note = ""
    if response.status_code != expect_status:
        note = f"answered {response.status_code}, not {expect_status}"
    elif len(response.content) != expect_length:
        note = f"sent {len(response.content)} bytes, not {expect_length}"
    if note and not (response.status_code == 200 and expect_status == 206):
        raise RuntimeError(f"{url}: {note}")
    return note


#: What the HTTP group needs: the middleware, the servers, the peers and the client.
HTTP_REQUIREMENTS = (
    "depotx.middleware",
    "uvicorn",
    "uvloop",
    "httptools",
    "gunicorn",
    "webob",
    "depot.middleware",
    "httpx",
)


def _warm_up(url: str, headers: dict[str, str], requests: int = 20) -> None:
    """A few requests first, so imports, caches and the first connection are not measured."""
    import httpx

    with httpx.Client(timeout=30.0) as client:
        for _ in range(requests):
            client.get(url, headers=headers).read()


def run_http(settings: Settings, log_dir: Path) -> tuple[list[Row], dict[str, Any]]:
    """Every HTTP scenario: one set of servers, one data set, interleaved load runs."""
    raw: dict[str, Any] = {}
    rows: list[Row] = []
    for module in HTTP_REQUIREMENTS:
        missing = _importable(module)
        if missing:
            raw["skipped"] = (
                f"{module} does not import ({missing}); pip install -e '.[bench]' "
                "(uvicorn[standard], gunicorn, WebOb, filedepot, httpx)"
            )
            _log(raw["skipped"])
            return rows, raw
    data = Path(tempfile.mkdtemp(prefix="depotx-bench-http-"))
    try:
        _log(f"writing the test files under {data}")
        files = _run_async(_make_files(data, settings.big_file))
        env = {
            "BENCH_ROOT": str(data),
            "BENCH_IDS": ",".join([files.small, files.medium]),
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(Path.cwd()), os.environ.get("PYTHONPATH")])
            ),
        }
        ports = {
            name: free_port()
            for name in (
                "depotx",
                "filedepot",
                "starlette",
                "bare",
                "depotx-granian",
                "granian-static",
            )
        }
        commands = {
            "depotx": _uvicorn("benchmarks.apps.depotx_app:app", ports["depotx"]),
            "filedepot": _gunicorn("benchmarks.apps.filedepot_app:app", ports["filedepot"]),
            "starlette": _uvicorn("benchmarks.apps.static_app:app", ports["starlette"]),
            "bare": _uvicorn("benchmarks.apps.bare_app:app", ports["bare"]),
        }
        if _importable("granian") is None:  # the pathsend row: depotx on Granian
            commands["depotx-granian"] = _granian(
                "benchmarks.apps.depotx_app:app", ports["depotx-granian"]
            )
            # Granian sending the same file itself (its static files): what it can do.
            commands["granian-static"] = _granian(
                "benchmarks.apps.bare_app:app",
                ports["granian-static"],
                *("--static-path-route", "/static", "--static-path-mount", str(data)),
            )
        servers = {
            name: Server(name, command, port=ports[name], env=env, log_dir=log_dir)
            for name, command in commands.items()
        }
        processes = list(servers.values())
        for variant in _DEPOTX_VARIANTS:  # other URLs of the same depotx server
            servers[variant] = servers["depotx"]
        with running(processes):
            _log("servers up: " + ", ".join(f"{n}={s.serving_pid}" for n, s in servers.items()))
            rows += _http_scenarios(settings, servers, files, raw, str(data))
    finally:
        shutil.rmtree(data, ignore_errors=True)
    return rows, raw


def _http_scenarios(
    settings: Settings,
    servers: dict[str, Server],
    files: _HttpFiles,
    raw: dict[str, Any],
    root: str,
) -> list[Row]:
    rows: list[Row] = []

    def load(
        name: str,
        contenders: Sequence[str],
        file_id: str,
        size: int,
        *,
        seconds: float,
        connections: int,
        headers: dict[str, str] | None = None,
        status: int = 200,
        etag_header: bool = False,
        measure_rss: bool = False,
    ) -> dict[str, dict[str, Any]]:
        per: dict[str, dict[str, Any]] = {}
        request_headers: dict[str, dict[str, str]] = {}
        for contender in contenders:
            url = servers[contender].url + _path_for(contender, file_id, root)
            wanted = dict(headers or {})
            if etag_header:
                import httpx

                etag = httpx.get(url, timeout=30.0).headers.get("etag", "")
                wanted["If-None-Match"] = etag
            note = _check(url, wanted, status, 0 if status == 304 else size)
            request_headers[contender] = wanted
            per[contender] = {"url": url, "notes": [note] if note else []}
            _warm_up(url, wanted)

        def measure(contender: str) -> tuple[LoadResult, int | None]:
            server = servers[contender]
            pid = server.serving_pid
            with contextlib.ExitStack() as stack:
                peak = stack.enter_context(PeakRSS(pid)) if measure_rss and pid else None
                result = run_load(
                    per[contender]["url"],
                    connections=connections,
                    seconds=seconds,
                    headers=request_headers[contender],
                    force_python=settings.force_python_client,
                )
            return result, (peak.growth if peak else None)

        _log(f"{name}: {', '.join(contenders)} x {settings.rounds} rounds")
        results = _interleave(settings.rounds, contenders, measure)
        for contender, runs in results.items():
            loads = [run for run, _ in runs]
            growths = [g for _, g in runs if g is not None]
            per[contender].update(
                runs=[run.as_dict() for run in loads],
                rps=_median([run.rps for run in loads]),
                mib_s=_median([run.mib_s for run in loads]),
                useful_mib_s=_median([run.rps * size / MiB for run in loads]),
                p99_ms=_median([run.p99_ms for run in loads]),
                errors=sum(run.errors for run in loads),
                rss_growth_mib=max(growths) / MiB if growths else None,
            )
            if per[contender]["errors"]:
                _log(f"{name}: {contender} had {per[contender]['errors']} errors under load")
        raw[name] = per
        return per

    def errors_note(per: dict[str, dict[str, Any]]) -> list[str]:
        """Errors under load (wrk counts 4xx/5xx, resets and timeouts), shown in the table."""
        counts = {name: figures["errors"] for name, figures in per.items() if figures["errors"]}
        if not counts:
            return []
        return ["errors under load: " + ", ".join(f"{n} {c}" for n, c in counts.items())]

    def transfer_rows(
        label: str,
        unit: str,
        metric: str,
        per: dict[str, dict[str, Any]],
        contenders: Sequence[str],
        notes: Sequence[str] = (),
    ) -> list[Row]:
        """A transfer scenario's rows: against filedepot, against StaticFiles, server RSS."""
        against_filedepot = _ratio_row(
            label,
            unit,
            per["depotx"][metric],
            "filedepot (gunicorn sync)",
            per["filedepot"][metric],
            0.6,
        )
        against_filedepot.notes += [*notes, *errors_note(per)]
        return [
            against_filedepot,
            _ratio_row(
                label,
                unit,
                per["depotx"][metric],
                "Starlette StaticFiles",
                per["starlette"][metric],
                5,
            ),
            _limit_row(
                f"{label}: server RSS growth",
                "MiB",
                per["depotx"]["rss_growth_mib"],
                32,
                peer=_rss_peers(per, contenders),
            ),
        ]

    small_contenders = ["depotx", "filedepot", "starlette", "bare"]
    for label, file_id, size in (
        ("GET 1 KiB", files.small, KiB),
        ("GET 64 KiB", files.medium, 64 * KiB),
    ):
        per = load(
            label,
            small_contenders,
            file_id,
            size,
            seconds=settings.http_seconds,
            connections=settings.small_connections,
        )
        ours = per["depotx"]
        p99_ok = (ours["p99_ms"] or 0) <= (per["filedepot"]["p99_ms"] or 0)
        rows.append(
            _ratio_row(
                label,
                "req/s",
                ours["rps"],
                "filedepot (gunicorn sync)",
                per["filedepot"]["rps"],
                3,
                extra_ok=p99_ok,
                extra_target="p99 no worse",
            )
        )
        rows[-1].notes.append(f"p99 {ours['p99_ms']:.1f} ms vs {per['filedepot']['p99_ms']:.1f} ms")
        rows[-1].notes += errors_note(per)
        rows.append(
            _ratio_row(
                label, "req/s", ours["rps"], "Starlette StaticFiles", per["starlette"]["rps"], 5
            )
        )
        # Round 2's target for the 1 KiB GET; the 64 KiB one keeps round 1's.
        bare_target = 0.65 if size == KiB else 0.5
        rows.append(
            _ratio_row(
                label,
                "req/s",
                ours["rps"],
                "bare ASGI from memory",
                per["bare"]["rps"],
                bare_target,
            )
        )

    # The cost of the private-file checks on the hot path: the same file, the same
    # server, through a signed URL and through an authorize hook that allows it.
    per = load(
        "GET 1 KiB: signed URL, authorize hook",
        ["depotx", "depotx-signed", "depotx-authorize"],
        files.small,
        KiB,
        seconds=settings.http_seconds,
        connections=settings.small_connections,
    )
    for contender, what in (
        ("depotx-signed", "GET 1 KiB through a signed URL"),
        ("depotx-authorize", "GET 1 KiB through an authorize hook returning True"),
    ):
        rows.append(
            _ratio_row(
                what,
                "req/s",
                per[contender]["rps"],
                "depotx, the same file unsigned",
                per["depotx"]["rps"],
                0.95,
            )
        )
        rows[-1].notes += errors_note(per)

    per = load(
        "GET 1 KiB, If-None-Match -> 304",
        ["depotx", "bare"],
        files.small,
        KiB,
        seconds=settings.http_seconds,
        connections=settings.small_connections,
        status=304,
        etag_header=True,
    )
    rows.append(
        _ratio_row(
            "conditional GET -> 304",
            "req/s",
            per["depotx"]["rps"],
            "bare ASGI from memory",
            per["bare"]["rps"],
            0.85,
        )
    )
    rows[-1].notes += errors_note(per)

    big_contenders = ["depotx", "filedepot", "starlette"]
    big_label = f"GET {settings.big_file // MiB} MiB"
    per = load(
        big_label,
        big_contenders,
        files.big,
        settings.big_file,
        seconds=settings.big_seconds,
        connections=1,
        measure_rss=True,
    )
    rows += transfer_rows(big_label, "MiB/s", "mib_s", per, big_contenders)

    if "depotx-granian" in servers:
        # The same file, with depotx on Granian: the server sends it itself (pathsend).
        per = load(
            f"{big_label} on Granian",
            ["depotx-granian", "filedepot", "granian-static"],
            files.big,
            settings.big_file,
            seconds=settings.big_seconds,
            connections=1,
            measure_rss=True,
        )
        rows.append(
            _ratio_row(
                f"{big_label}, depotx on Granian (pathsend)",
                "MiB/s",
                per["depotx-granian"]["mib_s"],
                "filedepot (gunicorn sync)",
                per["filedepot"]["mib_s"],
                1.0,
            )
        )
        rows.append(
            _ratio_row(
                f"{big_label}, depotx on Granian (pathsend)",
                "MiB/s",
                per["depotx-granian"]["mib_s"],
                "Granian's own static files",
                per["granian-static"]["mib_s"],
                0.9,
            )
        )
        rows.append(
            _limit_row(
                f"{big_label}, depotx on Granian: server RSS growth",
                "MiB",
                per["depotx-granian"]["rss_growth_mib"],
                32,
                peer=_rss_peers(per, ["depotx-granian", "filedepot", "granian-static"]),
            )
        )

    range_label = "GET 64 KiB range of 1 MiB"
    per = load(
        range_label,
        big_contenders,
        files.mib,
        64 * KiB,
        seconds=settings.http_seconds,
        connections=settings.small_connections,
        headers={"Range": "bytes=0-65535"},
        status=206,
        measure_rss=True,
    )
    filedepot_note = "; ".join(per["filedepot"]["notes"])
    rows += transfer_rows(
        range_label,
        "useful MiB/s",
        "useful_mib_s",
        per,
        big_contenders,
        notes=[f"filedepot ignores Range: {filedepot_note}"] if filedepot_note else [],
    )
    return rows


def _rss_peers(per: dict[str, dict[str, Any]], contenders: Sequence[str]) -> str:
    parts = []
    for name in contenders[1:]:
        growth = per[name]["rss_growth_mib"]
        parts.append(f"{name} {growth:.1f}" if growth is not None else f"{name} ?")
    return ", ".join(parts)


# -- in-process scenarios ---------------------------------------------------------------------


def run_create(settings: Settings) -> tuple[list[Row], dict[str, Any]]:
    """``create`` into local storage against a raw aiofiles copy of the same stream."""
    root = Path(tempfile.mkdtemp(prefix="depotx-bench-create-"))
    try:
        contenders: dict[str, Callable[[], dict[str, Any]]] = {
            "depotx": lambda: _run_async(_inprocess.create_local(root, settings.create_size)),
            "aiofiles": lambda: _run_async(
                _inprocess.raw_aiofiles_copy(root, settings.create_size)
            ),
        }
        if not _importable("blake3"):
            contenders["depotx-blake3"] = lambda: _run_async(
                _inprocess.create_local(root, settings.create_size, checksum="blake3")
            )
        label = f"create {settings.create_size // MiB} MiB stream, local"
        _log(f"{label}: {', '.join(contenders)} x {settings.rounds} rounds, after one untimed each")
        # The first large write of a process waits for the kernel to reclaim page
        # cache (0.3 GiB/s here instead of 3): whoever went first would lose.
        for warm_up in contenders.values():
            warm_up()
        results = _interleave(settings.rounds, list(contenders), lambda name: contenders[name]())
    finally:
        shutil.rmtree(root, ignore_errors=True)
    ours = _median([run["mib_s"] for run in results["depotx"]])
    theirs = _median([run["mib_s"] for run in results["aiofiles"]])
    growth = max((run["rss_growth_mib"] or 0.0) for run in results["depotx"])
    peer_growth = max((run["rss_growth_mib"] or 0.0) for run in results["aiofiles"])
    rows = [
        _ratio_row(label, "MiB/s", ours, "raw aiofiles copy, no checksum", theirs, 0.7),
        _limit_row(f"{label}: RSS growth", "MiB", growth, 64, peer=f"aiofiles {peer_growth:.1f}"),
    ]
    if "depotx-blake3" in results:
        blake = _median([run["mib_s"] for run in results["depotx-blake3"]])
        rows.append(
            _ratio_row(
                f"{label}, checksum = blake3",
                "MiB/s",
                blake,
                "raw aiofiles copy, no checksum",
                theirs,
                0.8,
            )
        )
    return rows, {label: results}


_UPLOAD_BOUNDARY = "depotxbenchboundary"


def _upload_body(size: int) -> Iterator[bytes]:
    """A multipart body with one ``size``-byte file, made on the fly in 1 MiB pieces."""
    head = (
        f'--{_UPLOAD_BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
        'filename="big.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'
    )
    yield head.encode()
    block = os.urandom(MiB)
    for offset in range(0, size, MiB):
        yield block[: min(MiB, size - offset)]
    yield f"\r\n--{_UPLOAD_BOUNDARY}--\r\n".encode()


def _temp_bytes(pid: int, root: Path) -> int:
    """Bytes of the files ``pid`` holds open under ``root``, unlinked ones included.

    Spooled uploads live in anonymous temporary files (``O_TMPFILE``), which no
    directory listing shows; the process's open descriptors do.
    """
    total = 0
    prefix = str(root)
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(prefix):
                    total += os.stat(f"/proc/{pid}/fd/{fd}").st_size
    return total


def _upload_once(server: Server, path: str, size: int, tmp: Path) -> dict[str, Any]:
    """One upload: MiB/s, the server's peak RSS growth, and its peak temp disk use."""
    import httpx

    peak_tmp = 0
    stop = threading.Event()
    pid = server.serving_pid
    assert pid is not None

    def watch_tmp() -> None:
        nonlocal peak_tmp
        while not stop.wait(0.02):
            peak_tmp = max(peak_tmp, _temp_bytes(pid, tmp))

    watcher = threading.Thread(target=watch_tmp, daemon=True)
    watcher.start()
    try:
        with PeakRSS(pid) as rss:
            started = time.perf_counter()
            response = httpx.post(
                server.url + path,
                content=_upload_body(size),
                headers={"Content-Type": f"multipart/form-data; boundary={_UPLOAD_BOUNDARY}"},
                timeout=600,
            )
            elapsed = time.perf_counter() - started
    finally:
        stop.set()
        watcher.join()
    if response.status_code != 201:
        raise RuntimeError(f"{path}: {response.status_code} {response.text[:200]}")
    growth = rss.growth
    return {
        "mib_s": size / MiB / elapsed,
        "rss_growth_mib": None if growth is None else growth / MiB,
        "tmp_peak_mib": peak_tmp / MiB,
    }


#: The chunk size of tus clients in the benchmark (tus-js-client's advice for S3, and ours).
TUS_CHUNK = 5 * MiB


def _tus_upload_once(server: Server, size: int, tmp: Path) -> dict[str, Any]:
    """One tus upload in ``TUS_CHUNK`` PATCHes on one connection: MiB/s and peak RSS growth."""
    import httpx

    block = bytes(range(256)) * (TUS_CHUNK // 256)
    pid = server.serving_pid
    assert pid is not None
    version = {"Tus-Resumable": "1.0.0"}
    with httpx.Client(base_url=server.url, timeout=600) as client, PeakRSS(pid) as rss:
        started = time.perf_counter()
        created = client.post("/tus/", headers={**version, "Upload-Length": str(size)})
        if created.status_code != 201:
            raise RuntimeError(f"tus create: {created.status_code} {created.text[:200]}")
        url = created.headers["location"]
        offset = 0
        while offset < size:
            body = block[: min(TUS_CHUNK, size - offset)]
            response = client.patch(
                url,
                content=body,
                headers={
                    **version,
                    "Upload-Offset": str(offset),
                    "Content-Type": "application/offset+octet-stream",
                },
            )
            if response.status_code != 204:
                raise RuntimeError(f"tus PATCH: {response.status_code} {response.text[:200]}")
            offset = int(response.headers["upload-offset"])
        if "depot-file-id" not in response.headers:
            raise RuntimeError("tus: the last PATCH did not store the file")
        elapsed = time.perf_counter() - started
    growth = rss.growth
    return {
        "mib_s": size / MiB / elapsed,
        "rss_growth_mib": None if growth is None else growth / MiB,
        "tmp_peak_mib": 0.0,
    }


def run_upload(settings: Settings, log_dir: Path) -> tuple[list[Row], dict[str, Any]]:
    """An upload through ``receive_upload`` against ``request.form()`` + ``create``."""
    raw: dict[str, Any] = {}
    missing = _importable("python_multipart")
    if missing:
        raw["skipped"] = f"python-multipart does not import ({missing}): pip install -e '.[bench]'"
        return [], raw
    data = Path(tempfile.mkdtemp(prefix="depotx-bench-upload-"))
    tmp = Path(tempfile.mkdtemp(prefix="depotx-bench-upload-tmp-"))
    try:
        port = free_port()
        env = {
            "BENCH_ROOT": str(data),
            "TMPDIR": str(tmp),  # where request.form() spools: measured
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(Path.cwd()), os.environ.get("PYTHONPATH")])
            ),
        }
        server = Server(
            "upload",
            _uvicorn("benchmarks.apps.upload_app:app", port),
            port=port,
            env=env,
            log_dir=log_dir,
        )
        label = f"upload {settings.upload_size // MiB} MiB multipart, local"
        with running([server]):
            _log(f"{label}: streamed, spooled, tus x {settings.rounds} rounds")
            paths = {"streamed": "/streamed", "spooled": "/spooled"}
            results = _interleave(
                settings.rounds,
                [*paths, "tus"],
                lambda name: (
                    _tus_upload_once(server, settings.upload_size, tmp)
                    if name == "tus"
                    else _upload_once(server, paths[name], settings.upload_size, tmp)
                ),
            )
    finally:
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(str(data) + "-tus", ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    ours = _median([run["mib_s"] for run in results["streamed"]])
    theirs = _median([run["mib_s"] for run in results["spooled"]])
    rss = max((run["rss_growth_mib"] or 0.0) for run in results["streamed"])
    peer_rss = max((run["rss_growth_mib"] or 0.0) for run in results["spooled"])
    tmp_ours = max(run["tmp_peak_mib"] for run in results["streamed"])
    tmp_theirs = max(run["tmp_peak_mib"] for run in results["spooled"])
    rows = [
        _ratio_row(label, "MiB/s", ours, "request.form() + create", theirs, 1.0),
        _limit_row(f"{label}: server RSS growth", "MiB", rss, 64, peer=f"spooled {peer_rss:.1f}"),
        _limit_row(
            f"{label}: temp disk used", "MiB", tmp_ours, 1, peer=f"spooled {tmp_theirs:.1f}"
        ),
        _ratio_row(
            f"upload {settings.upload_size // MiB} MiB by tus, "
            f"{TUS_CHUNK // MiB} MiB PATCHes, local",
            "MiB/s",
            _median([run["mib_s"] for run in results["tus"]]),
            "the streaming receiver (one multipart POST)",
            ours,
            0.6,
        ),
    ]
    return rows, {label: results}


#: Round 2's limit on the loop lag p99 while uploads and small requests run together.
LAG_LIMIT_MS = 10


def run_lag(settings: Settings) -> tuple[list[Row], dict[str, Any]]:
    """Event-loop lag during a large upload plus many small create+get."""
    label = (
        f"{settings.lag_small} small create+get during a {settings.lag_upload // MiB} MiB upload"
    )
    _log(f"{label} x {settings.rounds} rounds")
    runs = []
    for _ in range(settings.rounds):
        root = Path(tempfile.mkdtemp(prefix="depotx-bench-lag-"))
        try:
            runs.append(
                _run_async(
                    _inprocess.loop_lag(
                        root, upload_size=settings.lag_upload, small_count=settings.lag_small
                    )
                )
            )
        finally:
            shutil.rmtree(root, ignore_errors=True)
    intact = all(run["small_intact"] == run["small_count"] and run["upload_intact"] for run in runs)
    p99 = _median([run["lag_p99_ms"] for run in runs])
    row = _limit_row(f"{label}: loop lag p99", "ms", p99, LAG_LIMIT_MS)
    row.met = None if p99 is None else (p99 < LAG_LIMIT_MS and intact)
    row.target += ", all intact"
    row.notes.append(
        f"intact: {'all' if intact else 'NO'}; lag p50 {_median([r['lag_p50_ms'] for r in runs])}"
        f" ms, max {max(r['lag_max_ms'] for r in runs)} ms"
    )
    return [row], {label: runs}


def run_s3(settings: Settings, log_dir: Path) -> tuple[list[Row], dict[str, Any]]:
    """S3 create/get through depotx against raw aioboto3, both on one moto server."""
    missing = _importable("depotx.storages.s3")
    if missing:
        _log(f"S3 skipped: depotx.storages.s3 does not import: {missing}")
        return [], {"skipped": f"depotx.storages.s3 does not import: {missing}"}
    moto = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which(
        "moto_server"
    )
    if moto is None:
        return [], {"skipped": "moto_server is not installed (pip install 'moto[server]')"}
    port = free_port()
    server = Server(
        "moto", [moto, "-H", "127.0.0.1", "-p", str(port)], port=port, env={}, log_dir=log_dir
    )
    label = f"S3 {settings.s3_size // MiB} MiB, {settings.s3_part // MiB} MiB parts (moto)"
    bucket = "depotx-bench"
    with running([server]):
        _run_async(_inprocess.ensure_bucket(server.url, bucket))
        contenders: dict[str, Callable[[], dict[str, Any]]] = {
            "depotx": lambda: _run_async(
                _inprocess.s3_depotx(server.url, bucket, settings.s3_size, settings.s3_part)
            ),
            "aioboto3": lambda: _run_async(
                _inprocess.s3_raw(server.url, bucket, settings.s3_size, settings.s3_part)
            ),
        }
        _log(f"{label}: depotx, aioboto3 x {settings.rounds} rounds")
        results = _interleave(settings.rounds, list(contenders), lambda name: contenders[name]())
        count = settings.s3_small_count
        _log(f"S3 1 KiB get + read: depotx, aioboto3 get_object, {count} each, alternating")
        small = _run_async(_inprocess.s3_small_latency(server.url, bucket, count))
    rows = [
        _latency_row(
            f"S3 1 KiB get + read, median of {count} (moto)",
            small["depotx_ms"],
            "raw aioboto3 get_object + read",
            small["raw_ms"],
            1.15,
        )
    ]
    for key, what in (("put_mib_s", "create"), ("get_mib_s", "get")):
        rows.append(
            _ratio_row(
                f"{label}: {what}",
                "MiB/s",
                _median([run[key] for run in results["depotx"]]),
                "raw aioboto3 " + ("upload_fileobj" if what == "create" else "get_object"),
                _median([run[key] for run in results["aioboto3"]]),
                0.9,
            )
        )
    return rows, {label: results, "s3_small_latency": small}


_NGINX_BENCH = """
{user}
daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  client_body_temp_path {root}/body; proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fcgi; uwsgi_temp_path {root}/uwsgi; scgi_temp_path {root}/scgi;
  upstream offloading {{ server 127.0.0.1:{offload_port}; keepalive 64; }}
  upstream proxied {{ server 127.0.0.1:{plain_port}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location /depot/ {{
      proxy_pass http://offloading; proxy_http_version 1.1; proxy_set_header Connection "";
    }}
    location /_depotx/bench/ {{ internal; alias {files}/; }}
  }}
  server {{
    listen 127.0.0.1:{proxy_port};
    location /depot/ {{
      proxy_pass http://proxied; proxy_http_version 1.1; proxy_set_header Connection "";
    }}
  }}
  server {{
    listen 127.0.0.1:{direct_port};
    location /direct/ {{ alias {files}/; }}
  }}
}}
"""


def _load_url(
    urls: dict[str, str], seconds: float, connections: int, settings: Settings, key: str
) -> LoadResult:
    return run_load(
        urls[key],
        connections=connections,
        seconds=seconds,
        headers={},
        force_python=settings.force_python_client,
    )


def run_offload(settings: Settings, log_dir: Path) -> tuple[list[Row], dict[str, Any]]:
    """depotx behind nginx, handing files over (``X-Accel-Redirect``), against nginx itself.

    100 MiB against nginx serving the same file directly; 1 KiB against nginx
    proxying to depotx without offload (what a deployment without it does).
    """
    nginx = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    if nginx is None:
        _log("offload skipped: nginx is not installed (apt-get install nginx)")
        return [], {"skipped": "nginx is not installed (apt-get install nginx)"}
    data = Path(tempfile.mkdtemp(prefix="depotx-bench-offload-"))
    rows: list[Row] = []
    raw: dict[str, Any] = {}
    try:
        files = _run_async(_make_files(data, settings.big_file))
        env = {
            "BENCH_ROOT": str(data),
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(Path.cwd()), os.environ.get("PYTHONPATH")])
            ),
        }
        ports = {name: free_port() for name in ("offload", "plain", "front", "proxy", "direct")}
        conf = data.parent / f"{data.name}-nginx"
        conf.mkdir()
        (conf / "nginx.conf").write_text(
            _NGINX_BENCH.format(
                user="user root;" if os.geteuid() == 0 else "",
                root=conf,
                files=data,
                port=ports["front"],
                proxy_port=ports["proxy"],
                direct_port=ports["direct"],
                offload_port=ports["offload"],
                plain_port=ports["plain"],
            )
        )
        app = "benchmarks.apps.depotx_app:app"
        servers = [
            Server(
                "depotx-offload",
                _uvicorn(app, ports["offload"]),
                port=ports["offload"],
                env={**env, "BENCH_OFFLOAD": "x-accel-redirect"},
                log_dir=log_dir,
            ),
            Server(
                "depotx-plain",
                _uvicorn(app, ports["plain"]),
                port=ports["plain"],
                env=env,
                log_dir=log_dir,
            ),
            Server(
                "nginx",
                [nginx, "-c", str(conf / "nginx.conf")],
                port=ports["front"],
                env={},
                log_dir=log_dir,
            ),
        ]
        urls = {
            "big offload": f"http://127.0.0.1:{ports['front']}/depot/bench/{files.big}",
            "big direct": f"http://127.0.0.1:{ports['direct']}/direct/{files.big}/file",
            "small offload": f"http://127.0.0.1:{ports['front']}/depot/bench/{files.small}",
            "small proxied": f"http://127.0.0.1:{ports['proxy']}/depot/bench/{files.small}",
        }
        with running(servers):
            for name, size in (("big", settings.big_file), ("small", KiB)):
                for url in (u for key, u in urls.items() if key.startswith(name)):
                    note = _check(url, {}, 200, size)
                    if note:
                        raise RuntimeError(f"offload benchmark: {url} {note}")
                    _warm_up(url, {})
            scenarios = (
                ("big", "big offload", "big direct", settings.big_seconds, 4),
                ("small", "small offload", "small proxied", settings.http_seconds, 64),
            )
            for name, ours, theirs, seconds, connections in scenarios:
                _log(f"offload {name}: {ours}, {theirs} x {settings.rounds} rounds")
                results = _interleave(
                    settings.rounds,
                    [ours, theirs],
                    functools.partial(_load_url, urls, seconds, connections, settings),
                )
                raw[name] = {key: [run.as_dict() for run in runs] for key, runs in results.items()}
                if name == "big":
                    rows.append(
                        _ratio_row(
                            f"GET {settings.big_file // MiB} MiB behind nginx, X-Accel-Redirect",
                            "MiB/s",
                            _median([run.mib_s for run in results[ours]]),
                            "nginx serving the file itself",
                            _median([run.mib_s for run in results[theirs]]),
                            0.9,
                        )
                    )
                else:
                    rows.append(
                        _ratio_row(
                            "GET 1 KiB behind nginx, X-Accel-Redirect",
                            "req/s",
                            _median([run.rps for run in results[ours]]),
                            "nginx proxying to depotx (no offload)",
                            _median([run.rps for run in results[theirs]]),
                            0.8,
                        )
                    )
    finally:
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(data.parent / f"{data.name}-nginx", ignore_errors=True)
    return rows, raw


def run_azure(settings: Settings, log_dir: Path) -> tuple[list[Row], dict[str, Any]]:
    """Azure create/get through depotx against the SDK itself, both on one Azurite."""
    missing = _importable("depotx.storages.azure")
    if missing:
        return [], {"skipped": f"depotx.storages.azure does not import: {missing}"}
    azurite = Path(__file__).parent.parent / "tests" / "js" / "node_modules" / ".bin"
    if not (azurite / "azurite-blob").exists() or shutil.which("node") is None:
        return [], {"skipped": "Azurite is not installed: npm ci --prefix tests/js (needs Node)"}
    port = free_port()
    location = Path(tempfile.mkdtemp(prefix="depotx-bench-azurite-"))
    server = Server(
        "azurite",
        [
            str(azurite / "azurite-blob"),
            *("--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(location)),
            *("--silent", "--skipApiVersionCheck", "--loose"),
        ],
        port=port,
        env={},
        log_dir=log_dir,
    )
    key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
    connection = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"AccountKey={key};BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )
    size = settings.s3_size
    label = f"Azure {size // MiB} MiB, 8 MiB blocks (Azurite)"
    try:
        with running([server]):
            _run_async(_inprocess.azure_container(connection, "bench"))
            contenders: dict[str, Callable[[], dict[str, Any]]] = {
                "depotx": lambda: _run_async(_inprocess.azure_depotx(connection, "bench", size)),
                "sdk": lambda: _run_async(_inprocess.azure_raw(connection, "bench", size)),
            }
            _log(f"{label}: depotx, azure-storage-blob x {settings.rounds} rounds")
            results = _interleave(
                settings.rounds, list(contenders), lambda name: contenders[name]()
            )
    finally:
        shutil.rmtree(location, ignore_errors=True)
    rows = [
        _ratio_row(
            f"{label}: {what}",
            "MiB/s",
            _median([run[key] for run in results["depotx"]]),
            "azure-storage-blob " + ("upload_blob" if what == "create" else "download_blob"),
            _median([run[key] for run in results["sdk"]]),
            0.9,
        )
        for key, what in (("put_mib_s", "create"), ("get_mib_s", "get"))
    ]
    return rows, {label: results}


def run_gcs(settings: Settings, log_dir: Path) -> tuple[list[Row], dict[str, Any]]:
    """GCS create/get through depotx against gcloud-aio-storage, both on one emulator."""
    for module in ("depotx.storages.gcs", "gcloud.aio.storage", "gcp_storage_emulator"):
        missing = _importable(module)
        if missing:
            return [], {"skipped": f"{module} does not import: {missing}"}
    root = Path(__file__).parent.parent
    port = free_port()
    data = Path(tempfile.mkdtemp(prefix="depotx-bench-gcs-"))
    server = Server(
        "gcs-emulator",
        [
            sys.executable,
            *("-m", "tests.backends._gcs_emulator", "--port", str(port), "--data", str(data)),
        ],
        port=port,
        env={"PYTHONPATH": str(root)},
        log_dir=log_dir,
    )
    size = settings.s3_size
    label = f"GCS {size // MiB} MiB (gcp-storage-emulator)"
    try:
        with running([server]):
            contenders: dict[str, Callable[[], dict[str, Any]]] = {
                "depotx": lambda: _run_async(_inprocess.gcs_depotx(server.url, "bench", size)),
                "gcloud-aio": lambda: _run_async(_inprocess.gcs_raw(server.url, "bench", size)),
            }
            _log(f"{label}: depotx, gcloud-aio-storage x {settings.rounds} rounds")
            results = _interleave(
                settings.rounds, list(contenders), lambda name: contenders[name]()
            )
    finally:
        shutil.rmtree(data, ignore_errors=True)
    rows = [
        _ratio_row(
            f"{label}: {what}",
            "MiB/s",
            _median([run[key] for run in results["depotx"]]),
            "gcloud-aio-storage " + ("upload" if what == "create" else "download_stream"),
            _median([run[key] for run in results["gcloud-aio"]]),
            0.9,
        )
        for key, what in (("put_mib_s", "create"), ("get_mib_s", "get"))
    ]
    return rows, {label: results}


def run_migrate(settings: Settings, log_dir: Path) -> tuple[list[Row], dict[str, Any]]:
    """``depotx migrate`` against filedepot's copy loop: local → S3, and S3 → S3 (moto)."""
    for module in ("depotx.storages.s3", "depot.io.boto3"):
        missing = _importable(module)
        if missing:
            return [], {"skipped": f"{module} does not import: {missing}"}
    moto = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which(
        "moto_server"
    )
    if moto is None:
        return [], {"skipped": "moto_server is not installed (pip install 'moto[server]')"}
    root = Path(tempfile.mkdtemp(prefix="depotx-bench-migrate-"))
    port = free_port()
    server = Server(
        "moto-migrate",
        [moto, "-H", "127.0.0.1", "-p", str(port)],
        port=port,
        env={},
        log_dir=log_dir,
    )
    bucket = "depotx-bench-migrate"
    label = f"migrate {settings.migrate_files} files (0-{settings.migrate_largest // KiB} KiB)"
    rows: list[Row] = []
    raw: dict[str, Any] = {}
    try:
        raw["total_bytes"] = _run_async(
            _inprocess.make_migration_source(root, settings.migrate_files, settings.migrate_largest)
        )
        with running([server]):
            _run_async(_inprocess.ensure_bucket(server.url, bucket))
            # The S3 source of S3 → S3: the same files, copied there once, untimed.
            _run_async(_inprocess.migrate_depotx(root, server.url, bucket, "", "source/"))
            for what, source_root, prefix in (
                ("local → S3", root, ""),
                ("S3 → S3 (server-side)", None, "source/"),
            ):
                scenario = f"{label}, {what}"
                _log(f"{scenario}: depotx, filedepot x {settings.rounds} rounds")
                results = _migrate_rounds(settings, server.url, bucket, source_root, prefix)
                raw[scenario] = results
                rows.append(
                    _ratio_row(
                        scenario,
                        "files/s",
                        _median([run["files_s"] for run in results["depotx"]]),
                        "filedepot's loop (replace(stored, stored))",
                        _median([run["files_s"] for run in results["filedepot"]]),
                        1.0,
                    )
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return rows, raw


def _migrate_rounds(
    settings: Settings, endpoint: str, bucket: str, source_root: Path | None, prefix: str
) -> dict[str, list[dict[str, Any]]]:
    def measure(name: str) -> dict[str, Any]:
        if name == "depotx":
            return _run_async(_inprocess.migrate_depotx(source_root, endpoint, bucket, prefix))
        return _inprocess.migrate_filedepot(source_root, endpoint, bucket, prefix)

    return _interleave(settings.rounds, ["depotx", "filedepot"], measure)


# -- output -----------------------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def format_table(rows: Sequence[Row]) -> str:
    """A Markdown table, readable in a terminal and pasted as is into docs/benchmarks.md."""
    header = ["scenario", "unit", "depotx", "peer", "peer value", "ratio", "target", "met?"]
    lines = [header]
    for row in rows:
        met = "n/a" if row.met is None else ("yes" if row.met else "NO")
        lines.append(
            [
                row.scenario,
                row.unit,
                _fmt(row.depotx),
                row.peer,
                _fmt(row.peer_value),
                "-" if row.ratio is None else f"{row.ratio:.2f}x",
                row.target,
                met,
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for index, line in enumerate(lines):
        out.append(
            "| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) + " |"
        )
        if index == 0:
            out.append("| " + " | ".join("-" * w for w in widths) + " |")
    notes = [f"- {row.scenario} vs {row.peer}: {'; '.join(row.notes)}" for row in rows if row.notes]
    return "\n".join(out + (["", *notes] if notes else []))


def machine_info() -> dict[str, Any]:
    """What the figures were measured on: cores, CPU, Python, and how busy the machine was."""

    def command(*argv: str) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        except OSError:
            return ""
        return done.stdout.strip()

    return {
        "nproc": command("nproc") or str(os.cpu_count()),
        "lscpu": command("lscpu").splitlines()[:10],
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "loadavg": list(os.getloadavg()),
        # What else was using the CPU when the run started (the machine may be shared).
        "busiest_processes": [
            line.strip().partition(" ")[2].strip()[:100]
            for line in command("ps", "-eo", "pid=,pcpu=,args=", "--sort=-pcpu").splitlines()
            if line.split()[0] != str(os.getpid())
        ][:5],
        "load_generator": "wrk " + command("wrk", "--version").split("\n")[0].split()[1]
        if have_wrk()
        else "python (httpx)",
    }


GROUPS = ("http", "create", "lag", "s3", "gcs", "azure", "upload", "migrate", "offload")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run, under two minutes")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (min 3)")
    parser.add_argument(
        "--only", default=",".join(GROUPS), help=f"comma-separated groups from {', '.join(GROUPS)}"
    )
    parser.add_argument(
        "--python-client",
        action="store_true",
        help="use the Python load generator even if wrk is installed",
    )
    args = parser.parse_args(argv)
    groups = [group.strip() for group in args.only.split(",") if group.strip()]
    unknown = set(groups) - set(GROUPS)
    if unknown:
        parser.error(f"unknown group(s): {', '.join(sorted(unknown))}")
    overrides = {"rounds": max(3, args.rounds), "force_python_client": args.python_client}
    settings = Settings.quick(**overrides) if args.quick else Settings(**overrides)

    started = datetime.now(timezone.utc)
    began = time.perf_counter()
    before = machine_info()
    rows: list[Row] = []
    raw: dict[str, Any] = {}
    log_dir = Path(tempfile.mkdtemp(prefix="depotx-bench-logs-"))
    try:
        for group in groups:
            if group == "http":
                found, details = run_http(settings, log_dir)
            elif group == "create":
                found, details = run_create(settings)
            elif group == "lag":
                found, details = run_lag(settings)
            elif group == "upload":
                found, details = run_upload(settings, log_dir)
            elif group == "migrate":
                found, details = run_migrate(settings, log_dir)
            elif group == "offload":
                found, details = run_offload(settings, log_dir)
            elif group == "gcs":
                found, details = run_gcs(settings, log_dir)
            elif group == "azure":
                found, details = run_azure(settings, log_dir)
            else:
                found, details = run_s3(settings, log_dir)
            rows += found
            raw[group] = details
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)
    elapsed = time.perf_counter() - began
    table = format_table(rows)
    print(table)
    skipped = {group: details["skipped"] for group, details in raw.items() if "skipped" in details}
    for group, why in skipped.items():
        print(f"skipped {group}: {why}")
    print(f"\n{len(rows)} rows in {elapsed:.0f} s; load average {os.getloadavg()[0]:.2f}")
    print(f"load generator: {before['load_generator']}")
    if "http" in groups and (settings.force_python_client or not have_wrk()):
        print("the Python client saturates before the servers do: HTTP figures are a floor")
    if args.json:
        report = {
            "started": started.isoformat(),
            "seconds": round(elapsed, 1),
            "command": " ".join(
                ["python -m benchmarks", *(argv if argv is not None else sys.argv[1:])]
            ),
            "settings": settings.__dict__,
            "machine": before,
            "loadavg_after": list(os.getloadavg()),
            "rows": [row.as_dict() for row in rows],
            "skipped": skipped,
            "raw": raw,
        }
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"JSON written to {args.json}")
    return 0
