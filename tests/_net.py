"""Ports for the servers the tests start on 127.0.0.1, and stopping them."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from typing import Any


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening(port: int, timeout: float = 20.0) -> bool:
    """Wait until something accepts connections on ``port``; ``False`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def stop_process(process: subprocess.Popen[Any]) -> None:
    """Stop a server the tests started, as a service stops: SIGTERM, then SIGKILL
    if it is still there after 10 s."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
