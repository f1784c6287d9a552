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
import itertools
import re
import secrets
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Final, NamedTuple
from urllib.parse import quote

__all__ = [
    "ACCEPT_RANGES",
    "MAX_RANGES",
    "NOSNIFF",
    "NOT_MODIFIED",
    "NO_STORE",
    "PRECONDITION_FAILED",
    "RANGE_GAP",
    "REASONS",
    "FileHeaders",
    "Headers",
    "Plan",
    "content_disposition",
    "disposition_for",
    "error_plan",
    "evaluate_preconditions",
    "file_headers",
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
    "plan_response",
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

    Malformed dates and ``If-None-Match`` lists are ignored; a malformed
    ``If-Match`` matches nothing (412). ``last_modified`` is compared at whole
    seconds, the resolution of HTTP dates.
    """
    if if_match is not None:
        # A malformed If-Match matches nothing (as nginx does): failing open would
        # let a garbled conditional write through, and skip If-Unmodified-Since.
        if _etag_in(if_match, etag, weak=False) is not True:
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
# Larger than any file: a position with more digits is "past the end". Python's
# int() refuses strings of over 4,300 digits, which made a long Range a 500.
_POSITION_DIGITS = 18
_FAR = 10**_POSITION_DIGITS
#: Ranges closer than this are sent as one part: the gap costs less than the
#: headers of another part (RFC 9110 §14.6 allows this coalescing).
RANGE_GAP = 80


def _position(digits: str) -> int:
    return int(digits) if len(digits) <= _POSITION_DIGITS else _FAR


def parse_range(
    value: str, length: int, *, max_ranges: int = MAX_RANGES
) -> tuple[tuple[int, int], ...] | None:
    """Parse a ``Range`` field against a representation of ``length`` bytes.

    Returns half-open ``(start, end)`` pairs (``end`` exclusive, as
    :meth:`~depotx.StoredFile.iter_bytes` takes them), in the order asked for
    (RFC 9110 §14.6); only when some overlap or lie within :data:`RANGE_GAP`
    bytes of each other are they sorted and coalesced. Two results are special:

    - ``None``: ignore the field and send the whole file with 200 (another unit,
      a syntax error, more than ``max_ranges`` ranges, a suffix range of an
      empty file), as RFC 9110 §14.2 allows;
    - ``()``: no range is satisfiable, answer 416 with ``Content-Range: bytes */<length>``.

    ``bytes=a-b`` (``b`` clamped to the end), ``bytes=a-`` and ``bytes=-n``
    (the last ``n`` bytes) are understood; unsatisfiable members of a list are
    dropped (RFC 9110 §14.1.1). Numbers of any length are fine: one past the
    end is unsatisfiable or clamped, never an error.
    """
    unit, eq, spec = value.partition("=")
    if not eq or unit.strip().lower() != "bytes":
        return None
    parts = spec.split(",")
    if len(parts) > max_ranges:
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
            start = _position(first)
            if last:
                stop = _position(last)
                if stop < start:
                    return None  # invalid int-range: the whole field is invalid
                stop = min(stop + 1, length)
            else:
                stop = length
            if start < length:
                ranges.append((start, stop))
        elif last:
            suffix = _position(last)
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
    ordered = sorted(ranges)
    if all(b[0] - a[1] >= RANGE_GAP for a, b in itertools.pairwise(ordered)):
        return tuple(ranges)  # nothing to merge: keep the client's order
    merged = [ordered[0]]
    for start, stop in ordered[1:]:
        last_start, last_stop = merged[-1]
        if start - last_stop < RANGE_GAP:
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
# Bidirectional overrides and marks: "\u202egnp.exe" shows as "exe.png".
_BIDI_RE = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_FALLBACK_UNSAFE_RE = re.compile(r'[^\x20-\x7e]|["\\/]')


def content_disposition(filename: str, *, attachment: bool) -> str:
    """A ``Content-Disposition`` value for ``filename``, per RFC 6266.

    ``filename=`` carries an ASCII fallback for old clients: accents are
    stripped (``é`` → ``e``), and anything else outside printable ASCII, quotes,
    backslashes and slashes become ``_``, so the quoted string cannot be broken
    out of. When the fallback differs from the real name, ``filename*=UTF-8''``
    carries it percent-encoded. Control characters never reach either, and
    bidirectional overrides are dropped, so a name cannot pose as another
    extension (``\u202egnp.exe`` shown as ``exe.png``).
    """
    disposition = "attachment" if attachment else "inline"
    name = _BIDI_RE.sub("", filename)
    name = _CONTROL_RE.sub("_", name.replace("/", "_").replace("\\", "_")).strip()
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


def disposition_for(
    filename: str, content_type: str, *, inline_active: bool = False, download: bool = False
) -> str:
    """The ``Content-Disposition`` of a stored file, wherever it is served from.

    The one place of the active-content rule: HTML, SVG, XML and JavaScript
    uploaded by users are ``attachment`` (a browser saves them instead of running
    them on the origin that serves them) unless the storage allows them inline;
    everything else is ``inline`` unless a download is asked for. The middleware,
    ``StoredFileResponse`` and object stores (the disposition saved with an
    object, and presigned URLs' overrides) all call this.
    """
    attachment = download or (not inline_active and is_active_content(content_type))
    return content_disposition(filename, attachment=attachment)


# -- the answer to one request ---------------------------------------------------------

Headers = list[tuple[bytes, bytes]]

NOSNIFF: Final = (b"x-content-type-options", b"nosniff")
ACCEPT_RANGES: Final = (b"accept-ranges", b"bytes")
NO_STORE: Final = (b"cache-control", b"no-store")
_TEXT: Final = (b"content-type", b"text/plain; charset=utf-8")

#: The short bodies of error answers.
REASONS: Final[dict[int, bytes]] = {
    400: b"Bad Request",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    412: b"Precondition Failed",
    413: b"Content Too Large",
    416: b"Range Not Satisfiable",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    507: b"Insufficient Storage",
}


class FileHeaders(NamedTuple):
    """What the headers of one version of a file derive from, encoded once."""

    etag: str
    etag_header: bytes
    last_modified: datetime
    last_modified_header: bytes
    content_type: str
    content_type_header: bytes
    disposition: bytes


def file_headers(
    checksum: str,
    last_modified: datetime,
    filename: str,
    content_type: str,
    inline_active: bool = False,
    download: bool = False,
) -> FileHeaders:
    """The validators, type and disposition of one file version (pure: cacheable)."""
    etag = make_etag(checksum)
    header_type = header_content_type(content_type)
    disposition = disposition_for(
        filename, header_type, inline_active=inline_active, download=download
    )
    return FileHeaders(
        etag=etag,
        etag_header=etag.encode(),
        last_modified=last_modified,
        last_modified_header=format_http_date(last_modified).encode(),
        content_type=header_type,
        content_type_header=header_type.encode(),
        disposition=disposition.encode(),
    )


class Plan(NamedTuple):
    """What to answer: status, headers, and which bytes of the file make the body.

    ``segments`` are half-open byte ranges of the file sent in order; with a
    ``boundary`` each one is a part of a ``multipart/byteranges`` body. ``body``
    is a fixed body instead (errors). ``send_body`` is false for HEAD and 304.
    """

    status: int
    headers: Headers
    segments: tuple[tuple[int, int], ...] = ()
    boundary: str = ""
    body: bytes = b""
    send_body: bool = True


def error_plan(status: int, *, head: bool = False, extra: Headers | None = None) -> Plan:
    """An error answer: a short text body, never stored by caches (RFC 9111 §5.2.2.5)."""
    body = REASONS[status]
    headers: Headers = [
        _TEXT,
        (b"content-length", str(len(body)).encode()),
        NOSNIFF,
        NO_STORE,
    ]
    if extra:
        headers.extend(extra)
    return Plan(status, headers, body=body, send_body=not head)


def plan_response(
    file: FileHeaders,
    length: int,
    request: Mapping[bytes, bytes],
    *,
    head: bool,
    cache_control: tuple[bytes, bytes],
    max_ranges: int = MAX_RANGES,
    boundary: Callable[[], str] = lambda: secrets.token_hex(13),
) -> Plan:
    """Plan the answer to a GET or HEAD of one file version (RFC 9110 §13, §14, §15).

    ``request`` holds the request's conditional and range fields by lower-case
    name (``if-match``, ``range``, ...; repeated fields joined with commas).
    Pure: the middleware and ``StoredFileResponse`` send what it plans.
    """
    validators: Headers = [
        (b"etag", file.etag_header),
        (b"last-modified", file.last_modified_header),
        cache_control,
    ]
    if request:  # most requests carry no conditional or range field at all
        outcome = evaluate_preconditions(
            etag=file.etag,
            last_modified=file.last_modified,
            if_match=_field(request, b"if-match"),
            if_none_match=_field(request, b"if-none-match"),
            if_modified_since=_field(request, b"if-modified-since"),
            if_unmodified_since=_field(request, b"if-unmodified-since"),
        )
        if outcome == NOT_MODIFIED:
            # RFC 9110 §15.4.5: the validators and caching fields, no content fields.
            return Plan(304, validators, send_body=False)
        if outcome == PRECONDITION_FAILED:
            return error_plan(412, head=head)

    ranges: tuple[tuple[int, int], ...] | None = None
    range_value = _field(request, b"range") if request else None
    if range_value is not None and not head:  # RFC 9110 §14.2: Range applies to GET only
        if_range = _field(request, b"if-range")
        if if_range is None or if_range_matches(
            if_range, etag=file.etag, last_modified=file.last_modified
        ):
            ranges = parse_range(range_value, length, max_ranges=max_ranges)
    if ranges == ():
        return error_plan(416, extra=[(b"content-range", f"bytes */{length}".encode())])

    headers = validators
    headers.append(ACCEPT_RANGES)
    headers.append(NOSNIFF)
    headers.append((b"content-disposition", file.disposition))
    if ranges is None:
        headers.append((b"content-type", file.content_type_header))
        headers.append((b"content-length", str(length).encode()))
        return Plan(200, headers, ((0, length),), send_body=not head)
    if len(ranges) == 1:
        start, end = ranges[0]
        headers.append((b"content-type", file.content_type_header))
        headers.append((b"content-range", f"bytes {start}-{end - 1}/{length}".encode()))
        headers.append((b"content-length", str(end - start).encode()))
        return Plan(206, headers, ranges)
    mark = boundary()
    total = multipart_length(ranges, mark, file.content_type, length)
    headers.append((b"content-type", f"multipart/byteranges; boundary={mark}".encode()))
    headers.append((b"content-length", str(total).encode()))
    return Plan(206, headers, ranges, boundary=mark)


def _field(request: Mapping[bytes, bytes], name: bytes) -> str | None:
    value = request.get(name)
    return None if value is None else value.decode("latin-1")
