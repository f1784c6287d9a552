"""The HTTP semantics of serving a stored file, as pure functions.

Everything a static file server must get right lives here, free of I/O and of
backends, so each rule is tested on its own and the middleware only wires it up:

- validators: a strong, quoted ``ETag`` from the stored checksum and an
  IMF-fixdate ``Last-Modified`` (:func:`make_etag`, :func:`format_http_date`);
- dates in the three formats RFC 9110 §5.6.7 makes recipients accept
  (:func:`parse_http_date`); an unparseable date is ``None`` and therefore
  ignored, as the RFC says (filedepot answers 400);
- preconditions evaluated in the order of RFC 9110 §13.2.2
  (:func:`evaluate_preconditions`), with entity-tag lists, weak comparison for
  ``If-None-Match`` and ``*``;
- byte ranges and ``If-Range`` per RFC 9110 §14 (:func:`parse_range`,
  :func:`if_range_matches`);
- ``Content-Disposition`` per RFC 6266 and the "active content" rule that keeps
  user-uploaded HTML, SVG, XML and JavaScript from running on the app's origin.
"""

from __future__ import annotations

import email.utils
import hashlib
import re
import unicodedata
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Final
from urllib.parse import quote

__all__ = [
    "MAX_RANGES",
    "NOT_MODIFIED",
    "PRECONDITION_FAILED",
    "content_disposition",
    "evaluate_preconditions",
    "format_http_date",
    "header_content_type",
    "if_range_matches",
    "is_active_content",
    "make_etag",
    "multipart_length",
    "multipart_part_header",
    "parse_etag_list",
    "parse_http_date",
    "parse_range",
]

#: Results of :func:`evaluate_preconditions` besides ``None`` ("go on").
NOT_MODIFIED: Final = 304
PRECONDITION_FAILED: Final = 412

#: More ranges than this in one request are ignored (a full 200 is sent): many
#: tiny ranges cost the server far more than the bytes are worth (RFC 9110 §14.2).
MAX_RANGES: Final = 100

_UTC = timezone.utc

# -- entity tags -------------------------------------------------------------------

# etagc = %x21 / %x23-7E / obs-text (RFC 9110 §8.8.3); obs-text is left out on
# purpose: header values we produce stay ASCII.
_ETAGC_RE = re.compile(r"[\x21\x23-\x7e]*")
# One member of an entity-tag list: optional W/, a quoted opaque tag, then a
# comma or the end. Precompiled: this runs on every conditional request.
_ETAG_MEMBER_RE = re.compile(r'\s*(W/)?("[\x21\x23-\x7e\x80-\xff]*")\s*(?:,|$)')


def make_etag(checksum: str) -> str:
    """A strong, quoted entity tag for the stored checksum.

    Checksums are hex digests in practice; one that is not valid ``etagc``
    (quotes, spaces, non-ASCII, e.g. an S3 ETag passed through with its quotes)
    is hashed, so the header is always well-formed and still changes with it.
    """
    if checksum.startswith('"') and checksum.endswith('"') and len(checksum) >= 2:
        checksum = checksum[1:-1]
    if not checksum or _ETAGC_RE.fullmatch(checksum) is None:
        checksum = hashlib.sha256(checksum.encode("utf-8", "surrogatepass")).hexdigest()
    return f'"{checksum}"'


def parse_etag_list(value: str) -> list[tuple[bool, str]] | None:
    """Parse an ``If-Match``/``If-None-Match`` list into ``(weak, opaque_tag)`` pairs.

    ``opaque_tag`` keeps its quotes, as in our ``ETag``. Returns ``None`` for a
    field that is not a valid list (it is then ignored, like a malformed date);
    ``*`` is handled by the caller. Quoted tags may contain commas, so the list
    is tokenised rather than split on ``,``.
    """
    members: list[tuple[bool, str]] = []
    pos = 0
    end = len(value)
    while pos < end:
        match = _ETAG_MEMBER_RE.match(value, pos)
        if match is None:
            # Empty list elements (", ,") are allowed by the list syntax.
            stripped = value[pos:].lstrip(" \t")
            if stripped.startswith(","):
                pos = end - len(stripped) + 1
                continue
            return None
        members.append((match.group(1) is not None, match.group(2)))
        pos = match.end()
    return members


def _etag_in(value: str, etag: str, *, weak: bool) -> bool | None:
    """Whether ``etag`` matches a member of the list ``value``; ``None`` if unparseable."""
    if value.strip() == "*":
        return True
    members = parse_etag_list(value)
    if members is None:
        return None
    if weak:
        # Weak comparison: opaque tags equal, either or both may be weak.
        return any(tag == etag for _, tag in members)
    # Strong comparison: both strong (ours always is) and equal.
    return any(not is_weak and tag == etag for is_weak, tag in members)


# -- dates -------------------------------------------------------------------------

# The three grammars of RFC 9110 §5.6.7, whitespace-tolerant. email.utils alone
# would also take "+0200" offsets, two dates glued by a comma and other shapes
# no HTTP client sends; this gate keeps "ignore what is not an HTTP-date" true.
_HTTP_DATE_RE = re.compile(
    r"\s*(?:"
    r"[A-Za-z]{3},\s+\d{2}\s+[A-Za-z]{3}\s+\d{4}\s+\d{2}:\d{2}:\d{2}\s+GMT"  # IMF-fixdate
    r"|[A-Za-z]{6,9},\s+\d{2}-[A-Za-z]{3}-(\d{2})\s+\d{2}:\d{2}:\d{2}\s+GMT"  # RFC 850
    r"|[A-Za-z]{3}\s+[A-Za-z]{3}\s+\d{1,2}\s+\d{2}:\d{2}:\d{2}\s+\d{4}"  # asctime
    r")\s*",
    re.ASCII,
)


def format_http_date(value: datetime) -> str:
    """``value`` as an IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``)."""
    if value.tzinfo is None:
        raise ValueError("HTTP dates need a timezone-aware datetime")
    return email.utils.format_datetime(value.astimezone(_UTC), usegmt=True)


def parse_http_date(value: str, *, now: datetime | None = None) -> datetime | None:
    """Parse an HTTP-date in any of the three formats of RFC 9110 §5.6.7.

    Returns an aware UTC datetime, or ``None`` when ``value`` is not a date (the
    caller then ignores the field). ``email.utils`` reads IMF-fixdate, RFC 850
    and asctime; the two-digit year of RFC 850 is then read as the RFC requires
    (a year more than 50 years ahead of ``now`` is in the past century), not by
    email's fixed 1969 pivot.
    """
    if len(value) > 64:
        return None
    shape = _HTTP_DATE_RE.fullmatch(value)
    if shape is None:
        return None
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    year, month, day, hour, minute, second = parsed[:6]
    short_year = shape.group(1)
    if short_year is not None:
        current = (now or datetime.now(_UTC)).year
        year = current - current % 100 + int(short_year)
        if year > current + 50:
            year -= 100
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=_UTC)
    except ValueError:
        return None


def _whole_seconds(value: datetime) -> datetime:
    return value.replace(microsecond=0) if value.microsecond else value


# -- preconditions -------------------------------------------------------------------


def evaluate_preconditions(
    *,
    etag: str,
    last_modified: datetime,
    if_match: str | None = None,
    if_none_match: str | None = None,
    if_modified_since: str | None = None,
    if_unmodified_since: str | None = None,
    safe_method: bool = True,
) -> int | None:
    """Decide a conditional request per RFC 9110 §13.2.2.

    Returns :data:`NOT_MODIFIED` (304), :data:`PRECONDITION_FAILED` (412) or
    ``None`` to serve the file. The order matters and differs from filedepot's
    (which compares ``If-None-Match`` as one string and ORs it with
    ``If-Modified-Since``):

    1. ``If-Match`` (strong comparison; ``*`` matches any existing file) → 412;
    2. else ``If-Unmodified-Since`` → 412 when the file is newer;
    3. ``If-None-Match`` (weak comparison, lists, ``*``) → 304 for GET/HEAD, else 412;
    4. only without ``If-None-Match``, and for GET/HEAD: ``If-Modified-Since`` → 304.

    Malformed dates and entity-tag lists are ignored. ``last_modified`` is
    compared at whole seconds, the resolution of HTTP dates.
    """
    if if_match is not None:
        if _etag_in(if_match, etag, weak=False) is False:
            return PRECONDITION_FAILED
    elif if_unmodified_since is not None:
        date = parse_http_date(if_unmodified_since)
        if date is not None and _whole_seconds(last_modified) > date:
            return PRECONDITION_FAILED
    if if_none_match is not None:
        if _etag_in(if_none_match, etag, weak=True):
            return NOT_MODIFIED if safe_method else PRECONDITION_FAILED
        return None
    if safe_method and if_modified_since is not None:
        date = parse_http_date(if_modified_since)
        if date is not None and _whole_seconds(last_modified) <= date:
            return NOT_MODIFIED
    return None


# -- ranges ----------------------------------------------------------------------------

_RANGE_SPEC_RE = re.compile(r"\s*(\d*)\s*-\s*(\d*)\s*", re.ASCII)


def parse_range(value: str, length: int) -> tuple[tuple[int, int], ...] | None:
    """Parse a ``Range`` field against a representation of ``length`` bytes.

    Returns half-open ``(start, end)`` pairs (``end`` exclusive, as
    :meth:`~depotx.StoredFile.iter_bytes` takes them), sorted and coalesced
    where they overlap or touch. Two results are special:

    - ``None``: ignore the field and send the whole file with 200 (another unit,
      a syntax error, more than :data:`MAX_RANGES` ranges, a suffix range of an
      empty file), as RFC 9110 §14.2 allows;
    - ``()``: no range is satisfiable, answer 416 with ``Content-Range: bytes */<length>``.

    ``bytes=a-b`` (``b`` clamped to the end), ``bytes=a-`` and ``bytes=-n``
    (the last ``n`` bytes) are understood; unsatisfiable members of a list are
    dropped (RFC 9110 §14.1.1).
    """
    unit, eq, spec = value.partition("=")
    if not eq or unit.strip().lower() != "bytes":
        return None
    parts = spec.split(",")
    if len(parts) > MAX_RANGES:
        return None
    ranges: list[tuple[int, int]] = []
    saw_spec = False
    for part in parts:
        if not part.strip():
            continue  # empty list elements are allowed
        match = _RANGE_SPEC_RE.fullmatch(part)
        if match is None:
            return None
        first, last = match.group(1), match.group(2)
        saw_spec = True
        if first:
            start = int(first)
            if last:
                stop = int(last)
                if stop < start:
                    return None  # invalid int-range: the whole field is invalid
                stop = min(stop + 1, length)
            else:
                stop = length
            if start < length:
                ranges.append((start, stop))
        elif last:
            suffix = int(last)
            if length == 0:
                return None  # nothing to take a suffix of: send the (empty) file
            if suffix > 0:
                ranges.append((max(length - suffix, 0), length))
        else:
            return None  # "-" alone
    if not saw_spec:
        return None
    if len(ranges) <= 1:
        return tuple(ranges)
    ranges.sort()
    merged = [ranges[0]]
    for start, stop in ranges[1:]:
        last_start, last_stop = merged[-1]
        if start <= last_stop:
            merged[-1] = (last_start, max(last_stop, stop))
        else:
            merged.append((start, stop))
    return tuple(merged)


def if_range_matches(
    value: str, *, etag: str, last_modified: datetime, now: datetime | None = None
) -> bool:
    """Whether the ``If-Range`` validator still matches, so the range may be sent.

    An entity tag must match strongly (a weak one never does); a date must
    equal ``Last-Modified`` exactly, and only counts while that date is a
    strong validator, i.e. at least a second in the past (RFC 9110 §13.1.5,
    §8.8.2.2): a file replaced twice within one second keeps its date. A value
    that is neither (or does not match) means: send the whole file.
    """
    value = value.strip()
    if value.startswith(("W/", '"')):
        return value == etag
    date = parse_http_date(value)
    if date is None:
        return False
    modified = _whole_seconds(last_modified)
    current = now or datetime.now(_UTC)
    return date == modified and modified <= current - timedelta(seconds=1)


def multipart_part_header(
    boundary: str, content_type: str, start: int, end: int, length: int
) -> bytes:
    """The delimiter and headers in front of one part of a ``multipart/byteranges`` body.

    ``end`` is exclusive. Each part is followed by ``\\r\\n``; the body ends
    with ``--<boundary>--``.
    """
    return (
        f"--{boundary}\r\nContent-Type: {content_type}\r\n"
        f"Content-Range: bytes {start}-{end - 1}/{length}\r\n\r\n"
    ).encode("latin-1")


def multipart_length(
    ranges: Sequence[tuple[int, int]], boundary: str, content_type: str, length: int
) -> int:
    """The exact ``Content-Length`` of a ``multipart/byteranges`` body."""
    total = len(boundary) + 4  # closing "--boundary--"
    for start, end in ranges:
        header = multipart_part_header(boundary, content_type, start, end, length)
        total += len(header) + (end - start) + 2
    return total


# -- content type and disposition ------------------------------------------------------

# Types a browser would render or run on our origin if served inline.
_ACTIVE_TYPES: Final = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "image/svg+xml",
        "text/xml",
        "application/xml",
        "text/xsl",
        "application/xslt+xml",
        "text/javascript",
        "application/javascript",
        "application/x-javascript",
        "text/x-javascript",
        "text/ecmascript",
        "application/ecmascript",
        "application/x-ecmascript",
        "text/jscript",
        "text/livescript",
        "text/javascript1.0",
        "application/x-shockwave-flash",
        "text/cache-manifest",
        "multipart/x-mixed-replace",
    }
)


def _essence(content_type: str) -> str:
    return content_type.partition(";")[0].strip().lower()


def is_active_content(content_type: str) -> bool:
    """Whether a browser could run scripts from a file of this type, if shown inline.

    HTML, XHTML, SVG, any XML (``*/xml``, ``*+xml``), XSL and JavaScript in all
    its spellings. A missing or malformed type counts as active: we cannot say
    what a browser would make of it.
    """
    essence = _essence(content_type)
    major, slash, minor = essence.partition("/")
    if not slash or not major or not minor:
        return True
    return (
        essence in _ACTIVE_TYPES
        or minor == "xml"
        or minor.endswith("+xml")
        or "javascript" in minor
        or "ecmascript" in minor
    )


# A header value we can send unchanged: visible ASCII, space and tab only.
_HEADER_SAFE_RE = re.compile(r"[\x20-\x7e\t]*")


def header_content_type(content_type: str) -> str:
    """The stored content type, as recorded, if it can be sent as a header.

    ``text/plain; charset=utf-8`` stays exactly that. A value with control
    characters or non-ASCII (a tampered or foreign metadata file) becomes
    ``application/octet-stream`` rather than a header injection.
    """
    if content_type and "/" in content_type and _HEADER_SAFE_RE.fullmatch(content_type):
        return content_type
    return "application/octet-stream"


# RFC 5987 attr-char: what may appear unescaped in filename*.
_ATTR_SAFE = "!#$&+-.^_`|~"
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_FALLBACK_UNSAFE_RE = re.compile(r'[^\x20-\x7e]|["\\/]')


def content_disposition(filename: str, *, attachment: bool) -> str:
    """A ``Content-Disposition`` value for ``filename``, per RFC 6266.

    ``filename=`` carries an ASCII fallback for old clients: accents are
    stripped (``é`` → ``e``), and anything else outside printable ASCII, quotes,
    backslashes and slashes become ``_``, so the quoted string cannot be broken
    out of. When the fallback differs from the real name, ``filename*=UTF-8''``
    carries it percent-encoded. Control characters never reach either.
    """
    disposition = "attachment" if attachment else "inline"
    name = _CONTROL_RE.sub("_", filename.replace("/", "_").replace("\\", "_")).strip()
    if not name:
        name = "download"
    ascii_name = "".join(
        ch if ch.isascii() else (_strip_accents(ch) or "_")
        for ch in unicodedata.normalize("NFC", name)
    )
    fallback = _FALLBACK_UNSAFE_RE.sub("_", ascii_name).strip() or "download"
    value = f'{disposition}; filename="{fallback}"'
    if fallback != name:
        value += f"; filename*=UTF-8''{quote(name, safe=_ATTR_SAFE)}"
    return value


def _strip_accents(char: str) -> str:
    """The ASCII part of a character's compatibility decomposition (``é`` → ``e``)."""
    decomposed = unicodedata.normalize("NFKD", char)
    return "".join(c for c in decomposed if c.isascii())
