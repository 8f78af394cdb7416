"""Output folders of `dps replay` and `dps leaderboard`: one run's files only, and a manifest that
says which run wrote them.

A writer claims its folder (`claim`), writes, then seals it (`OutputFolder.seal`), which writes
`manifest.json`: the command, the dps version, when the run started and finished, and every file
it wrote. Claiming a folder again removes exactly the files its manifest lists (the previous run's
outputs) and keeps anything else (a file of the user's own). A folder that holds files without a
manifest (not dps's, or written before manifests), or a manifest that was never sealed (a run that
died while writing), is refused: dps never deletes a file it cannot show it wrote.
`check_out_folder` makes the same checks without changing anything, before any work starts.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
#: What a manifest's `written_by` starts with: a manifest.json of someone else's is not ours.
WRITER = "dps"


def check_out_folder(out: str | Path, option: str = "--out") -> Path:
    """`out` as a folder that `claim` will take: refused (ValueError) when it, or a folder above it,
    is a file, or when it holds files no sealed dps manifest names. Changes nothing, so that a bad
    --out is said before any replay runs."""
    if not str(out).strip():
        raise ValueError(f"{option} is empty; give a folder (a new one is created)")
    out = Path(out)
    for place in (out, *out.parents):
        if place.exists() and not place.is_dir():
            where = "is a file" if place == out else f"lies under {place}, which is a file"
            raise ValueError(f"{option} {out} {where}; give a folder (a new one is created)")
        if place.exists():
            break
    _previous_files(out, option)
    return out


def read_manifest(out: Path) -> dict[str, Any] | None:
    """The folder's manifest, when it holds one dps wrote."""
    path = out / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or not str(manifest.get("written_by", "")).startswith(WRITER):
        return None
    return manifest


def _files(out: Path) -> set[str]:
    """Every file under `out`, relative to it, with '/' between folders."""
    return {p.relative_to(out).as_posix() for p in out.rglob("*") if not p.is_dir()} if out.is_dir() else set()


def _previous_files(out: Path, option: str) -> list[str]:
    """The files of the run that wrote `out` before (to be removed); refuses a folder whose files
    dps cannot show it wrote."""
    present = _files(out)
    if not present:
        return []
    manifest = read_manifest(out)
    if manifest is None:
        shown = ", ".join(sorted(present)[:4]) + (", ..." if len(present) > 4 else "")
        raise ValueError(
            f"{option} {out} holds files no dps manifest names ({shown}); give a new folder, or empty this one "
            f"(dps replaces only the files its own {MANIFEST} lists)"
        )
    if not isinstance(manifest.get("files"), list):
        raise ValueError(
            f"{option} {out} holds the files of a run that stopped while writing them ({MANIFEST} was never "
            "completed); remove the folder, or give another"
        )
    return sorted(present & {str(f) for f in manifest["files"]} | {MANIFEST})


@dataclass
class OutputFolder:
    """A claimed output folder: `seal` lists what this run wrote in its manifest."""

    path: Path
    command: str
    started: float
    others: set[str] = field(default_factory=set)  # files that were there and are not a previous run's

    def seal(self) -> Path:
        from dps._core import __version__

        files = sorted(_files(self.path) - self.others - {MANIFEST})
        manifest = {
            "written_by": f"{WRITER} {__version__}",
            "command": self.command,
            "started": _when(self.started),
            "finished": _when(time.time()),
            "files": files,
        }
        path = self.path / MANIFEST
        path.write_text(json.dumps(manifest, indent=1) + "\n")
        return path


def claim(out: str | Path, command: str | None = None, option: str = "--out") -> OutputFolder:
    """Make `out` hold this run's files only: create it, remove the previous run's files (those its
    manifest lists; `check_out_folder` refuses what cannot be shown to be dps's), and start an
    unsealed manifest. `command`: what the manifest says wrote the folder (default: the command
    line)."""
    out = check_out_folder(out, option)
    previous = _previous_files(out, option)
    for name in previous:
        (out / name).unlink(missing_ok=True)
    _remove_emptied_folders(out, previous)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    command = command if command is not None else " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    folder = OutputFolder(out, command, started, _files(out))
    unsealed = {"written_by": WRITER, "command": command, "started": _when(started), "files": None}
    (out / MANIFEST).write_text(json.dumps(unsealed, indent=1) + "\n")
    return folder


def _remove_emptied_folders(out: Path, removed: list[str]) -> None:
    """The folders inside `out` that held removed files and are empty now, deepest first."""
    folders = {out / parent for name in removed for parent in Path(name).parents if parent != Path(".")}
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
