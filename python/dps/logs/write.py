"""Writing logs: a checked frame to a file, and `RolloutLogWriter` for trainers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dps.logs.read import validate_frame
from dps.logs.schema import FORMATS, GROUP_COLUMNS, LogError, _have_polars, _pl

if TYPE_CHECKING:
    import polars as pl


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
            raise ValueError(
                f"{path}: CSV cannot hold the list column(s) {', '.join(nested)}; write .parquet or .jsonl"
            )
        df.write_csv(path)


def groups_frame(
    step: np.ndarray, prompt_id: np.ndarray, n_rollouts: np.ndarray, n_correct: np.ndarray
) -> pl.DataFrame:
    pl = _pl()
    return pl.DataFrame(
        {
            "step": np.asarray(step, np.int64),
            "prompt_id": np.asarray(prompt_id, np.int64),
            "n_rollouts": np.asarray(n_rollouts, np.int64),
            "n_correct": np.asarray(n_correct, np.int64),
        }
    )


LOG_COLUMNS = ("step", "prompt_id", "n_rollouts", "n_correct", "reward_mean", "rewards", "selected_step")


class RolloutLogWriter:
    """Every rolled-out group of a run, kept in memory and rewritten atomically on `write()`.

    `add` takes one step's groups as arrays; `write` validates and replaces the file through a
    temporary one, so a reader (or a resumed run) never sees a torn file; `load(keep_below)`
    reads an existing file back, dropping the rows of steps >= keep_below (resume from a
    checkpoint of that step). A trainer that generates ahead gives each group's `selected_step`
    (the step that selected it; `step` is the one that observed it): a column readers ignore.
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
        selected_step: Any = None,
    ) -> None:
        ids = np.asarray(prompt_ids, np.int64)
        selected = None if selected_step is None else np.asarray(selected_step, np.int64)
        if selected is not None and selected.shape != ids.shape:
            raise ValueError("RolloutLogWriter.add: selected_step and prompt_ids differ in length")
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
            self.rows["selected_step"].append(None if selected is None else int(selected[i]))

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
        if self.rows["selected_step"] and all(s is not None for s in self.rows["selected_step"]):
            columns["selected_step"] = pl.Series(self.rows["selected_step"], dtype=pl.Int64)
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
        import pyarrow as pa
        import pyarrow.parquet as pq

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
                    raise LogError(
                        self.path, "rewards", i, f"holds {len(r)} rewards for n_rollouts = {cols['n_rollouts'][i]}"
                    )
            arrays["rewards"] = pa.array(rewards, pa.list_(pa.float64()))
        if all(s is not None for s in self.rows["selected_step"]):
            arrays["selected_step"] = pa.array(self.rows["selected_step"], pa.int64())
        pq.write_table(pa.table(arrays), tmp)

    def load(self, keep_below: int) -> None:
        """Read an existing log back, keeping the rows of steps < keep_below (resume)."""
        self.rows = {k: [] for k in LOG_COLUMNS}
        if not self.path.exists():
            return
        if not _have_polars():
            import pyarrow.parquet as pq

            table = pq.read_table(self.path).to_pydict()
            keep = [i for i, step in enumerate(table["step"]) if step < keep_below]
            for k in self.rows:
                self.rows[k] = [table[k][i] for i in keep] if k in table else [None] * len(keep)
            return
        pl = _pl()
        df = pl.read_parquet(self.path).filter(pl.col("step") < keep_below)
        for k in self.rows:
            self.rows[k] = df[k].to_list() if k in df.columns else [None] * df.height
