"""The examples of README.md and docs/**/*.md run as written, so that none can rot.

A fenced code block takes part when its first line is a marker:

* ``# example: TITLE`` in a ``python`` block: executed; the blocks of one page share one
  namespace, in the order of the page;
* ``# example: TITLE`` in a ``bash`` block: every command line (comments dropped) must be a
  ``dps`` command, run in-process through ``dps.cli.main``, and exit with 0;
* ``# file: NAME`` in any block: written to NAME before the blocks after it run (a module the
  page imports, a scenario a command reads).

Each page runs in a fresh temporary folder, which is also on ``sys.path``.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

from paths import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
MARKER = re.compile(r"#\s*(example|file):\s*(.+)")


def marked_blocks(page: Path) -> list[tuple[str, str, str, str]]:
    """(kind, title, language, source) of each marked block of the page, in order."""
    blocks = []
    for lang, source in FENCE.findall(page.read_text()):
        first = source.split("\n", 1)[0].strip()
        match = MARKER.fullmatch(first)
        if match:
            blocks.append((match.group(1), match.group(2).strip(), lang, source))
    return blocks


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


EXAMPLE_PAGES = [page for page in PAGES if marked_blocks(page)]


def test_the_docs_have_examples_to_run():
    names = {page_id(p) for p in EXAMPLE_PAGES}
    assert {"README.md", "docs/getting-started.md", "docs/policies.md"} <= names


@pytest.mark.parametrize("page", EXAMPLE_PAGES, ids=page_id)
def test_page_examples_run_as_written(page, tmp_path, monkeypatch, capsys):
    from dps.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    modules_before = set(sys.modules)
    namespace: dict = {"__name__": f"docs_example_{page.stem}"}
    try:
        for kind, title, lang, source in marked_blocks(page):
            where = f"{page_id(page)}, block {title!r}"
            if kind == "file":
                (tmp_path / title).parent.mkdir(parents=True, exist_ok=True)
                (tmp_path / title).write_text(source)
            elif lang == "python":
                exec(compile(source, where, "exec"), namespace)
            elif lang in ("bash", "sh", "console"):
                for argv in command_lines(source):
                    assert argv[0] == "dps", f"{where}: only dps commands run in an example, not {argv[0]!r}"
                    assert main(argv[1:]) == 0, f"{where}: {shlex.join(argv)} failed"
            else:
                pytest.fail(f"{where}: an example must be a python or bash block, not {lang!r}")
    finally:
        for name in set(sys.modules) - modules_before:
            module_file = getattr(sys.modules[name], "__file__", None) or ""
            if module_file.startswith(str(tmp_path)):
                del sys.modules[name]
    capsys.readouterr()


def command_lines(source: str) -> list[list[str]]:
    """The commands of a shell block: comments dropped, backslash continuations joined."""
    text = source.replace("\\\n", " ")
    return [argv for argv in (shlex.split(line, comments=True) for line in text.splitlines()) if argv]
