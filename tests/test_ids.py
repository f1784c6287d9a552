"""File id validation: hostile ids are refused before any I/O, generated ids always pass."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from depotx import InvalidFileIdError
from depotx._ids import MAX_FILE_ID_LENGTH, new_file_id, split_path, validate_file_id
from depotx.testing import INVALID_FILE_IDS

SAFE = string.ascii_letters + string.digits + "._-"


@pytest.mark.parametrize("bad", [*INVALID_FILE_IDS, "-leading-dash", ".hidden", "a b", "é"])
def test_invalid_ids(bad: str) -> None:
    with pytest.raises(InvalidFileIdError):
        validate_file_id(bad)


@pytest.mark.parametrize("bad", [None, 42, b"abc"])
def test_non_string_ids(bad: object) -> None:
    with pytest.raises(InvalidFileIdError, match="string"):
        validate_file_id(bad)


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
    assert "/" not in file_id
    assert "\\" not in file_id
    assert file_id not in {".", ".."}
    assert not file_id.startswith(".")
    assert all(ch in SAFE for ch in file_id)
    assert len(file_id) <= MAX_FILE_ID_LENGTH


@given(st.text(alphabet=SAFE, min_size=1, max_size=MAX_FILE_ID_LENGTH))
def test_safe_ids_are_accepted_when_they_start_alphanumeric(file_id: str) -> None:
    if file_id[0].isalnum():
        assert validate_file_id(file_id) == file_id
    else:
        with pytest.raises(InvalidFileIdError):
            validate_file_id(file_id)


def test_split_path() -> None:
    assert split_path("media/abc-1") == ("media", "abc-1")
    for bad in ["media", "media/a/b", "/abc", "media/..", "media/"]:
        with pytest.raises(InvalidFileIdError):
            split_path(bad)
