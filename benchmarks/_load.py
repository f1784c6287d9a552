"""Load generators: ``wrk`` when installed, else a bounded Python client.

Both return the same :class:`LoadResult`. ``wrk`` reports through a Lua
``done`` hook that prints one JSON line, so nothing depends on parsing its
human-readable units.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["LoadResult", "have_wrk", "run_load"]

_WRK_SCRIPT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"duration_us": %d, "requests": %d, "bytes": %d, "errors": %d, '
    .. '"p50_us": %d, "p99_us": %d}\\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""

MiB = 1024 * 1024


@dataclass
class LoadResult:
    """What one load run measured."""

    requests: int
    seconds: float
    bytes: int
    errors: int
    p50_ms: float
    p99_ms: float
    tool: str

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def mib_s(self) -> float:
        return self.bytes / MiB / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "rps": round(self.rps, 1), "mib_s": round(self.mib_s, 1)}


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def _run_wrk(
    url: str, *, connections: int, seconds: float, headers: Mapping[str, str]
) -> LoadResult:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_WRK_SCRIPT)
    try:
        argv = [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            script.name,
        ]
        for key, value in headers.items():
            argv += ["-H", f"{key}: {value}"]
        argv.append(url)
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=seconds + 30, check=False
        )
    finally:
        Path(script.name).unlink(missing_ok=True)
    for line in done.stdout.splitlines():
        if line.startswith("WRKJSON "):
            data = json.loads(line[len("WRKJSON ") :])
            return LoadResult(
                requests=data["requests"],
                seconds=data["duration_us"] / 1e6,
                bytes=data["bytes"],
                errors=data["errors"],
                p50_ms=data["p50_us"] / 1000,
                p99_ms=data["p99_us"] / 1000,
                tool="wrk",
            )
    raise RuntimeError(f"wrk gave no result for {url}: {done.stdout[-500:]} {done.stderr[-500:]}")


async def _run_python(
    url: str,
    *,
    connections: int,
    seconds: float,
    headers: Mapping[str, str],
    max_requests: int,
) -> LoadResult:
    import httpx

    latencies: list[float] = []
    counts = {"bytes": 0, "errors": 0}
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)

    async with httpx.AsyncClient(limits=limits, timeout=10.0) as client:

        async def worker() -> None:
            while time.perf_counter() < deadline and len(latencies) < max_requests:
                began = time.perf_counter()
                try:
                    async with client.stream("GET", url, headers=dict(headers)) as response:
                        async for chunk in response.aiter_raw(1024 * 1024):
                            counts["bytes"] += len(chunk)
                        if response.status_code >= 400:
                            counts["errors"] += 1
                except httpx.HTTPError:
                    counts["errors"] += 1
                    continue
                latencies.append(time.perf_counter() - began)

        began = time.perf_counter()
        await asyncio.wait_for(
            asyncio.gather(*(worker() for _ in range(connections))), timeout=seconds + 30
        )
        elapsed = time.perf_counter() - began
    ordered = sorted(latencies) or [0.0]
    return LoadResult(
        requests=len(latencies),
        seconds=elapsed,
        bytes=counts["bytes"],
        errors=counts["errors"],
        p50_ms=ordered[len(ordered) // 2] * 1000,
        p99_ms=ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        tool="python",
    )


def run_load(
    url: str,
    *,
    connections: int,
    seconds: float,
    headers: Mapping[str, str] | None = None,
    max_requests: int = 200_000,
    force_python: bool = False,
) -> LoadResult:
    """Load ``url`` for ``seconds`` with ``connections`` open connections.

    The Python client also stops after ``max_requests``; it is much slower than
    the servers it measures, so its figures are a floor, not the servers' speed.
    """
    headers = dict(headers or {})
    if have_wrk() and not force_python:
        return _run_wrk(url, connections=connections, seconds=seconds, headers=headers)
    return asyncio.run(
        _run_python(
            url,
            connections=connections,
            seconds=seconds,
            headers=headers,
            max_requests=max_requests,
        )
    )
