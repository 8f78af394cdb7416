"""The log world: replay against a rollout log, with p estimated where the log has no outcome.

The model (an empirical-Bayes hidden Markov model per prompt; docs/replay.md#log-world says
why, and docs/results.md#replay-calibration has the measurements that chose it):

* **Population prior g_t.** At each step t the prompts' success rates are spread by a
  distribution g_t on a fixed grid of GRID_SIZE rates (logit-spaced, 6e-6 .. 1 - 6e-6), fitted
  from the log's groups near t as a nonparametric maximum-likelihood mixture (EM on the histogram
  of (n_rollouts, n_correct)). A histogram on a grid can hold "never solved" and "always solved"
  atoms as well as a spread in between, which one Beta cannot: real logs are U-shaped with mass
  at the ends. g_t is fitted at up to MAX_ANCHORS anchor steps from the groups weighted by
  0.5 ** (|t - t_j| / prior_half_life) and interpolated linearly between anchors.
* **Which groups g_t is fitted on.** A prompt's first logged group was chosen before the logging
  policy had seen that prompt's outcomes, so first looks are a fair sample of the population;
  later groups are one only if the policy did not pick them by what it saw. `selection_test`
  compares later groups with first looks within each step that holds both; where they differ
  (a DPS training log, any filter on past outcomes), g_t is fitted on the first looks alone
  (population "auto"; "all" / "first_looks" force either). Each logged prompt's posterior
  still uses all its rows.
* **Dynamics.** A prompt's rate stays where it is from one step to the next, except that with
  probability `switch_rate` per step it is redrawn from the population at that step (it was
  learned, or forgotten). The posterior of p_i(t) given all of prompt i's logged groups is exact
  for this model (forward-backward over the prompt's rows; between two rows the rate is a
  mixture of "unchanged" and "redrawn from g over the gap").
* **Draws.** The replay draws p from that posterior with a uniform u fixed per (prompt, replay
  seed) for the whole replay (p = the posterior's u-quantile), so a prompt keeps its place in
  its own posterior from step to step and one group's outcome follows the posterior predictive.
  `draw = "mean"` uses the posterior mean instead (biased toward partial groups: f(p) = 1 - p^k
  - (1 - p)^k is concave, so E f(p) < f(E p)).

"auto" settings: switch_rate is the candidate in SWITCH_RATES (0 = a stationary log) that best
predicts the logged groups of a sample of prompts with each (step, prompt) cell left out (mean
log predictive probability of n_correct); prior_half_life is the smallest power of two whose
window holds PRIOR_MIN_GROUPS groups at every anchor.

Lookups: where the log holds the (step, prompt) cell, a rollout returns the logged outcome; a cell
logged more than once (a training group and a sweep of the same prompt at the same step, dynamic
sampling's extra rounds, an epoch wrap) returns its group number (replay seed mod count), in the
log's row order, so different replay seeds use different logged groups. Every group counts as
evidence for the estimates.

Steps: replay step s is the log's step first_step + s; the world has last_step - first_step + 1
steps. A step past the last logged one is an error unless `extrapolate` is set (the estimate then
relaxes toward the last step's population prior at the switch rate).

Memory is proportional to the log's rows: per row its outcome and two GRID_SIZE-float messages
(float16 in logs of more than FLOAT16_ROWS rows), plus one offset per prompt id.
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import numpy as np

from dps import _core
from dps.config import Check, load
from dps.outcomes import SUCCESS_AT, GroupOutcomes, partial_share, partially_solved
from dps.replay.worlds import World, check_world_size

if TYPE_CHECKING:
    import polars as pl

GRID_SIZE = 32
GRID_LOGIT = 12.0
MAX_ANCHORS = 32
#: Groups the population prior of one anchor step should rest on (its time window widens until it does).
PRIOR_MIN_GROUPS = 2000.0
EM_ITERATIONS = 300
#: Steps at which the interpolated population prior is tabulated (nearest is used in between).
PRIOR_POINTS = 4096
#: Prompts sampled (all their groups) to choose the switch rate by held-out likelihood.
SELECTION_PROMPTS = 4000
_DRAW_SALT = 0x5EED_D12A_57
#: Per-row messages are float32, or float16 (3 significant digits, half the memory) in logs of more rows.
FLOAT16_ROWS = 1_000_000
#: Messages are stored scaled to a maximum of 1 and floored here (float16 holds it as a subnormal), so that a
#: prompt whose rows disagree beyond what the dynamics allow still gets a defined posterior.
_FLOOR = 2.0**-20
#: Messages are kept at every CHECKPOINT_ROWS-th row of a prompt (a query recomputes the rows in between).
CHECKPOINT_ROWS = 2
_MASK64 = (1 << 64) - 1


def _seed(seed: int) -> int:
    """A replay seed as the core takes it (a 64-bit word)."""
    seed = int(seed)
    if seed < 0:
        raise ValueError(f"replay seeds must be >= 0, not {seed}")
    return seed & _MASK64


def _grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.linspace(-GRID_LOGIT, GRID_LOGIT, GRID_SIZE)
    return 1.0 / (1.0 + np.exp(-x)), -np.logaddexp(0.0, -x), -np.logaddexp(0.0, x)


P_GRID, LOG_P, LOG_1MP = _grid()


def _switch_rate_ok(v: float | str) -> bool:
    return v == "auto" or (not isinstance(v, str) and 0.0 <= v < 1.0)


def _half_life_ok(v: float | str) -> bool:
    return v.lower() in ("auto", "inf", "infinity") if isinstance(v, str) else v > 0


_GONE = "replaced by switch_rate and a prior fitted from the log"


@dataclass
class LogEstimator:
    """How a log world estimates p where the log has no outcome (see the module docstring)."""

    switch_rate: Annotated[float | str, Check(_switch_rate_ok, 'a number in [0, 1) or "auto"')] = "auto"
    prior_half_life: Annotated[float | str, Check(_half_life_ok, 'a positive number, "inf" or "auto"')] = "auto"
    draw: Literal["posterior", "mean"] = "posterior"
    extrapolate: bool = False
    #: What the population prior is fitted on: decided from the log ("auto"), every group, or each prompt's first group.
    population: Literal["auto", "all", "first_looks"] = "auto"

    SWITCH_RATES: ClassVar[tuple[float, ...]] = (0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
    #: Keys of earlier versions, and what replaced them.
    KEY_HINTS: ClassVar[dict[str, str]] = {"half_life": _GONE, "prior_strength": _GONE}

    def __post_init__(self) -> None:
        h = self.prior_half_life
        if isinstance(h, str) and h.lower() in ("inf", "infinity"):
            self.prior_half_life = math.inf

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LogEstimator:
        """From a table of these settings, checked (`dps.config.load`)."""
        est: LogEstimator = load(cls, d, "log estimator")
        return est


# --------------------------------------------------------------------------------------------
# Is the log selective?


@dataclass
class SelectionTest:
    """First-look groups against later groups of the same steps (see `selection_test`)."""

    z: float  # stratified z of later minus first-look partial share
    gap: float  # later minus first-look partial share, weighted over the shared steps
    first_looks: int
    compared_steps: int  # steps holding both a first look and a later group
    selective: bool

    def reason(self) -> str:
        if self.compared_steps == 0:
            return "no step holds both a prompt's first logged group and a later one, so the log cannot show selection"
        verdict = (
            "the logging policy chose its groups by their outcomes"
            if self.selective
            else "no sign that the logging policy chose its groups by their outcomes"
        )
        return (
            f"at the {self.compared_steps:,} steps holding both, later groups are partly solved {self.gap:+.3f} "
            f"(z = {self.z:+.1f}) against first looks: {verdict}"
        )


#: |z| from which a log counts as selective (and the partial-share gap it must show as well).
SELECTION_Z = 2.5
SELECTION_GAP = 0.05


def _stratified_gap(partial: np.ndarray, later: np.ndarray, step: np.ndarray) -> tuple[float, float, int]:
    """(z, weighted gap, strata) of the partial share in later groups minus first looks, within each step
    (Mantel-Haenszel weights).

    `partial`, `later`: booleans per group; `step`: non-negative integers (steps relative to the log's first).
    """
    span = int(step.max(initial=-1)) + 1
    if span > len(step):  # more steps than rows: count over the logged steps only (memory follows the rows)
        _, step = np.unique(step, return_inverse=True)
        span = int(step.max(initial=-1)) + 1
    # One histogram over (step, later, partial): columns first/whole, first/partial, later/whole, later/partial.
    code = np.asarray(step, np.int64) * 4 + later.astype(np.int64) * 2 + partial
    counts = np.bincount(code, minlength=4 * span).reshape(span, 4).astype(np.float64)
    del code
    sf, sl = counts[:, 1], counts[:, 3]
    nf, nl = counts[:, 0] + sf, counts[:, 2] + sl
    n = nf + nl
    both = (nl > 0) & (nf > 0)
    if not both.any():
        return 0.0, 0.0, 0
    mean = (sl + sf) / np.maximum(n, 1.0)
    var = mean - mean**2  # a 0/1 share's variance
    nl, nf, n, var = nl[both], nf[both], n[both], var[both]
    w = nl * nf / n
    diff = sl[both] / nl - sf[both] / nf
    num, den = float(w @ diff), float(np.sum(w * w * var * (1.0 / nl + 1.0 / nf)))
    return (num / math.sqrt(den) if den > 0 else 0.0), num / float(w.sum()), int(both.sum())


def selection_test(step: np.ndarray, nc: np.ndarray, nr: np.ndarray, firsts: np.ndarray) -> SelectionTest:
    """Did the logging policy choose groups by the prompts' outcome histories?

    A prompt's first logged group was chosen before the policy had seen that prompt's outcomes, so
    at any one step first looks and later groups come from the same population unless the policy
    picks later groups by what it saw (DPS, or any filter on past outcomes). Within each step that
    holds both, the partially-solved share of later groups is compared with that of first looks (a
    stratified two-sample z, Mantel-Haenszel weights); comparing within a step keeps drift out of
    the test. Selective when |z| >= SELECTION_Z and the shares differ by SELECTION_GAP or more.
    The partial share, not the success rate: training raises the success rate of prompts trained
    on (later groups of an unselective log too) while leaving the partial share nearly as it was.

    `step`: each group's step relative to the log's first; `firsts`: the rows that are first looks.
    """
    later = np.ones(len(step), bool)
    later[firsts] = False
    partial = partially_solved(nc, nr)
    z, gap, strata = _stratified_gap(partial, later, step)
    selective = abs(z) >= SELECTION_Z and abs(gap) >= SELECTION_GAP
    return SelectionTest(
        z=float(z), gap=float(gap), first_looks=len(firsts), compared_steps=strata, selective=bool(selective)
    )


# --------------------------------------------------------------------------------------------
# The population prior


def binomial_loglik(c: np.ndarray, n: np.ndarray) -> np.ndarray:
    """(len(c), GRID_SIZE) log P(c | n, p_g) without the binomial coefficient."""
    c = np.asarray(c, np.float64)[:, None]
    n = np.asarray(n, np.float64)[:, None]
    return c * LOG_P[None, :] + (n - c) * LOG_1MP[None, :]


def fit_mixture(loglik: np.ndarray, weight: np.ndarray, iterations: int = EM_ITERATIONS) -> np.ndarray:
    """Nonparametric ML mixing weights on the grid (EM), for rows of (weighted) group likelihoods."""
    lik = np.exp(loglik - loglik.max(axis=1, keepdims=True))
    w = weight / weight.sum()
    pi = np.full(GRID_SIZE, 1.0 / GRID_SIZE)
    for _ in range(iterations):
        post = lik * pi
        post /= post.sum(axis=1, keepdims=True)
        pi = w @ post
    return np.maximum(pi, 1e-300)


def _kernel(dt: np.ndarray, half_life: float) -> np.ndarray:
    if math.isinf(half_life):
        return np.ones_like(dt, np.float64)
    return np.exp2(-np.abs(dt) / half_life)


def _count_values(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct values ascending, their counts) of non-negative integers: np.unique's, by counting where the range
    is small."""
    top = int(x.max(initial=-1)) + 1
    if top > max(4 * len(x), 1 << 22):
        return np.unique(x, return_counts=True)
    counts = np.bincount(x, minlength=top)
    values = np.flatnonzero(counts)
    return values, counts[values]


def _most_common(x: np.ndarray) -> int:
    """The most frequent value of non-negative integers x (the smallest among ties)."""
    values, counts = _count_values(x)
    return int(values[np.argmax(counts)])


class PopulationPrior:
    """g_t at anchor steps (relative to the log's first step), from the (step, n, c) histogram."""

    def __init__(self, step: np.ndarray, nc: np.ndarray, nr: np.ndarray, half_life: float | str = "auto"):
        base = int(nr.max()) + 1
        codes, counts = _count_values((np.asarray(step, np.int64) * base + nr) * base + nc)
        hist_steps = codes // (base * base)
        pair_codes, pair_idx = np.unique(codes % (base * base), return_inverse=True)
        pairs = np.stack([pair_codes // base, pair_codes % base], axis=1)
        steps_seen = np.unique(hist_steps)
        lo, hi = int(steps_seen[0]), int(steps_seen[-1])
        self.anchors = np.unique(np.round(np.linspace(lo, hi, min(MAX_ANCHORS, len(steps_seen)))).astype(np.int64))
        if half_life == "auto":
            half_life = self._narrowest_window(hist_steps, counts)
        self.half_life = float(half_life)
        pair_ll = binomial_loglik(pairs[:, 1], pairs[:, 0])
        table = np.empty((len(self.anchors), GRID_SIZE))
        for a, t in enumerate(self.anchors):
            pw = np.bincount(pair_idx, weights=counts * _kernel(hist_steps - t, self.half_life), minlength=len(pairs))
            keep = pw > 0
            table[a] = fit_mixture(pair_ll[keep], pw[keep])
        self.table = table

    def _narrowest_window(self, hist_steps: np.ndarray, counts: np.ndarray) -> float:
        """The smallest half-life in 1, 2, 4, ... whose window holds PRIOR_MIN_GROUPS groups at every anchor."""
        if float(counts.sum()) <= PRIOR_MIN_GROUPS:
            return math.inf
        h = 1.0
        while h < 1e7:
            if min(float(counts @ _kernel(hist_steps - t, h)) for t in self.anchors) >= PRIOR_MIN_GROUPS:
                return h
            h *= 2.0
        return math.inf

    def _interpolate(self, t: np.ndarray) -> np.ndarray:
        if len(self.anchors) == 1:
            return np.repeat(self.table[:1], len(t), axis=0)
        j = np.clip(np.searchsorted(self.anchors, t, side="right") - 1, 0, len(self.anchors) - 2)
        t0, t1 = self.anchors[j], self.anchors[j + 1]
        lam = np.clip((t - t0) / (t1 - t0), 0.0, 1.0)[:, None]
        return (1.0 - lam) * self.table[j] + lam * self.table[j + 1]

    def at(self, t: np.ndarray | int) -> np.ndarray:
        """(len(t), GRID_SIZE) prior weights at steps t (linear between anchors, flat outside).

        Read from a table of PRIOR_POINTS evenly spaced steps across the anchors (nearest point):
        one gather instead of an interpolation per query.
        """
        t = np.atleast_1d(np.asarray(t, np.float64))
        start, scale, dense = self.tabulated()
        i = np.clip(np.rint((t - start) * scale), 0, len(dense) - 1).astype(np.intp)
        return dense[i]

    def tabulated(self) -> tuple[float, float, np.ndarray]:
        """(first point's step, points per step, (points, GRID_SIZE) weights): what `at` reads."""
        if not hasattr(self, "_dense"):
            lo, hi = float(self.anchors[0]), float(self.anchors[-1])
            points = np.linspace(lo, hi, PRIOR_POINTS if hi > lo else 1)
            self._dense = np.ascontiguousarray(self._interpolate(points))
            self._start = lo
            self._scale = (len(points) - 1) / (hi - lo) if hi > lo else 0.0
        return self._start, self._scale, self._dense


class Switching:
    """The dynamics: stay, or with probability `rate` per step be redrawn from g at that step.

    Over a gap from step s to t > s the rate is unchanged with probability (1 - rate)^(t - s);
    else it was last redrawn at some step u in (s, t] (u = t - j with weight (1 - rate)^j), from
    g_u. g moves slowly (it is interpolated between anchors), so that mixture is taken as g at
    the expected u of the last redraw: G(s, t) = (1 - (1 - rate)^(t - s)) g_(t - e), with
    e = min((t - s - 1) / 2, (1 - rate) / rate) (the middle of a short gap; 1 / rate - 1 back
    from t in a long one). No table over steps is needed.
    """

    def __init__(self, prior: PopulationPrior, rate: float):
        self.rate, self.prior = float(rate), prior

    def stay(self, dt: np.ndarray) -> np.ndarray:
        return np.power(1.0 - self.rate, np.asarray(dt, np.float64))

    def prior_at(self, t: np.ndarray) -> np.ndarray:
        return self.prior.at(t)

    def redraw(self, s: np.ndarray, t: np.ndarray) -> np.ndarray:
        """G(s, t): the (unnormalised) rate distribution of a prompt redrawn between s and t."""
        gap = (np.asarray(t) - np.asarray(s)).astype(np.float64)
        back = np.minimum((gap - 1.0) / 2.0, (1.0 - self.rate) / self.rate)
        return (1.0 - self.stay(gap))[:, None] * self.prior.at(np.asarray(t) - back)


# --------------------------------------------------------------------------------------------
# Per-prompt messages over the log's rows


def _int64(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, np.int64)


def _emission(pairs: np.ndarray) -> np.ndarray:
    """The likelihood over the grid of each distinct (n, c) of `pairs`, scaled to a maximum of 1 (float32)."""
    ll = binomial_loglik(pairs[:, 1], pairs[:, 0])
    return np.ascontiguousarray(np.exp(ll - ll.max(axis=1, keepdims=True)), np.float32)


class RowLog:
    """The log's groups sorted by (prompt, step) in the Rust core (rust/logworld/), with the model's messages.

    fwd[j]: P(p_i(t_j) | the prompt's rows up to and including j);
    bwd[j]: P(the prompt's rows from j on | p_i(t_j)); both scaled to a maximum of 1, floored, and
    stored as float32 (float16 in logs of more than FLOAT16_ROWS rows). Each is computed from its
    neighbour's stored value. Only every CHECKPOINT_ROWS-th row's messages are kept; a query
    recomputes the rows in between, bit for bit what storing every row would have held.

    `step`: steps relative to `origin` (the log's first step); the arrays may be in any order
    (the core sorts them: by prompt, by step within a prompt where needed, a repeated cell in row order).
    """

    def __init__(
        self, step: np.ndarray, pid: np.ndarray, nc: np.ndarray, nr: np.ndarray, origin: int = 0, core: Any = None
    ):
        self.core = (
            core if core is not None else _core.LogRows(_int64(step), _int64(pid), _int64(nc), _int64(nr), int(origin))
        )
        self.rows = int(self.core.rows)
        self.offsets = self.core.offsets()
        self.pairs = self.core.pairs()
        self.emission = _emission(self.pairs)
        self.dtype = np.float16 if self.rows > FLOAT16_ROWS else np.float32
        self.every = CHECKPOINT_ROWS

    def __getstate__(self) -> dict[str, Any]:
        """Everything but the core (`LogWorld.save` writes the core to a file of its own)."""
        return {k: v for k, v in self.__dict__.items() if k != "core"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.core = None

    # Whole columns in row order (fresh arrays: for fitting and checks, not for queries).

    @property
    def step(self) -> np.ndarray:
        return self.core.steps()

    @property
    def pid(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.offsets) - 1, dtype=np.int64), np.diff(self.offsets))

    @property
    def nc(self) -> np.ndarray:
        return self.pairs[:, 1].astype(np.int32)[self.core.pair_index()]

    @property
    def nr(self) -> np.ndarray:
        return self.pairs[:, 0].astype(np.int32)[self.core.pair_index()]

    def first_rows(self) -> np.ndarray:
        """Each logged prompt's first row (its first step; the first in the log's order there)."""
        return self.offsets[:-1][np.diff(self.offsets) > 0]

    def logged_prompts(self) -> np.ndarray:
        """The ids with at least one row, ascending."""
        return np.flatnonzero(np.diff(self.offsets))

    def subset(self, prompts: np.ndarray) -> RowLog:
        """The rows of `prompts` (ascending, distinct ids) as a log of their own."""
        return RowLog(np.empty(0), np.empty(0), np.empty(0), np.empty(0), core=self.core.subset(_int64(prompts)))

    def row_info(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(relative step, prompt id, n_rollouts, n_correct) of `rows`."""
        return self.core.row_info(_int64(rows))

    def build(self, dyn: Switching) -> None:
        """Both passes over every prompt (in parallel, in the Rust core), for the dynamics `dyn`."""
        start, scale, dense = dyn.prior.tabulated()
        self.core.build(
            self.emission, dense, start, scale, dyn.rate, _FLOOR, P_GRID, self.dtype == np.float16, self.every
        )

    def messages(self, forward: bool) -> np.ndarray:
        """Every row's stored forward (or backward) message, (rows, GRID_SIZE) float32 (a check: queries need few)."""
        return self.core.messages(forward)

    def posterior(self, t: np.ndarray, ids: np.ndarray, include_cell: bool = True) -> np.ndarray:
        """(len(ids), GRID_SIZE) posterior of p_i(t) given the prompt's rows (its cell at t left out unless
        include_cell)."""
        return self.core.posterior(_int64(t), _int64(ids), include_cell)

    def held_out_posterior(self, rows: np.ndarray) -> np.ndarray:
        """The posterior of each of `rows` at its own step without its (step, prompt) cell."""
        return self.core.held_out_posterior(_int64(rows))

    def lookup(self, t: int, ids: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(found, n_correct, n_rollouts) of the logged group at relative step t; a repeated cell's by seed."""
        return self.core.lookup(int(t), _int64(ids), _seed(seed))


# --------------------------------------------------------------------------------------------
# Predictions


def partial_chance(n: np.ndarray | int) -> np.ndarray:
    """(len(n), GRID_SIZE): P(a group of n is partly solved | p_g)."""
    n = np.atleast_1d(np.asarray(n, np.float64))[:, None]
    return 1.0 - np.exp(n * LOG_P[None, :]) - np.exp(n * LOG_1MP[None, :])


def _predictive_parts(c: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For groups (c of n): (log binomial coefficient + the largest grid log-likelihood, the
    likelihoods over the grid scaled by that largest)."""
    ll = binomial_loglik(c, n)
    m = ll.max(axis=1)
    n = np.asarray(n, np.int64)
    c = np.asarray(c, np.int64)
    lg = np.array([math.lgamma(x + 1.0) for x in range(int(n.max(initial=0)) + 1)])
    return lg[n] - lg[c] - lg[n - c] + m, np.exp(ll - m[:, None])


def predictive_loglik(w: np.ndarray, c: np.ndarray, n: np.ndarray) -> np.ndarray:
    """log P(c of n | posterior weights w), with the binomial coefficient."""
    offset, scaled = _predictive_parts(c, n)
    return offset + np.log(np.sum(w * scaled, axis=1))


def held_out(log: RowLog, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For `rows` of `log`: P(partial) and log P(n_correct), predicted without the row's (step, prompt) cell.

    The grid terms are computed once per distinct (n_rollouts, n_correct) of the log and gathered.
    """
    pairs = log.pairs
    chance_table = partial_chance(pairs[:, 0])
    offset_table, scaled_table = _predictive_parts(pairs[:, 1], pairs[:, 0])
    base = int(pairs[:, 0].max(initial=0)) + 1
    codes = pairs[:, 0] * base + pairs[:, 1]
    chance, loglik = [], []
    for part in np.array_split(rows, max(1, len(rows) // 20_000)):
        w = log.held_out_posterior(part)
        _, _, nr, nc = log.row_info(part)
        pair = np.searchsorted(codes, nr * base + nc)
        chance.append(np.sum(w * chance_table[pair], axis=1))
        loglik.append(offset_table[pair] + np.log(np.sum(w * scaled_table[pair], axis=1)))
    return np.concatenate(chance), np.concatenate(loglik)


class LoggedRewards:
    """Each logged group's mean reward and spread, found by its cell (relative step, prompt) and
    its counts: the graded view of a group a log world returns from the log. Of groups logged
    twice in one cell with the same counts, the first's rewards are taken."""

    def __init__(self, t: np.ndarray, pid: np.ndarray, nc: np.ndarray, nr: np.ndarray, groups: pl.DataFrame, n: int):
        self.n = int(n)
        key = _int64(t) * self.n + _int64(pid)
        order = np.argsort(key, kind="stable")
        self.key, self.nc, self.nr = key[order], _int64(nc)[order], _int64(nr)[order]
        self.mean = np.asarray(groups["reward_mean"].to_numpy(), np.float64)[order]
        self.std = np.asarray(groups["reward_std"].to_numpy(), np.float64)[order]

    def moments(self, t: int, ids: np.ndarray, nc: np.ndarray, nr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The mean and spread of the groups (t, ids) with counts (nc, nr): the logged group's where
        the log holds it, else those of 0/1 rewards with these counts (an estimator's draw)."""
        mean = nc / nr
        std = np.where((nc == 0) | (nc == nr), 0.0, np.sqrt(mean * (1 - mean)))
        key = int(t) * self.n + ids
        lo = np.searchsorted(self.key, key, "left")
        hi = np.searchsorted(self.key, key, "right")
        for i in np.flatnonzero(hi > lo):
            for row in range(lo[i], hi[i]):
                if self.nc[row] == nc[i] and self.nr[row] == nr[i]:
                    mean[i], std[i] = self.mean[row], self.std[row]
                    break
        return mean, std


class LogWorld(World):
    """Outcomes from a per-group log; elsewhere draws from the estimator's posterior (module docstring)."""

    def __init__(
        self,
        groups: pl.DataFrame,
        estimator: LogEstimator | None = None,
        k: int | None = None,
        num_prompts: int | None = None,
        steps: int | None = None,
        keys: pl.Series | None = None,
        graded: bool = False,
        success_at: float = SUCCESS_AT,
    ):
        """`keys`: the user's id of each dense id 0..len(keys)-1 (`LoadedLog.keys`), or None when the
        dense ids are the user's own; replay outputs name prompts by them (`prompt_keys`).
        `graded`: the policies observe each logged group's rewards (its `reward_mean` and
        `reward_std`; effective by spread, solved at `success_at`), and a group drawn where the
        log has none as 0/1 rewards; else counts alone."""
        self.estimator = est = estimator or LogEstimator()
        self.keys = keys
        if groups.height == 0:
            raise ValueError("the log holds no groups")
        step = np.asarray(groups["step"].to_numpy(), np.int64)
        pid = np.asarray(groups["prompt_id"].to_numpy(), np.int64)
        nc = np.asarray(groups["n_correct"].to_numpy(), np.int64)
        nr = np.asarray(groups["n_rollouts"].to_numpy(), np.int64)
        self.first_step, self.last_step = int(step.min()), int(step.max())
        span = self.last_step - self.first_step + 1
        if steps is not None and steps > span and not est.extrapolate:
            raise ValueError(
                f"the log covers steps {self.first_step}..{self.last_step} ({span} steps); {steps} steps need "
                "extrapolate = true"
            )
        self.steps = max(span, steps or 0)
        self.num_prompts = max(int(pid.max()) + 1, num_prompts or 0)
        if k is None:
            k = _most_common(nr)
        self.k = int(k)
        check_world_size(self.num_prompts, None, self.k)
        self.coverage = len(step) / (span * self.num_prompts)
        self.logged_groups = len(step)
        self.success_at = float(success_at)
        self.rewards: LoggedRewards | None = None
        if graded:
            if not {"reward_mean", "reward_std"} <= set(groups.columns):
                raise ValueError(
                    'rewards = "graded" needs a log with graded rewards (a reward per response, a rewards list, or '
                    "reward_mean and reward_std per group); this one has counts alone"
                )
            self.rewards = LoggedRewards(step - self.first_step, pid, nc, nr, groups, self.num_prompts)
        self.log = log = RowLog(step, pid, nc, nr, origin=self.first_step)
        del step, pid, nc, nr
        self._fit_population(log)
        self.switch_scores: dict[float, float] = {}
        rate = self._select_switch_rate() if est.switch_rate == "auto" else float(est.switch_rate)
        self.dynamics = Switching(self.prior, rate)
        self.log.build(self.dynamics)
        self._seed = 0

    def _fit_population(self, log: RowLog) -> None:
        """The selection test, the population prior, and the first looks' partial share."""
        est = self.estimator
        step, nc, nr, firsts = log.step, log.nc, log.nr, log.first_rows()
        self.selection = selection_test(step, nc, nr, firsts)
        self.population = (
            est.population if est.population != "auto" else ("first_looks" if self.selection.selective else "all")
        )
        if self.population == "first_looks":
            self.prior = PopulationPrior(step[firsts], nc[firsts], nr[firsts], est.prior_half_life)
        else:
            self.prior = PopulationPrior(step, nc, nr, est.prior_half_life)
        self._first_look_share = partial_share(nc[firsts], nr[firsts])

    def save(self, folder: str | Path) -> Path:
        """Write this built world to `folder`: its rows and kept messages (rows.bin) and the rest
        (world.pkl). `LogWorld.load` reads it back far faster than the world builds (a sweep's
        worker processes get their world this way)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.log.core.save(folder / "rows.bin")
        with open(folder / "world.pkl", "wb") as f:
            pickle.dump(self, f, protocol=pickle.HIGHEST_PROTOCOL)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> LogWorld:
        """A world written by `save` (a file this code wrote: it is unpickled)."""
        folder = Path(folder)
        with open(folder / "world.pkl", "rb") as f:
            world = pickle.load(f)
        if not isinstance(world, cls):
            raise ValueError(f"{folder} holds no saved log world")
        world.log.core = _core.LogRows.load(folder / "rows.bin")
        return world

    @property
    def switch_rate(self) -> float:
        return self.dynamics.rate

    @property
    def logged_prompts(self) -> int:
        """Prompt ids with at least one logged group."""
        return int(np.count_nonzero(np.diff(self.log.offsets)))

    def first_look_partial_share(self) -> float:
        """Partial share of each prompt's first logged group (picked before the policy saw the prompt)."""
        return self._first_look_share

    def population_line(self) -> str:
        """Which groups the population prior (what unlogged prompts are drawn from) was fitted on, and why."""
        sel = self.selection
        forced = self.estimator.population != "auto"
        why = f"set by population = {self.population!r}" if forced else sel.reason()
        if self.population == "all":
            return (
                f"unlogged prompts are drawn from a population prior fitted on all {self.logged_groups:,} logged "
                f"groups: {why}"
            )
        return (
            f"unlogged prompts are drawn from a population prior fitted on the {sel.first_looks:,} prompts' first "
            f"logged groups alone, not all {self.logged_groups:,} groups: {why}; first looks are partly solved "
            f"{self.first_look_partial_share():.3f} of the time, +-{self.first_look_spread():.3f} from their number "
            "alone"
        )

    def first_look_spread(self) -> float:
        """Standard error of the first-look partial share from the number of first looks alone (binomial)."""
        share = self.first_look_partial_share()
        return math.sqrt(max(share * (1.0 - share), 0.0) / max(self.selection.first_looks, 1))

    def _select_switch_rate(self) -> float:
        """The SWITCH_RATES candidate with the best held-out likelihood on a sample of prompts."""
        prompts = self.log.logged_prompts()
        if len(prompts) > SELECTION_PROMPTS:
            prompts = np.random.default_rng(0x4A1F).choice(prompts, SELECTION_PROMPTS, replace=False)
        sub = self.log.subset(np.sort(prompts))
        for rate in LogEstimator.SWITCH_RATES:
            dyn = Switching(self.prior, rate)
            sub.build(dyn)
            self.switch_scores[rate] = float(np.mean(held_out(sub, np.arange(sub.rows))[1]))
        return max(self.switch_scores, key=lambda r: self.switch_scores[r])

    def held_out_predictions(self, max_groups: int | None = 50_000, seed: int = 0) -> dict[str, np.ndarray]:
        """Each logged group (a random sample of max_groups) predicted without its (step, prompt) cell.

        Returns step (the log's own), prompt_id, n_rollouts, n_correct, partial_chance (the
        predicted probability that the group is partly solved), partial (0/1, observed) and
        loglik (log predictive probability of its n_correct). The population prior and the switch
        rate are fitted on the whole log, held-out groups included (one group among thousands).
        """
        log = self.log
        rows = np.arange(log.rows)
        if max_groups is not None and log.rows > max_groups:
            rows = np.sort(np.random.default_rng(seed).choice(log.rows, max_groups, replace=False))
        chance, loglik = held_out(log, rows)
        step, pid, nr, nc = log.row_info(rows)
        return {
            "step": step + self.first_step,
            "prompt_id": pid,
            "n_rollouts": nr,
            "n_correct": nc,
            "partial_chance": chance,
            "partial": partially_solved(nc, nr).astype(np.int64),
            "loglik": loglik,
        }

    # -- the World interface -------------------------------------------------------------------

    def _rel_step(self, step: int) -> int:
        t = int(step)
        if t < 0:
            raise ValueError(f"step {t} is before the log's first step (replay step 0 = log step {self.first_step})")
        if t > self.last_step - self.first_step and not self.estimator.extrapolate:
            raise ValueError(
                f"replay step {t} (log step {self.first_step + t}) is past the log's last step {self.last_step}; "
                "set extrapolate = true in [world] to replay beyond it"
            )
        return t

    def set_seed(self, seed: int) -> None:
        self._seed = int(seed)

    def posterior_weights(self, step: int, ids: np.ndarray) -> np.ndarray:
        """(len(ids), GRID_SIZE) posterior of p at `step` over the grid P_GRID."""
        t = self._rel_step(step)
        ids = _int64(ids)
        return self.log.posterior(np.full(len(ids), t), ids)

    def p(self, step: int, ids: np.ndarray | None = None) -> np.ndarray:
        ids = np.arange(self.num_prompts, dtype=np.int64) if ids is None else _int64(ids)
        return self.log.core.draw(self._rel_step(step), ids, self._draw_seed(self._seed), self.estimator.draw == "mean")

    @staticmethod
    def _draw_seed(seed: int) -> int:
        return (int(seed) ^ _DRAW_SALT) & _MASK64

    def logged(self, step: int, ids: np.ndarray, seed: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(found mask, n_correct, n_rollouts) of the log's outcomes for (step, ids)."""
        return self.log.lookup(int(step), ids, self._seed if seed is None else seed)

    def rollout(self, step: int, ids: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """The logged group where the log holds (step, id), else k responses drawn at a rate from the posterior (in
        the Rust core)."""
        t = self._rel_step(step)
        self.set_seed(seed)
        return self.log.core.rollout(
            t, _int64(ids), _seed(seed), self.k, self._draw_seed(seed), self.estimator.draw == "mean"
        )

    def rollout_groups(self, step: int, ids: np.ndarray, seed: int) -> GroupOutcomes:
        ids = _int64(ids)
        n_correct, n_rollouts = self.rollout(step, ids, seed)
        if self.rewards is None:
            return GroupOutcomes.counts(ids, n_correct, n_rollouts)
        mean, std = self.rewards.moments(self._rel_step(step), ids, n_correct, n_rollouts)
        return GroupOutcomes.from_moments(ids, n_rollouts, mean, std, n_correct=n_correct, success_at=self.success_at)

    def prompt_keys(self, ids: np.ndarray) -> pl.Series | None:
        if self.keys is None:
            return None
        import polars as pl

        ids = np.asarray(ids, np.int64)
        known = ids < len(self.keys)  # dense ids past the log's own prompts ([world] num_prompts) have no user id
        named = self.keys.gather(np.where(known, ids, 0))
        return pl.select(pl.when(pl.lit(pl.Series(known))).then(named)).to_series().alias("prompt_key")

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(
            first_step=self.first_step,
            last_step=self.last_step,
            coverage=self.coverage,
            logged_groups=self.logged_groups,
            switch_rate=self.switch_rate,
            prior_half_life=self.prior.half_life,
            population=self.population,
            draw=self.estimator.draw,
        )
        return d
