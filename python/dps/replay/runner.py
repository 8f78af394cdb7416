"""Replay one policy against one world for T steps, with the metrics of docs/method.md#metrics.

The step loop is `dps.run_step`, the same one the trainer uses. The policy is wrapped in a
transparent `Instrumented` policy that times the policy's own calls and, for a predictive policy
(one with `predicted_states(prompt_ids, n_rollouts)`, or a user's `predicted_state_probs`),
records its prediction for every group it rolled out: read after the rollout (the group sizes
are known then) and before `observe`, so from the state the selection was made in. Replay
scores the predicted P(partial) against what the world returned: Brier score, expected
calibration error (ECE, 10 equal-width bins) and the bins themselves (a reliability diagram).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dps.outcomes import GroupOutcomes, effective_ratio
from dps.policies.base import LaggedSteps, Policy, check_lag, policy_size
from dps.policies.builtin import prediction_scores
from dps.replay.worlds import World


def _predicts(obj: Any) -> bool:
    return callable(getattr(obj, "predicted_states", None)) or callable(getattr(obj, "predicted_state_probs", None))


def find_predictor(policy: Any) -> Any:
    """The object whose predictions describe the policy's selection (itself or a gate's selector), or None."""
    if _predicts(policy):
        return policy
    inner = getattr(policy, "selector", None)
    if inner is not None and _predicts(inner):
        return inner
    return None


def predicted_states(predictor: Any, ids: np.ndarray, n_rollouts: np.ndarray) -> np.ndarray:
    """(n, 3) P(unsolved, partial, solved) the predictor gives the groups just rolled out."""
    if callable(getattr(predictor, "predicted_states", None)):
        probs = predictor.predicted_states(ids, n_rollouts)
    else:
        probs = predictor.predicted_state_probs(ids)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape != (len(ids), 3):
        name = type(predictor).__name__
        raise ValueError(f"{name}'s prediction has shape {probs.shape} for {len(ids)} groups, expected ({len(ids)}, 3)")
    return probs


#: Equal-width bins of predicted P(partial) for the ECE and the reliability diagram.
RELIABILITY_BINS = 10


def reliability_bins(p: np.ndarray, y: np.ndarray, n_bins: int = RELIABILITY_BINS) -> np.ndarray:
    """(n_bins, 3): per bin of predicted probability, the count, the sum of predictions and of outcomes."""
    which = np.minimum((np.asarray(p) * n_bins).astype(np.int64), n_bins - 1)
    out = np.zeros((n_bins, 3))
    out[:, 0] = np.bincount(which, minlength=n_bins)
    out[:, 1] = np.bincount(which, weights=p, minlength=n_bins)
    out[:, 2] = np.bincount(which, weights=np.asarray(y, np.float64), minlength=n_bins)
    return out


def expected_calibration_error(bins: np.ndarray) -> float:
    """sum over bins of (share of predictions) x |mean prediction - observed frequency|; NaN without any."""
    count = bins[:, 0]
    total = count.sum()
    if total == 0:
        return float("nan")
    full = count > 0
    return float(np.sum(np.abs(bins[full, 1] - bins[full, 2])) / total)


class Instrumented(Policy):
    """Delegates every call to `inner`; measures its time and records predictions."""

    def __init__(self, inner: Policy):
        self.inner = inner
        self.__wrapped__ = inner  # errors name the user's policy (policy_name), not this wrapper
        self.num_prompts = policy_size(inner)
        self.predictor = find_predictor(inner)
        self.max_rounds = int(getattr(inner, "max_rounds", 1))
        self.policy_time = 0.0
        self.predicted: list[np.ndarray] = []  # (n, 3) predicted states of each round's groups

    def select(self, batch_size: int) -> np.ndarray:
        t = time.perf_counter()
        ids = self.inner.select(batch_size)
        self.policy_time += time.perf_counter() - t
        return ids

    def round_size(self, batch_size: int, rounds: Any) -> int:
        return self.inner.round_size(batch_size, rounds)

    def admit(self, prompt_ids: np.ndarray, n_correct: np.ndarray, n_rollouts: np.ndarray) -> np.ndarray:
        return self.admit_groups(GroupOutcomes.counts(prompt_ids, n_correct, n_rollouts))

    def admit_groups(self, groups: GroupOutcomes) -> np.ndarray:
        if self.predictor is not None:  # before admit and observe: the state the selection saw
            self.predicted.append(predicted_states(self.predictor, groups.prompt_ids, groups.n_rollouts))
        t = time.perf_counter()
        keep = self.inner.admit_groups(groups)
        self.policy_time += time.perf_counter() - t
        return keep

    def observe(self, prompt_ids: np.ndarray, n_correct: np.ndarray, n_rollouts: np.ndarray) -> None:
        self.observe_groups(GroupOutcomes.counts(prompt_ids, n_correct, n_rollouts))

    def observe_groups(self, groups: GroupOutcomes, *, in_flight: bool = False) -> None:
        t = time.perf_counter()
        self.inner.observe_groups(groups, in_flight=in_flight)
        self.policy_time += time.perf_counter() - t

    def in_flight(self) -> np.ndarray:
        return self.inner.in_flight()

    def abandon(self, prompt_ids: Any = None) -> np.ndarray:
        return self.inner.abandon(prompt_ids)

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)

    def metrics(self) -> dict[str, float]:
        return self.inner.metrics()

    def take_step_timing(self) -> tuple[float, np.ndarray | None]:
        """The policy's time this step and the (n, 3) predictions of the step's groups."""
        spent, self.policy_time = self.policy_time, 0.0
        pred = np.concatenate(self.predicted) if self.predicted else None
        self.predicted = []
        return spent, pred


#: Per-step columns of a replay (all arrays of length steps).
STEP_COLUMNS = (
    "step",
    "rounds",
    "groups",
    "rollouts",
    "trained",
    "effective",
    "shortfall",
    "effective_ratio",
    "cum_rollouts",
    "cum_effective_prompts",
    "rollouts_per_effective",
    "distinct_seen",
    "trained_accuracy",
    "policy_time_s",
    "world_time_s",
)
CONFUSION_COLUMNS = tuple(f"conf_{i}{j}" for i in range(3) for j in range(3))  # true i, predicted j


@dataclass
class ReplayResult:
    steps: dict[str, np.ndarray]
    summary: dict[str, Any]
    sample_counts: np.ndarray = field(repr=False)
    #: every rolled-out group as a per-group log (step, prompt_id, n_rollouts, n_correct), when recorded;
    #: with prompt_key (a polars Series: the user's own ids) where the world's dense ids are not the user's
    groups: dict[str, Any] | None = field(default=None, repr=False)
    #: a predictive policy's reliability bins of P(partial): (RELIABILITY_BINS, 3) count, sum of
    #: predictions, sum of outcomes (see reliability_bins); None for a policy that predicts nothing
    reliability: np.ndarray | None = field(default=None, repr=False)


def gini(x: np.ndarray) -> float:
    x = np.sort(np.asarray(x, np.float64))
    n, s = len(x), x.sum()
    if n == 0 or s == 0:
        return 0.0
    return float((2 * np.arange(1, n + 1) - n - 1) @ x / (n * s))


def replay(
    policy: Policy,
    world: World,
    steps: int,
    batch_size: int,
    seed: int = 0,
    progress: Any = None,
    record: bool = False,
    lag: int = 0,
) -> ReplayResult:
    """Replay `policy` for `steps` steps of `world`; outcome noise keyed by `seed`.

    With `record`, every rolled-out group is kept, as a training run would log it. With `lag` L,
    the policy selects step t having observed the groups of steps up to t - 1 - L (selections in
    flight, `LaggedSteps`); L = 0 is the lockstep loop.
    """
    if steps < 1:
        raise ValueError("steps must be positive")
    if not 0 < batch_size <= policy_size(policy):
        raise ValueError(f"batch_size {batch_size} must be in [1, num_prompts={policy.num_prompts}]")
    if policy.num_prompts > world.num_prompts:
        raise ValueError(f"the policy has {policy.num_prompts} prompts, the world only {world.num_prompts}")
    check_lag(policy, lag)
    wrapped = Instrumented(policy)
    loop = LaggedSteps(wrapped, lag)
    out = {
        c: np.zeros(steps, np.float64 if c.endswith(("_ratio", "_s", "_effective", "_accuracy")) else np.int64)
        for c in STEP_COLUMNS
    }
    predictive = wrapped.predictor is not None
    conf_steps = np.zeros((steps, 3, 3), np.int64) if predictive else None
    bins = np.zeros((RELIABILITY_BINS, 3)) if predictive else None
    squared_error = 0.0
    counts = np.zeros(policy.num_prompts, np.int64)
    seen = 0
    cum_r = cum_e = 0
    world_time = 0.0
    world.reset()
    world.set_seed(seed)
    rec: list[tuple[int, GroupOutcomes]] = []
    wall0 = time.perf_counter()
    for t in range(steps):
        world_time = 0.0

        def rollout(ids: np.ndarray, t: int = t) -> GroupOutcomes:
            nonlocal world_time
            w0 = time.perf_counter()
            res = world.rollout_groups(t, ids, seed)
            world_time += time.perf_counter() - w0
            return res

        res = loop.step(batch_size, rollout)
        policy_time, pred = wrapped.take_step_timing()
        ids = res.prompt_ids
        before = counts[ids] == 0
        seen += int(before.sum())
        np.add.at(counts, ids, 1)
        states = res.groups.states
        if record:
            rec.append((t, res.groups))
        tr = res.trained
        if res.groups.n_correct is not None:
            world.learn(t, ids[tr], res.groups.n_correct[tr], res.n_rollouts[tr])
        eff = int(np.sum(states[tr] == 1))
        cum_r += res.rollouts
        cum_e += eff
        out["step"][t] = t
        out["rounds"][t] = res.rounds
        out["groups"][t] = len(ids)
        out["rollouts"][t] = res.rollouts
        out["trained"][t] = len(tr)
        out["effective"][t] = eff
        out["shortfall"][t] = res.shortfall
        out["effective_ratio"][t] = effective_ratio(eff, len(tr))
        out["cum_rollouts"][t] = cum_r
        out["cum_effective_prompts"][t] = cum_e
        out["rollouts_per_effective"][t] = cum_r / cum_e if cum_e else np.nan
        out["distinct_seen"][t] = seen
        n_tr = res.n_rollouts[tr].sum()
        out["trained_accuracy"][t] = res.groups.successes[tr].sum() / n_tr if n_tr else np.nan
        out["policy_time_s"][t] = policy_time
        out["world_time_s"][t] = world_time
        if conf_steps is not None and bins is not None and pred is not None and len(pred) == len(ids):
            np.add.at(conf_steps[t], (states, np.argmax(pred, axis=1)), 1)
            p_partial, partial = pred[:, 1], states == 1
            bins += reliability_bins(p_partial, partial)
            squared_error += float(np.sum((p_partial - partial) ** 2))
        if progress is not None:
            progress()
    wall = time.perf_counter() - wall0
    if conf_steps is not None:
        for c, (i, j) in zip(CONFUSION_COLUMNS, [(i, j) for i in range(3) for j in range(3)], strict=True):
            out[c] = conf_steps[:, i, j].copy()
    trained_total = int(out["trained"].sum())
    summary: dict[str, Any] = {
        "steps": steps,
        "batch_size": batch_size,
        "effective_ratio": effective_ratio(int(out["effective"].sum()), trained_total),
        "rollouts": int(out["rollouts"].sum()),
        "effective_prompts": int(out["effective"].sum()),
        "rollouts_per_effective": float(out["rollouts"].sum() / max(1, out["effective"].sum())),
        "trained_groups": trained_total,
        "shortfall": int(out["shortfall"].sum()),
        "mean_rounds": float(out["rounds"].mean()),
        "distinct_prompts": int(seen),
        "distinct_share": float(seen / policy.num_prompts),
        "count_mean": float(counts.mean()),
        "count_cv": float(counts.std() / counts.mean()) if counts.mean() else 0.0,
        "count_max": int(counts.max()),
        "count_gini": gini(counts),
        "policy_ms_per_step": float(1e3 * out["policy_time_s"].mean()),
        "world_ms_per_step": float(1e3 * out["world_time_s"].mean()),
        "wall_s": wall,
        "predictive": predictive,
        "lag": int(lag),
    }
    if conf_steps is not None:
        summary.update(prediction_scores(conf_steps.sum(axis=0)))
    else:
        summary.update(dict.fromkeys(("pred_accuracy", "pred_precision", "pred_recall", "pred_f1"), float("nan")))
    summary.update(calibration_summary(bins, squared_error))
    groups = recorded_groups(rec, world) if record else None
    return ReplayResult(out, summary, counts, groups, bins)


def calibration_summary(bins: np.ndarray | None, squared_error: float) -> dict[str, float]:
    """Brier score and ECE of the predicted P(partial) over the scored groups (NaN without predictions)."""
    scored = 0.0 if bins is None else float(bins[:, 0].sum())
    if bins is None or scored == 0:
        return {"pred_groups": scored, "brier": float("nan"), "ece": float("nan")}
    return {"pred_groups": scored, "brier": squared_error / scored, "ece": expected_calibration_error(bins)}


def recorded_groups(rec: list[tuple[int, GroupOutcomes]], world: World) -> dict[str, Any]:
    """The recorded (step, groups) as a per-group log (counts, and rewards where the groups carry
    them), naming prompts by the user's ids where the world has them."""
    ids = np.concatenate([g.prompt_ids for _, g in rec])
    out: dict[str, Any] = {
        "step": np.concatenate([np.full(len(g), t, np.int64) for t, g in rec]),
        "prompt_id": ids,
    }
    keys = world.prompt_keys(ids)
    if keys is not None:
        out["prompt_key"] = keys
    out["n_rollouts"] = np.concatenate([g.n_rollouts for _, g in rec])
    for column in ("n_correct", "reward_mean", "reward_std"):
        parts = [getattr(g, column) for _, g in rec if len(g)]
        if parts and all(p is not None for p in parts):
            out[column] = np.concatenate(parts)
    return out


def lag_words(lag: int) -> str:
    """How the report names the lag between a selection and the observation of its groups."""
    if lag == 0:
        return "lockstep (lag 0: each step selected having observed every earlier step)"
    return f"lag {lag} (each step t selected having observed the groups of steps up to t - {1 + lag})"
