"""Reading log files and folders (Parquet, CSV, JSONL, JSON) into checked per-group rows."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dps.logs.check import normalise
from dps.logs.schema import FORMATS, SCHEMA_COLUMNS, LoadedLog, LogError, LogSpec, _pl

if TYPE_CHECKING:
    import polars as pl


def _format_of(path: Path, spec: LogSpec) -> str:
    if spec.format is not None:
        return spec.format
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise LogError(
            path, None, None, f"unknown log format {path.suffix!r}; use one of {', '.join(FORMATS)} (or set format)"
        )
    return fmt


def _natural_key(p: Path) -> list[Any]:
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", p.name) if t]


def _source_files(path: Path, spec: LogSpec) -> list[Path]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such log file")
    if not path.is_dir():
        return [path]
    files = [f for f in path.iterdir() if f.is_file() and (spec.format or FORMATS.get(f.suffix.lower()))]
    if spec.format:
        files = [f for f in files if FORMATS.get(f.suffix.lower(), spec.format) == spec.format]
    if not files:
        raise LogError(path, None, None, f"a folder without log files ({', '.join(FORMATS)})")
    return sorted(files, key=_natural_key)


def _scan(path: Path, fmt: str) -> Any:
    pl = _pl()
    if fmt == "parquet":
        return pl.scan_parquet(path)
    if fmt == "csv":
        return pl.scan_csv(path, infer_schema_length=None, separator=_csv_separator(path))
    if fmt == "jsonl":
        return pl.scan_ndjson(path, infer_schema_length=None)
    return pl.read_json(path).lazy()


#: Separators a CSV file may use; the one its header line holds most of is taken (comma on a tie).
CSV_SEPARATORS = (",", ";", "\t", "|")


def _csv_separator(path: Path) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        header = f.readline()
    counts = [header.count(sep) for sep in CSV_SEPARATORS]
    return CSV_SEPARATORS[counts.index(max(counts))] if max(counts) else ","


def _wanted(spec: LogSpec) -> dict[str, str]:
    """Schema name -> file column, for every column the reader may use."""
    names = {name: spec.file_column(name) for name in SCHEMA_COLUMNS}
    names.update({g: g for g in spec.group_by})
    return names


def _picks(path: Path | str, spec: LogSpec, columns: Any) -> list[tuple[str, str]]:
    """(schema name, file column) of each schema column the file has; one file column read as two
    schema columns (--column prompt_id=step beside the file's own step) is refused."""
    picks = [(name, col) for name, col in _wanted(spec).items() if col in columns]
    readers: dict[str, list[str]] = {}
    for name, col in picks:
        readers.setdefault(col, []).append(name)
    for col, names in readers.items():
        grouping = [n for n in names if n in spec.group_by and n not in SCHEMA_COLUMNS]
        if len(names) > 1 and grouping:
            read_as = " and ".join(n for n in names if n not in grouping)
            raise LogError(
                path,
                col,
                None,
                f"--group-by {col}: the column is read as {read_as}; group by a column that tells the groups of "
                "one (step, prompt) apart (a round or a generation id)",
            )
        if len(names) > 1:
            raise LogError(
                path,
                col,
                None,
                f"read as both {' and '.join(names)}; map each schema column to a column of its own (--column "
                f"{names[-1]}=NAME)",
            )
    return picks


def _read_file(path: Path, fmt: str, spec: LogSpec) -> tuple[pl.DataFrame, list[str]]:
    """The columns the log needs (schema names) and every column the file has."""
    _check_not_parquet_as_text(path, fmt)
    try:
        lf = _scan(path, fmt)
        schema = lf.collect_schema()
    except Exception as e:  # polars raises several error types for unreadable input
        raise _unreadable(path, fmt, e) from e
    picks = _picks(path, spec, schema)
    try:
        return lf.select(_pl().col(col).alias(name) for name, col in picks).collect(), list(schema)
    except Exception as e:
        raise _unreadable(path, fmt, e) from e


def _check_not_parquet_as_text(path: Path, fmt: str) -> None:
    """A Parquet file read as CSV or JSON would be read as its binary bytes."""
    if fmt == "parquet":
        return
    with open(path, "rb") as f:
        if f.read(4) == b"PAR1":
            raise LogError(
                path,
                None,
                None,
                f'a Parquet file read as {fmt} (it starts with PAR1): give --format parquet (format = "parquet"), '
                "or none and the file's suffix decides",
            )


def _unreadable(path: Path, fmt: str, error: Exception) -> LogError:
    bad_line = _first_bad_json_line(path, fmt)
    return LogError(path, None, None, bad_line or f"not a readable {fmt} file ({error})")


def _first_bad_json_line(path: Path, fmt: str) -> str | None:
    """For a JSON or JSONL file polars could not read: the first line that does not parse, by its
    number (polars says only "Syntax at character 0")."""
    import json

    if fmt not in ("jsonl", "json"):
        return None
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return None
    if fmt == "json":
        try:
            json.loads(text)
        except json.JSONDecodeError as e:
            return f"line {e.lineno}, column {e.colno}: not valid JSON ({e.msg})"
        return None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            problem = e.msg.removesuffix(" at")  # json's "Unterminated string starting at"
            return (
                f"line {number}: not a JSON object ({problem} at character {e.colno}); a line cut off (a writer "
                "stopped mid-line)? Complete or remove it"
            )
        if not isinstance(row, dict):
            return f"line {number}: a JSON {type(row).__name__}, not an object (one row per line)"
    return None


def _read_files(path: Path, spec: LogSpec) -> tuple[pl.DataFrame, list[tuple[Path, int]], str, list[str]]:
    """The files' rows (schema names), (file, first row) of each file, the format, all columns."""
    pl = _pl()
    files = _source_files(path, spec)
    frames, offsets, seen, start = [], [], {}, 0
    for f in files:
        df, cols = _read_file(f, _format_of(f, spec), spec)
        frames.append(df)
        offsets.append((f, start))
        seen.update(dict.fromkeys(cols))
        start += df.height
    try:
        df = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
    except Exception as e:
        raise LogError(path, None, None, f"the files' columns have types that do not agree ({e})") from e
    return df, offsets, _format_of(files[0], spec), list(seen)


def _locate(err: LogError, offsets: list[tuple[Path, int]]) -> LogError:
    """Re-aim an error at a row of the concatenated files to its own file and row."""
    if err.row is None or len(offsets) < 2:
        return err
    for f, start in reversed(offsets):
        if err.row >= start:
            return LogError(f, err.column, err.row - start, err.message)
    return err


def load_log(path: str | Path, spec: LogSpec | None = None) -> LoadedLog:
    """Read, validate and normalise a log file or folder (any layout, format, id type)."""
    spec = spec or LogSpec()
    path = Path(path)
    df, offsets, fmt, seen = _read_files(path, spec)
    try:
        log = normalise(df, path, spec, available=seen)
    except LogError as e:
        raise _locate(e, offsets) from None
    log.info.format, log.info.files = fmt, len(offsets)
    return log


def read_log(path: str | Path, spec: LogSpec | None = None) -> pl.DataFrame:
    """Read and validate a log; its groups, sorted by step then dense prompt_id."""
    return load_log(path, spec).groups


def frame_to_groups(df: pl.DataFrame, path: str | Path = "<frame>", spec: LogSpec | None = None) -> pl.DataFrame:
    """An in-memory frame (file column names) as groups, like `read_log`."""
    return load_frame(df, path, spec).groups


def load_frame(df: pl.DataFrame, path: str | Path = "<frame>", spec: LogSpec | None = None) -> LoadedLog:
    spec = spec or LogSpec()
    picks = _picks(path, spec, df.columns)
    frame = df.select(_pl().col(col).alias(name) for name, col in picks)
    return normalise(frame, path, spec, available=list(df.columns))


def validate_frame(df: pl.DataFrame, path: str | Path = "<frame>", spec: LogSpec | None = None) -> str:
    """Check a log frame against the schema; return its layout. Raises LogError."""
    return load_frame(df, path, spec).info.layout
