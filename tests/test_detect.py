"""Content-type detection: libmagic first, the extension where magic is generic, charsets kept."""

from __future__ import annotations

import importlib
import sys
import warnings

import pytest

from depotx import _detect
from depotx._detect import detect_content_type
from depotx.testing import PNG_1PX

pytestmark = pytest.mark.skipif(
    not _detect.HAS_LIBMAGIC, reason="libmagic is not installed: content sniffing not testable"
)


@pytest.mark.parametrize(
    ("sample", "filename", "expected"),
    [
        (PNG_1PX, None, "image/png"),
        (PNG_1PX, "misnamed.txt", "image/png"),  # content beats a lying extension
        (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "doc", "application/pdf"),
        (b"body { color: red }\n", "site.css", "text/css; charset=utf-8"),
        (b"a,b\n1,2\n", "data.csv", "text/csv; charset=utf-8"),
        (b"plain words\n", None, "text/plain; charset=utf-8"),
        (b"plain words\n", "notes.txt", "text/plain; charset=utf-8"),
        ("naïve café\n".encode(), "x", "text/plain; charset=utf-8"),
        (b"\x00\x01\x02\x03\xff\xfe", None, "application/octet-stream"),
        (b"\x00\x01\x02\x03\xff\xfe", "archive.bin", "application/octet-stream"),
        (b"", "empty.txt", "text/plain; charset=utf-8"),
        (b"", None, "application/octet-stream"),
        (b"<html><body>hi</body></html>", "page", "text/html; charset=utf-8"),
    ],
)
def test_detection(sample: bytes, filename: str | None, expected: str) -> None:
    assert detect_content_type(sample, filename, complete=True) == expected


def test_latin1_text_keeps_its_charset() -> None:
    sample = "Le café crème était déjà là; voilà.\n".encode("latin-1") * 3
    assert detect_content_type(sample, None, complete=True) == "text/plain; charset=iso-8859-1"


def test_utf8_cut_in_the_middle_of_a_character_is_still_utf8() -> None:
    text = ("é" * 3000).encode()
    sample = text[:4095]  # ends half-way through a two-byte character
    assert detect_content_type(sample, None, complete=False) == "text/plain; charset=utf-8"


def test_fallback_without_libmagic_warns_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the C library, detection falls back to mimetypes, with one warning at import."""
    monkeypatch.setitem(sys.modules, "magic", None)  # makes "import magic" raise ImportError
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            module = importlib.reload(_detect)
        assert [w.category for w in caught] == [RuntimeWarning]
        assert "libmagic" in str(caught[0].message)
        assert module.HAS_LIBMAGIC is False
        assert module.detect_content_type(PNG_1PX, "a.png") == "image/png"
        assert module.detect_content_type(b"text", "a.css") == "text/css; charset=utf-8"
        assert module.detect_content_type(b"hello", None) == "text/plain; charset=utf-8"
        assert module.detect_content_type(b"\x00\xff", None) == "application/octet-stream"
    finally:
        monkeypatch.undo()
        importlib.reload(_detect)
    assert _detect.HAS_LIBMAGIC


def _minimal_docx() -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<w:document/>")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("sample", "filename", "expected"),
    [
        # libmagic sees a generic family, the extension names its member
        (b"# Title\n\nimport os\nfrom x import y\n", "README.md", "text/markdown; charset=utf-8"),
        (
            _minimal_docx(),
            "report.docx",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
        (_minimal_docx(), "archive.zip", "application/zip"),
        (_minimal_docx(), "no-extension", "application/zip"),
        (b'{"a": 1}\n', "data.json", "application/json"),
        # never in the dangerous direction: sniffed active content stays active
        (b"<!doctype html><html><body>x</body></html>", "notes.txt", "text/html; charset=utf-8"),
        (
            b'<svg xmlns="http://www.w3.org/2000/svg"><script/></svg>',
            "cat.txt",
            "image/svg+xml",
        ),
        # and a specific sniffed type is never overridden by an extension
        (PNG_1PX, "report.docx", "image/png"),
    ],
)
def test_a_specific_extension_refines_a_generic_or_container_guess(
    sample: bytes, filename: str, expected: str
) -> None:
    assert detect_content_type(sample, filename, complete=True) == expected
