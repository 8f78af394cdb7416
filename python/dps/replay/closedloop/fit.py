"""The closed loop's effect, fitted from a log: how training on a prompt moves it.

A log world is open-loop: it replays the model of the logged run, which was trained on that
run's batches. A policy that trains on other prompts would have moved other prompts. This
module estimates that effect from the log and adds it to any world.

The model, in logit space, for an observation of prompt i at step t (a logged group, trained
or not, or a sweep row; each rolled out before step t's update):

    logit p_i(t) = a_i + d(t) + gain * f_c(M_i(t)),   M_i(t) = sum over trainings of i at steps s < t of rho^(t - 1 - s)

a_i is the prompt's own level, d(t) the population drift (how the whole model moves, one free
value per observed step), and M_i(t) counts the prompt's trainings that gave a gradient (its
partially solved trained groups), decayed with the half-life h (rho = 2^(-1/h); h = inf: the
effect is permanent). f_c is the effect's shape: f_c(M) = c (1 - exp(-M / c)), so `gain` is the
effect's initial rate per training, each training adds exp(-1 / c) times what the one before it
added, and no number of trainings adds more than gain * c; c = inf is the line f(M) = M.

Fitting `gain` by regressing on those partial trainings directly is biased: which prompts are
partially solved, and when, is tied to how each prompt moves on its own. What a uniform run
does randomise is *which prompts it picks*. So `fit_training_effect` fits the same model with
M counting every selection (trained rows of any outcome; a randomised regressor), by maximum
binomial likelihood (a_i with a weak N(0, 4^2) prior so prompts never or always solved stay
finite), and divides the coefficient by the share of those selections that were partial
(weighted as the likelihood weighs them): the effect per partial training. On synthetic
closed-loop worlds this recovers the true gain within its standard error, where the direct
regression gave half of it, or -0.04 for a true 0. It needs observations of trained prompts
between their trainings that are not themselves trainings (dense sweeps, or a log with random
revisits); a log of epoch permutations alone does not identify it, and is refused. The
half-life is chosen among EFFECT_HALF_LIVES by likelihood, a finite one only when it beats the
permanent effect by BIC's margin.

The shape matters most where the log is silent: a uniform log trains each prompt a few times,
a selective policy trains some prompts dozens of times. `choose_shape` fits every saturation
of EFFECT_SATURATIONS and the default, c = the log's own trainings per prompt, and keeps the
default unless another beats it by BIC's margin (each shape is fitted on the selections scaled
by the partial share, share * M_selections, which stand for the partial trainings as above): a log that shows a line over its range gets
the line (and the line is extrapolated), one that cannot tell gets an effect that keeps its
measured rate for about the log's own number of trainings and then levels off, so a replay
never credits a prompt with much more effect than the log ever saw one prompt get.

The world that applies the fitted effect is `dps.replay.closedloop.world`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from dps.replay.worlds import _sigmoid

if TYPE_CHECKING:
    import polars as pl

#: Candidate half-lives (steps) of the training effect; inf: permanent.
EFFECT_HALF_LIVES = (math.inf, 64.0, 16.0, 4.0)
#: Candidate saturation counts of the effect's shape (trainings that give a gradient); inf: linear.
EFFECT_SATURATIONS = (math.inf, 32.0, 16.0, 8.0, 4.0, 2.0, 1.0)
#: A fit whose gain has a larger standard error (logits per training) is refused as unidentified.
MAX_GAIN_SE = 0.25
_PRIOR_SD = 4.0
_CLIP = 1e-6

# --------------------------------------------------------------------------------------------
# Training counts


def _rho(half_life: float) -> float:
    return 1.0 if math.isinf(half_life) else 0.5 ** (1.0 / half_life)


def trained_level(
    obs_step: np.ndarray, obs_pid: np.ndarray, train_step: np.ndarray, train_pid: np.ndarray, half_life: float, num_prompts: int
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

    def level(self, M: np.ndarray) -> np.ndarray:
        """The logit effect of M (decayed) trainings of a prompt."""
        return self.gain * effect_curve(M, self.saturation)

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
            "observations": self.observations,
            "trainings": self.trainings,
            "prompts": self.prompts,
        }


def _loglik(nc: np.ndarray, nr: np.ndarray, eta: np.ndarray) -> float:
    p = np.clip(_sigmoid(eta), _CLIP, 1 - _CLIP)
    return float(np.sum(nc * np.log(p) + (nr - nc) * np.log1p(-p)))


def _fit_one(
    pid: np.ndarray, sidx: np.ndarray, nc: np.ndarray, nr: np.ndarray, M: np.ndarray, N: int, S: int, iters: int = 50
) -> tuple[float, np.ndarray, np.ndarray, float, float]:
    """`_fit` with one regressor: (coef, a, d, log-likelihood per rollout, standard error of coef)."""
    coef, a, d, ll, cov = _fit(pid, sidx, nc, nr, M[:, None], N, S, iters)
    se = float(math.sqrt(cov[0, 0])) if cov[0, 0] > 0 else float("nan")
    return float(coef[0]), a, d, ll, se


def _fit(
    pid: np.ndarray, sidx: np.ndarray, nc: np.ndarray, nr: np.ndarray, X: np.ndarray, N: int, S: int, iters: int = 50
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, np.ndarray]:
    """Maximum likelihood of logit p = a[pid] + d[sidx] + X @ coef by Newton's method.

    The prompt levels a (diagonal block of the Hessian, with the N(0, 4^2) prior) are eliminated
    by their Schur complement, so each step solves an (S + q)-sized system for q regressors.
    Returns (coef, a, d, log-likelihood per rollout, covariance of coef).
    """
    lam = 1.0 / _PRIOR_SD**2
    q = X.shape[1]
    a, x = np.zeros(N), np.zeros(S + q)  # x = (d, coef)
    cell = sidx * N + pid

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
        H_xa = np.zeros((S + q, N))
        H_xa[:S] = np.bincount(cell, w, S * N).reshape(S, N)
        wX = w[:, None] * X
        for j in range(q):
            H_xa[S + j] = np.bincount(pid, wX[:, j], N)
        H_xx = np.zeros((S + q, S + q))
        H_xx[np.arange(S), np.arange(S)] = np.bincount(sidx, w, S) + 1e-8
        for j in range(q):
            H_xx[:S, S + j] = H_xx[S + j, :S] = np.bincount(sidx, wX[:, j], S)
        H_xx[S:, S:] = X.T @ wX + 1e-12 * np.eye(q)
        schur = H_xx - (H_xa / D) @ H_xa.T
        try:
            inv = np.linalg.inv(schur)
        except np.linalg.LinAlgError:
            inv = np.linalg.pinv(schur)
        dx = inv @ (g_x - H_xa @ (g_a / D))
        da = (g_a - H_xa.T @ dx) / D
        cov = inv[S:, S:]
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


def fit_training_effect(
    observations: pl.DataFrame,
    trainings: pl.DataFrame,
    half_life: float | str = "auto",
    num_prompts: int | None = None,
    count: str = "selection",
    saturation: float | str = "auto",
) -> TrainingEffect:
    """Fit the closed loop from a log.

    `observations`: every measured group (step, prompt_id, n_correct, n_rollouts): trained
    groups, rejected ones and sweep rows alike. `trainings`: the groups the run trained on
    (step, prompt_id, n_correct, n_rollouts); only the partially solved ones count, since a
    group whose responses all score the same gives GRPO no gradient.

    The half-life is chosen with the linear effect; then the shape (`saturation`, see
    `choose_shape`) with that half-life, unless `saturation` names one.
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
        raise ValueError("fit_training_effect: the log trained on no partially solved group; there is no training effect to fit")
    sstep = trainings["step"].to_numpy().astype(np.int64)
    spid = trainings["prompt_id"].to_numpy().astype(np.int64)
    N = int(max(pid.max(), tpid.max() if len(tpid) else 0)) + 1
    N = max(N, num_prompts or 0)
    steps, sidx = np.unique(step, return_inverse=True)
    if half_life == "auto":
        candidates: tuple[float, ...] = EFFECT_HALF_LIVES
    else:
        candidates = (parse_half_life(half_life, "effect_half_life"),)
    fits, counts = {}, {}
    for h in candidates:
        MP = trained_level(step, pid, tstep, tpid, h, N)
        if count == "partial":
            fits[h] = _fit_one(pid, sidx, nc, nr, MP, N, len(steps))
            counts[h] = MP
            continue
        MS = trained_level(step, pid, sstep, spid, h, N)
        coef, a, d, ll, se = _fit_one(pid, sidx, nc, nr, MS, N, len(steps))
        p = _sigmoid(a[pid] + d[sidx] + coef * MS)
        w = nr * p * (1 - p)
        share = float(w @ MP) / max(float(w @ MS), 1e-12)
        fits[h] = (coef / share, a, d, ll, se / share)
        counts[h] = share * MS  # selections in units of trainings that gave a gradient
    rollouts, S = float(nr.sum()), len(steps)
    if saturation == "auto":
        scale = len(tstep) / max(len(np.unique(pid)), 1)  # trainings per prompt in the log
        best, (sat, gain, se, shape_scores, shape_default, reason) = choose_shape(
            pid, sidx, nc, nr, counts, N, S, scale, len(candidates) > 1
        )
    else:
        sat = parse_saturation(saturation, "effect_saturation")
        if not math.isinf(sat):
            for h in candidates:
                fits[h] = _fit_one(pid, sidx, nc, nr, effect_curve(counts[h], sat), N, S)
        best = _choose_half_life(fits, rollouts, len(step))
        gain, se, shape_scores, shape_default, reason = fits[best][0], fits[best][4], {}, math.inf, "given"
    d = fits[best][2]
    if not se <= MAX_GAIN_SE:
        raise ValueError(
            f"the log does not identify the training effect (standard error {se:.3g} logits per training): it needs "
            "untrained measurements of the prompts between their trainings, e.g. dense sweeps (dps train --set "
            "log.sweep_every=N) or random revisits; else set closed_loop to a gain of your own"
        )
    return TrainingEffect(
        gain=float(gain),
        half_life=best,
        gain_se=float(se),
        saturation=sat,
        shape_scores=shape_scores,
        shape_default=shape_default,
        shape_reason=reason,
        drift_steps=steps,
        drift=d - d[0],
        scores={h: f[3] for h, f in fits.items()},
        gains={h: f[0] for h, f in fits.items()},
        observations=len(step),
        trainings=len(tstep),
        prompts=int(len(np.unique(pid))),
    )


def choose_shape(
    pid: np.ndarray, sidx: np.ndarray, nc: np.ndarray, nr: np.ndarray, counts: dict[float, np.ndarray], N: int, S: int,
    scale: float, half_life_free: bool,
) -> tuple[float, tuple[float, float, float, dict[float, float], float, str]]:
    """The half-life and saturation c of gain * f_c(M), by likelihood, with a default when the log cannot tell.

    `counts`: M (partial-training units) by candidate half-life. Every pair of a half-life and a
    saturation of EFFECT_SATURATIONS or the default c = `scale` (the log's own trainings per
    prompt) is fitted; the default is the permanent effect (or the one half-life given) with
    c = `scale`, and each way a pair differs from it (a finite half-life, another saturation)
    costs BIC's margin for one more parameter, 0.5 ln(observations). Both a half-life and a
    saturation make repeated trainings count less, so they are chosen together.

    The default says: the log measured what about `scale` trainings do to a prompt; further ones
    are assumed to add less and less, so that no prompt gains more than `scale` trainings' worth
    at the initial rate (gain * scale logits). A replayed policy that trains a prompt far more often than the
    log did is then never credited with an effect the log could not see; a log whose effect is
    clearly linear over its range gets the line.

    Returns (half-life, (saturation, gain, its standard error, total log-likelihood by saturation
    at that half-life, the default saturation, "fitted" or "default")).
    """
    default_c = float(max(round(scale, 2), 0.01))
    default_h = math.inf if half_life_free else next(iter(counts))
    margin = 0.5 * math.log(max(len(pid), 2))
    fits: dict[tuple[float, float], tuple[float, float, float]] = {}
    for h, M in counts.items():
        for c in dict.fromkeys((*EFFECT_SATURATIONS, default_c)):
            g, _, _, ll, se = _fit_one(pid, sidx, nc, nr, effect_curve(M, c), N, S)
            fits[(h, c)] = (g, se, ll * float(nr.sum()))

    def penalised(key: tuple[float, float]) -> float:
        h, c = key
        return fits[key][2] - margin * ((h != default_h) + (c != default_c))

    h, c = max(fits, key=penalised)
    g, se, _ = fits[(h, c)]
    scores = {cc: f[2] for (hh, cc), f in fits.items() if hh == h}
    return h, (c, g, se, scores, default_c, "default" if c == default_c else "fitted")


def _count_label(c: float) -> str:
    return "inf" if math.isinf(c) else f"{c:.3g}"


def _choose_half_life(fits: dict[float, tuple[Any, ...]], rollouts: float, n_obs: int) -> float:
    """A finite half-life is one more parameter: it must beat the permanent effect by BIC's 0.5 ln(n)."""
    total = {h: f[3] * rollouts for h, f in fits.items()}
    best = max(total, key=lambda h: total[h])
    if math.inf in total and not math.isinf(best) and total[best] - total[math.inf] < 0.5 * math.log(max(n_obs, 2)):
        return math.inf
    return best


def partial_trainings(trainings: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(step, prompt_id) of the trained groups that gave a gradient (0 < n_correct < n_rollouts)."""
    c = trainings["n_correct"].to_numpy()
    n = trainings["n_rollouts"].to_numpy()
    keep = (c > 0) & (c < n)
    return trainings["step"].to_numpy().astype(np.int64)[keep], trainings["prompt_id"].to_numpy().astype(np.int64)[keep]


def parse_saturation(value: Any, key: str) -> float:
    if isinstance(value, str) and value.lower() in ("inf", "linear", "none"):
        return math.inf
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or value != value:
        raise ValueError(
            f"[world] {key}: must be \"auto\", \"linear\" (or \"inf\") or a positive number of trainings "
            f"at which the effect saturates, not {value!r}"
        )
    return float(value)


def parse_half_life(value: Any, key: str) -> float:
    if isinstance(value, str) and value.lower() in ("inf", "infinite", "permanent"):
        return math.inf
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"[world] {key}: must be a positive number of steps, 'inf' or 'auto', not {value!r}")
    return float(value)
