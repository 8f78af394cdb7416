"""Output folders hold one run's files only, with a manifest naming them (dps.replay.outputs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dps.replay.outputs import MANIFEST, check_out_folder, claim, read_manifest


def write_run(out: Path, files: dict[str, str], command: str = "dps test") -> dict:
    folder = claim(out, command)
    for name, text in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    folder.seal()
    manifest = read_manifest(out)
    assert manifest is not None
    return manifest


def test_a_run_lists_its_files_and_a_rerun_replaces_exactly_them(tmp_path: Path) -> None:
    out = tmp_path / "report"
    first = write_run(out, {"report.md": "1", "a.png": "1", "logs/x.parquet": "1"}, "dps replay one.toml")
    assert first["files"] == ["a.png", "logs/x.parquet", "report.md"] and first["command"] == "dps replay one.toml"
    assert first["written_by"].startswith("dps ") and first["started"] <= first["finished"]
    (out / "notes.txt").write_text("mine")  # the user's own file, added after the run
    second = write_run(out, {"report.md": "2"}, "dps replay two.toml --no-plots")
    assert second["files"] == ["report.md"]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [MANIFEST, "notes.txt", "report.md"]
    assert (out / "report.md").read_text() == "2" and (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("manifest", [None, '{"written_by": "someone else", "files": []}', "not json"])
def test_a_folder_of_files_dps_cannot_show_it_wrote_is_refused_untouched(tmp_path: Path, manifest) -> None:
    out = tmp_path / "theirs"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    if manifest is not None:
        (out / MANIFEST).write_text(manifest)
    for call in (lambda: check_out_folder(out), lambda: claim(out)):
        with pytest.raises(ValueError, match=r"holds files no dps manifest names \((manifest.json, )?thesis.tex\)"):
            call()
    assert (out / "thesis.tex").read_text() == "years of work"


def test_a_run_that_died_while_writing_is_refused_not_guessed_at(tmp_path: Path) -> None:
    out = tmp_path / "report"
    claim(out, "dps replay x.toml")
    (out / "report.md").write_text("half")  # then the process died: never sealed
    with pytest.raises(ValueError, match="stopped while writing"):
        check_out_folder(out)
    assert json.loads((out / MANIFEST).read_text())["files"] is None


def test_an_empty_or_missing_folder_is_taken(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "empty", tmp_path / "new" / "deeper"):
        assert write_run(out, {"r.md": "x"})["files"] == ["r.md"]


def test_nested_reports_are_replaced_with_their_parent(tmp_path: Path) -> None:
    out = tmp_path / "board"
    folder = claim(out, "dps leaderboard a b --reports")
    write_run(out / "a", {"report.md": "a", "x.png": "a"})
    folder.seal()
    assert read_manifest(out)["files"] == ["a/manifest.json", "a/report.md", "a/x.png"]
    folder = claim(out, "dps leaderboard a b")  # no --reports this time
    folder.seal()
    assert not (out / "a").exists() and read_manifest(out)["files"] == []
