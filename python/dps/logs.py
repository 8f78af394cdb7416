"""Rollout logs: the schema, reading, writing, aggregation and validation.

The log belongs to no single part of dps: the trainer and the framework integrations write it
(`RolloutLogWriter`), replay and `dps validate` read it.

Two layouts are accepted (see the README's replay section for the full description):

* per group, one row per (step, prompt) group: ``step``, ``prompt_id``, ``n_rollouts``,
  ``n_correct`` (all integers), optionally ``reward_mean`` (float) and ``rewards``
  (list of floats, one per response);
* per response, one row per scored response: ``step``, ``prompt_id``, ``reward`` (float),
  optionally ``correct`` (bool or 0/1 integer). It is aggregated into groups; a response counts
  as correct when ``correct`` is true or, without that column, when ``reward >= threshold``
  (default 0.5, so a small format bonus on a wrong answer does not count as correct).

Every check raises `LogError` (a ValueError) naming the file, the column and the first bad row
(0-based row number in the file as read).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import polars as pl

GROUP_COLUMNS = ("step", "prompt_id", "n_rollouts", "n_correct")
RESPONSE_COLUMNS = ("step", "prompt_id", "reward")
DEFAULT_THRESHOLD = 0.5


class LogError(ValueError):
    """A rollout log that does not follow the schema."""

    def __init__(self, path: str | Path, column: str | None, row: int | None, message: str):
        self.path, self.column, self.row = str(path), column, row
        where = [str(path)]
        if column is not None:
            where.append(f"column {column!r}")
        if row is not None:
            where.append(f"row {row}")
        super().__init__(f"{', '.join(where)}: {message}")


def _pl() -> Any:
    import polars as pl

    return pl


def _is_int(dtype: Any) -> bool:
    return bool(dtype.is_integer())


def _first_bad(df: pl.DataFrame, mask: pl.Series) -> int | None:
    idx = np.flatnonzero(mask.fill_null(True).to_numpy())
    return int(idx[0]) if len(idx) else None


def _check_int_column(df: pl.DataFrame, path: str | Path, col: str, minimum: int) -> None:
    s = df[col]
    if not _is_int(s.dtype):
        raise LogError(path, col, None, f"has type {s.dtype}, expected an integer type")
    bad = _first_bad(df, s.is_null())
    if bad is not None:
        raise LogError(path, col, bad, "is null")
    bad = _first_bad(df, s < minimum)
    if bad is not None:
        raise LogError(path, col, bad, f"is {s[bad]}, must be >= {minimum}")


def detect_layout(df: pl.DataFrame) -> str:
    """'group' or 'response', from the columns present."""
    cols = set(df.columns)
    if {"n_rollouts", "n_correct"} & cols:
        return "group"
    if "reward" in cols:
        return "response"
    return "group"  # validation will name the missing group columns


def validate_frame(df: pl.DataFrame, path: str | Path = "<frame>") -> str:
    """Check a log frame against the schema; return its layout. Raises LogError."""
    pl = _pl()
    layout = detect_layout(df)
    required = GROUP_COLUMNS if layout == "group" else RESPONSE_COLUMNS
    for col in required:
        if col not in df.columns:
            raise LogError(path, col, None, f"missing (a {layout} log needs columns {', '.join(required)})")
    if df.height == 0:
        raise LogError(path, None, None, "the log holds no rows")
    _check_int_column(df, path, "step", 0)
    _check_int_column(df, path, "prompt_id", 0)
    if layout == "group":
        _check_int_column(df, path, "n_rollouts", 1)
        _check_int_column(df, path, "n_correct", 0)
        bad = _first_bad(df, df["n_correct"] > df["n_rollouts"])
        if bad is not None:
            raise LogError(
                path, "n_correct", bad, f"n_correct = {df['n_correct'][bad]} exceeds n_rollouts = {df['n_rollouts'][bad]}"
            )
        if "reward_mean" in df.columns:
            s = df["reward_mean"]
            if not (s.dtype.is_float() or s.dtype.is_integer()):
                raise LogError(path, "reward_mean", None, f"has type {s.dtype}, expected a float")
            bad = _first_bad(df, s.is_null() | s.cast(pl.Float64).is_nan())
            if bad is not None:
                raise LogError(path, "reward_mean", bad, "is null or NaN")
        if "rewards" in df.columns:
            s = df["rewards"]
            if not isinstance(s.dtype, pl.List) or not (s.dtype.inner.is_float() or s.dtype.inner.is_integer()):
                raise LogError(path, "rewards", None, f"has type {s.dtype}, expected a list of floats")
            bad = _first_bad(df, s.is_null() | (s.list.len() != df["n_rollouts"]))
            if bad is not None:
                raise LogError(path, "rewards", bad, "is null or its length differs from n_rollouts")
        dup = df.select(pl.struct("step", "prompt_id").is_duplicated()).to_series()
        bad = _first_bad(df, dup)
        if bad is not None:
            raise LogError(
                path, "prompt_id", bad, f"duplicate group: step {df['step'][bad]}, prompt {df['prompt_id'][bad]} appears twice"
            )
    else:
        s = df["reward"]
        if not (s.dtype.is_float() or s.dtype.is_integer() or s.dtype == pl.Boolean):
            raise LogError(path, "reward", None, f"has type {s.dtype}, expected a float")
        bad = _first_bad(df, s.is_null() | s.cast(pl.Float64).is_nan())
        if bad is not None:
            raise LogError(path, "reward", bad, "is null or NaN")
        if "correct" in df.columns:
            c = df["correct"]
            if c.dtype != pl.Boolean and not c.dtype.is_integer():
                raise LogError(path, "correct", None, f"has type {c.dtype}, expected bool or 0/1 integer")
            bad = _first_bad(df, c.is_null() if c.dtype == pl.Boolean else (c.is_null() | ~c.is_in([0, 1])))
            if bad is not None:
                raise LogError(path, "correct", bad, "is null or not 0/1")
    return layout


def aggregate_responses(df: pl.DataFrame, threshold: float = DEFAULT_THRESHOLD) -> pl.DataFrame:
    """Per-response rows -> per-group rows (sorted by step, prompt_id)."""
    pl = _pl()
    if "correct" in df.columns:
        correct = pl.col("correct").cast(pl.Int64)
    else:
        correct = (pl.col("reward").cast(pl.Float64) >= threshold).cast(pl.Int64)
    return (
        df.with_columns(correct.alias("_correct"), pl.col("reward").cast(pl.Float64))
        .group_by("step", "prompt_id", maintain_order=True)
        .agg(
            pl.len().cast(pl.Int64).alias("n_rollouts"),
            pl.col("_correct").sum().cast(pl.Int64).alias("n_correct"),
            pl.col("reward").mean().alias("reward_mean"),
            pl.col("reward").alias("rewards"),
        )
        .with_columns(pl.col("step").cast(pl.Int64), pl.col("prompt_id").cast(pl.Int64))
        .sort("step", "prompt_id")
    )


def normalise_groups(df: pl.DataFrame) -> pl.DataFrame:
    pl = _pl()
    return df.with_columns(
        *(pl.col(c).cast(pl.Int64) for c in GROUP_COLUMNS)
    ).sort("step", "prompt_id")


def read_log(path: str | Path, threshold: float = DEFAULT_THRESHOLD) -> pl.DataFrame:
    """Read and validate a log (either layout); return it per group, sorted by step, prompt_id."""
    pl = _pl()
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such log file")
    try:
        df = pl.read_parquet(path)
    except Exception as e:  # polars raises several error types for non-Parquet input
        raise LogError(path, None, None, f"not a readable Parquet file ({e})") from e
    return frame_to_groups(df, path, threshold)


def frame_to_groups(df: pl.DataFrame, path: str | Path = "<frame>", threshold: float = DEFAULT_THRESHOLD) -> pl.DataFrame:
    layout = validate_frame(df, path)
    if layout == "response":
        return aggregate_responses(df, threshold)
    return normalise_groups(df)


def write_log(df: pl.DataFrame, path: str | Path) -> None:
    """Write a log frame (validated first) to Parquet."""
    validate_frame(df, path)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.write_parquet(path)


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


def describe(df: pl.DataFrame) -> dict[str, Any]:
    """A few facts about a per-group log, for `dps validate`."""
    step = df["step"].to_numpy()
    pid = df["prompt_id"].to_numpy()
    steps = df["step"].n_unique()
    prompts = df["prompt_id"].n_unique()
    c, n = df["n_correct"].to_numpy(), df["n_rollouts"].to_numpy()
    return {
        "groups": df.height,
        "steps": int(steps),
        "step_range": (int(step.min()), int(step.max())),
        "prompts": int(prompts),
        "max_prompt_id": int(pid.max()),
        "rollouts": int(n.sum()),
        "accuracy": float(c.sum() / n.sum()),
        "partial_share": float(np.mean((c > 0) & (c < n))),
        # share of all (step, prompt) cells in 0..max step x 0..max id that the log holds
        "coverage": float(df.height / ((int(step.max()) + 1) * (int(pid.max()) + 1))),
    }


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
        df = self.frame()
        validate_frame(df, self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        df.write_parquet(tmp)
        os.replace(tmp, self.path)

    def load(self, keep_below: int) -> None:
        """Read an existing log back, keeping the rows of steps < keep_below (resume)."""
        pl = _pl()
        self.rows = {k: [] for k in LOG_COLUMNS}
        if not self.path.exists():
            return
        df = pl.read_parquet(self.path).filter(pl.col("step") < keep_below)
        for k in self.rows:
            self.rows[k] = df[k].to_list() if k in df.columns else [None] * df.height
