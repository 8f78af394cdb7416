"""Worlds: where a replay gets its rollout outcomes.

A world knows, for every prompt and step, a success probability p (the synthetic world's true
p, or the log world's estimate), and returns the outcome of a group as the number of correct
responses among k.

Outcomes use common random numbers: the j-th response of prompt i at step t is correct when
u(seed, t, i, j) < p(t, i), with u a counter-based hash. So, for one replay seed, every policy
that rolls out prompt i at step t sees the same outcome, whatever else it picked: differences
between policies come from their choices, not from the dice. The world is open-loop: the
model's learning is fixed in advance and does not depend on what the replayed policy trains on
(docs/results.md#replay-train-gain says what that means for the comparison).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from dps import _core
from dps.config import Count, load
from dps.logs.check import MAX_GROUP_SIZE, MAX_INDEX_PROMPTS, MAX_STEP_SPAN
from dps.outcomes import GroupOutcomes, partially_solved

if TYPE_CHECKING:
    import polars as pl

_MASK64 = (1 << 64) - 1


def hashed_uniforms(seed: int, step: int, ids: np.ndarray, k: int) -> np.ndarray:
    """(len(ids), k) uniforms in [0, 1), a pure function of (seed, step, id, j) (a splitmix64 hash;
    rust/logworld/dice.rs)."""
    return _core.hashed_uniforms(int(seed) & _MASK64, int(step) & _MASK64, np.ascontiguousarray(ids, np.int64), int(k))


def draw_correct(seed: int, step: int, ids: np.ndarray, p: np.ndarray, k: int) -> np.ndarray:
    """Binomial(k, p) per prompt, drawn with common random numbers: response j is correct when its uniform is < p."""
    ids = np.ascontiguousarray(ids, np.int64)
    p = np.ascontiguousarray(np.broadcast_to(np.asarray(p, np.float64), ids.shape))
    return _core.draw_correct(int(seed) & _MASK64, int(step) & _MASK64, ids, p, int(k))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class World:
    """Base class. Subclasses define `p` and may override `rollout`."""

    num_prompts: int
    k: int
    steps: int

    def p(self, step: int, ids: np.ndarray | None = None) -> np.ndarray:
        """Success probability of `ids` (every prompt when None) at `step`."""
        raise NotImplementedError

    def rollout(self, step: int, ids: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray(ids, np.int64)
        n_correct = draw_correct(seed, step, ids, self.p(step, ids), self.k)
        return n_correct, np.full(len(ids), self.k, np.int64)

    def rollout_groups(self, step: int, ids: np.ndarray, seed: int) -> GroupOutcomes:
        """The groups of `ids` at `step` as the replay's policies observe them: counts, or
        graded rewards in a world that has them."""
        ids = np.asarray(ids, np.int64)
        n_correct, n_rollouts = self.rollout(step, ids, seed)
        return GroupOutcomes.counts(ids, n_correct, n_rollouts)

    def reset(self) -> None:
        """Forget what any earlier replay trained (closed-loop worlds); called before a replay."""

    def set_seed(self, seed: int) -> None:
        """The replay seed `p` answers for until the next `rollout` (which sets its own); called before a
        replay, so that a policy reading `p` before its first rollout (the oracle) sees this replay's
        world. Worlds whose p does not depend on the seed ignore it."""

    def learn(self, step: int, ids: np.ndarray, n_correct: np.ndarray, n_rollouts: np.ndarray) -> None:
        """The groups the replay trained on at `step` (closed-loop worlds react; others ignore it)."""

    def describe(self) -> dict[str, Any]:
        return {"kind": type(self).__name__, "num_prompts": self.num_prompts, "k": self.k, "steps": self.steps}

    def prompt_keys(self, ids: np.ndarray) -> pl.Series | None:
        """The user's own ids of dense prompt `ids` (null where it has none), or None where the
        dense ids are the user's ids (synthetic worlds, logs whose ids already were 0..N-1).

        A world that wraps another (`base`, e.g. a closed loop) names its base's prompts.
        """
        base = getattr(self, "base", None)
        return base.prompt_keys(ids) if isinstance(base, World) else None


# --------------------------------------------------------------------------------------------
# Synthetic world


@dataclass
class SyntheticParams:
    """Parametric learning dynamics, in logit space, per prompt i:

    logit p_i(t) = a_i + g_i * (sigmoid((t - t0_i) / s_i) - sigmoid(-t0_i / s_i))   learning curve
                   - d_i * exp(-((t - c_i) / w_i)^2 / 2)                           forgetting dip
                   + m_i * sin(2 pi t / period_i + phase_i)                         wobble

    a_i ~ Normal(base_mean, base_sd): the starting difficulty (p(0) = sigmoid(a_i)).
    A share `never_share` of prompts is never solved: a_i ~ Normal(never_logit, 0.5), g_i = 0.
    g_i ~ Gamma(gain_shape, gain_scale): how far the prompt rises (a plateau at a_i + g_i).
    t0_i ~ Uniform(onset_lo, onset_hi) * steps: when it rises; s_i = steps * LogNormal(
    log(width), width_sd): how fast. A share `forget_share` of prompts has one dip of depth
    d_i ~ Uniform(forget_depth) centred at c_i ~ Uniform(0, steps), width w_i = steps *
    Uniform(forget_width). m_i ~ Uniform(0, wobble), period_i ~ Uniform(wobble_period) steps.

    The curves above are open-loop: the model improves the same way whatever the replayed policy
    trains on. `train_gain` > 0 closes the loop: each time a prompt is trained on as a partially
    solved group (the only kind that gives a gradient), its logit rises by `train_gain` for the
    rest of the replay. `train_saturation` = c < inf makes that effect saturate: after n such
    trainings the prompt has risen by train_gain * c * (1 - exp(-n / c)), never more than
    train_gain * c.
    """

    num_prompts: Count = 7500
    steps: Count = 360
    k: Count = 8
    base_mean: float = 1.0
    base_sd: float = 2.5
    never_share: float = 0.08
    never_logit: float = -6.0
    gain_shape: float = 2.0
    gain_scale: float = 0.75
    onset_lo: float = -0.3
    onset_hi: float = 1.0
    width: float = 0.1
    width_sd: float = 0.5
    forget_share: float = 0.15
    forget_depth: tuple[float, float] = (0.5, 2.5)
    forget_width: tuple[float, float] = (0.03, 0.1)
    wobble: float = 0.5
    wobble_period: tuple[float, float] = (15.0, 60.0)
    train_gain: float = 0.0
    train_saturation: float = math.inf

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SyntheticParams:
        """From a table of these parameters, checked (`dps.config.load`)."""
        params: SyntheticParams = load(cls, d, "synthetic world")
        return params


#: Presets shaped like the paper's settings. The dynamics were chosen to be plausible for the
#: models named (MATH: a distilled reasoning model that already solves much of MATH and climbs
#: slowly; Countdown: a base model that starts low and learns fast), not fitted to any result.
PRESETS: dict[str, dict[str, Any]] = {
    "math": dict(num_prompts=7500, steps=360, k=8),
    "countdown": dict(
        num_prompts=2000,
        steps=120,
        k=8,
        base_mean=-2.0,
        base_sd=2.0,
        never_share=0.10,
        gain_shape=3.0,
        gain_scale=1.0,
        onset_lo=-0.1,
        onset_hi=0.8,
        width=0.08,
        forget_share=0.10,
        wobble_period=(8.0, 30.0),
    ),
}
#: The batch size the paper used with each preset.
PRESET_BATCH = {"math": 256, "countdown": 256}


def preset_params(name: str, **overrides: Any) -> SyntheticParams:
    key = name.lower()
    if key not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    return SyntheticParams.from_dict({**PRESETS[key], **overrides})


def check_world_size(num_prompts: int, steps: int | None, k: int) -> None:
    """A world's sizes within what a replay can hold, the bounds a log's values get
    (dps.logs.check): every policy keeps state for each prompt, a replay runs every step (None:
    the steps of a log, bounded where the log is read)."""
    if num_prompts < 1 or (steps is not None and steps < 1) or k < 1:
        raise ValueError("num_prompts, steps and k must be positive")
    for name, value, most in (
        ("num_prompts", num_prompts, MAX_INDEX_PROMPTS),
        ("steps", steps or 1, MAX_STEP_SPAN),
        ("k", k, MAX_GROUP_SIZE),
    ):
        if value > most:
            raise ValueError(f"{name} = {value:,}: at most {most:,} in a replay's world")


class SyntheticWorld(World):
    """Seeded parametric learning dynamics (see `SyntheticParams`)."""

    def __init__(self, params: SyntheticParams | None = None, seed: int = 0):
        self.params = params = params or SyntheticParams()
        check_world_size(params.num_prompts, params.steps, params.k)
        self.num_prompts, self.steps, self.k, self.seed = params.num_prompts, params.steps, params.k, seed
        n, T = params.num_prompts, float(params.steps)
        rng = np.random.default_rng([seed, 0x5D5])
        a = rng.normal(params.base_mean, params.base_sd, n)
        g = rng.gamma(params.gain_shape, params.gain_scale, n)
        never = rng.random(n) < params.never_share
        a[never] = rng.normal(params.never_logit, 0.5, int(never.sum()))
        g[never] = 0.0
        t0 = rng.uniform(params.onset_lo, params.onset_hi, n) * T
        s = T * np.exp(rng.normal(math.log(params.width), params.width_sd, n))
        forget = rng.random(n) < params.forget_share
        d = np.where(forget, rng.uniform(*params.forget_depth, n), 0.0)
        c = rng.uniform(0.0, T, n)
        w = T * rng.uniform(*params.forget_width, n)
        m = rng.uniform(0.0, params.wobble, n)
        period = rng.uniform(*params.wobble_period, n)
        phase = rng.uniform(0.0, 2 * math.pi, n)
        self.never = never
        self._a, self._g, self._t0, self._s = a, g, t0, s
        self._g0 = g * sigmoid(-t0 / s)
        self._d, self._c, self._w = d, c, w
        self._m, self._freq, self._phase = m, 2 * math.pi / period, phase
        self._cache_step: int | None = None
        self._cache_p: np.ndarray | None = None
        self._boost: np.ndarray | None = None

    def reset(self) -> None:
        self._boost = None
        self._cache_step = None

    def learn(self, step: int, ids: np.ndarray, n_correct: np.ndarray, n_rollouts: np.ndarray) -> None:
        if self.params.train_gain == 0.0 or len(ids) == 0:
            return
        partial = partially_solved(n_correct, n_rollouts)
        if self._boost is None:
            self._boost = np.zeros(self.num_prompts)
            self._trainings = np.zeros(self.num_prompts)
        np.add.at(self._trainings, np.asarray(ids, np.int64)[partial], 1.0)
        c = self.params.train_saturation
        n = self._trainings
        self._boost = self.params.train_gain * (n if math.isinf(c) else -c * np.expm1(-n / c))
        self._cache_step = None

    def logit(self, step: int, ids: np.ndarray | None = None) -> np.ndarray:
        sel = slice(None) if ids is None else np.asarray(ids, np.int64)
        t = float(step)
        a, g, g0 = self._a[sel], self._g[sel], self._g0[sel]
        x = a + g * sigmoid((t - self._t0[sel]) / self._s[sel]) - g0
        d = self._d[sel]
        x = x - d * np.exp(-0.5 * ((t - self._c[sel]) / self._w[sel]) ** 2)
        x = x + self._m[sel] * np.sin(self._freq[sel] * t + self._phase[sel])
        if self._boost is not None:
            x = x + self._boost[sel]
        return x

    def p(self, step: int, ids: np.ndarray | None = None) -> np.ndarray:
        if ids is None:
            if self._cache_step != step:
                self._cache_p = sigmoid(self.logit(step))
                self._cache_step = step
            assert self._cache_p is not None
            return self._cache_p
        if self._cache_step == step and self._cache_p is not None:
            return self._cache_p[np.asarray(ids, np.int64)]
        return sigmoid(self.logit(step, ids))

    def to_log(self, seed: int = 0, every: int = 1, steps: int | None = None, layout: str = "group") -> pl.DataFrame:
        """Every prompt rolled out every `every` steps: a dense log of this world."""
        import polars as pl

        from dps.logs import groups_frame

        steps = self.steps if steps is None else steps
        ids = np.arange(self.num_prompts, dtype=np.int64)
        parts = []
        for t in range(0, steps, max(1, every)):
            c = draw_correct(seed, t, ids, self.p(t), self.k)
            parts.append(groups_frame(np.full(len(ids), t), ids, np.full(len(ids), self.k), c))
        df = pl.concat(parts)
        if layout == "group":
            return df
        if layout != "response":
            raise ValueError(f"unknown log layout {layout!r}; use 'group' or 'response'")
        # Expand each group to k responses: the first n_correct are correct.
        k = self.k
        rep = df.select(pl.col("step").repeat_by(k).explode(), pl.col("prompt_id").repeat_by(k).explode())
        j = np.tile(np.arange(k), df.height)
        reward = (j < np.repeat(df["n_correct"].to_numpy(), k)).astype(np.float64)
        return rep.with_columns(pl.Series("reward", reward))

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        boost, self._boost, self._cache_step = self._boost, None, None  # the open-loop curves
        p0, pT = self.p(0).copy(), self.p(self.steps - 1).copy()
        self._boost, self._cache_step = boost, None
        k = self.k
        d.update(
            seed=self.seed,
            mean_p_start=float(p0.mean()),
            mean_p_end=float(pT.mean()),
            partial_chance_start=float(np.mean(1 - p0**k - (1 - p0) ** k)),
            partial_chance_end=float(np.mean(1 - pT**k - (1 - pT) ** k)),
            never_solved=int(self.never.sum()),
            train_gain=self.params.train_gain,
        )
        if not math.isinf(self.params.train_saturation):
            d["train_saturation"] = self.params.train_saturation
        return d
