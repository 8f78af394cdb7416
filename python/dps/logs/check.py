"""Checking a log in schema names and normalising it: dense prompt ids, groups sorted by step.

Errors name the file's own column names (`LogSpec.columns`) and the first bad row.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dps.logs.schema import (
    DEFAULT_THRESHOLD,
    GROUP_COLUMNS,
    SCHEMA_COLUMNS,
    LoadedLog,
    LogError,
    LogInfo,
    LogSpec,
    _pl,
)

if TYPE_CHECKING:
    import polars as pl

#: The most training steps a log's steps may span: a replay runs (and keeps a few numbers for) every step of the range.
MAX_STEP_SPAN = 1_000_000
#: The most prompts a log read with prompt_ids = "index" may name (its ids are dataset indices; every policy keeps
#: state for each of them).
MAX_INDEX_PROMPTS = 100_000_000
#: The most responses one group may hold.
MAX_GROUP_SIZE = 100_000


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
        if self.df[name].dtype.is_float():
            bad = self.first(s.is_infinite())
            if bad is not None:
                raise self.error(name, bad, f"is {self.df[name][bad]}, not a finite number")

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


def _suggestion(name: str, available: list[str], near: str | None = None) -> str | None:
    """A column of the file that likely is schema column `name` (or close to the name `near`)."""
    import difflib

    hits = [c for c in available if c.lower() in ALIASES.get(name, ()) or (name in c.lower() and c != name)]
    if near is not None:
        hits = difflib.get_close_matches(near, available, n=1) + hits
    return hits[0] if hits else None


def _suggest(name: str, available: list[str], near: str | None = None) -> str:
    hit = _suggestion(name, available, near)
    return f"; perhaps --column {name}={hit}" if hit else ""


def _check_mapped(path: str | Path, spec: LogSpec, available: list[str]) -> None:
    """Every column the user mapped, or named to group by, exists in the file (a typo otherwise
    reads as a missing column, or is ignored)."""
    for name, col in spec.columns.items():
        if available and col not in available:
            raise LogError(
                path,
                col,
                None,
                f"no such column (mapped with --column {name}={col}, or columns.{name}); the file has "
                f"{', '.join(available)}{_suggest(name, available, near=col)}",
            )
    for col in spec.group_by:
        if available and col not in available:
            raise LogError(
                path,
                col,
                None,
                f"no such column (given as --group-by {col}, or group_by); the file has {', '.join(available)}",
            )


def _require_a_layout(df: pl.DataFrame, path: str | Path, spec: LogSpec, available: list[str]) -> None:
    """A file with neither layout's columns: say what each layout needs, and which of the file's
    columns may be them."""
    if spec.layout is not None or {"n_rollouts", "n_correct", "reward", "correct"} & set(df.columns):
        return

    def hint(names: tuple[str, ...]) -> list[str]:
        found = [f"--column {n}={hit}" for n in names if n not in df.columns and (hit := _suggestion(n, available))]
        return found[:1]

    hints = hint(("step",)) + hint(("prompt_id",)) + hint(("reward", "correct", "n_correct", "n_rollouts"))
    raise LogError(
        path,
        None,
        None,
        "missing: a log needs either n_rollouts and n_correct (one row per group) or reward or correct (one row per "
        'response, scored), under those names or mapped to them (--column reward=NAME, or columns.reward = "NAME")'
        + (f"; the file has {', '.join(available)}" if available else "")
        + (f"; perhaps {' '.join(hints)}" if hints else ""),
    )


def _require(df: pl.DataFrame, path: str | Path, spec: LogSpec, layout: str, available: list[str]) -> None:
    _check_mapped(path, spec, available)
    _require_a_layout(df, path, spec, available)
    required = list(GROUP_COLUMNS) if layout == "group" else ["step", "prompt_id"]
    if layout == "group" and graded_columns(df.columns):
        required.remove("n_correct")  # graded groups: success counted from the rewards
    if layout == "response" and not {"reward", "correct"} & set(df.columns):
        required.append("reward")
    has = f"; the file has {', '.join(available)}" if available else ""
    for name in required:
        if name not in df.columns and not (name == "prompt_id" and "prompt_key" in df.columns):
            col = spec.file_column(name)
            hint = (
                f' (map a column of yours to it with columns.{name} = "NAME" or --column {name}=NAME)'
                if col == name
                else ""
            )
            graded = " (or graded rewards: rewards, or reward_mean and reward_std)" if name == "n_correct" else ""
            raise LogError(
                path,
                col,
                None,
                f"missing: a {layout} log needs {', '.join(required)}{graded}{hint}{has}{_suggest(name, available)}",
            )
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
    _check_step_span(chk)
    if layout == "group":
        correctness, threshold, rewards = _check_groups(chk)
    else:
        correctness, threshold = _check_responses(chk)
        rewards = None
        if "reward" in chk.df.columns:
            rewards = f"{chk.spec.file_column('reward')} per response (each group's mean and spread)"
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
            raise LogError(
                path, spec.file_column("kind"), None, "missing: kinds were asked for, but the log has no kind column"
            )
        frame = frame.filter(pl.col("kind").is_in(list(spec.kinds)))
        if frame.height == 0:
            raise LogError(path, spec.file_column("kind"), None, f"no rows of kind {', '.join(spec.kinds)}")
    frame = _sorted(_order(frame, spec))
    used = {name: spec.file_column(name) for name in df.columns if name in SCHEMA_COLUMNS and name != "prompt_key"}
    used["prompt_id"] = chk.spec.file_column("prompt_id")  # the file's prompt_key, where it has one
    info = LogInfo(
        str(path),
        "frame",
        1,
        layout,
        rows,
        used,
        id_type,
        mapping,
        len(keys),
        correctness,
        threshold,
        spec.kinds,
        rewards,
    )
    return LoadedLog(frame, info, keys)


def _check_step_span(chk: _Checker) -> None:
    """Steps are labels of training steps, but a replay runs every step between the first and the
    last: a range past MAX_STEP_SPAN is refused, naming a row on the far side of the widest gap
    between logged steps (the side with fewer rows: the likely corrupt ones)."""
    pl = _pl()
    step = chk.df["step"]
    lo, hi = int(step.min()), int(step.max())  # type: ignore[arg-type]
    if hi - lo + 1 <= MAX_STEP_SPAN:
        return
    distinct = step.unique().sort().to_numpy()
    j = int(np.argmax(np.diff(distinct)))
    below, above = int(distinct[j]), int(distinct[j + 1])
    low_side = int((step <= below).sum()) <= step.len() // 2
    bad = chk.first(pl.col("step") <= below) if low_side else chk.first(pl.col("step") >= above)
    assert bad is not None  # both sides of the gap hold rows
    value = int(chk.df["step"][bad])
    where = (
        f"{above - value:,} steps before the next logged step {above}"
        if low_side
        else f"{value - below:,} steps after the previous logged step {below}"
    )
    raise chk.error(
        "step",
        bad,
        f"is {value}, {where}: the log's {len(distinct):,} distinct steps span {lo}..{hi}, and a "
        f"replay runs every step of that range (at most {MAX_STEP_SPAN:,}). A corrupt row? Fix or drop it; steps must "
        'count training steps (else map another column: [world.columns] step = "...", or --column step=...)',
    )


def graded_columns(columns: Any) -> bool:
    """Whether a per-group log's columns carry each group's reward spread (graded rewards)."""
    return "rewards" in columns or {"reward_mean", "reward_std"} <= set(columns)


def _check_groups(chk: _Checker) -> tuple[str, float | None, str | None]:
    """Check the group columns; return (where n_correct came from, the threshold used or None,
    where the graded rewards came from or None)."""
    pl = _pl()
    chk.whole("n_rollouts", 1)
    df = chk.df
    bad = chk.first(pl.col("n_rollouts") > MAX_GROUP_SIZE)
    if bad is not None:
        raise chk.error(
            "n_rollouts",
            bad,
            f"is {df['n_rollouts'][bad]}: a group of more than {MAX_GROUP_SIZE:,} responses (a corrupt row?)",
        )
    if "n_correct" in df.columns:
        chk.whole("n_correct", 0)
        bad = chk.first(pl.col("n_correct") > pl.col("n_rollouts"))
        if bad is not None:
            raise chk.error(
                "n_correct", bad, f"n_correct = {df['n_correct'][bad]} exceeds n_rollouts = {df['n_rollouts'][bad]}"
            )
    rewards = _check_group_rewards(chk)
    if "n_correct" in chk.df.columns:
        return "n_correct as logged", None, rewards
    th = float(chk.spec.threshold)
    if "rewards" in chk.df.columns:
        counted = pl.col("rewards").list.eval(pl.element() >= th).list.sum()
        chk.df = chk.df.with_columns(counted.cast(pl.Int64).alias("n_correct"))
        return f"{chk.spec.file_column('rewards')} >= {th:g} (no n_correct column)", th, rewards
    share = pl.col("reward_mean").clip(0.0, 1.0) * pl.col("n_rollouts")
    chk.df = chk.df.with_columns(share.round(0).cast(pl.Int64).alias("n_correct"))
    return f"round(n_rollouts x {chk.spec.file_column('reward_mean')}) (no n_correct column)", None, rewards


def _check_group_rewards(chk: _Checker) -> str | None:
    """Check the optional reward columns (finite numbers, a spread >= 0, one reward per response)
    and give every graded group its mean and spread; return where they came from, or None."""
    pl = _pl()
    columns = chk.df.columns
    if "reward_std" in columns and "reward_mean" not in columns and "rewards" not in columns:
        raise chk.error("reward_std", None, "needs reward_mean beside it (each group's mean reward)")
    for name in ("reward_mean", "reward_std"):
        if name in columns:
            chk.number(name)
            chk.df = chk.df.with_columns(pl.col(name).cast(pl.Float64))
    if "reward_std" in columns:
        bad = chk.first(pl.col("reward_std") < 0)
        if bad is not None:
            raise chk.error("reward_std", bad, f"is {chk.df['reward_std'][bad]}: a spread is >= 0")
    if "rewards" in columns:
        _check_reward_lists(chk)
        moments = {"reward_mean": pl.col("rewards").list.mean(), "reward_std": list_spread(pl.col("rewards"))}
        chk.df = chk.df.with_columns(e.alias(k) for k, e in moments.items() if k not in columns)
        return f"{chk.spec.file_column('rewards')} (each group's rewards)"
    if "reward_std" in columns:
        return f"{chk.spec.file_column('reward_mean')} and {chk.spec.file_column('reward_std')} as logged"
    return None


def _check_reward_lists(chk: _Checker) -> None:
    pl = _pl()
    s = chk.df["rewards"]
    if not isinstance(s.dtype, pl.List) or not (s.dtype.inner.is_float() or s.dtype.inner.is_integer()):
        raise chk.error("rewards", None, f"has type {s.dtype}, expected a list of floats")
    bad = chk.first(pl.col("rewards").is_null() | (pl.col("rewards").list.len() != pl.col("n_rollouts")))
    if bad is not None:
        raise chk.error("rewards", bad, "is null or its length differs from n_rollouts")
    chk.df = chk.df.with_columns(pl.col("rewards").cast(pl.List(pl.Float64)))
    finite = pl.col("rewards").list.eval(pl.element().is_finite() & pl.element().is_not_null()).list.all()
    bad = chk.first(~finite)
    if bad is not None:
        values = chk.df["rewards"][bad].to_list()
        first = next(v for v in values if v is None or not np.isfinite(v))
        raise chk.error("rewards", bad, f"holds {first}: every reward must be a finite number")


def list_spread(rewards: Any) -> Any:
    """Each list's population standard deviation, exactly 0 where its rewards are all equal."""
    pl = _pl()
    equal = rewards.list.max() == rewards.list.min()
    return pl.when(equal).then(0.0).otherwise(rewards.list.std(ddof=0))


def _check_responses(chk: _Checker) -> tuple[str, float | None]:
    """Check reward / correct; return (where correctness comes from, threshold used or None)."""
    pl = _pl()
    th = float(chk.spec.threshold)
    if "reward" in chk.df.columns:
        chk.number("reward")
        chk.df = chk.df.with_columns(pl.col("reward").cast(pl.Float64))
    if "correct" not in chk.df.columns:
        _check_threshold_splits(chk, "reward", th)
        return f"{chk.spec.file_column('reward')} >= {th:g}", th
    chk.number("correct")
    dtype = chk.df["correct"].dtype
    col = chk.spec.file_column("correct")
    if dtype == pl.Boolean:
        return f"{col} (true / false)", None
    if dtype.is_integer():
        bad = chk.first(~pl.col("correct").is_in([0, 1]))
        if bad is not None:
            raise chk.error(
                "correct", bad, f"is {chk.df['correct'][bad]}, expected 0 or 1 (or give a float score and a threshold)"
            )
        return f"{col} (0 / 1)", None
    _check_threshold_splits(chk, "correct", th)
    return f"{col} >= {th:g}", th


def _check_threshold_splits(chk: _Checker, name: str, threshold: float) -> None:
    """Scores that vary but all fall on one side of the threshold: a threshold that does not fit
    the scores (every replayed number would be 0 or NaN), refused. Scores that never vary are a
    log where every response was alike, and are read."""
    scores = chk.df[name].cast(_pl().Float64)
    lo, hi = float(scores.min()), float(scores.max())  # type: ignore[arg-type]
    if lo == hi or lo < threshold <= hi:
        return
    alike = "no response correct" if hi < threshold else "every response correct"
    raise chk.error(
        name,
        None,
        f"threshold {threshold:g} leaves {alike}: the scores lie in [{lo:g}, {hi:g}], and a response is correct when "
        "its score is >= the threshold; give one within them (--threshold X, or threshold = X in [world])",
    )


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
            "prompt_key",
            bad,
            "is null: every row needs the prompt's own id (a replay writes none for prompts its "
            "log never named, which a larger [world] num_prompts adds)",
        )
    if "prompt_id" in df.columns:
        for one, other in (("prompt_key", "prompt_id"), ("prompt_id", "prompt_key")):
            bad = chk.first(pl.col(other).n_unique().over(one) > 1)
            if bad is not None:
                raise chk.error(
                    one,
                    bad,
                    f"{df[one][bad]!r} is paired with more than one {chk.spec.file_column(other)}; "
                    "prompt_id and prompt_key must name the same prompts one to one",
                )
    chk.df = df.drop("prompt_id", strict=False).rename({"prompt_key": "prompt_id"})
    chk.spec = dataclasses.replace(
        chk.spec, columns={**chk.spec.columns, "prompt_id": chk.spec.file_column("prompt_key")}
    )


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
            raise chk.error(
                "prompt_id", None, f"has type {dtype}; prompt_ids = 'index' needs integer ids (use 'dense')"
            )
        chk.whole("prompt_id", 0)
        bad = chk.first(pl.col("prompt_id") >= MAX_INDEX_PROMPTS)
        if bad is not None:
            raise chk.error(
                "prompt_id",
                bad,
                f"is {chk.df['prompt_id'][bad]}: with prompt_ids = 'index' the ids are dataset indices, and every "
                f"policy keeps state for each prompt up to the largest (at most {MAX_INDEX_PROMPTS:,}); a corrupt "
                "row? Else use prompt_ids = 'dense'",
            )
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
    order = (
        "step",
        "prompt_id",
        "n_rollouts",
        "n_correct",
        "reward_mean",
        "reward_std",
        "rewards",
        "prompt_key",
        "kind",
    )
    front: list[str] = [c for c in order if c in frame.columns]
    rest = [c for c in spec.group_by if c in frame.columns and c not in front]
    return frame.select(front + rest)


def aggregate_responses(
    df: pl.DataFrame, threshold: float = DEFAULT_THRESHOLD, group_by: tuple[str, ...] = ()
) -> pl.DataFrame:
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
        reward = pl.col("reward").cast(pl.Float64)
        spread = pl.when(reward.max() == reward.min()).then(0.0).otherwise(reward.std(ddof=0))
        rewards = [reward.mean().alias("reward_mean"), spread.alias("reward_std"), reward.alias("rewards")]
    return (
        df.with_columns(correct.alias("_correct"))
        .group_by(keys, maintain_order=True)
        .agg(
            pl.len().cast(pl.Int64).alias("n_rollouts"),
            pl.col("_correct").sum().cast(pl.Int64).alias("n_correct"),
            *rewards,
        )
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
