"""Where unfinished uploads wait by default: a folder that outlives the process."""

from __future__ import annotations

import os

__all__ = ["default_staging_path"]


def default_staging_path(kind: str) -> str:
    """``$XDG_CACHE_HOME/depotx/<kind>`` (``~/.cache/depotx/<kind>``).

    Unlike a fresh temporary folder it survives a restart of the server, so an
    upload in progress (tus) or waiting to be finalized (direct uploads) is not lost.
    """
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "depotx", kind)
