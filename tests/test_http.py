"""The pure HTTP rules of depotx._http: validators, dates, preconditions, ranges, disposition."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from depotx._http import (
    MAX_RANGES,
    NOT_MODIFIED,
    PRECONDITION_FAILED,
    content_disposition,
    disposition_for,
    evaluate_preconditions,
    file_headers,
    format_http_date,
    header_content_type,
    if_range_matches,
    is_active_content,
    make_etag,
    multipart_length,
    multipart_part_header,
    parse_etag_list,
    parse_http_date,
    parse_range,
    plan_response,
)

UTC = timezone.utc
MODIFIED = datetime(1994, 11, 6, 8, 49, 37, tzinfo=UTC)
IMF = "Sun, 06 Nov 1994 08:49:37 GMT"
ETAG = '"abc123"'


# -- ETag ------------------------------------------------------------------------------


def test_etag_is_strong_and_quoted_checksum() -> None:
    assert make_etag("abc123") == '"abc123"'


def test_etag_strips_quotes_of_an_already_quoted_checksum() -> None:
    assert (
        make_etag('"d41d8cd98f00b204e9800998ecf8427e-2"') == '"d41d8cd98f00b204e9800998ecf8427e-2"'
    )


@pytest.mark.parametrize("checksum", ["", 'a"b', "with space", "é", "a\r\nSet-Cookie: x"])
def test_etag_of_an_unsafe_checksum_is_hashed_into_a_valid_tag(checksum: str) -> None:
    etag = make_etag(checksum)
    assert etag.startswith('"')
    assert etag.endswith('"')
    inner = etag[1:-1]
    assert len(inner) == 64
    assert all(c in "0123456789abcdef" for c in inner)
    assert make_etag(checksum) == etag  # stable


# -- dates -------------------------------------------------------------------------------


def test_format_http_date_is_imf_fixdate_in_gmt() -> None:
    assert format_http_date(MODIFIED) == IMF
    plus2 = MODIFIED.astimezone(timezone(timedelta(hours=2)))
    assert format_http_date(plus2) == IMF


def test_format_http_date_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        format_http_date(datetime(1994, 11, 6))


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT",  # RFC 850
        "Sun Nov  6 08:49:37 1994",  # asctime
    ],
)
def test_parse_http_date_reads_all_three_formats(value: str) -> None:
    parsed = parse_http_date(value, now=datetime(2025, 1, 1, tzinfo=UTC))
    assert parsed == MODIFIED
    assert parsed is not None
    assert parsed.tzinfo is not None


def test_rfc850_two_digit_year_more_than_50_years_ahead_is_in_the_past() -> None:
    now = datetime(2025, 6, 1, tzinfo=UTC)
    # 2074 is 49 years ahead: allowed. 2076 would be 51: it means 1976.
    assert parse_http_date("Monday, 01-Jan-74 00:00:00 GMT", now=now) == datetime(
        2074, 1, 1, tzinfo=UTC
    )
    assert parse_http_date("Thursday, 01-Jan-76 00:00:00 GMT", now=now) == datetime(
        1976, 1, 1, tzinfo=UTC
    )
    assert parse_http_date("Friday, 01-Jan-99 00:00:00 GMT", now=now) == datetime(
        1999, 1, 1, tzinfo=UTC
    )


def test_parse_http_date_refuses_what_no_http_grammar_allows() -> None:
    # email.utils would take these; RFC 9110 dates are GMT and one per field.
    assert parse_http_date("Sun, 06 Nov 1994 10:49:37 +0200") is None
    assert parse_http_date(f"{IMF}, {IMF}") is None


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        "Sun, 31 Feb 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 25:49:37 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "yesterday",
        "x" * 200,
        "1994-11-06",
    ],
)
def test_unparseable_dates_are_none(value: str) -> None:
    assert parse_http_date(value) is None


# -- entity-tag lists --------------------------------------------------------------------


def test_etag_list_parsing_keeps_weakness_and_commas_inside_tags() -> None:
    assert parse_etag_list('"a", W/"b",  "c,d" ,') == [
        (False, '"a"'),
        (True, '"b"'),
        (False, '"c,d"'),
    ]


def test_malformed_etag_list_is_none() -> None:
    assert parse_etag_list("abc") is None
    assert parse_etag_list('"a" "b"') is None


# -- preconditions ---------------------------------------------------------------------


def pre(**headers: str) -> int | None:
    return evaluate_preconditions(etag=ETAG, last_modified=MODIFIED, **headers)  # type: ignore[arg-type]


def test_no_conditional_headers_serves() -> None:
    assert pre() is None


@pytest.mark.parametrize(
    "value", [ETAG, f"W/{ETAG}", f'"other", {ETAG}', f'"x", W/{ETAG}, "y"', "*", " * "]
)
def test_if_none_match_uses_weak_comparison_lists_and_star(value: str) -> None:
    assert pre(if_none_match=value) == NOT_MODIFIED


def test_if_none_match_mismatch_serves_even_with_a_matching_if_modified_since() -> None:
    # If-Modified-Since is ignored when If-None-Match is present (filedepot ORs them).
    assert pre(if_none_match='"other"', if_modified_since=IMF) is None


def test_if_none_match_on_unsafe_method_is_412() -> None:
    assert pre(if_none_match=ETAG, safe_method=False) == PRECONDITION_FAILED


def test_if_none_match_malformed_is_ignored() -> None:
    assert pre(if_none_match="abc123") is None


def test_if_modified_since_not_modified_when_equal_or_later() -> None:
    assert pre(if_modified_since=IMF) == NOT_MODIFIED
    assert pre(if_modified_since="Mon, 07 Nov 1994 00:00:00 GMT") == NOT_MODIFIED
    assert pre(if_modified_since="Sunday, 06-Nov-94 08:49:37 GMT") == NOT_MODIFIED
    assert pre(if_modified_since="Sun Nov  6 08:49:37 1994") == NOT_MODIFIED


def test_if_modified_since_earlier_serves() -> None:
    assert pre(if_modified_since="Sun, 06 Nov 1994 08:49:36 GMT") is None


def test_if_modified_since_compares_whole_seconds() -> None:
    precise = MODIFIED.replace(microsecond=500_000)
    assert (
        evaluate_preconditions(etag=ETAG, last_modified=precise, if_modified_since=IMF)
        == NOT_MODIFIED
    )


def test_malformed_if_modified_since_is_ignored_not_an_error() -> None:
    assert pre(if_modified_since="not a date") is None
    # Two dates joined (a repeated header) are not one valid date: ignored.
    assert pre(if_modified_since=f"{IMF}, {IMF}") is None


def test_if_modified_since_ignored_for_unsafe_methods() -> None:
    assert pre(if_modified_since=IMF, safe_method=False) is None


@pytest.mark.parametrize("value", [ETAG, f'"x", {ETAG}', "*"])
def test_if_match_passes_on_strong_match(value: str) -> None:
    assert pre(if_match=value) is None


@pytest.mark.parametrize("value", ['"other"', f"W/{ETAG}"])
def test_if_match_fails_on_mismatch_or_weak_tag(value: str) -> None:
    assert pre(if_match=value) == PRECONDITION_FAILED


def test_if_match_takes_precedence_over_if_unmodified_since() -> None:
    # If-Match present: If-Unmodified-Since is not evaluated at all.
    assert pre(if_match=ETAG, if_unmodified_since="Sat, 01 Jan 1994 00:00:00 GMT") is None


def test_if_unmodified_since() -> None:
    assert pre(if_unmodified_since="Sat, 01 Jan 1994 00:00:00 GMT") == PRECONDITION_FAILED
    assert pre(if_unmodified_since=IMF) is None
    assert pre(if_unmodified_since="bogus") is None


def test_if_match_failure_wins_over_if_none_match() -> None:
    assert pre(if_match='"other"', if_none_match=ETAG) == PRECONDITION_FAILED


def test_if_match_success_then_if_none_match_304() -> None:
    assert pre(if_match=ETAG, if_none_match=ETAG) == NOT_MODIFIED


# -- ranges -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes=0-0", ((0, 1),)),
        ("bytes=0-99", ((0, 100),)),
        ("bytes=10-19", ((10, 20),)),
        ("bytes=10-", ((10, 100),)),
        ("bytes=-10", ((90, 100),)),
        ("bytes=-1000", ((0, 100),)),
        ("bytes=90-1000", ((90, 100),)),
        ("BYTES = 5-9", ((5, 10),)),
        ("bytes= 5 - 9 ", ((5, 10),)),
    ],
)
def test_single_ranges(value: str, expected: tuple[tuple[int, int], ...]) -> None:
    assert parse_range(value, 100) == expected


def test_multiple_ranges_keep_the_requested_order() -> None:
    """RFC 9110 §14.6: parts come in the order asked for, unless they were merged."""
    assert parse_range("bytes=500-599,0-9", 1000) == ((500, 600), (0, 10))
    assert parse_range("bytes=900-,0-9, ,300-399", 1000) == ((900, 1000), (0, 10), (300, 400))


def test_overlapping_or_close_ranges_are_sorted_and_coalesced() -> None:
    assert parse_range("bytes=0-9,5-14,15-19", 1000) == ((0, 20),)  # overlapping and adjacent
    # A gap smaller than another part's headers costs less sent than split.
    assert parse_range("bytes=50-59,0-9", 100) == ((0, 60),)
    assert parse_range("bytes=600-699,0-9,20-29", 1000) == ((0, 30), (600, 700))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes=" + "9" * 5000 + "-", ()),  # a start past any file: unsatisfiable
        ("bytes=0-" + "9" * 5000, ((0, 100),)),  # an end past the file: clamped
        ("bytes=-" + "9" * 5000, ((0, 100),)),  # a suffix longer than the file: all of it
        ("bytes=10-19," + "9" * 5000 + "-", ((10, 20),)),
    ],
)
def test_numbers_of_any_length_never_fail(
    value: str, expected: tuple[tuple[int, int], ...]
) -> None:
    assert parse_range(value, 100) == expected


def test_more_ranges_than_allowed_means_the_whole_file() -> None:
    value = "bytes=" + ",".join(f"{n * 100}-{n * 100 + 9}" for n in range(9))
    assert parse_range(value, 10_000, max_ranges=8) is None
    assert len(parse_range(value, 10_000, max_ranges=9) or ()) == 9


def test_unsatisfiable_members_are_dropped_from_a_list() -> None:
    assert parse_range("bytes=0-9,200-300", 100) == ((0, 10),)


@pytest.mark.parametrize("value", ["bytes=100-", "bytes=100-200", "bytes=-0", "bytes=150-,-0"])
def test_unsatisfiable_is_empty(value: str) -> None:
    assert parse_range(value, 100) == ()


def test_empty_file_ranges() -> None:
    assert parse_range("bytes=0-", 0) == ()
    assert parse_range("bytes=-5", 0) is None  # nothing to suffix: send the empty file


@pytest.mark.parametrize(
    "value",
    [
        "items=0-9",
        "bytes",
        "bytes=",
        "bytes=-",
        "bytes=a-b",
        "bytes=9-0",
        "bytes=1-2-3",
        "bytes=+1-2",
        "bytes=0-9,x",
        "bytes=\u0661-\u0662",  # non-ASCII digits
        "bytes=" + ",".join(["0-0"] * (MAX_RANGES + 1)),
    ],
)
def test_invalid_or_abusive_range_is_ignored(value: str) -> None:
    assert parse_range(value, 100) is None


def test_if_range_with_matching_strong_etag() -> None:
    assert if_range_matches(ETAG, etag=ETAG, last_modified=MODIFIED)
    assert not if_range_matches('"other"', etag=ETAG, last_modified=MODIFIED)
    assert not if_range_matches(f"W/{ETAG}", etag=ETAG, last_modified=MODIFIED)


def test_if_range_with_date_must_match_exactly_and_be_strong() -> None:
    assert if_range_matches(IMF, etag=ETAG, last_modified=MODIFIED)
    assert if_range_matches("Sunday, 06-Nov-94 08:49:37 GMT", etag=ETAG, last_modified=MODIFIED)
    assert not if_range_matches("Mon, 07 Nov 1994 00:00:00 GMT", etag=ETAG, last_modified=MODIFIED)
    assert not if_range_matches("garbage", etag=ETAG, last_modified=MODIFIED)
    # Modified within the last second: the date is a weak validator, never matches.
    just_now = datetime.now(UTC).replace(microsecond=0)
    assert not if_range_matches(format_http_date(just_now), etag=ETAG, last_modified=just_now)


def test_multipart_length_matches_the_bytes_sent() -> None:
    ranges = ((0, 10), (50, 60))
    body = b"".join(
        multipart_part_header("B0UND", "text/plain", s, e, 100) + b"x" * (e - s) + b"\r\n"
        for s, e in ranges
    )
    body += b"--B0UND--"
    assert multipart_length(ranges, "B0UND", "text/plain", 100) == len(body)
    assert b"Content-Range: bytes 50-59/100\r\n" in body


# -- content type and disposition ------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "text/html",
        "text/html; charset=utf-8",
        "TEXT/HTML",
        "application/xhtml+xml",
        "image/svg+xml",
        "text/xml",
        "application/xml",
        "application/rss+xml",
        "text/xsl",
        "text/javascript",
        "application/javascript",
        "application/x-javascript",
        "text/ecmascript",
        "application/ecmascript",
        "text/jscript",
        "",
        "nonsense",
    ],
)
def test_active_content(content_type: str) -> None:
    assert is_active_content(content_type)


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain; charset=utf-8",
        "image/png",
        "application/pdf",
        "text/css",
        "application/json",
        "application/octet-stream",
        "video/mp4",
    ],
)
def test_passive_content(content_type: str) -> None:
    assert not is_active_content(content_type)


def test_header_content_type_keeps_what_was_recorded() -> None:
    assert header_content_type("text/plain; charset=utf-8") == "text/plain; charset=utf-8"
    assert header_content_type("text/plain\r\nSet-Cookie: a=b") == "application/octet-stream"
    assert header_content_type("tëxt/plain") == "application/octet-stream"
    assert header_content_type("") == "application/octet-stream"


def test_disposition_of_a_plain_ascii_name() -> None:
    assert content_disposition("report.pdf", attachment=False) == 'inline; filename="report.pdf"'
    assert content_disposition("a b.txt", attachment=True) == 'attachment; filename="a b.txt"'


def test_disposition_of_a_non_ascii_name_has_fallback_and_filename_star() -> None:
    value = content_disposition("résumé 日本.pdf", attachment=True)
    assert value == (
        'attachment; filename="resume __.pdf"; '
        "filename*=UTF-8''r%C3%A9sum%C3%A9%20%E6%97%A5%E6%9C%AC.pdf"
    )
    assert value.isascii()


@pytest.mark.parametrize(
    ("filename", "fallback"),
    [
        ('evil".html', "evil_.html"),
        ("back\\slash.txt", "back_slash.txt"),
        ("a/b.txt", "a_b.txt"),
        ("line\r\nSet-Cookie: x.txt", "line__Set-Cookie: x.txt"),
        ("tab\there\x00.txt", "tab_here_.txt"),
        ("", "download"),
    ],
)
def test_disposition_neutralises_quotes_backslashes_and_control_chars(
    filename: str, fallback: str
) -> None:
    value = content_disposition(filename, attachment=True)
    assert value.startswith(f'attachment; filename="{fallback}"')
    assert "\r" not in value
    assert "\n" not in value
    assert "\x00" not in value
    # The quoted string is never broken out of: exactly two unescaped quotes.
    assert value.count('"') == 2


@pytest.mark.parametrize("bidi", ["\u202e", "\u202d", "\u2066", "\u200f", "\u061c"])
def test_bidi_controls_cannot_disguise_an_extension(bidi: str) -> None:
    value = content_disposition(f"invoice{bidi}gnp.exe", attachment=True)
    assert bidi not in value
    assert "%E2%80%AE" not in value
    assert "%E2%81%A6" not in value
    assert "invoicegnp.exe" in value


def test_one_disposition_rule_for_every_path() -> None:
    assert disposition_for("a.html", "text/html").startswith("attachment;")
    assert disposition_for("a.svg", "image/svg+xml; charset=utf-8").startswith("attachment;")
    assert disposition_for("a.png", "image/png").startswith("inline;")
    assert disposition_for("a.html", "text/html", inline_active=True).startswith("inline;")
    assert disposition_for("a.png", "image/png", download=True).startswith("attachment;")


def test_plan_keeps_errors_uncacheable_and_304_cacheable() -> None:
    file = file_headers("abc123", MODIFIED, "a.txt", "text/plain")
    cache = (b"cache-control", b"private, max-age=60")
    not_modified = plan_response(
        file, 10, {b"if-none-match": file.etag_header}, head=False, cache_control=cache
    )
    assert not_modified.status == 304
    assert cache in not_modified.headers
    assert not not_modified.send_body
    failed = plan_response(file, 10, {b"if-match": b'"x"'}, head=False, cache_control=cache)
    assert failed.status == 412
    assert (b"cache-control", b"no-store") in failed.headers
    assert cache not in failed.headers
    head = plan_response(file, 10, {}, head=True, cache_control=cache)
    assert (head.status, head.send_body) == (200, False)
    assert (b"content-length", b"10") in head.headers
