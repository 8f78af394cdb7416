"""The closed loop's training effect: how a prompt's trainings add up (`trained_level`), the shape of
their effect (`effect_curve`), and the fitted effect a closed-loop world applies (`TrainingEffect`).

gain * f_c(M) logits for M (decayed) trainings that gave a gradient, f_c(M) = c (1 - exp(-M / c))
(c = inf: the line), M decaying with the half-life h (rho = 2^(-1/h) per step; h = inf: permanent).
`dps.replay.closedloop.fit` fits it from a log; docs/replay.md#closed-loop says why this shape.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from dps.outcomes import partially_solved

if TYPE_CHECKING:
    import polars as pl


def decay_per_step(half_life: float) -> float:
    """rho: what one step leaves of a training's count (1 for a permanent effect)."""
    return 1.0 if math.isinf(half_life) else 0.5 ** (1.0 / half_life)


def trained_level(
    obs_step: np.ndarray,
    obs_pid: np.ndarray,
    train_step: np.ndarray,
    train_pid: np.ndarray,
    half_life: float,
    num_prompts: int,
) -> np.ndarray:
    """M_i(t) at each observation: trainings of the prompt at steps < t, decayed by the half-life."""
    rho = decay_per_step(half_life)
    level = np.zeros(num_prompts)
    at = np.zeros(num_prompts)  # the step at which `level` holds
    out = np.zeros(len(obs_step))
    t_order = np.argsort(train_step, kind="stable")
    o_order = np.argsort(obs_step, kind="stable")
    ts, tp = train_step[t_order], train_pid[t_order]
    os_, op = obs_step[o_order], obs_pid[o_order]
    steps = np.union1d(np.unique(ts), np.unique(os_))
    t_bounds = np.searchsorted(ts, np.append(steps, steps[-1] + 1) if len(steps) else [0])
    o_bounds = np.searchsorted(os_, np.append(steps, steps[-1] + 1) if len(steps) else [0])
    for j, t in enumerate(steps):
        lo, hi = o_bounds[j], o_bounds[j + 1]
        if hi > lo:  # observations at t see trainings before t
            ids = op[lo:hi]
            out[o_order[lo:hi]] = level[ids] * rho ** (t - at[ids]) if rho != 1.0 else level[ids]
        lo, hi = t_bounds[j], t_bounds[j + 1]
        if hi > lo:
            ids, n = np.unique(tp[lo:hi], return_counts=True)
            level[ids] = (level[ids] * rho ** (t + 1 - at[ids]) if rho != 1.0 else level[ids]) + n
            at[ids] = t + 1
    return out


def effect_curve(M: np.ndarray, saturation: float) -> np.ndarray:
    """f(M) = c (1 - exp(-M / c)) for saturation c: each training adds exp(-1 / c) times what the
    one before it added, and no number of them adds more than c (the rate's worth of c trainings
    at the start); c = inf: f(M) = M."""
    M = np.asarray(M, np.float64)
    if math.isinf(saturation):
        return M
    return -saturation * np.expm1(-M / saturation)


@dataclass
class TrainingEffect:
    """The fitted closed loop: gain * f(M) logits for M (decayed) trainings that gave a gradient.

    `gain` is the effect's initial rate per such training (the first adds gain * f(1), f(1) =
    c (1 - exp(-1 / c)): 1 for the line, 0.8 at c = 2.3); `saturation` the shape c of f (see
    effect_curve; inf: linear, every training adds `gain`); `half_life` how fast it fades (steps).
    """

    gain: float
    half_life: float = math.inf
    gain_se: float = float("nan")
    saturation: float = math.inf
    #: population drift d(t) at each observed step, relative to the first (logits)
    drift_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    drift: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    #: mean log-likelihood per rollout, and the gain, of each candidate half-life
    scores: dict[float, float] = field(default_factory=dict)
    gains: dict[float, float] = field(default_factory=dict)
    observations: int = 0
    trainings: int = 0
    prompts: int = 0
    #: total log-likelihood of each candidate saturation (the shape), with the half-life chosen
    shape_scores: dict[float, float] = field(default_factory=dict)
    #: the shape used when the log cannot tell: saturation at the log's own trainings per prompt
    shape_default: float = math.inf
    #: why this shape: "fitted" (the log prefers it), "default" (it cannot tell) or "given"
    shape_reason: str = "given"
    #: the similarity group of each prompt id (a training counts for its whole group), or None: each prompt alone
    groups: np.ndarray | None = field(default=None, repr=False)
    #: the prompt-table columns that gave the groups and the drift's strata ("" when not used)
    spillover: str = ""
    drift_by: str = ""
    #: Pearson's chi-square per degree of freedom of the fit (at least 1): likelihoods are divided by it
    dispersion: float = 1.0
    #: every shape fitted, with its weight: what an interval draws from (empty: the gain was given)
    candidates: list[Candidate] = field(default_factory=list, repr=False)

    def level(self, M: np.ndarray) -> np.ndarray:
        """The logit effect of M (decayed) trainings of a prompt."""
        return self.gain * effect_curve(M, self.saturation)

    def draw(self, rng: np.random.Generator) -> TrainingEffect:
        """One effect the log allows: a candidate shape by its weight, its gain from its sampling
        distribution (normal, standard error scaled by the dispersion; never below 0 logits)."""
        if not self.candidates:
            return self
        weights = np.array([c.weight for c in self.candidates])
        c = self.candidates[int(rng.choice(len(weights), p=weights / weights.sum()))]
        se = c.gain_se if math.isfinite(c.gain_se) else 0.0
        gain = max(0.0, float(rng.normal(c.gain, se)))
        return dataclasses.replace(self, gain=gain, gain_se=se, half_life=c.half_life, saturation=c.saturation)

    def shape_weights(self) -> dict[str, float]:
        """Weight of each saturation among the candidates (summed over half-lives), heaviest first."""
        out: dict[str, float] = {}
        for c in self.candidates:
            out[count_label(c.saturation)] = out.get(count_label(c.saturation), 0.0) + c.weight
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def first_training(self) -> float:
        """What a prompt's first training moves it by (logits)."""
        return float(self.level(np.array([1.0]))[0])

    def most(self) -> float:
        """The most any number of trainings moves a prompt (logits; inf for the line)."""
        return math.inf if math.isinf(self.saturation) else self.gain * self.saturation

    def shape_margin(self) -> float:
        """BIC's margin, 0.5 ln(observations): what a shape that departs from the default must gain."""
        return 0.5 * math.log(max(self.observations, 2))

    def describe(self) -> dict[str, Any]:
        """The effect as meta.json records it: rounded, "inf" for an infinite value (JSON has none)."""
        return {
            "gain": round(self.gain, 5),
            "gain_se": round(self.gain_se, 5),
            "first_training": round(self.first_training(), 5),
            "most": "inf" if math.isinf(self.saturation) else round(self.most(), 5),
            "half_life": "inf" if math.isinf(self.half_life) else self.half_life,
            "saturation": count_label(self.saturation),
            "shape": self.shape_reason,
            "shape_default": count_label(self.shape_default),
            "shape_loglik": {count_label(c): round(v, 2) for c, v in self.shape_scores.items()},
            "shape_margin": round(self.shape_margin(), 2),
            "drift_total": round(float(self.drift[-1]), 4) if len(self.drift) else 0.0,
            "spillover": self.spillover,
            "drift_by": self.drift_by,
            "dispersion": round(self.dispersion, 3),
            "shape_weights": {k: round(v, 4) for k, v in self.shape_weights().items()},
            "observations": self.observations,
            "trainings": self.trainings,
            "prompts": self.prompts,
        }


@dataclass
class Candidate:
    """One fitted shape of the effect: its likelihood, and its weight among those the log allows."""

    half_life: float
    saturation: float
    gain: float
    gain_se: float
    loglik: float  # total log-likelihood
    score: float = 0.0  # loglik / dispersion minus BIC's margin per departure from the default
    weight: float = 0.0
    dispersion: float = 1.0
    drift: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    #: log-likelihood of each unit (group of prompts sharing trainings), for the weights
    unit_loglik: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    #: the gain's standard error robust to correlation within a unit (its rows over time)
    robust_se: float = 0.0


def count_label(c: float) -> str:
    """A count of trainings as the report and meta.json name it ("inf" for the line)."""
    return "inf" if math.isinf(c) else f"{c:.3g}"


def partial_trainings(trainings: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(step, prompt_id) of the trained groups that gave a gradient (0 < n_correct < n_rollouts)."""
    keep = partially_solved(trainings["n_correct"].to_numpy(), trainings["n_rollouts"].to_numpy())
    return trainings["step"].to_numpy().astype(np.int64)[keep], trainings["prompt_id"].to_numpy().astype(np.int64)[keep]


def parse_saturation(value: Any, key: str) -> float:
    if isinstance(value, str) and value.lower() in ("inf", "linear", "none"):
        return math.inf
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or value != value:
        raise ValueError(
            f'[world] {key}: must be "auto", "linear" (or "inf") or a positive number of trainings '
            f"at which the effect saturates, not {value!r}"
        )
    return float(value)


def parse_half_life(value: Any, key: str) -> float:
    if isinstance(value, str) and value.lower() in ("inf", "infinite", "permanent"):
        return math.inf
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"[world] {key}: must be a positive number of steps, 'inf' or 'auto', not {value!r}")
    return float(value)
