"""Output folders of `dps replay` and `dps leaderboard`: checked before any work starts."""

from __future__ import annotations

from pathlib import Path


def check_out_folder(out: str | Path, option: str = "--out") -> Path:
    """`out` as a folder that can be written: refused (ValueError) when it, or a folder above it,
    is a file. Called before any replay runs, so that a bad --out costs nothing."""
    if not str(out).strip():
        raise ValueError(f"{option} is empty; give a folder (a new one is created)")
    out = Path(out)
    for place in (out, *out.parents):
        if place.exists() and not place.is_dir():
            where = "is a file" if place == out else f"lies under {place}, which is a file"
            raise ValueError(f"{option} {out} {where}; give a folder (a new one is created)")
        if place.exists():
            break
    return out
