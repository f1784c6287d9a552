"""filedepot's saved formats, in one place: every backend reads and writes them alike.

What filedepot writes into metadata (local ``metadata.json``, S3 object
metadata, GridFS documents) is a format other programs read, so it must not
drift between backends:

- ``last_modified`` as naive UTC ``%Y-%m-%d %H:%M:%S`` (no zone, no fraction);
- a file stored without a name is ``"unnamed"``; without a type,
  ``application/octet-stream``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from urllib.parse import quote

__all__ = [
    "CHECKSUM_KEY",
    "DEFAULT_CONTENT_TYPE",
    "DEFAULT_FILENAME",
    "FILENAME_KEY",
    "METADATA_KEY",
    "MODIFIED_KEY",
    "TIME_FORMAT",
    "dump_custom_metadata",
    "format_filedepot_time",
    "load_custom_metadata",
    "parse_filedepot_time",
    "quote_filename",
]

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
#: Object metadata keys of S3 and GCS objects: filedepot's two, then depotx's own.
FILENAME_KEY = "x-depot-filename"
MODIFIED_KEY = "x-depot-modified"
CHECKSUM_KEY = "x-depotx-checksum"
METADATA_KEY = "x-depotx-metadata"
# filedepot's quoting of the filename metadata; keeping it means filedepot's
# ``unquote`` gives back the same name.
_FILENAME_SAFE = "!#$&+-.^_`|~"
DEFAULT_FILENAME = "unnamed"
DEFAULT_CONTENT_TYPE = "application/octet-stream"


def format_filedepot_time(value: datetime) -> str:
    """``value`` (aware) as filedepot stores it: naive UTC, whole seconds."""
    return value.astimezone(timezone.utc).strftime(TIME_FORMAT)


def parse_filedepot_time(value: object) -> datetime | None:
    """A filedepot timestamp as an aware UTC datetime; ``None`` if ``value`` is not one."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, TIME_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def quote_filename(filename: str) -> str:
    """A filename as filedepot writes it into object metadata (ASCII, percent-encoded)."""
    return quote(filename, safe=_FILENAME_SAFE, encoding="utf-8")


def dump_custom_metadata(metadata: Mapping[str, str]) -> str:
    """Custom metadata as object stores keep it in one header value: ASCII JSON, sorted."""
    return json.dumps(dict(metadata), ensure_ascii=True, separators=(",", ":"), sort_keys=True)


def load_custom_metadata(text: str) -> dict[str, str] | None:
    """What :func:`dump_custom_metadata` wrote; ``None`` when it is not that (to log)."""
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    if isinstance(parsed, dict) and all(
        isinstance(key, str) and isinstance(value, str) for key, value in parsed.items()
    ):
        return parsed
    return None
