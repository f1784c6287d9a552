"""File ids and keys: hostile ones are refused before any I/O, generated ids always pass."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from depotx import InvalidFileIdError
from depotx._ids import (
    MAX_FILE_ID_BYTES,
    MAX_SEGMENT_BYTES,
    is_valid_file_id,
    new_file_id,
    split_path,
    validate_file_id,
)
from depotx.testing import INVALID_FILE_IDS


@pytest.mark.parametrize(
    "bad", [*INVALID_FILE_IDS, "a\u202eb", "a\u2066b", "a\x85b", "a\x7fb", "a\ud800b"]
)
def test_invalid_ids(bad: str) -> None:
    with pytest.raises(InvalidFileIdError):
        validate_file_id(bad)


@pytest.mark.parametrize("bad", [None, 42, b"abc"])
def test_non_string_ids(bad: object) -> None:
    with pytest.raises(InvalidFileIdError, match="string"):
        validate_file_id(bad)


@pytest.mark.parametrize(
    "key",
    [
        "uploads/2026/report.pdf",
        "a b/c d.txt",
        "été/über ✓.txt",
        ".hidden",
        "-leading-dash",
        "a/.lock",
        "a/file",
        "a/metadata.json",
        "100% sure?#+&=.txt",
        "/".join(["x" * MAX_SEGMENT_BYTES] * 4),  # 1,023 bytes
    ],
)
def test_keys_chosen_by_the_application(key: str) -> None:
    assert validate_file_id(key) == key


def test_lengths_are_counted_in_utf8_bytes() -> None:
    assert is_valid_file_id("é" * 127)  # 254 bytes in one segment
    assert not is_valid_file_id("é" * 128)  # 256 bytes
    long_key = "/".join(["x" * 200] * 5) + "/" + "y" * 19  # 1,024 bytes
    assert len(long_key.encode()) == MAX_FILE_ID_BYTES
    assert is_valid_file_id(long_key)
    assert not is_valid_file_id(long_key + "z")


def test_generated_ids_are_valid_uuid_strings() -> None:
    file_id = new_file_id()
    assert validate_file_id(file_id) == file_id
    assert len(file_id) == 36


@given(st.text(min_size=1))
def test_no_accepted_id_can_escape_a_folder(file_id: str) -> None:
    try:
        validate_file_id(file_id)
    except InvalidFileIdError:
        return
    segments = file_id.split("/")
    assert all(segments), "no empty segment: no leading, trailing or doubled /"
    assert not {".", ".."} & set(segments)
    assert "\\" not in file_id
    assert all(ord(ch) >= 0x20 and not 0x7F <= ord(ch) <= 0x9F for ch in file_id)
    assert len(file_id.encode("utf-8")) <= MAX_FILE_ID_BYTES


def test_split_path_splits_at_the_first_slash() -> None:
    assert split_path("media/abc-1") == ("media", "abc-1")
    assert split_path("docs/uploads/2026/report.pdf") == ("docs", "uploads/2026/report.pdf")
    for bad in ["media", "/abc", "media/..", "media/", "media/a//b", "media/a/../b"]:
        with pytest.raises(InvalidFileIdError):
            split_path(bad)


def test_ids_found_valid_are_remembered_within_bounds() -> None:
    """Serving checks an id three times a request: the second and third are a lookup.

    Only valid ids are remembered, never long ones, and never more than the limit.
    """
    from depotx import _ids

    _ids._KNOWN_VALID.clear()
    assert is_valid_file_id("reports/2026.pdf")
    assert "reports/2026.pdf" in _ids._KNOWN_VALID
    assert not is_valid_file_id("reports/../2026.pdf")
    assert not is_valid_file_id("a\\b")
    assert set(_ids._KNOWN_VALID) == {"reports/2026.pdf"}
    assert is_valid_file_id("x" * 200)
    assert "x" * 200 not in _ids._KNOWN_VALID  # long ids are checked each time
    for n in range(_ids._KNOWN_LIMIT + 5):
        assert is_valid_file_id(f"k{n}")
    assert len(_ids._KNOWN_VALID) <= _ids._KNOWN_LIMIT
    with pytest.raises(InvalidFileIdError):
        validate_file_id("k1/")  # a remembered prefix proves nothing about another id
