"""Every pointer into the docs from outside them (the README, CONTRIBUTING, CHANGELOG, code
comments and docstrings, scenario files, scripts) names a page that exists and, with an anchor,
a heading of that page. `make docs` checks the links inside docs/; this checks the rest."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

from paths import ROOT

DOCS = ROOT / "docs"
SOURCES = ["README.md", "CONTRIBUTING.md", "CHANGELOG.md", "studies/README.md"]
CODE_DIRS = ["python", "rust", "tests", "scripts", "replay", "benchmarks", "examples", "studies", "configs"]
CODE_SUFFIXES = {".py", ".pyi", ".rs", ".sh", ".toml", ".md"}
POINTER = re.compile(r"docs/((?:[\w-]+/)*[\w-]+\.md)(?:#([\w-]+))?")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*(?:\{#([\w-]+)\})?\s*$", re.M)


def slug(text: str) -> str:
    """Python-Markdown's default heading id."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)  # no headings in code
    return {explicit or slug(title) for title, explicit in HEADING.findall(text)}


def source_files() -> list[Path]:
    files = [ROOT / name for name in SOURCES]
    for folder in CODE_DIRS:
        files += [p for p in (ROOT / folder).rglob("*") if p.suffix in CODE_SUFFIXES and p.is_file()]
    return [f for f in files if f.exists() and f.resolve() != Path(__file__).resolve()]


def pointers() -> list[tuple[str, str, str]]:
    found = []
    for path in source_files():
        for page, anchor in POINTER.findall(path.read_text(errors="ignore")):
            found.append((str(path.relative_to(ROOT)), page, anchor))
    return found


def test_pointers_into_the_docs_are_found():
    assert len(pointers()) > 20  # the code and the README do point into the docs


@pytest.mark.parametrize("where, page, anchor", sorted(set(pointers())))
def test_pointer_names_an_existing_page_and_heading(where, page, anchor):
    target = DOCS / page
    assert target.exists(), f"{where} points at docs/{page}, which does not exist"
    if anchor:
        assert anchor in anchors(target), f"{where} points at docs/{page}#{anchor}: no such heading"
