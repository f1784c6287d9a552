"""Server processes: start on a free port, wait until ready, measure memory, stop.

Every server runs under coreutils ``timeout`` so it ends by itself even if the
harness is killed, and the harness stops it by PID in a ``finally`` block.
Memory figures come from psutil when installed, else from ``/proc``.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "REPO_ROOT",
    "PeakRSS",
    "Server",
    "free_port",
    "rss_bytes",
]

REPO_ROOT = Path(__file__).resolve().parent.parent

psutil: Any
try:
    psutil = importlib.import_module("psutil")  # optional, untyped: used through Any
except ImportError:  # pragma: no cover - /proc is enough on Linux
    psutil = None


def free_port() -> int:
    """A port free on 127.0.0.1 right now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _proc_status(pid: int, field: str) -> int | None:
    """A ``kB`` field of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``), in bytes."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def rss_bytes(pid: int) -> int | None:
    """Resident memory of ``pid`` now, or ``None`` if it cannot be read."""
    if psutil is not None:
        try:
            return int(psutil.Process(pid).memory_info().rss)
        except psutil.Error:
            return None
    return _proc_status(pid, "VmRSS")


def _children(pid: int) -> list[int]:
    if psutil is not None:
        try:
            return [int(child.pid) for child in psutil.Process(pid).children()]
        except psutil.Error:
            return []
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as children:
            return [int(part) for part in children.read().split()]
    except OSError:
        return []


class PeakRSS:
    """The peak resident memory of one process over a block, above its level at the start.

    Resets the kernel's high-water mark (``/proc/<pid>/clear_refs``) and reads
    ``VmHWM`` at the end, which misses no short spike; where that is not allowed,
    samples RSS every 5 ms in a thread instead.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start: int | None = None
        self.peak: int | None = None
        self._hwm = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def growth(self) -> int | None:
        if self.start is None or self.peak is None:
            return None
        return max(0, self.peak - self.start)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            now = rss_bytes(self.pid)
            if now is not None and (self.peak is None or now > self.peak):
                self.peak = now

    def __enter__(self) -> PeakRSS:
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w", encoding="ascii") as clear:
                clear.write("5")
            self._hwm = True
        except OSError:
            self._hwm = False
        self.start = rss_bytes(self.pid)
        self.peak = self.start
        if not self._hwm:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        now = _proc_status(self.pid, "VmHWM") if self._hwm else rss_bytes(self.pid)
        if now is not None and (self.peak is None or now > self.peak):
            self.peak = now


class Server:
    """One server process on 127.0.0.1, bounded in time, stopped by PID.

    ``serving_pid`` is the process that answers requests (uvicorn itself, or
    gunicorn's single worker), whose memory is measured.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        port: int,
        env: Mapping[str, str],
        ready_path: str = "/",
        time_limit: float = 1800.0,
        log_dir: Path,
    ) -> None:
        self.name = name
        self.port = port
        self.ready_path = ready_path
        self.log_path = log_dir / f"{name}.log"
        prefix: list[str] = []
        if shutil.which("timeout"):
            prefix = ["timeout", "--kill-after=5", str(int(time_limit))]
        self.argv = [*prefix, *argv]
        self.env = {**os.environ, **env}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.argv,
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start: {self.log_tail()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not listen on {self.port} in {timeout}s")

    def log_tail(self, size: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-size:]
        except OSError:
            return ""

    @property
    def serving_pid(self) -> int | None:
        """The deepest single-child descendant: ``timeout`` → python, or → gunicorn → worker."""
        if self.process is None:
            return None
        pid = self.process.pid
        for _ in range(4):
            children = _children(pid)
            if not children:
                break
            pid = children[0]
        return pid

    def stop(self) -> None:
        """SIGTERM to our process (``timeout`` forwards it), then SIGKILL to its group."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # the group we created for it
            process.wait(timeout=10)


@contextlib.contextmanager
def running(servers: Sequence[Server]) -> Iterator[None]:
    """Start every server; stop every one of them, whatever happens."""
    try:
        for server in servers:
            server.start()
        yield
    finally:
        for server in servers:
            server.stop()


def python_argv(*args: str) -> list[str]:
    """``python -m ...`` with the interpreter running the harness."""
    return [sys.executable, *args]
