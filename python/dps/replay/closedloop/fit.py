"""The closed loop's effect, fitted from a log: how training on a prompt moves it.

A log world is open-loop: it replays the model of the logged run, which was trained on that
run's batches. A policy that trains on other prompts would have moved other prompts. This
module estimates that effect from the log (docs/replay.md, the closed loop, has the evidence
that chose it); `dps.replay.closedloop.world` adds it to any world.

The model, in logit space, for an observation of prompt i at step t (a logged group, trained
or not, or a sweep row; each rolled out before step t's update):

    logit p_i(t) = a_i + d(t) + gain * f_c(M_g(t)),   M_g(t) = sum over trainings of group g at s < t of rho^(t - 1 - s)

a_i is the prompt's own level, d(t) the drift (how the whole model moves, one free value per
observed step, or per step and stratum), g the prompt's group (itself, or every prompt id that
is the same training input, e.g. the same question under several ids), and M counts the group's
trainings that gave a gradient (partially solved trained groups), decayed with the half-life h
(rho = 2^(-1/h); h = inf: permanent). f_c(M) = c (1 - exp(-M / c)): `gain` is the initial rate
per training, each training adds exp(-1 / c) times what the one before it added, and no number
of trainings adds more than gain * c; c = inf is the line.

Regressing on those partial trainings directly is biased: which prompts are partially solved,
and when, is tied to how each prompt moves on its own. What a uniform run randomises is *which
prompts it picks*. So `fit_training_effect` fits the model with M counting every selection (a
randomised regressor), by maximum binomial likelihood (a_i with a weak N(0, 4^2) prior), and
scales the counts by the share of selections that were partial (weighted as the likelihood
weighs them): the effect per training that gave a gradient. It needs observations of trained
prompts between their trainings (dense sweeps, or random revisits); a log of epoch permutations
alone does not identify it, and is refused.

`choose_shape` fits every pair of a half-life (EFFECT_HALF_LIVES) and a saturation
(EFFECT_SATURATIONS, and the default c = the log's own trainings per prompt). The point estimate
keeps the default unless another pair beats it by BIC's margin per departure, likelihoods
divided by the dispersion. Every pair keeps a weight (pseudo-BMA+ over units of prompts that
share trainings, no head start for the default) and a gain standard error clustered by unit:
`TrainingEffect.draw` samples from them, and a replay's 90% interval is the spread of replays
with such draws. A uniform log of prompts that each stand alone cannot tell the shapes apart (the
weights stay spread); prompts logged under several ids show where the effect levels off.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from dps.outcomes import partially_solved
from dps.replay.worlds import _sigmoid

if TYPE_CHECKING:
    import polars as pl

#: Candidate half-lives (steps) of the training effect; inf: permanent.
EFFECT_HALF_LIVES = (math.inf, 64.0, 16.0, 4.0)
#: Candidate saturation counts of the effect's shape (trainings that give a gradient); inf: linear.
EFFECT_SATURATIONS = (math.inf, 32.0, 16.0, 12.0, 8.0, 6.0, 4.0, 3.0, 2.0, 1.0)
#: A fit whose gain has a larger standard error (logits per training) is refused as unidentified.
MAX_GAIN_SE = 0.25
_PRIOR_SD = 4.0
_CLIP = 1e-6

# --------------------------------------------------------------------------------------------
# Training counts


def _rho(half_life: float) -> float:
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
    rho = _rho(half_life)
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


# --------------------------------------------------------------------------------------------
# The fit


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
            out[_count_label(c.saturation)] = out.get(_count_label(c.saturation), 0.0) + c.weight
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def describe(self) -> dict[str, Any]:
        return {
            "gain": round(self.gain, 5),
            "gain_se": round(self.gain_se, 5),
            "first_training": round(float(self.level(np.array([1.0]))[0]), 5),
            "most": "inf" if math.isinf(self.saturation) else round(self.gain * self.saturation, 5),
            "half_life": "inf" if math.isinf(self.half_life) else self.half_life,
            "saturation": _count_label(self.saturation),
            "shape": self.shape_reason,
            "shape_default": _count_label(self.shape_default),
            "shape_loglik": {_count_label(c): round(v, 2) for c, v in self.shape_scores.items()},
            "shape_margin": round(0.5 * math.log(max(self.observations, 2)), 2),
            "drift_total": round(float(self.drift[-1]), 4) if len(self.drift) else 0.0,
            "spillover": self.spillover,
            "drift_by": self.drift_by,
            "dispersion": round(self.dispersion, 3),
            "shape_weights": {k: round(v, 4) for k, v in self.shape_weights().items()},
            "observations": self.observations,
            "trainings": self.trainings,
            "prompts": self.prompts,
        }


def _loglik(nc: np.ndarray, nr: np.ndarray, eta: np.ndarray) -> float:
    p = np.clip(_sigmoid(eta), _CLIP, 1 - _CLIP)
    return float(np.sum(nc * np.log(p) + (nr - nc) * np.log1p(-p)))


def _fit_one(
    pid: np.ndarray,
    sidx: np.ndarray,
    nc: np.ndarray,
    nr: np.ndarray,
    M: np.ndarray,
    N: int,
    S: int,
    iters: int = 50,
    blocks: np.ndarray | None = None,
) -> tuple[float, np.ndarray, np.ndarray, float, float]:
    """`_fit` with one regressor: (coef, a, d, log-likelihood per rollout, standard error of coef)."""
    coef, a, d, ll, cov = _fit(pid, sidx, nc, nr, M[:, None], N, S, iters, blocks=blocks)
    se = float(math.sqrt(cov[0, 0])) if cov[0, 0] > 0 else float("nan")
    return float(coef[0]), a, d, ll, se


def _fit(
    pid: np.ndarray,
    sidx: np.ndarray,
    nc: np.ndarray,
    nr: np.ndarray,
    X: np.ndarray,
    N: int,
    S: int,
    iters: int = 50,
    start: tuple[np.ndarray, np.ndarray] | None = None,
    blocks: np.ndarray | None = None,
    cells: Any = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, np.ndarray]:
    """Maximum likelihood of logit p = a[pid] + d[sidx] + X @ coef by Newton's method.

    The prompt levels a (diagonal block of the Hessian, with the N(0, 4^2) prior) are eliminated
    by their Schur complement, so each step solves an (S + q)-sized system for q regressors. The
    (drift cell, prompt) block is kept as the list of observed cells, so memory follows the rows,
    not S x N. `start`: (a, d) of a similar fit to start from (the coefficients start at 0).
    `blocks`: each drift cell's stratum, when no prompt spans two strata (then the drift block of
    the system is block-diagonal and is solved stratum by stratum). `cells`: `_cells(pid, sidx,
    N, S)`, when several fits share the observations. Returns (coef, a, d, log-likelihood per rollout,
    covariance of coef).
    """
    lam = 1.0 / _PRIOR_SD**2
    q = X.shape[1]
    a, x = np.zeros(N), np.zeros(S + q)  # x = (d, coef)
    if start is not None:
        a[:] = start[0]
        x[:S] = start[1]
    cell_of_row, cs, ci, pairs = cells if cells is not None else _cells(pid, sidx, N, S)

    def eta(a: np.ndarray, x: np.ndarray) -> np.ndarray:
        return a[pid] + x[sidx] + X @ x[S:]

    def objective(a: np.ndarray, x: np.ndarray) -> float:
        return _loglik(nc, nr, eta(a, x)) - 0.5 * lam * float(a @ a)

    cur = objective(a, x)
    cov = np.full((q, q), np.nan)
    for _ in range(iters):
        p = _sigmoid(eta(a, x))
        r, w = nc - nr * p, nr * p * (1 - p) + 1e-12
        g_a = np.bincount(pid, r, N) - lam * a
        g_x = np.concatenate([np.bincount(sidx, r, S), r @ X])
        D = np.bincount(pid, w, N) + lam
        cw = np.bincount(cell_of_row, w, len(cs))  # H[d_s, a_i] over the observed cells
        wX = w[:, None] * X
        hx = np.stack([np.bincount(pid, wX[:, j], N) for j in range(q)]) if q else np.zeros((0, N))  # H[coef_j, a_i]
        schur = np.zeros((S + q, S + q))
        if pairs is None:
            block = np.zeros((S, N))
            block[cs, ci] = cw
            schur[:S, :S] = -(block / D) @ block.T
        else:
            schur[:S, :S] = -_pair_sum(pairs, cw / np.sqrt(D[ci]), S)
        schur[np.arange(S), np.arange(S)] += np.bincount(sidx, w, S) + 1e-8
        for j in range(q):
            col = np.bincount(sidx, wX[:, j], S) - np.bincount(cs, cw * hx[j][ci] / D[ci], S)
            schur[:S, S + j] = schur[S + j, :S] = col
        schur[S:, S:] = X.T @ wX - (hx / D) @ hx.T + 1e-12 * np.eye(q)
        ga_d = g_a / D
        rhs = g_x - np.concatenate([np.bincount(cs, cw * ga_d[ci], S), hx @ ga_d])
        dx, cov = _block_solve(schur, rhs, S, blocks)
        da = (g_a - np.bincount(ci, cw * dx[cs], N) - hx.T @ dx[S:]) / D
        step = 1.0
        while step > 1e-4:
            new = objective(a + step * da, x + step * dx)
            if new >= cur - 1e-9 * abs(cur):
                break
            step /= 2
        a, x = a + step * da, x + step * dx
        done = new - cur < 1e-10 * max(1.0, abs(cur))
        cur = new
        if done:
            break
    ll = _loglik(nc, nr, eta(a, x))
    return x[S:], a, x[:S], ll / float(nr.sum()), cov


def _cells(pid: np.ndarray, sidx: np.ndarray, N: int, S: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
    """The observed (drift cell, prompt) cells: each row's cell, each cell's drift index and prompt,
    and the cell pairs of `_pair_sum` (None where the block is kept dense: small and mostly filled,
    where BLAS is faster)."""
    cells, cell_of_row = np.unique(sidx.astype(np.int64) * N + pid, return_inverse=True)
    cs, ci = cells // N, cells % N
    per_prompt = np.bincount(ci, minlength=N)
    dense = S * N <= _DENSE_CELLS and float(per_prompt @ per_prompt) * _PAIR_COST > float(S) * S * N
    return cell_of_row.ravel(), cs, ci, None if dense else _cell_pairs(ci, cs, S)


def _solve(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.solve(A, B)
    except np.linalg.LinAlgError:
        return np.linalg.pinv(A) @ B


def _block_solve(M: np.ndarray, rhs: np.ndarray, S: int, blocks: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Solve M x = rhs, M = [[A, C], [C', E]] with A (S x S) block-diagonal over `blocks`; also
    return the (q x q) inverse of the coefficients' Schur complement (their covariance)."""
    q = M.shape[0] - S
    groups = [np.arange(S)] if blocks is None else [np.flatnonzero(blocks == b) for b in np.unique(blocks)]
    C, E = M[:S, S:], M[S:, S:]
    y, Z = np.zeros(S), np.zeros((S, q))
    for idx in groups:
        sol = _solve(M[np.ix_(idx, idx)], np.column_stack([rhs[idx], C[idx]]))
        y[idx], Z[idx] = sol[:, 0], sol[:, 1:]
    red = E - C.T @ Z
    cov = _solve(red, np.eye(q)) if q else np.zeros((0, 0))
    coef = cov @ (rhs[S:] - C.T @ y) if q else np.zeros(0)
    return np.concatenate([y - Z @ coef, coef]), cov


#: Pairs of cells of one chunk of the Schur complement's drift block (each pair keeps three indices).
_PAIR_CHUNK = 4_000_000
#: Up to this many (drift cell, prompt) entries the fit may hold that block as a dense matrix.
_DENSE_CELLS = 4_000_000
#: A cell pair costs about this many dense multiply-adds (measured: bincount against BLAS).
_PAIR_COST = 30


def _cell_pairs(ci: np.ndarray, cs: np.ndarray, S: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every pair of observed cells of the same prompt, in chunks: (first cell, second cell, their
    place in the flattened (S, S) drift block). Built once per fit; the cells' values change per step."""
    order = np.argsort(ci, kind="stable")
    bounds = np.flatnonzero(np.diff(ci[order])) + 1
    starts = np.concatenate([[0], bounds]).astype(np.int64)
    sizes = np.diff(np.concatenate([starts, [len(ci)]]))
    start, size = np.repeat(starts, sizes), np.repeat(sizes, sizes)  # per cell, in prompt order
    chunks = []
    total = np.cumsum(size)
    lo = 0
    while lo < len(order):
        hi = max(int(np.searchsorted(total, (total[lo - 1] if lo else 0) + _PAIR_CHUNK, side="right")), lo + 1)
        k = size[lo:hi]
        first = np.repeat(np.arange(lo, hi), k)
        second = np.repeat(start[lo:hi], k) + (np.arange(len(first)) - np.repeat(np.cumsum(k) - k, k))
        first, second = order[first], order[second]
        chunks.append((first, second, cs[first] * S + cs[second]))
        lo = hi
    return chunks


def _pair_sum(pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]], v: np.ndarray, S: int) -> np.ndarray:
    """(S, S) sum over prompts of the outer product of the prompt's cell values v, at the cells' drift indices."""
    out = np.zeros(S * S)
    for first, second, place in pairs:
        out += np.bincount(place, v[first] * v[second], S * S)
    return out.reshape(S, S)


def fit_training_effect(
    observations: pl.DataFrame,
    trainings: pl.DataFrame,
    half_life: float | str = "auto",
    num_prompts: int | None = None,
    count: str = "selection",
    saturation: float | str = "auto",
    groups: np.ndarray | None = None,
    strata: np.ndarray | None = None,
    spillover: str = "",
    drift_by: str = "",
) -> TrainingEffect:
    """Fit the closed loop from a log.

    `observations`: every measured group (step, prompt_id, n_correct, n_rollouts): trained
    groups, rejected ones and sweep rows alike. `trainings`: the groups the run trained on
    (step, prompt_id, n_correct, n_rollouts); only the partially solved ones count, since a
    group whose responses all score the same gives GRPO no gradient.

    `groups` (one integer per prompt id): prompts of one group are the same training input (the
    same question text, `spillover` names the column), so a training of any of them counts for
    all; None: each prompt alone. `strata` (one integer per prompt id, a property fixed before
    training such as a difficulty level, `drift_by` names it): the drift d(t) is fitted per
    stratum, so that strata learning at different speeds are not taken for a training effect.

    The half-life and the shape (`saturation`, see `choose_shape`) are chosen together, the shape
    among the candidates unless `saturation` names one. Every candidate fitted
    keeps its likelihood: `TrainingEffect.candidates` and their weights are what the replay's
    interval draws from.
    """
    for name, df in (("observations", observations), ("trainings", trainings)):
        missing = [c for c in ("step", "prompt_id", "n_correct", "n_rollouts") if c not in df.columns]
        if missing:
            raise ValueError(f"fit_training_effect: {name} lack column(s) {', '.join(missing)}")
    if observations.height == 0:
        raise ValueError("fit_training_effect: no observations")
    step = observations["step"].to_numpy().astype(np.int64)
    pid = observations["prompt_id"].to_numpy().astype(np.int64)
    nc = observations["n_correct"].to_numpy().astype(np.float64)
    nr = observations["n_rollouts"].to_numpy().astype(np.float64)
    tstep, tpid = partial_trainings(trainings)
    if len(tstep) == 0:
        raise ValueError(
            "fit_training_effect: the log trained on no partially solved group; there is no training effect to fit"
        )
    sstep = trainings["step"].to_numpy().astype(np.int64)
    spid = trainings["prompt_id"].to_numpy().astype(np.int64)
    N = int(max(pid.max(), tpid.max() if len(tpid) else 0)) + 1
    N = max(N, num_prompts or 0)
    group = _per_prompt(groups, N, "groups")
    stratum = _per_prompt(strata, N, "strata")
    G = int(group.max()) + 1
    sidx, S, steps, cell_step, cell_stratum = _drift_cells(step, stratum[pid])
    if half_life == "auto":
        candidates: tuple[float, ...] = EFFECT_HALF_LIVES
    else:
        candidates = (parse_half_life(half_life, "effect_half_life"),)
    counts: dict[float, np.ndarray] = {}
    for h in candidates:
        MP = trained_level(step, group[pid], tstep, group[tpid], h, G)
        if count == "partial":
            counts[h] = MP
            continue
        MS = trained_level(step, group[pid], sstep, group[spid], h, G)
        coef, a, d, _, _ = _fit_one(pid, sidx, nc, nr, MS, N, S, blocks=cell_stratum)
        p = _sigmoid(a[pid] + d[sidx] + coef * MS)
        w = nr * p * (1 - p)
        share = float(w @ MP) / max(float(w @ MS), 1e-12)
        counts[h] = share * MS  # selections in units of trainings that gave a gradient
    final = trained_level(
        np.full(len(np.unique(pid)), int(step.max()) + 1), group[np.unique(pid)], tstep, group[tpid], math.inf, G
    )
    scale = float(final.mean())  # trainings per prompt by the end of the log (its own and its group's)
    given = None if saturation == "auto" else parse_saturation(saturation, "effect_saturation")
    fits = choose_shape(pid, sidx, nc, nr, counts, N, S, scale, given, blocks=cell_stratum, units=group[pid])
    best = max(fits, key=lambda c: c.score)
    gain, se = best.gain, best.gain_se
    if not se <= MAX_GAIN_SE:
        raise ValueError(
            f"the log does not identify the training effect (standard error {se:.3g} logits per training): it needs "
            "untrained measurements of the prompts between their trainings, e.g. dense sweeps (dps train --set "
            "log.sweep_every=N) or random revisits; else set closed_loop to a gain of your own"
        )
    drift = np.bincount(cell_step, best.drift, len(steps)) / np.maximum(np.bincount(cell_step, None, len(steps)), 1)
    shape_scores = {
        c.saturation: c.loglik for c in sorted(fits, key=lambda c: -c.saturation) if c.half_life == best.half_life
    }
    default_c = _default_saturation(scale) if given is None else given
    return TrainingEffect(
        gain=float(gain),
        half_life=best.half_life,
        gain_se=float(se),
        saturation=best.saturation,
        shape_scores=shape_scores,
        shape_default=default_c if given is None else math.inf,
        shape_reason="given" if given is not None else ("default" if best.saturation == default_c else "fitted"),
        drift_steps=steps,
        drift=drift - drift[0],
        scores={c.half_life: c.loglik / float(nr.sum()) for c in fits if c.saturation == best.saturation},
        gains={c.half_life: c.gain for c in fits if c.saturation == best.saturation},
        observations=len(step),
        trainings=len(tstep),
        prompts=int(len(np.unique(pid))),
        groups=None if groups is None else group,
        spillover=spillover,
        drift_by=drift_by,
        dispersion=best.dispersion,
        candidates=_weighted(fits),
    )


def _per_prompt(values: np.ndarray | None, N: int, name: str) -> np.ndarray:
    """A dense integer label per prompt id 0..N-1 (identity / zero when not given)."""
    if values is None:
        return np.arange(N, dtype=np.int64) if name == "groups" else np.zeros(N, np.int64)
    values = np.asarray(values)
    if len(values) < N:
        raise ValueError(f"fit_training_effect: {name} label {len(values)} prompts, the log names {N}")
    return np.unique(values, return_inverse=True)[1].astype(np.int64).ravel()


#: A fit with more drift cells (steps x strata) than this merges consecutive steps: its Schur system is cells x cells.
MAX_DRIFT_CELLS = 3000


def _drift_cells(step: np.ndarray, stratum: np.ndarray) -> tuple[np.ndarray, int, np.ndarray, np.ndarray, np.ndarray]:
    """Each observation's drift cell (stratum, step), the number of cells, the (first) step of each
    step index, and each cell's step index and stratum.

    Steps are labels: cells are numbered over the logged steps only. A log with more cells than
    MAX_DRIFT_CELLS gets one drift value per run of consecutive logged steps (as few as fit).
    """
    steps, sidx = np.unique(step, return_inverse=True)
    n_strata = int(stratum.max()) + 1
    per = max(1, math.ceil(len(steps) * n_strata / MAX_DRIFT_CELLS))
    sidx = sidx // per
    width = int(sidx.max()) + 1
    cells, idx = np.unique(stratum.astype(np.int64) * width + sidx, return_inverse=True)
    return (
        idx.astype(np.int64).ravel(),
        len(cells),
        steps[::per],
        (cells % width).astype(np.int64),
        (cells // width).astype(np.int64),
    )


def _default_saturation(scale: float) -> float:
    return float(max(round(scale, 2), 0.01))


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


#: Bayesian-bootstrap draws of the candidates' weights.
WEIGHT_DRAWS = 2000


def _weighted(fits: list[Candidate]) -> list[Candidate]:
    """Each candidate's weight: pseudo-BMA+ over independent units (Yao et al. 2018), flat prior.

    The log-likelihood of each candidate is a sum over units (groups of prompts that share
    trainings, or prompts); how far one candidate leads another is uncertain as much as the units
    disagree about it, which a likelihood summed over correlated rollouts hides. So the units are
    resampled by the Bayesian bootstrap (Dirichlet weights), the candidates' softmax taken in each
    draw, and averaged. A lead that rests on a few units gets a split weight; one every unit
    agrees on, all of it. Unlike the point estimate (`choose_shape`'s score), the weights give the
    default no head start: shapes the log cannot tell apart share the weight, so the interval
    spans them.
    """
    units = np.stack([c.unit_loglik for c in fits], axis=1)  # (units, candidates)
    n = units.shape[0]
    alpha = np.random.default_rng(0x5A11).dirichlet(np.ones(n), WEIGHT_DRAWS)
    totals = n * alpha @ units
    totals -= totals.max(axis=1, keepdims=True)
    w = np.exp(totals)
    w = (w / w.sum(axis=1, keepdims=True)).mean(axis=0)
    for c, x in zip(fits, w, strict=True):
        c.weight = float(x)
        c.drift = np.zeros(0)
        c.unit_loglik = np.zeros(0)
    return fits


def choose_shape(
    pid: np.ndarray,
    sidx: np.ndarray,
    nc: np.ndarray,
    nr: np.ndarray,
    counts: dict[float, np.ndarray],
    N: int,
    S: int,
    scale: float,
    given: float | None = None,
    blocks: np.ndarray | None = None,
    units: np.ndarray | None = None,
) -> list[Candidate]:
    """The candidate (half-life, saturation c) pairs of gain * f_c(M), fitted, each with its score.

    `counts`: M (partial-training units) by candidate half-life. The default is the permanent
    effect (or the one half-life given) with c = `scale`, the log's own trainings per prompt.
    Every pair of a half-life and a saturation of EFFECT_SATURATIONS or the default is fitted
    (both a half-life and a saturation make repeated trainings count less, so they are chosen
    together). A candidate's score is its log-likelihood divided by the
    dispersion (Pearson's chi-square per degree of freedom of the default fit, at least 1: the
    sweeps vary more than a binomial does, so the log is worth fewer independent rollouts than it
    holds) minus BIC's margin, 0.5 ln(observations), for each way it departs from the default (a
    finite half-life, another saturation). The best score is the point estimate; the rest, with
    weights exp(score), are the shapes the log cannot rule out.

    The default says: the log measured what about `scale` trainings do to a prompt; further ones
    are assumed to add less and less, so that no prompt gains more than `scale` trainings' worth
    at the initial rate (gain * scale logits). A replayed policy that trains a prompt far more often
    than the log did is then never credited with an effect the log could not see; a log whose
    effect is clearly linear over its range gets the line (and a log whose groups of identical
    prompts were trained many times shows where the effect levels off).

    With `given`, that saturation alone (with every half-life).
    """
    default_c = given if given is not None else _default_saturation(scale)
    default_h = math.inf if math.inf in counts else next(iter(counts))
    margin = 0.5 * math.log(max(len(pid), 2))
    fits: list[Candidate] = []

    start: list[tuple[np.ndarray, np.ndarray]] = []
    cells = _cells(pid, sidx, N, S)
    units = pid if units is None else units

    def add(h: float, c: float) -> Candidate:
        X = effect_curve(counts[h], c)[:, None]
        coef, a, d, ll, cov = _fit(
            pid, sidx, nc, nr, X, N, S, start=start[0] if start else None, blocks=blocks, cells=cells
        )
        if not start:
            start.append((a, d))
        se = float(math.sqrt(cov[0, 0])) if cov[0, 0] > 0 else float("nan")
        eta = a[pid] + d[sidx] + X[:, 0] * coef[0]
        cand = Candidate(
            h, c, float(coef[0]), se, ll * float(nr.sum()), drift=d, unit_loglik=_unit_loglik(nc, nr, eta, units)
        )
        cand.dispersion = _dispersion(nc, nr, eta, len(nc) - N - S - 1)
        cand.robust_se = _clustered_se(nc, nr, eta, X[:, 0], pid, sidx, N, S, units)
        fits.append(cand)
        return cand

    base = add(default_h, default_c)
    phi = base.dispersion
    for h in counts:
        for c in dict.fromkeys((default_c,) if given is not None else (default_c, *EFFECT_SATURATIONS)):
            if (h, c) != (default_h, default_c):
                add(h, c)

    def score(c: Candidate) -> float:
        return c.loglik / phi - margin * ((c.half_life != default_h) + (c.saturation != default_c))

    for cand in fits:
        cand.score = score(cand)
        cand.dispersion = phi
        cand.gain_se = max(cand.gain_se * math.sqrt(phi), cand.robust_se)
    return fits


def _unit_loglik(nc: np.ndarray, nr: np.ndarray, eta: np.ndarray, units: np.ndarray) -> np.ndarray:
    """Each unit's log-likelihood (binomial, without the coefficient)."""
    p = np.clip(_sigmoid(eta), _CLIP, 1 - _CLIP)
    return np.bincount(units, nc * np.log(p) + (nr - nc) * np.log1p(-p))


def _clustered_se(
    nc: np.ndarray,
    nr: np.ndarray,
    eta: np.ndarray,
    x: np.ndarray,
    pid: np.ndarray,
    sidx: np.ndarray,
    N: int,
    S: int,
    units: np.ndarray,
    iters: int = 500,
) -> float:
    """The gain's standard error, clustered by unit (a sandwich over units of the score).

    A prompt's residuals are correlated over time (its curve is not the population's), which the
    binomial standard error, even scaled by the dispersion, takes for independent evidence. The
    regressor is first made orthogonal to the prompt levels and the drift (two-way weighted
    demeaning, by alternating projections); the score of each unit is its residuals times that.
    """
    p = np.clip(_sigmoid(eta), _CLIP, 1 - _CLIP)
    w, r = nr * p * (1 - p), nc - nr * p
    wp, ws = np.bincount(pid, w, N) + 1e-12, np.bincount(sidx, w, S) + 1e-12
    x = np.asarray(x, np.float64).copy()
    for _ in range(iters):
        shift = np.bincount(pid, w * x, N)[pid] / wp[pid]
        x -= shift
        x -= np.bincount(sidx, w * x, S)[sidx] / ws[sidx]
        if float(np.max(np.abs(shift), initial=0.0)) < 1e-9 * (1.0 + float(np.max(np.abs(x), initial=0.0))):
            break
    info = float(w @ (x * x))
    if info <= 0:
        return float("nan")
    scores = np.bincount(units, r * x)
    return math.sqrt(float(scores @ scores)) / info


def _dispersion(nc: np.ndarray, nr: np.ndarray, eta: np.ndarray, df: int) -> float:
    """Pearson's chi-square per degree of freedom of a binomial fit, at least 1."""
    p = np.clip(_sigmoid(eta), _CLIP, 1 - _CLIP)
    chi2 = float(np.sum((nc - nr * p) ** 2 / (nr * p * (1 - p))))
    return max(1.0, chi2 / max(df, 1))


def _count_label(c: float) -> str:
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
