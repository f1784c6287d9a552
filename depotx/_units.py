"""Sizes for people, in one format everywhere: the page, the CLI and error messages."""

from __future__ import annotations

__all__ = ["human_size", "too_large_message"]


def human_size(size: float) -> str:
    """``size`` bytes for people: ``512 B``, ``1.5 KiB`` ... ``2.0 TiB``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def too_large_message(limit: int) -> str:
    """What a client is told when an upload goes past ``limit`` bytes (413)."""
    return f"the file is larger than the upload limit of {human_size(limit)} ({limit} bytes)"
