"""Rollout logs: the schema, reading (any trainer's files), writing, aggregation and validation.

The log belongs to no single part of dps: the trainer and the framework integrations write it
(`RolloutLogWriter`), replay and `dps validate` read it (`load_log`, `read_log`).

Files: Parquet, CSV, JSONL (one JSON object a line; `.json` holding one array of objects too),
or a folder of such files (read in the order of their names, numbers compared as numbers, as
verl writes `1.jsonl`, `2.jsonl`, ...). Parquet, CSV and JSONL are scanned lazily and only the
columns the log needs are read (a completion-text column costs nothing).

Two layouts (see the README's "Rollout logs" section):

* per group, one row per (step, prompt) group: ``step``, ``prompt_id``, ``n_rollouts``,
  ``n_correct``, optionally ``reward_mean`` (float) and ``rewards`` (list of floats, one per
  response);
* per response, one row per scored response: ``step``, ``prompt_id``, and ``reward`` (float)
  and/or ``correct`` (bool, 0/1 integer or a float score). It is aggregated into groups; a
  response counts as correct when ``correct`` is true (a float ``correct`` or, without that
  column, ``reward`` when it is >= the threshold, 0.5 by default, so a small format bonus on a
  wrong answer does not count as correct).

Either layout may hold a ``kind`` column (e.g. "train" / "sweep"); its rows per kind are
reported, and `LogSpec.kinds` keeps only some kinds. A file's own column names are mapped onto
these with `LogSpec.columns` (e.g. ``{"step": "global_step", "prompt_id": "prompt"}``).

Prompt ids may be integers of any range or strings (hashes, the prompt text): inside, prompts
get dense ids ``prompt_id`` 0..N-1 (in the sorted order of the user's ids; ids that already are
0..N-1 stay as they are) and the user's own id is kept in ``prompt_key``; `LoadedLog.keys` and
`prompt_keys` map dense ids back. A file that holds a ``prompt_key`` column (as the logs that
``dps replay --write-logs`` writes do: the dense id beside the user's id) is read by its
``prompt_key``: that is the prompt's own id, and its ``prompt_id`` must pair with it one to one. Steps are the log's own values, never shifted or padded. The
same (step, prompt) may appear more than once (extra generation rounds, an epoch wrap-around, a
training group and an evaluation sweep at the same step): each such group stays its own row.

Every check raises `LogError` (a ValueError) naming the file, the file's column and the first
bad row (0-based row number in that file as read).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import polars as pl

GROUP_COLUMNS = ("step", "prompt_id", "n_rollouts", "n_correct")
RESPONSE_COLUMNS = ("step", "prompt_id", "reward")
#: Every column the reader knows, by its schema name.
SCHEMA_COLUMNS = ("step", "prompt_id", "n_rollouts", "n_correct", "reward_mean", "rewards", "reward", "correct", "kind", "prompt_key")
DEFAULT_THRESHOLD = 0.5
#: File name endings and the format each means.
FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}
LAYOUTS = ("group", "response")
ID_MODES = ("dense", "index")


class LogError(ValueError):
    """A rollout log that does not follow the schema."""

    def __init__(self, path: str | Path, column: str | None, row: int | None, message: str):
        self.path, self.column, self.row, self.message = str(path), column, row, message
        where = [str(path)]
        if column is not None:
            where.append(f"column {column!r}")
        if row is not None:
            where.append(f"row {row}")
        super().__init__(f"{', '.join(where)}: {message}")


def _have_polars() -> bool:
    import importlib.util

    return importlib.util.find_spec("polars") is not None


def _pl() -> Any:
    import polars as pl

    return pl


# --------------------------------------------------------------------------------------------
# How to read a log


@dataclass
class LogSpec:
    """How to read one log: its column names, layout, format and correctness rule.

    columns: schema name -> the file's column name, for the names that differ
        (e.g. {"step": "global_step", "prompt_id": "prompt", "reward": "score"}).
    threshold: a response is correct when its score (``correct`` as a float, else ``reward``)
        is >= threshold.
    format / layout: None = from the file name / from the columns present.
    prompt_ids: "dense" maps the user's ids to 0..N-1; "index" takes non-negative integer ids
        as dataset indices as they are (N = largest id + 1; ids never logged are prompts the
        log knows nothing about).
    group_by: per-response logs: extra columns whose values tell two groups of the same
        (step, prompt) apart (a ``kind`` column always does).
    kinds: keep only rows whose ``kind`` is one of these (None: every row).
    """

    columns: dict[str, str] = field(default_factory=dict)
    threshold: float = DEFAULT_THRESHOLD
    format: str | None = None
    layout: str | None = None
    prompt_ids: str = "dense"
    group_by: tuple[str, ...] = ()
    kinds: tuple[str, ...] | None = None

    #: The keys a scenario's [world] table may use for these settings.
    KEYS = ("columns", "threshold", "format", "layout", "prompt_ids", "group_by", "kinds")

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "log settings") -> LogSpec:
        """From a scenario's [world] table (other keys are ignored); errors name `where` and the key."""
        kw: dict[str, Any] = {k: d[k] for k in cls.KEYS if k in d}
        for key in ("group_by", "kinds"):
            if key in kw:
                v = [kw[key]] if isinstance(kw[key], str) else kw[key]
                if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                    raise ValueError(f"{where}: {key} must be a string or a list of strings, not {kw[key]!r}")
                kw[key] = tuple(v)
        spec = cls(**kw)
        spec.check(where)
        return spec

    def check(self, where: str) -> None:
        if not isinstance(self.columns, dict) or not all(isinstance(v, str) for v in self.columns.values()):
            raise ValueError(f"{where}: columns must map schema names to the file's column names (strings), not {self.columns!r}")
        unknown = sorted(set(self.columns) - set(SCHEMA_COLUMNS))
        if unknown:
            raise ValueError(f"{where}: columns: unknown schema name(s) {', '.join(unknown)}; known: {', '.join(SCHEMA_COLUMNS)}")
        if self.format is not None and self.format not in set(FORMATS.values()):
            raise ValueError(f"{where}: format must be one of {', '.join(sorted(set(FORMATS.values())))}, not {self.format!r}")
        if self.layout is not None and self.layout not in LAYOUTS:
            raise ValueError(f"{where}: layout must be 'group' or 'response', not {self.layout!r}")
        if self.prompt_ids not in ID_MODES:
            raise ValueError(f"{where}: prompt_ids must be 'dense' or 'index', not {self.prompt_ids!r}")
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) or self.threshold != self.threshold:
            raise ValueError(f"{where}: threshold must be a number, not {self.threshold!r}")

    def file_column(self, name: str) -> str:
        """The file's name for schema column `name`."""
        return self.columns.get(name, name)


@dataclass
class LogInfo:
    """What the reader understood about a log (what `dps validate` prints)."""

    path: str
    format: str
    files: int
    layout: str
    rows: int  # rows in the file(s), before any `kinds` filter
    columns: dict[str, str]  # schema name -> file column, for the columns used
    id_type: str  # "integer" or "string"
    id_mapping: str  # "identity", "dense" or "index"
    num_prompts: int  # distinct prompts in the file(s) (index mode: largest id + 1)
    correctness: str  # where n_correct came from
    threshold: float | None  # None when no threshold was applied
    kinds: tuple[str, ...] | None = None


@dataclass
class LoadedLog:
    """A log read into per-group rows, with what was understood and the id map."""

    groups: pl.DataFrame
    info: LogInfo
    keys: pl.Series  # the user's prompt id of each dense id 0..N-1


# --------------------------------------------------------------------------------------------
# Reading files


def _format_of(path: Path, spec: LogSpec) -> str:
    if spec.format is not None:
        return spec.format
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise LogError(path, None, None, f"unknown log format {path.suffix!r}; use one of {', '.join(FORMATS)} (or set format)")
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
        return pl.scan_csv(path, infer_schema_length=None)
    if fmt == "jsonl":
        return pl.scan_ndjson(path, infer_schema_length=None)
    return pl.read_json(path).lazy()


def _wanted(spec: LogSpec) -> dict[str, str]:
    """Schema name -> file column, for every column the reader may use."""
    names = {name: spec.file_column(name) for name in SCHEMA_COLUMNS}
    names.update({g: g for g in spec.group_by})
    return names


def _read_file(path: Path, fmt: str, spec: LogSpec) -> tuple[pl.DataFrame, list[str]]:
    """The columns the log needs (schema names) and every column the file has."""
    try:
        lf = _scan(path, fmt)
        schema = lf.collect_schema()
        picks = [(name, col) for name, col in _wanted(spec).items() if col in schema]
        return lf.select(_pl().col(col).alias(name) for name, col in picks).collect(), list(schema)
    except Exception as e:  # polars raises several error types for unreadable input
        raise LogError(path, None, None, f"not a readable {fmt} file ({e})") from e


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
    picks = [(name, col) for name, col in _wanted(spec).items() if col in df.columns]
    frame = df.select(_pl().col(col).alias(name) for name, col in picks)
    return normalise(frame, path, spec, available=list(df.columns))


def validate_frame(df: pl.DataFrame, path: str | Path = "<frame>", spec: LogSpec | None = None) -> str:
    """Check a log frame against the schema; return its layout. Raises LogError."""
    return load_frame(df, path, spec).info.layout


# --------------------------------------------------------------------------------------------
# Checks and normalisation (columns already carry schema names; errors name the file's names)


class _Checker:
    def __init__(self, df: pl.DataFrame, path: str | Path, spec: LogSpec):
        self.df, self.path, self.spec = df, path, spec

    def error(self, name: str | None, row: int | None, message: str) -> LogError:
        return LogError(self.path, None if name is None else self.spec.file_column(name), row, message)

    def first(self, mask: Any) -> int | None:
        pl = _pl()
        return self.df.select(pl.arg_where(mask.fill_null(True)).first()).item()

    def not_null(self, name: str) -> None:
        pl = _pl()
        s = pl.col(name)
        nan = s.is_nan() if self.df[name].dtype.is_float() else pl.lit(False)
        bad = self.first(s.is_null() | nan)
        if bad is not None:
            raise self.error(name, bad, "is null" + (" or NaN" if self.df[name].dtype.is_float() else ""))

    def whole(self, name: str, minimum: int | None) -> None:
        """An integer column (whole floats are accepted and cast), no nulls, >= minimum."""
        pl = _pl()
        dtype = self.df[name].dtype
        if not (dtype.is_integer() or dtype.is_float()):
            raise self.error(name, None, f"has type {dtype}, expected integers")
        self.not_null(name)
        if dtype.is_float():
            bad = self.first(pl.col(name) != pl.col(name).round(0))
            if bad is not None:
                raise self.error(name, bad, f"is {self.df[name][bad]}, not a whole number")
        if minimum is not None:
            bad = self.first(pl.col(name) < minimum)
            if bad is not None:
                raise self.error(name, bad, f"is {self.df[name][bad]}, must be >= {minimum}")
        if dtype != pl.Int64:
            self.df = self.df.with_columns(pl.col(name).cast(pl.Int64))

    def number(self, name: str) -> None:
        pl = _pl()
        dtype = self.df[name].dtype
        if not (dtype.is_float() or dtype.is_integer() or dtype == pl.Boolean):
            raise self.error(name, None, f"has type {dtype}, expected a number")
        self.not_null(name)


def _layout(df: pl.DataFrame, spec: LogSpec) -> str:
    if spec.layout is not None:
        return spec.layout
    cols = set(df.columns)
    if {"n_rollouts", "n_correct"} & cols:
        return "group"
    if {"reward", "correct"} & cols:
        return "response"
    return "group"  # the check below names the missing group columns


#: Names other trainers give the schema's columns, for the hint in a "missing column" error.
ALIASES = {
    "step": ("global_step", "train_step", "iteration", "training_step"),
    "prompt_id": ("prompt", "input", "question", "problem", "uid", "prompt_hash", "index", "idx"),
    "reward": ("score", "rewards", "acc", "accuracy"),
    "n_correct": ("num_correct", "correct"),
    "n_rollouts": ("num_rollouts", "n", "k", "n_samples"),
}


def _suggest(name: str, available: list[str]) -> str:
    hits = [c for c in available if c.lower() in ALIASES.get(name, ()) or (name in c.lower() and c != name)]
    return f"; perhaps --column {name}={hits[0]}" if hits else ""


def _require(df: pl.DataFrame, path: str | Path, spec: LogSpec, layout: str, available: list[str]) -> None:
    required = list(GROUP_COLUMNS) if layout == "group" else ["step", "prompt_id"]
    if layout == "response" and not {"reward", "correct"} & set(df.columns):
        required.append("reward")
    has = f"; the file has {', '.join(available)}" if available else ""
    for name in required:
        if name not in df.columns and not (name == "prompt_id" and "prompt_key" in df.columns):
            col = spec.file_column(name)
            hint = f" (map a column of yours to it with columns.{name} = \"NAME\" or --column {name}=NAME)" if col == name else ""
            raise LogError(path, col, None, f"missing: a {layout} log needs {', '.join(required)}{hint}{has}{_suggest(name, available)}")
    if df.height == 0:
        raise LogError(path, None, None, "the log holds no rows")


def normalise(df: pl.DataFrame, path: str | Path, spec: LogSpec, available: list[str] | None = None) -> LoadedLog:
    """Validate a frame in schema names and return its groups (dense ids, sorted by step)."""
    pl = _pl()
    spec.check("log settings")
    layout = _layout(df, spec)
    _require(df, path, spec, layout, available or [])
    chk = _Checker(df, path, spec)
    chk.whole("step", 0)
    if layout == "group":
        _check_groups(chk)
        correctness, threshold = "n_correct as logged", None
    else:
        correctness, threshold = _check_responses(chk)
    if "kind" in chk.df.columns:
        chk.df = chk.df.with_columns(pl.col("kind").cast(pl.String))
        chk.not_null("kind")
    if "prompt_key" in chk.df.columns:
        _use_keys(chk)
    id_type = _check_ids(chk)
    frame, rows = chk.df, chk.df.height
    if layout == "response":
        frame = aggregate_responses(frame, threshold if threshold is not None else DEFAULT_THRESHOLD, spec.group_by)
    frame, keys, mapping = _dense_ids(frame, id_type, spec.prompt_ids)
    if spec.kinds is not None:
        if "kind" not in frame.columns:
            raise LogError(path, spec.file_column("kind"), None, "missing: kinds were asked for, but the log has no kind column")
        frame = frame.filter(pl.col("kind").is_in(list(spec.kinds)))
        if frame.height == 0:
            raise LogError(path, spec.file_column("kind"), None, f"no rows of kind {', '.join(spec.kinds)}")
    frame = _sorted(_order(frame, spec))
    used = {name: spec.file_column(name) for name in df.columns if name in SCHEMA_COLUMNS and name != "prompt_key"}
    used["prompt_id"] = chk.spec.file_column("prompt_id")  # the file's prompt_key, where it has one
    info = LogInfo(str(path), "frame", 1, layout, rows, used, id_type, mapping, len(keys), correctness, threshold, spec.kinds)
    return LoadedLog(frame, info, keys)


def _check_groups(chk: _Checker) -> None:
    pl = _pl()
    chk.whole("n_rollouts", 1)
    chk.whole("n_correct", 0)
    df = chk.df
    bad = chk.first(pl.col("n_correct") > pl.col("n_rollouts"))
    if bad is not None:
        raise chk.error("n_correct", bad, f"n_correct = {df['n_correct'][bad]} exceeds n_rollouts = {df['n_rollouts'][bad]}")
    if "reward_mean" in df.columns:
        chk.number("reward_mean")
        chk.df = chk.df.with_columns(pl.col("reward_mean").cast(pl.Float64))
    if "rewards" in df.columns:
        s = df["rewards"]
        if not isinstance(s.dtype, pl.List) or not (s.dtype.inner.is_float() or s.dtype.inner.is_integer()):
            raise chk.error("rewards", None, f"has type {s.dtype}, expected a list of floats")
        bad = chk.first(pl.col("rewards").is_null() | (pl.col("rewards").list.len() != pl.col("n_rollouts")))
        if bad is not None:
            raise chk.error("rewards", bad, "is null or its length differs from n_rollouts")
        chk.df = chk.df.with_columns(pl.col("rewards").cast(pl.List(pl.Float64)))


def _check_responses(chk: _Checker) -> tuple[str, float | None]:
    """Check reward / correct; return (where correctness comes from, threshold used or None)."""
    pl = _pl()
    th = float(chk.spec.threshold)
    if "reward" in chk.df.columns:
        chk.number("reward")
        chk.df = chk.df.with_columns(pl.col("reward").cast(pl.Float64))
    if "correct" not in chk.df.columns:
        return f"{chk.spec.file_column('reward')} >= {th:g}", th
    chk.number("correct")
    dtype = chk.df["correct"].dtype
    col = chk.spec.file_column("correct")
    if dtype == pl.Boolean:
        return f"{col} (true / false)", None
    if dtype.is_integer():
        bad = chk.first(~pl.col("correct").is_in([0, 1]))
        if bad is not None:
            raise chk.error("correct", bad, f"is {chk.df['correct'][bad]}, expected 0 or 1 (or give a float score and a threshold)")
        return f"{col} (0 / 1)", None
    return f"{col} >= {th:g}", th


def _use_keys(chk: _Checker) -> None:
    """A log with the user's ids in prompt_key (beside dense ids, as a replay writes it): read by the keys.

    Its prompt_id must pair with prompt_key one to one; from here on prompt_key is the id column
    (errors name the file's prompt_key column).
    """
    import dataclasses

    pl = _pl()
    df = chk.df
    if df["prompt_key"].null_count():
        bad = chk.first(pl.col("prompt_key").is_null())
        raise chk.error(
            "prompt_key", bad, "is null: every row needs the prompt's own id (a replay writes none for prompts its "
            "log never named, which a larger [world] num_prompts adds)"
        )
    if "prompt_id" in df.columns:
        for one, other in (("prompt_key", "prompt_id"), ("prompt_id", "prompt_key")):
            bad = chk.first(pl.col(other).n_unique().over(one) > 1)
            if bad is not None:
                raise chk.error(
                    one, bad, f"{df[one][bad]!r} is paired with more than one {chk.spec.file_column(other)}; "
                    "prompt_id and prompt_key must name the same prompts one to one"
                )
    chk.df = df.drop("prompt_id", strict=False).rename({"prompt_key": "prompt_id"})
    chk.spec = dataclasses.replace(chk.spec, columns={**chk.spec.columns, "prompt_id": chk.spec.file_column("prompt_key")})


def _check_ids(chk: _Checker) -> str:
    """Check the prompt id column (integers or strings, no nulls); return 'integer' or 'string'."""
    pl = _pl()
    dtype = chk.df["prompt_id"].dtype
    if isinstance(dtype, (pl.Categorical, pl.Enum)):
        chk.df = chk.df.with_columns(pl.col("prompt_id").cast(pl.String))
        dtype = pl.String
    if not (dtype.is_integer() or dtype == pl.String):
        raise chk.error("prompt_id", None, f"has type {dtype}; prompt ids must be integers or strings")
    chk.not_null("prompt_id")
    if chk.spec.prompt_ids == "index":
        if not dtype.is_integer():
            raise chk.error("prompt_id", None, f"has type {dtype}; prompt_ids = 'index' needs integer ids (use 'dense')")
        chk.whole("prompt_id", 0)
    return "integer" if dtype.is_integer() else "string"


def _dense_ids(frame: pl.DataFrame, id_type: str, mode: str) -> tuple[pl.DataFrame, pl.Series, str]:
    """prompt_id -> dense int64 ids (the user's id moves to prompt_key); the key of each dense id."""
    pl = _pl()
    key = frame["prompt_id"]
    with_key = frame.with_columns(pl.col("prompt_id").alias("prompt_key"))
    if mode == "index":
        n = int(key.max()) + 1  # type: ignore[arg-type]
        return with_key, pl.Series("prompt_key", np.arange(n, dtype=np.int64)), "index"
    unique = key.unique().sort()
    if id_type == "integer" and unique[0] == 0 and unique[-1] == len(unique) - 1:
        return with_key.with_columns(pl.col("prompt_id").cast(pl.Int64)), unique.alias("prompt_key"), "identity"
    if id_type == "integer" and int(unique[-1]) - int(unique[0]) < max(4 * len(key), 1 << 22):
        # a lookup table over the ids' range: one pass, no hashing
        lo, u = int(unique[0]), unique.to_numpy()
        table = np.zeros(int(u[-1]) - lo + 1, np.int64)
        table[u - lo] = np.arange(len(u))
        dense = pl.Series("prompt_id", table[key.to_numpy() - lo])
        return with_key.with_columns(dense), unique.alias("prompt_key"), "dense"
    ids = pl.DataFrame({"prompt_key": unique, "_dense": np.arange(len(unique), dtype=np.int64)})
    joined = with_key.join(ids, on="prompt_key", how="left", maintain_order="left")
    return joined.with_columns(pl.col("_dense").alias("prompt_id")).drop("_dense"), unique.alias("prompt_key"), "dense"


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    """Stable sort by (step, prompt_id), skipped when the rows already are in that order."""
    step, pid = frame["step"].to_numpy(), frame["prompt_id"].to_numpy()
    n = int(pid.max()) + 1
    if int(step.max()) >= (1 << 62) // n:
        return frame.sort("step", "prompt_id", maintain_order=True)
    order = step * n + pid
    if np.all(order[1:] >= order[:-1]):
        return frame
    return frame[np.argsort(order, kind="stable")]


def _order(frame: pl.DataFrame, spec: LogSpec) -> pl.DataFrame:
    order = ("step", "prompt_id", "n_rollouts", "n_correct", "reward_mean", "rewards", "prompt_key", "kind")
    front: list[str] = [c for c in order if c in frame.columns]
    rest = [c for c in spec.group_by if c in frame.columns and c not in front]
    return frame.select(front + rest)


def aggregate_responses(df: pl.DataFrame, threshold: float = DEFAULT_THRESHOLD, group_by: tuple[str, ...] = ()) -> pl.DataFrame:
    """Per-response rows -> per-group rows, one per (step, prompt[, kind][, group_by]), in the
    order of their first response.

    `df` holds checked schema columns (`correct` bool, 0/1 or a float score; else `reward`).
    """
    pl = _pl()
    if "correct" in df.columns and (df["correct"].dtype == pl.Boolean or df["correct"].dtype.is_integer()):
        correct = pl.col("correct").cast(pl.Int64)
    else:
        score = "correct" if "correct" in df.columns else "reward"
        correct = (pl.col(score).cast(pl.Float64) >= threshold).cast(pl.Int64)
    keys = ["step", "prompt_id"] + [c for c in ("prompt_key", "kind", *group_by) if c in df.columns]
    keys = list(dict.fromkeys(keys))
    rewards = []
    if "reward" in df.columns:
        rewards = [pl.col("reward").cast(pl.Float64).mean().alias("reward_mean"), pl.col("reward").cast(pl.Float64).alias("rewards")]
    return (
        df.with_columns(correct.alias("_correct"))
        .group_by(keys, maintain_order=True)
        .agg(pl.len().cast(pl.Int64).alias("n_rollouts"), pl.col("_correct").sum().cast(pl.Int64).alias("n_correct"), *rewards)
        .with_columns(pl.col("step").cast(pl.Int64))
    )


def prompt_keys(groups: pl.DataFrame) -> np.ndarray:
    """The user's prompt id of each dense id 0..max(prompt_id) found in `groups` (None where absent)."""
    pairs = groups.select("prompt_id", "prompt_key").unique("prompt_id") if "prompt_key" in groups.columns else None
    n = int(groups["prompt_id"].max()) + 1  # type: ignore[arg-type]
    if pairs is None:
        return np.arange(n, dtype=np.int64)
    out = np.empty(n, dtype=object)
    out[pairs["prompt_id"].to_numpy()] = pairs["prompt_key"].to_list()
    return out


# --------------------------------------------------------------------------------------------
# Writing and describing


def write_log(df: pl.DataFrame, path: str | Path) -> None:
    """Validate a frame in the schema and write it: Parquet, CSV or JSONL by the file name."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt not in ("parquet", "csv", "jsonl"):
        raise ValueError(f"{path}: write a log as .parquet, .csv or .jsonl")
    validate_frame(df, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        df.write_parquet(path)
    elif fmt == "jsonl":
        df.write_ndjson(path)
    else:
        nested = [c for c, t in df.schema.items() if t.is_nested()]
        if nested:
            raise ValueError(f"{path}: CSV cannot hold the list column(s) {', '.join(nested)}; write .parquet or .jsonl")
        df.write_csv(path)


def groups_frame(step: np.ndarray, prompt_id: np.ndarray, n_rollouts: np.ndarray, n_correct: np.ndarray) -> pl.DataFrame:
    pl = _pl()
    return pl.DataFrame(
        {
            "step": np.asarray(step, np.int64),
            "prompt_id": np.asarray(prompt_id, np.int64),
            "n_rollouts": np.asarray(n_rollouts, np.int64),
            "n_correct": np.asarray(n_correct, np.int64),
        }
    )


def describe(df: pl.DataFrame, num_prompts: int | None = None) -> dict[str, Any]:
    """Facts about a per-group log, for `dps validate`.

    coverage: share of the (logged step x prompt) cells that hold at least one group, over the
    steps the log has and its `num_prompts` prompts (default: those it names).
    """
    pl = _pl()
    c, n = df["n_correct"].to_numpy(), df["n_rollouts"].to_numpy()
    steps = int(df["step"].n_unique())
    prompts = int(df["prompt_id"].n_unique())
    cells = df.select(pl.struct("step", "prompt_id").n_unique()).item()
    pair_counts = df.group_by("step", "prompt_id").len()
    repeated = pair_counts.filter(pl.col("len") > 1)
    facts: dict[str, Any] = {
        "groups": df.height,
        "steps": steps,
        "step_range": (int(df["step"].min()), int(df["step"].max())),  # type: ignore[arg-type]
        "prompts": prompts,
        "max_prompt_id": int(df["prompt_id"].max()),  # type: ignore[arg-type]
        "rollouts": int(n.sum()),
        "accuracy": float(c.sum() / n.sum()),
        "partial_share": float(np.mean((c > 0) & (c < n))),
        "coverage": float(cells / (steps * (num_prompts or prompts))),
        "repeated_pairs": repeated.height,
        "repeated_rows": int(repeated["len"].sum()) - repeated.height if repeated.height else 0,
        "kinds": {},
    }
    if "kind" in df.columns:
        facts["repeated_within_kind"] = df.group_by("step", "prompt_id", "kind").len().filter(pl.col("len") > 1).height
        for kind, part in df.group_by("kind", maintain_order=True):
            pc, pn = part["n_correct"].to_numpy(), part["n_rollouts"].to_numpy()
            facts["kinds"][str(kind[0])] = {
                "groups": part.height,
                "steps": int(part["step"].n_unique()),
                "step_range": (int(part["step"].min()), int(part["step"].max())),  # type: ignore[arg-type]
                "prompts": int(part["prompt_id"].n_unique()),
                "partial_share": float(np.mean((pc > 0) & (pc < pn))),
            }
    return facts


def _key_text(keys: pl.Series, i: int) -> str:
    v = keys[i]
    s = repr(v) if isinstance(v, str) else str(v)
    return s if len(s) <= 40 else s[:37] + "...'"


def explain(log: LoadedLog) -> str:
    """A few lines on what was read and how: `dps validate`'s report."""
    info, keys = log.info, log.keys
    d = describe(log.groups, info.num_prompts)
    layout = "one row per (step, prompt) group" if info.layout == "group" else "one row per response, grouped"
    files = f" ({info.files} files)" if info.files > 1 else ""
    renamed = [f"{name} <- {col}" for name, col in info.columns.items() if name != col]
    lines = [
        f"{info.path}: ok. {info.format}{files}, {info.rows:,} rows, {layout}"
        + (f"; columns mapped: {', '.join(renamed)}" if renamed else ""),
    ]
    n = info.num_prompts
    span = f"{_key_text(keys, 0)} .. {_key_text(keys, n - 1)}" if n else "-"
    how = {
        "identity": "already 0..N-1, kept as they are",
        "dense": f"mapped to dense ids 0..{n - 1} in sorted order (the user's id is kept as prompt_key)",
        "index": f"taken as dataset indices 0..{n - 1} (ids never logged are prompts the log knows nothing about)",
    }[info.id_mapping]
    lines.append(f"  prompt ids: {info.id_type}, {n:,} distinct ({span}); {how}")
    lines.append(
        f"  steps: {d['step_range'][0]}..{d['step_range'][1]}, {d['steps']} distinct, as logged (not shifted or padded)"
    )
    lines.append(f"  correct: {info.correctness}" + ("" if info.threshold is None else f" (threshold {info.threshold:g})"))
    for kind, k in d["kinds"].items():
        lines.append(
            f"  kind {kind!r}: {k['groups']:,} groups, steps {k['step_range'][0]}..{k['step_range'][1]} ({k['steps']} distinct), "
            f"{k['prompts']:,} prompts, partially solved {k['partial_share']:.3f}"
        )
    if info.kinds is not None:
        lines.append(f"  kept only kind(s): {', '.join(info.kinds)}")
    if d["repeated_pairs"]:
        within = d.get("repeated_within_kind")
        note = "" if within is None else f"; {within:,} of them within one kind"
        lines.append(
            f"  repeated groups: {d['repeated_pairs']:,} (step, prompt) pairs appear more than once "
            f"({d['repeated_rows']:,} extra rows{note}); each is kept as its own group"
        )
    else:
        lines.append("  repeated groups: none")
    lines.append(
        f"  {d['groups']:,} groups, {d['rollouts']:,} rollouts, accuracy {d['accuracy']:.3f}, "
        f"partially solved {d['partial_share']:.3f}, coverage {d['coverage']:.3f} of logged steps x prompts"
    )
    return "\n".join(lines)


LOG_COLUMNS = ("step", "prompt_id", "n_rollouts", "n_correct", "reward_mean", "rewards")


class RolloutLogWriter:
    """Every rolled-out group of a run, kept in memory and rewritten atomically on `write()`.

    `add` takes one step's groups as arrays; `write` validates and replaces the file through a
    temporary one, so a reader (or a resumed run) never sees a torn file; `load(keep_below)`
    reads an existing file back, dropping the rows of steps >= keep_below (resume from a
    checkpoint of that step).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.rows: dict[str, list[Any]] = {k: [] for k in LOG_COLUMNS}

    def __len__(self) -> int:
        return len(self.rows["step"])

    def add(
        self,
        step: int,
        prompt_ids: Any,
        n_correct: Any,
        n_rollouts: Any,
        rewards: list[list[float]] | None = None,
    ) -> None:
        ids = np.asarray(prompt_ids, np.int64)
        nc = np.asarray(n_correct)
        nr = np.asarray(n_rollouts)
        if not (len(ids) == len(nc) == len(nr)) or (rewards is not None and len(rewards) != len(ids)):
            raise ValueError("RolloutLogWriter.add: prompt_ids, n_correct, n_rollouts and rewards differ in length")
        if not (np.issubdtype(nc.dtype, np.integer) and np.issubdtype(nr.dtype, np.integer)):
            raise TypeError("RolloutLogWriter.add: n_correct and n_rollouts must be integer arrays")
        for i in range(len(ids)):
            r = [float(x) for x in rewards[i]] if rewards is not None else None
            self.rows["step"].append(int(step))
            self.rows["prompt_id"].append(int(ids[i]))
            self.rows["n_rollouts"].append(int(nr[i]))
            self.rows["n_correct"].append(int(nc[i]))
            self.rows["reward_mean"].append(float(np.mean(r)) if r else float(nc[i]) / max(int(nr[i]), 1))
            self.rows["rewards"].append(r)

    def frame(self) -> pl.DataFrame:
        """The rows as a frame; the `rewards` column only when every group has its rewards."""
        pl = _pl()
        columns = {
            "step": pl.Series(self.rows["step"], dtype=pl.Int64),
            "prompt_id": pl.Series(self.rows["prompt_id"], dtype=pl.Int64),
            "n_rollouts": pl.Series(self.rows["n_rollouts"], dtype=pl.Int64),
            "n_correct": pl.Series(self.rows["n_correct"], dtype=pl.Int64),
            "reward_mean": pl.Series(self.rows["reward_mean"], dtype=pl.Float64),
        }
        if all(r is not None for r in self.rows["rewards"]):
            columns["rewards"] = pl.Series(self.rows["rewards"], dtype=pl.List(pl.Float64))
        return pl.DataFrame(columns)

    def write(self) -> None:
        if not self.rows["step"]:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        if not _have_polars():
            self._write_without_polars(tmp)
        else:
            df = self.frame()
            validate_frame(df, self.path)
            df.write_parquet(tmp)
        os.replace(tmp, self.path)

    # Where polars is missing (a bare GPU machine has pyarrow, not polars), the trainer still
    # writes the same file: same columns and types, the schema's checks done with numpy.
    def _write_without_polars(self, tmp: Path) -> None:
        import pyarrow as pa  # type: ignore[import-untyped]
        import pyarrow.parquet as pq  # type: ignore[import-untyped]

        cols = {k: np.asarray(self.rows[k], np.int64) for k in GROUP_COLUMNS}
        for k, minimum in (("step", 0), ("prompt_id", 0), ("n_rollouts", 1), ("n_correct", 0)):
            bad = np.flatnonzero(cols[k] < minimum)
            if len(bad):
                raise LogError(self.path, k, int(bad[0]), f"{k} = {cols[k][bad[0]]} is below {minimum}")
        bad = np.flatnonzero(cols["n_correct"] > cols["n_rollouts"])
        if len(bad):
            raise LogError(self.path, "n_correct", int(bad[0]), "n_correct exceeds n_rollouts")
        arrays = {k: pa.array(v, pa.int64()) for k, v in cols.items()}
        arrays["reward_mean"] = pa.array(np.asarray(self.rows["reward_mean"], np.float64), pa.float64())
        rewards = self.rows["rewards"]
        if all(r is not None for r in rewards):
            for i, r in enumerate(rewards):
                if len(r) != cols["n_rollouts"][i]:
                    raise LogError(self.path, "rewards", i, f"holds {len(r)} rewards for n_rollouts = {cols['n_rollouts'][i]}")
            arrays["rewards"] = pa.array(rewards, pa.list_(pa.float64()))
        pq.write_table(pa.table(arrays), tmp)

    def load(self, keep_below: int) -> None:
        """Read an existing log back, keeping the rows of steps < keep_below (resume)."""
        self.rows = {k: [] for k in LOG_COLUMNS}
        if not self.path.exists():
            return
        if not _have_polars():
            import pyarrow.parquet as pq  # type: ignore[import-untyped]

            table = pq.read_table(self.path).to_pydict()
            keep = [i for i, step in enumerate(table["step"]) if step < keep_below]
            for k in self.rows:
                self.rows[k] = [table[k][i] for i in keep] if k in table else [None] * len(keep)
            return
        pl = _pl()
        df = pl.read_parquet(self.path).filter(pl.col("step") < keep_below)
        for k in self.rows:
            self.rows[k] = df[k].to_list() if k in df.columns else [None] * df.height
