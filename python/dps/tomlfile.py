"""TOML files and `--set KEY=VALUE` overrides, read the same way by train configs and replay scenarios."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any


def read_toml(path: str | Path, what: str) -> dict[str, Any]:
    """A TOML file's table; a missing file or bad TOML raises an error naming the file (`what`: its kind)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such {what} (the file does not exist)")
    try:
        return tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{p}: not valid TOML ({e})") from e


def parse_value(text: str) -> Any:
    """A `--set` value in TOML syntax (1e-4, true, [1, 2], "x"); a bare word is taken as a string."""
    try:
        return tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return text.strip()


def set_dotted(table: dict[str, Any], key: str, value: Any, where: str) -> None:
    """table[a][b][c] = value for key "a.b.c", making the inner tables that are missing."""
    *inner, last = key.split(".")
    for part in inner:
        table = table.setdefault(part, {})
        if not isinstance(table, dict):
            raise ValueError(f"{where}: {part} is not a table")
    table[last] = value
