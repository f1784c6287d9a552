"""The public surface: one sorted ``__all__``, every name documented in code and in docs/."""

from __future__ import annotations

import inspect
from pathlib import Path

import depotx

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_all_is_sorted_and_importable() -> None:
    names = [name for name in depotx.__all__ if not name.startswith("__")]
    assert names == sorted(names)
    for name in depotx.__all__:
        assert hasattr(depotx, name), name


def test_public_names_have_docstrings() -> None:
    for name in depotx.__all__:
        obj = getattr(depotx, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"{name} has no docstring"


def test_public_names_are_documented() -> None:
    text = "\n".join(page.read_text(encoding="utf-8") for page in DOCS.rglob("*.md"))
    missing = [
        name for name in depotx.__all__ if not name.startswith("__") and f"`{name}" not in text
    ]
    assert missing == [], f"not mentioned in docs/: {missing}"


def test_package_is_typed() -> None:
    assert (Path(depotx.__file__).parent / "py.typed").is_file()
