"""Content-type detection: libmagic on the first bytes, the filename where it knows better.

libmagic is a C library that may be absent (slim containers, Windows). Without
it we fall back to :mod:`mimetypes` and say so once, at import, rather than fail.
"""

from __future__ import annotations

import mimetypes
import warnings

__all__ = ["HAS_LIBMAGIC", "SNIFF_SIZE", "detect_content_type"]

#: How many leading bytes are handed to libmagic; enough for every common format.
SNIFF_SIZE = 4096

# Answers so generic that the filename's extension, when it names something,
# is the better guess ("styles.css" is text/css, not text/plain).
_GENERIC = frozenset({"application/octet-stream", "text/plain"})
# Containers and guesses: libmagic sees the family (a zip, an OLE compound file,
# "some script") where the extension names the member of it (.docx, .xls, .md).
_ZIP = frozenset({"application/zip", "application/x-zip-compressed"})
_OLE = frozenset({"application/x-ole-storage", "application/cdfv2", "application/vnd.ms-office"})
_ZIP_BASED = frozenset(
    {
        "application/java-archive",
        "application/vnd.android.package-archive",
        "application/x-xpinstall",
    }
)
_TEXT_LIKE = frozenset(
    {"application/json", "application/x-yaml", "application/yaml", "application/toml"}
)
# libmagic's names for "no content"; callers want a real type.
_EMPTY = frozenset({"application/x-empty", "inode/x-empty"})
_FALLBACK = "application/octet-stream"

try:
    import magic as _magic

    _mime = _magic.Magic(mime=True)
    _encoding = _magic.Magic(mime_encoding=True)
    HAS_LIBMAGIC = True
except ImportError:  # python-magic raises ImportError when libmagic itself is missing
    HAS_LIBMAGIC = False
    warnings.warn(
        "libmagic is not available: depotx detects content types from filenames only. "
        "Install the libmagic system package (e.g. apt-get install libmagic1) for "
        "detection from content.",
        RuntimeWarning,
        stacklevel=2,
    )


def _is_utf8(sample: bytes, complete: bool) -> bool:
    """Whether ``sample`` decodes as UTF-8, allowing a character cut at the end of a prefix."""
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (
            not complete and exc.reason == "unexpected end of data" and exc.start >= len(sample) - 3
        )
    return True


def _charset(sample: bytes, complete: bool, detected: str | None) -> str | None:
    if _is_utf8(sample, complete):
        # us-ascii is a subset of UTF-8 and only a prefix was sampled: the rest
        # of the file may well hold UTF-8, which browsers would otherwise show
        # as windows-1252.
        return "utf-8"
    if detected and detected not in {"binary", "unknown-8bit", "us-ascii", "utf-8"}:
        return detected
    return None


def _with_charset(content_type: str, sample: bytes, complete: bool, detected: str | None) -> str:
    if not content_type.startswith("text/") or "charset=" in content_type:
        return content_type
    charset = _charset(sample, complete, detected)
    return f"{content_type}; charset={charset}" if charset else content_type


def _refines(by_content: str, by_name: str) -> bool:
    """Whether the extension's type is a specific member of the family libmagic saw.

    Only ever a narrowing within one family: an extension never turns sniffed
    HTML or SVG into something harmless (those are no family here), so a page
    disguised as ``.txt`` stays active content.
    """
    if by_content in _ZIP:
        return (
            by_name.endswith("+zip")
            or by_name.startswith(
                ("application/vnd.openxmlformats-officedocument.", "application/vnd.oasis.")
            )
            or by_name in _ZIP_BASED
        )
    if by_content in _OLE:
        return by_name.startswith(
            ("application/msword", "application/vnd.ms-", "application/vnd.visio")
        )
    if by_content == "text/plain" or by_content.startswith("text/x-"):
        return by_name.startswith("text/") or by_name in _TEXT_LIKE
    return False


def detect_content_type(sample: bytes, filename: str | None, *, complete: bool = False) -> str:
    """Best content type for content starting with ``sample``, stored as ``filename``.

    ``complete`` says ``sample`` is the whole content (so a truncated UTF-8
    sequence at its end is an error, not a cut). Blocking (libmagic): call it
    from a worker thread on the serving path.
    """
    by_name = mimetypes.guess_type(filename)[0] if filename else None
    detected_encoding: str | None = None
    if HAS_LIBMAGIC and sample:
        by_content: str | None = _mime.from_buffer(sample)
        if by_content and by_content.startswith("text/"):
            detected_encoding = _encoding.from_buffer(sample)
    else:
        by_content = None
    if by_content in _EMPTY or not sample:
        by_content = None
    if by_content and by_name and by_name not in _GENERIC and _refines(by_content.lower(), by_name):
        chosen = by_name
    elif by_content is None or by_content in _GENERIC:
        if by_name and by_name not in _GENERIC:
            chosen = by_name
        else:
            chosen = (
                by_content
                or by_name
                or (
                    "text/plain"
                    if sample and not HAS_LIBMAGIC and _is_utf8(sample, complete)
                    else None
                )
                or _FALLBACK
            )
    else:
        chosen = by_content
    return _with_charset(chosen, sample, complete, detected_encoding)
