"""The closed-loop world: a base world moved by the fitted training effect (see `.fit`).

`ClosedLoopWorld` wraps a base world (the open-loop estimate): its p for prompt i at step t is

    logit p = logit p_base + gain * (f_c(M_i^replay(t)) - f_c(M_i^log(t))),

the fitted effect of what the replayed policy trained on minus what the log's own run trained
on. With similarity groups (the effect's `groups`: prompts that are the same training input,
such as one question under several ids), M counts the trainings of the prompt's whole group. A
prompt whose shift is zero (its training in the replay equals the log's, or gain = 0) keeps
the base world's outcome (the logged one where the log has it), so replaying the logging policy
with the logging seed gives back the log. The drift d(t) stays as the log had it: the whole
model moves per step as in the logged run, whatever the replayed policy trains on.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np

from dps.config import Check
from dps.outcomes import partially_solved
from dps.replay.closedloop.effect import (
    TrainingEffect,
    decay_per_step,
    parse_half_life,
    parse_saturation,
    partial_trainings,
    trained_level,
)
from dps.replay.closedloop.fit import fit_training_effect
from dps.replay.closedloop.glm import PROB_CLIP
from dps.replay.worlds import World, draw_correct, sigmoid

if TYPE_CHECKING:
    import polars as pl

    from dps.logs import LoadedLog, LogSpec


def _auto_or(parse: Any) -> Any:
    """A test: "auto", or a value `parse` (parse_half_life, parse_saturation) takes."""

    def ok(value: Any) -> bool:
        try:
            return value == "auto" or parse(value, "") is not None
        except ValueError:
            return False

    return ok


def _cap_ok(v: float | str) -> bool:
    return v in ("none", "log") if isinstance(v, str) else v > 0


_NON_EMPTY = Check(bool, "a non-empty string")


@dataclass
class ClosedLoopSettings:
    """The [world] keys that shape a log world's closed loop (beside `closed_loop` itself, which says
    whether there is one and whether its gain is fitted or given); see docs/replay.md#closed-loop.

    None: the mode's default (`effect_half_life` "auto" for a fit, "inf" for a given gain;
    `effect_saturation` "auto" for a fit, "linear" for a given gain)."""

    #: the log of the groups the run trained on (default: the world's log)
    train_log: Annotated[str, _NON_EMPTY] | None = None
    effect_half_life: (
        Annotated[float | str, Check(_auto_or(parse_half_life), 'a positive number, "inf" or "auto"')] | None
    ) = None
    effect_saturation: (
        Annotated[float | str, Check(_auto_or(parse_saturation), '"auto", "linear" (or "inf") or a positive number')]
        | None
    ) = None
    #: the most (decayed) trainings of one prompt that count: "none", "log" (the log's most) or a number
    effect_cap: Annotated[float | str, Check(_cap_ok, '"none", "log" or a positive number of trainings')] = "none"
    prompt_table: Annotated[str, _NON_EMPTY] | None = None
    similar_by: Annotated[str, _NON_EMPTY] | None = None
    drift_by: Annotated[str, _NON_EMPTY] | None = None

    def problem(self, fitted: bool) -> tuple[str, str] | None:
        """(key, what is wrong) for settings that do not go together, or None; `fitted`: closed_loop = "fit"."""
        own = "with a gain of your own give a number or"
        if not fitted and self.effect_half_life == "auto":
            return "effect_half_life", f'"auto" needs closed_loop = "fit"; {own} "inf"'
        if not fitted and self.effect_saturation == "auto":
            return "effect_saturation", f'"auto" needs closed_loop = "fit"; {own} "linear"'
        labels = [key for key in ("similar_by", "drift_by") if getattr(self, key) is not None]
        if labels and self.prompt_table is None:
            return labels[0], 'names a column of the prompt table; give prompt_table = "prompts.parquet" too'
        if self.prompt_table is not None and not labels:
            return "prompt_table", 'say which column to use: similar_by = "question" and/or drift_by = "level"'
        if self.drift_by is not None and not fitted:
            return "drift_by", 'only the fit uses it (closed_loop = "fit")'
        return None

    def cap(self) -> float | str:
        """`effect_cap` as ClosedLoopWorld takes it (inf for "none")."""
        return math.inf if self.effect_cap == "none" else self.effect_cap


#: Scenario [world] keys of the closed loop (log worlds only).
CLOSED_LOOP_KEYS = ("closed_loop", *(f.name for f in dataclasses.fields(ClosedLoopSettings)))

# --------------------------------------------------------------------------------------------
# The world


class ClosedLoopWorld(World):
    """A base world plus the training effect of what the replay trained on, minus the log's.

    `log_trainings`: the log run's trained groups (step, prompt_id, n_correct, n_rollouts), or
    None when the base world is itself an untrained, open-loop truth (then the effect of the
    replay's trainings is simply added).

    `cap`: the most (decayed) trainings of one prompt that count; the shift is
    level(min(M^replay, cap)) - level(min(M^log, cap)), level = the effect's gain * f(M). "log" caps at
    the most any prompt had in the log, so that the fitted line is never extrapolated past what the log measured.
    """

    def __init__(
        self,
        base: World,
        effect: TrainingEffect,
        log_trainings: pl.DataFrame | None = None,
        cap: float | str = math.inf,
    ):
        self.base = base
        self.effect = effect
        self.num_prompts, self.k, self.steps = base.num_prompts, base.k, base.steps
        self._rho = decay_per_step(effect.half_life)
        self._group = _groups_of(effect.groups, self.num_prompts)
        if log_trainings is not None and log_trainings.height:
            ls, lp = partial_trainings(log_trainings)
            if len(lp) and lp.max() >= self.num_prompts:
                raise ValueError(
                    f"the training log names prompt {int(lp.max())}, the world has {self.num_prompts} prompts"
                )
            ls = ls - int(getattr(base, "first_step", 0))  # a world that counts steps from its log's first one
            order = np.argsort(ls, kind="stable")
            self._log_steps, self._log_ids = ls[order], lp[order]
        else:
            self._log_steps, self._log_ids = np.zeros(0, np.int64), np.zeros(0, np.int64)
        if cap == "log":
            g = self._group
            after = trained_level(
                self._log_steps + 1,
                g[self._log_ids],
                self._log_steps,
                g[self._log_ids],
                effect.half_life,
                int(g.max()) + 1,
            )
            cap = float(after.max()) if len(after) else 0.0
        self.cap = float(cap)
        self.reset()

    def with_effect(self, effect: TrainingEffect) -> ClosedLoopWorld:
        """The same world (base and log trainings shared) with another effect: an interval's draw."""
        other = copy.copy(self)
        other.effect, other._rho = effect, decay_per_step(effect.half_life)
        other.reset()
        return other

    def set_seed(self, seed: int) -> None:
        self.base.set_seed(seed)

    def reset(self) -> None:
        self.base.reset()
        groups = int(self._group.max()) + 1
        self._replay = np.zeros(groups)  # M^replay of each group at step self._at
        self._log = np.zeros(groups)  # M^log of each group at step self._at
        self._at = 0
        self._pending: dict[int, list[np.ndarray]] = {}

    def learn(self, step: int, ids: np.ndarray, n_correct: np.ndarray, n_rollouts: np.ndarray) -> None:
        ids = np.asarray(ids, np.int64)
        if step < self._at:
            raise ValueError(f"learn at step {step} after the world moved to step {self._at}")
        partial = partially_solved(n_correct, n_rollouts)
        self._pending.setdefault(int(step), []).append(self._group[ids[partial]])
        self.base.learn(step, ids, n_correct, n_rollouts)

    def _advance(self, step: int) -> None:
        if step < self._at:
            raise ValueError(f"closed-loop world asked for step {step} after step {self._at}; call reset() first")
        while self._at < step:
            t = self._at
            if self._rho != 1.0:
                self._replay *= self._rho
                self._log *= self._rho
            for ids in self._pending.pop(t, []):
                np.add.at(self._replay, ids, 1.0)
            lo, hi = np.searchsorted(self._log_steps, [t, t + 1])
            if hi > lo:
                np.add.at(self._log, self._group[self._log_ids[lo:hi]], 1.0)
            self._at = t + 1

    def shift(self, step: int, ids: np.ndarray | None = None) -> np.ndarray:
        """The logit shift level(min(M^replay, cap)) - level(min(M^log, cap)) at `step`."""
        self._advance(int(step))
        sel = self._group if ids is None else self._group[np.asarray(ids, np.int64)]
        level = self.effect.level
        return level(np.minimum(self._replay[sel], self.cap)) - level(np.minimum(self._log[sel], self.cap))

    def p(self, step: int, ids: np.ndarray | None = None) -> np.ndarray:
        base = np.clip(np.asarray(self.base.p(step, ids), np.float64), PROB_CLIP, 1 - PROB_CLIP)
        return sigmoid(np.log(base) - np.log1p(-base) + self.shift(step, ids))

    def rollout(self, step: int, ids: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray(ids, np.int64)
        self._advance(int(step))
        nc, nr = self.base.rollout(step, ids, seed)  # also sets the base's per-seed state
        moved = self.shift(step, ids) != 0.0  # where the replay's training differs from the log's
        if moved.any():
            nc, nr = np.array(nc, np.int64), np.array(nr, np.int64)
            nc[moved] = draw_correct(seed, step, ids[moved], self.p(step, ids[moved]), self.k)
            nr[moved] = self.k
        return nc, nr

    def describe(self) -> dict[str, Any]:
        d = self.base.describe()
        d.update({f"closed_loop_{k}": v for k, v in self.effect.describe().items()})
        d["closed_loop_cap"] = "none" if math.isinf(self.cap) else round(self.cap, 3)
        d["kind"] = f"ClosedLoop({d['kind']})"
        return d


def _groups_of(groups: np.ndarray | None, num_prompts: int) -> np.ndarray:
    """Each prompt id's group; prompts past the labelled ones (or all, without labels) stand alone."""
    if groups is None:
        return np.arange(num_prompts, dtype=np.int64)
    g = np.asarray(groups, np.int64)[:num_prompts]
    extra = num_prompts - len(g)
    return np.concatenate([g, int(g.max(initial=-1)) + 1 + np.arange(extra, dtype=np.int64)]) if extra > 0 else g


# --------------------------------------------------------------------------------------------
# From a scenario


def training_rows(groups: pl.DataFrame) -> pl.DataFrame:
    """The trained groups of a log: rows of kind "train" when it has a `kind` column, else all.

    A trainer's rollout log holds a gate's rejected groups too; they are not partially solved
    (that is why they were rejected), so they never count as trainings anyway.
    """
    import polars as pl

    if "kind" in groups.columns:
        return groups.filter(pl.col("kind") == "train")
    return groups


def _onto(train: LoadedLog, world: LoadedLog, path: str) -> pl.DataFrame:
    """The training log's groups with the world log's dense prompt ids (matched on the user's ids)."""
    import polars as pl

    if world.info.id_mapping == "index" or (
        world.info.id_mapping == "identity" and train.info.id_mapping == "identity"
    ):
        return train.groups
    index = pl.DataFrame({"prompt_key": world.keys, "_id": np.arange(len(world.keys), dtype=np.int64)})
    g = train.groups.join(index, on="prompt_key", how="left")
    missing = g.filter(pl.col("_id").is_null())
    if missing.height:
        raise ValueError(f"{path}: prompt {missing['prompt_key'][0]!r} of the training log is not in the world's log")
    return g.with_columns(pl.col("_id").alias("prompt_id")).drop("_id")


def closed_loop_world(
    base: World,
    log: str,
    spec: LogSpec,
    gain: float | str,
    settings: ClosedLoopSettings,
    effect: TrainingEffect | None = None,
) -> ClosedLoopWorld:
    """Wrap the open-loop world `base` of `log` (read with `spec`) in the closed loop: `gain` "fit"
    (fitted from the log) or a logit gain of one's own, shaped by `settings`.

    The fit sees every row of the world's log (any kind) and of `train_log`; trainings are the
    training log's rows of kind "train" (all its rows when it has no kind column). `effect`: one
    fitted already (a sweep's worker gets the main process's), so the log is not fitted again.
    """
    import polars as pl

    from dps.logs import load_log

    spec = dataclasses.replace(spec, kinds=None)
    world_log = load_log(log, spec)
    observations = world_log.groups
    train_log = settings.train_log or log
    if train_log != log:
        trainings = training_rows(_onto(load_log(train_log, spec), world_log, train_log))
        cols = ["step", "prompt_id", "n_rollouts", "n_correct"]
        observations = pl.concat([observations.select(cols), trainings.select(cols)])
    else:
        trainings = training_rows(observations)
    if trainings.height == 0:
        raise ValueError(f"{train_log}: no trained groups (rows of kind 'train') to fit the closed loop from")
    if effect is None:
        effect = training_effect(observations, trainings, gain, settings, world_log, base.num_prompts)
    return ClosedLoopWorld(base, effect, trainings, settings.cap())


def training_effect(
    observations: pl.DataFrame,
    trainings: pl.DataFrame,
    gain: float | str,
    settings: ClosedLoopSettings,
    world_log: LoadedLog,
    num_prompts: int,
) -> TrainingEffect:
    """The effect `gain` asks for: fitted from the log ("fit"), or the given gain with the given shape."""
    groups, strata = prompt_labels(settings, world_log, num_prompts)
    if gain == "fit":
        return fit_training_effect(
            observations,
            trainings,
            settings.effect_half_life or "auto",
            num_prompts,
            saturation=settings.effect_saturation or "auto",
            groups=groups,
            strata=strata,
            spillover=settings.similar_by or "",
            drift_by=settings.drift_by or "",
        )
    return TrainingEffect(
        gain=float(gain),
        half_life=parse_half_life(settings.effect_half_life or "inf", "effect_half_life"),
        saturation=parse_saturation(settings.effect_saturation or "linear", "effect_saturation"),
        groups=groups,
        spillover=settings.similar_by or "",
    )


def prompt_labels(
    settings: ClosedLoopSettings, world_log: LoadedLog, num_prompts: int
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The prompt table's similar_by and drift_by columns as one integer per dense prompt id.

    The table's `prompt_id` column holds the log's own prompt ids. Prompts the table leaves out
    stand alone (a group of their own) and share one extra stratum.
    """
    import polars as pl

    path = settings.prompt_table
    if path is None:
        return None, None
    try:
        table = pl.read_parquet(path) if str(path).endswith(".parquet") else pl.read_csv(path)
    except (OSError, pl.exceptions.PolarsError) as e:
        raise ValueError(f"[world] prompt_table: cannot read {path} ({e})") from None
    out: list[np.ndarray | None] = []
    for key in ("similar_by", "drift_by"):
        column = getattr(settings, key)
        if column is None:
            out.append(None)
            continue
        for col in ("prompt_id", column):
            if col not in table.columns:
                raise ValueError(f"[world] {key}: {path} has no column {col!r} (it has {', '.join(table.columns)})")
        if world_log.info.id_mapping in ("identity", "index"):
            dense = pl.DataFrame({"prompt_id": np.arange(num_prompts, dtype=np.int64)})
            on = table.select(pl.col("prompt_id").cast(pl.Int64, strict=False), pl.col(column))
        else:
            dense = pl.DataFrame({"prompt_id": world_log.keys[:num_prompts]})
            on = table.select(pl.col("prompt_id").cast(world_log.keys.dtype, strict=False), pl.col(column))
        if on["prompt_id"].is_duplicated().any():
            twice = on.filter(on["prompt_id"].is_duplicated())["prompt_id"][0]
            raise ValueError(f"[world] prompt_table: {path} names prompt {twice!r} twice")
        label = dense.join(on, on="prompt_id", how="left")[column]
        codes = label.cast(pl.String).fill_null("").to_numpy()
        values, index = np.unique(codes, return_inverse=True)
        index = index.astype(np.int64).ravel()
        missing = label.is_null().to_numpy()
        if missing.any():  # unlabelled prompts: alone (groups) or together (strata)
            index[missing] = (len(values) + np.arange(int(missing.sum()))) if key == "similar_by" else len(values)
        out.append(index)
    return out[0], out[1]


# --------------------------------------------------------------------------------------------
# A training run's log, made in any world (the synthetic truth of the checks)


def training_log(
    world: World, policy: Any, steps: int, batch_size: int, seed: int, sweep_every: int = 0
) -> pl.DataFrame:
    """Run `policy` in `world` as a trainer would and log it: one row per rolled-out group.

    `kind` is "train" for the groups the policy trained on, "rejected" for those a gate threw
    away and, every `sweep_every` steps, "sweep" for every prompt rolled out with the current
    model before that step's update (untrained; outcome noise independent of the run's).
    """
    import polars as pl

    from dps.policies.base import run_step

    world.reset()
    world.set_seed(seed)
    parts: list[pl.DataFrame] = []
    every = np.arange(world.num_prompts, dtype=np.int64)

    def frame(t: int, ids: np.ndarray, nc: np.ndarray, nr: np.ndarray, kind: str) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "step": np.full(len(ids), t, np.int64),
                "prompt_id": ids,
                "n_rollouts": np.asarray(nr, np.int64),
                "n_correct": np.asarray(nc, np.int64),
                "kind": [kind] * len(ids),
            }
        )

    for t in range(steps):
        if sweep_every and t % sweep_every == 0:
            nc = draw_correct(seed + 0x5EE9, t, every, world.p(t, every), world.k)
            parts.append(frame(t, every, nc, np.full(len(every), world.k), "sweep"))

        def rollout(ids: np.ndarray, t: int = t) -> tuple[np.ndarray, np.ndarray]:
            return world.rollout(t, ids, seed)

        res = run_step(policy, batch_size, rollout)
        kind = np.full(len(res.prompt_ids), "rejected", dtype=object)
        kind[res.trained] = "train"
        for k in ("train", "rejected"):
            m = kind == k
            if m.any():
                parts.append(frame(t, res.prompt_ids[m], res.n_correct[m], res.n_rollouts[m], k))
        tr = res.trained
        world.learn(t, res.prompt_ids[tr], res.n_correct[tr], res.n_rollouts[tr])
    return pl.concat(parts)
