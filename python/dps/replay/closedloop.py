"""The closed loop, fitted from a log: how training on a prompt moves it, and a world that uses it.

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

`ClosedLoopWorld` wraps a base world (the open-loop estimate): its p for prompt i at step t is

    logit p = logit p_base + gain * (f_c(M_i^replay(t)) - f_c(M_i^log(t))),

the fitted effect of what the replayed policy trained on minus what the log's own run trained
on. A prompt whose shift is zero (its training in the replay equals the log's, or gain = 0) keeps
the base world's outcome (the logged one where the log has it), so replaying the logging policy
with the logging seed gives back the log. The drift d(t) stays as the log had it: the whole
model moves per step as in the logged run, whatever the replayed policy trains on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from dps.replay.worlds import World, _sigmoid, draw_correct

if TYPE_CHECKING:
    import polars as pl

    from dps.logs import LoadedLog

#: Candidate half-lives (steps) of the training effect; inf: permanent.
EFFECT_HALF_LIVES = (math.inf, 64.0, 16.0, 4.0)
#: Candidate saturation counts of the effect's shape (trainings that give a gradient); inf: linear.
EFFECT_SATURATIONS = (math.inf, 32.0, 16.0, 8.0, 4.0, 2.0, 1.0)
#: Scenario [world] keys of the closed loop (log worlds only).
CLOSED_LOOP_KEYS = {"closed_loop", "train_log", "effect_half_life", "effect_saturation", "effect_cap"}
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


# --------------------------------------------------------------------------------------------
# The world


class ClosedLoopWorld(World):
    """A base world plus the training effect of what the replay trained on, minus the log's.

    `log_trainings`: the log run's trained groups (step, prompt_id, n_correct, n_rollouts), or
    None when the base world is itself an untrained, open-loop truth (then the effect of the
    replay's trainings is simply added).

    `cap`: the most (decayed) trainings of one prompt that count; the shift is
    level(min(M^replay, cap)) - level(min(M^log, cap)), level = the effect's gain * f(M). "log" caps at the most any prompt had in the
    log, so that the fitted line is never extrapolated past what the log measured.
    """

    def __init__(self, base: World, effect: TrainingEffect, log_trainings: pl.DataFrame | None = None, cap: float | str = math.inf):
        self.base = base
        self.effect = effect
        self.num_prompts, self.k, self.steps = base.num_prompts, base.k, base.steps
        self._rho = _rho(effect.half_life)
        if log_trainings is not None and log_trainings.height:
            ls, lp = partial_trainings(log_trainings)
            if len(lp) and lp.max() >= self.num_prompts:
                raise ValueError(f"the training log names prompt {int(lp.max())}, the world has {self.num_prompts} prompts")
            ls = ls - int(getattr(base, "first_step", 0))  # a world that counts steps from its log's first one
            order = np.argsort(ls, kind="stable")
            self._log_steps, self._log_ids = ls[order], lp[order]
        else:
            self._log_steps, self._log_ids = np.zeros(0, np.int64), np.zeros(0, np.int64)
        if cap == "log":
            after = trained_level(self._log_steps + 1, self._log_ids, self._log_steps, self._log_ids, effect.half_life, self.num_prompts)
            cap = float(after.max()) if len(after) else 0.0
        self.cap = float(cap)
        self.reset()

    def reset(self) -> None:
        self.base.reset()
        self._replay = np.zeros(self.num_prompts)  # M^replay at step self._at
        self._log = np.zeros(self.num_prompts)  # M^log at step self._at
        self._at = 0
        self._pending: dict[int, list[np.ndarray]] = {}

    def learn(self, step: int, ids: np.ndarray, n_correct: np.ndarray, n_rollouts: np.ndarray) -> None:
        ids = np.asarray(ids, np.int64)
        if step < self._at:
            raise ValueError(f"learn at step {step} after the world moved to step {self._at}")
        partial = (np.asarray(n_correct) > 0) & (np.asarray(n_correct) < np.asarray(n_rollouts))
        self._pending.setdefault(int(step), []).append(ids[partial])
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
                np.add.at(self._log, self._log_ids[lo:hi], 1.0)
            self._at = t + 1

    def shift(self, step: int, ids: np.ndarray | None = None) -> np.ndarray:
        """The logit shift level(min(M^replay, cap)) - level(min(M^log, cap)) at `step`."""
        self._advance(int(step))
        sel = slice(None) if ids is None else np.asarray(ids, np.int64)
        level = self.effect.level
        return level(np.minimum(self._replay[sel], self.cap)) - level(np.minimum(self._log[sel], self.cap))

    def p(self, step: int, ids: np.ndarray | None = None) -> np.ndarray:
        base = np.clip(np.asarray(self.base.p(step, ids), np.float64), _CLIP, 1 - _CLIP)
        return _sigmoid(np.log(base) - np.log1p(-base) + self.shift(step, ids))

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

    if world.info.id_mapping == "index" or (world.info.id_mapping == "identity" and train.info.id_mapping == "identity"):
        return train.groups
    index = pl.DataFrame({"prompt_key": world.keys, "_id": np.arange(len(world.keys), dtype=np.int64)})
    g = train.groups.join(index, on="prompt_key", how="left")
    missing = g.filter(pl.col("_id").is_null())
    if missing.height:
        raise ValueError(f"{path}: prompt {missing['prompt_key'][0]!r} of the training log is not in the world's log")
    return g.with_columns(pl.col("_id").alias("prompt_id")).drop("_id")


def closed_loop_enabled(cfg: dict[str, Any]) -> bool:
    """A log world with closed_loop = "fit" or a gain (0.0 included: a closed loop that does nothing)."""
    mode = cfg.get("closed_loop", "off")
    return "log" in cfg and not (mode is False or mode == "off")


def closed_loop_world(base: World, cfg: dict[str, Any]) -> World:
    """Wrap a log world per the scenario's [world] closed-loop keys (see CLOSED_LOOP_KEYS).

    The fit sees every row of the world's log (any kind) and of `train_log`; trainings are the
    training log's rows of kind "train" (all its rows when it has no kind column).
    """
    import dataclasses

    import polars as pl

    from dps.logs import LogSpec, load_log

    if not closed_loop_enabled(cfg):
        return base
    mode = cfg["closed_loop"]
    spec = dataclasses.replace(LogSpec.from_dict(cfg, "[world]"), kinds=None)
    world_log = load_log(cfg["log"], spec)
    observations = world_log.groups
    if cfg.get("train_log", cfg["log"]) != cfg["log"]:
        trainings = training_rows(_onto(load_log(cfg["train_log"], spec), world_log, cfg["train_log"]))
        cols = ["step", "prompt_id", "n_rollouts", "n_correct"]
        observations = pl.concat([observations.select(cols), trainings.select(cols)])
    else:
        trainings = training_rows(observations)
    if trainings.height == 0:
        raise ValueError(f"{cfg.get('train_log', cfg['log'])}: no trained groups (rows of kind 'train') to fit the closed loop from")
    if mode == "fit":
        effect = fit_training_effect(
            observations, trainings, cfg.get("effect_half_life", "auto"), base.num_prompts, saturation=cfg.get("effect_saturation", "auto")
        )
    else:
        effect = TrainingEffect(
            gain=float(mode),
            half_life=parse_half_life(cfg.get("effect_half_life", "inf"), "effect_half_life"),
            saturation=parse_saturation(cfg.get("effect_saturation", "linear"), "effect_saturation"),
        )
    cap = cfg.get("effect_cap", "none")
    return ClosedLoopWorld(base, effect, trainings, math.inf if cap == "none" else cap)


def check_closed_loop_config(cfg: dict[str, Any], where: str = "scenario") -> None:
    """Errors that name the file and the [world] key, before any work starts."""
    mode = cfg.get("closed_loop", "off")
    number = isinstance(mode, (int, float)) and not isinstance(mode, bool) and math.isfinite(mode)
    if not (mode is False or mode in ("off", "fit") or number):
        raise ValueError(f"{where} [world] closed_loop: must be \"fit\", \"off\" or a number (the logit gain per trained partial group), not {mode!r}")
    present = sorted(CLOSED_LOOP_KEYS & set(cfg))
    if "log" not in cfg:
        if present:
            raise ValueError(f"{where} [world] {present[0]}: the closed loop is fitted from a log (log = ...); a synthetic world has train_gain")
        return
    if "train_log" in cfg and not isinstance(cfg["train_log"], str):
        raise ValueError(f"{where} [world] train_log: must be a path to a log file, not {cfg['train_log']!r}")
    if "effect_half_life" in cfg and cfg["effect_half_life"] != "auto":
        try:
            parse_half_life(cfg["effect_half_life"], "effect_half_life")
        except ValueError as e:
            raise ValueError(f"{where} {e}") from None
    sat = cfg.get("effect_saturation", "auto")
    if sat == "auto" and mode != "fit" and "effect_saturation" in cfg:
        raise ValueError(f"{where} [world] effect_saturation: \"auto\" needs closed_loop = \"fit\"; with a gain of your own give a number or \"linear\"")
    if sat != "auto":
        try:
            parse_saturation(sat, "effect_saturation")
        except ValueError as e:
            raise ValueError(f"{where} {e}") from None
    cap = cfg.get("effect_cap", "none")
    if not (cap in ("none", "log") or (isinstance(cap, (int, float)) and not isinstance(cap, bool) and cap > 0)):
        raise ValueError(f"{where} [world] effect_cap: must be \"none\", \"log\" or a positive number of trainings, not {cap!r}")
    extra = sorted({"train_log", "effect_half_life", "effect_saturation", "effect_cap"} & set(cfg))
    if (mode is False or mode == "off") and extra:
        raise ValueError(f"{where} [world] {extra[0]}: needs closed_loop = \"fit\" (or a gain)")


# --------------------------------------------------------------------------------------------
# A training run's log, made in any world (the synthetic truth of the checks)


def training_log(world: World, policy: Any, steps: int, batch_size: int, seed: int, sweep_every: int = 0) -> pl.DataFrame:
    """Run `policy` in `world` as a trainer would and log it: one row per rolled-out group.

    `kind` is "train" for the groups the policy trained on, "rejected" for those a gate threw
    away and, every `sweep_every` steps, "sweep" for every prompt rolled out with the current
    model before that step's update (untrained; outcome noise independent of the run's).
    """
    import polars as pl

    from dps.policies.base import run_step

    world.reset()
    parts: list[pl.DataFrame] = []
    every = np.arange(world.num_prompts, dtype=np.int64)

    def frame(t: int, ids: np.ndarray, nc: np.ndarray, nr: np.ndarray, kind: str) -> pl.DataFrame:
        return pl.DataFrame(
            {"step": np.full(len(ids), t, np.int64), "prompt_id": ids, "n_rollouts": np.asarray(nr, np.int64),
             "n_correct": np.asarray(nc, np.int64), "kind": [kind] * len(ids)}
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
