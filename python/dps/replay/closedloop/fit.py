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

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from dps.replay.closedloop.effect import (
    Candidate,
    TrainingEffect,
    effect_curve,
    parse_half_life,
    parse_saturation,
    partial_trainings,
    trained_level,
)
from dps.replay.closedloop.glm import (
    CellLayout,
    Rows,
    clustered_standard_error,
    fit_logistic,
    pearson_dispersion,
    sigmoid,
    unit_logliks,
)

if TYPE_CHECKING:
    import polars as pl

#: Candidate half-lives (steps) of the training effect; inf: permanent.
EFFECT_HALF_LIVES = (math.inf, 64.0, 16.0, 4.0)
#: Candidate saturation counts of the effect's shape (trainings that give a gradient); inf: linear.
EFFECT_SATURATIONS = (math.inf, 32.0, 16.0, 12.0, 8.0, 6.0, 4.0, 3.0, 2.0, 1.0)
#: A fit whose gain has a larger standard error (logits per training) is refused as unidentified.
MAX_GAIN_SE = 0.25


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
    tstep, tpid = partial_trainings(trainings)
    if len(tstep) == 0:
        raise ValueError(
            "fit_training_effect: the log trained on no partially solved group; there is no training effect to fit"
        )
    N = max(int(max(pid.max(), tpid.max())) + 1, num_prompts or 0)
    group = _per_prompt(groups, N, "groups")
    cells = drift_cells(step, _per_prompt(strata, N, "strata")[pid])
    rows = Rows(
        pid,
        cells.of_row,
        observations["n_correct"].to_numpy().astype(np.float64),
        observations["n_rollouts"].to_numpy().astype(np.float64),
        N,
        cells.count,
    )
    half_lives = EFFECT_HALF_LIVES if half_life == "auto" else (parse_half_life(half_life, "effect_half_life"),)
    counts = {h: _training_counts(rows, step, group, trainings, h, count, cells.stratum) for h in half_lives}
    prompts = np.unique(pid)
    final = trained_level(
        np.full(len(prompts), int(step.max()) + 1), group[prompts], tstep, group[tpid], math.inf, int(group.max()) + 1
    )
    scale = float(final.mean())  # trainings per prompt by the end of the log (its own and its group's)
    given = None if saturation == "auto" else parse_saturation(saturation, "effect_saturation")
    fits = choose_shape(rows, counts, scale, given, strata=cells.stratum, units=group[pid])
    best = max(fits, key=lambda c: c.score)
    if not best.gain_se <= MAX_GAIN_SE:
        raise ValueError(
            f"the log does not identify the training effect (standard error {best.gain_se:.3g} logits per training): "
            "it needs untrained measurements of the prompts between their trainings, e.g. dense sweeps (dps train "
            "--set log.sweep_every=N) or random revisits; else set closed_loop to a gain of your own"
        )
    steps = cells.steps
    drift = np.bincount(cells.step_index, best.drift, len(steps)) / np.maximum(
        np.bincount(cells.step_index, None, len(steps)), 1
    )
    same_half_life = sorted((c for c in fits if c.half_life == best.half_life), key=lambda c: -c.saturation)
    same_shape = [c for c in fits if c.saturation == best.saturation]
    default_c = _default_saturation(scale) if given is None else given
    return TrainingEffect(
        gain=float(best.gain),
        half_life=best.half_life,
        gain_se=float(best.gain_se),
        saturation=best.saturation,
        shape_scores={c.saturation: c.loglik for c in same_half_life},
        shape_default=default_c if given is None else math.inf,
        shape_reason="given" if given is not None else ("default" if best.saturation == default_c else "fitted"),
        drift_steps=steps,
        drift=drift - drift[0],
        scores={c.half_life: c.loglik / float(rows.rollouts.sum()) for c in same_shape},
        gains={c.half_life: c.gain for c in same_shape},
        observations=len(step),
        trainings=len(tstep),
        prompts=len(prompts),
        groups=None if groups is None else group,
        spillover=spillover,
        drift_by=drift_by,
        dispersion=best.dispersion,
        candidates=_weighted(fits),
    )


def _training_counts(
    rows: Rows,
    step: np.ndarray,
    group: np.ndarray,
    trainings: pl.DataFrame,
    half_life: float,
    count: str,
    strata: np.ndarray,
) -> np.ndarray:
    """M at each observation, for one half-life, in units of trainings that gave a gradient.

    `count` "partial": the partial trainings themselves (biased: see the module docstring).
    "selection": every selection (a randomised regressor), scaled by the share of selections that
    were partial, weighted as the likelihood weighs them.
    """
    pid = rows.prompt
    tstep, tpid = partial_trainings(trainings)
    G = int(group.max()) + 1
    partial = trained_level(step, group[pid], tstep, group[tpid], half_life, G)
    if count == "partial":
        return partial
    sstep = trainings["step"].to_numpy().astype(np.int64)
    spid = trainings["prompt_id"].to_numpy().astype(np.int64)
    selected = trained_level(step, group[pid], sstep, group[spid], half_life, G)
    fit = fit_logistic(rows, selected[:, None], strata=strata)
    p = sigmoid(fit.eta(rows, selected[:, None]))
    w = rows.rollouts * p * (1 - p)
    share = float(w @ partial) / max(float(w @ selected), SHARE_FLOOR)
    return share * selected  # selections in units of trainings that gave a gradient


#: The likelihood-weighted selections below which the partial share is not divided by them.
SHARE_FLOOR = 1e-12


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


@dataclass(frozen=True)
class DriftCells:
    """The drift's cells: one per (stratum, logged step), or per run of steps where there are too many."""

    of_row: np.ndarray  # each observation's cell
    count: int
    steps: np.ndarray  # the (first) step of each step index
    step_index: np.ndarray  # each cell's step index
    stratum: np.ndarray  # each cell's stratum


def drift_cells(step: np.ndarray, stratum: np.ndarray) -> DriftCells:
    """The drift cell (stratum, step) of each observation, given its step and its prompt's stratum.

    Steps are labels: cells are numbered over the logged steps only. A log with more cells than
    MAX_DRIFT_CELLS gets one drift value per run of consecutive logged steps (as few as fit).
    """
    steps, step_index = np.unique(step, return_inverse=True)
    n_strata = int(stratum.max()) + 1
    per = max(1, math.ceil(len(steps) * n_strata / MAX_DRIFT_CELLS))
    step_index = step_index // per
    width = int(step_index.max()) + 1
    cells, of_row = np.unique(stratum.astype(np.int64) * width + step_index, return_inverse=True)
    return DriftCells(
        of_row.astype(np.int64).ravel(),
        len(cells),
        steps[::per],
        (cells % width).astype(np.int64),
        (cells // width).astype(np.int64),
    )


def _default_saturation(scale: float) -> float:
    return float(max(round(scale, 2), 0.01))


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
    rows: Rows,
    counts: dict[float, np.ndarray],
    scale: float,
    given: float | None = None,
    strata: np.ndarray | None = None,
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
    margin = 0.5 * math.log(max(len(rows.prompt), 2))
    fits: list[Candidate] = []
    start: list[tuple[np.ndarray, np.ndarray]] = []
    layout = CellLayout.of(rows)
    units = rows.prompt if units is None else units

    def add(h: float, c: float) -> Candidate:
        X = effect_curve(counts[h], c)[:, None]
        fit = fit_logistic(rows, X, start=start[0] if start else None, strata=strata, layout=layout)
        if not start:
            start.append((fit.levels, fit.drift))
        eta = fit.eta(rows, X)
        loglik = fit.loglik_per_rollout * float(rows.rollouts.sum())
        cand = Candidate(
            h,
            c,
            float(fit.coef[0]),
            fit.standard_error(),
            loglik,
            drift=fit.drift,
            unit_loglik=unit_logliks(rows, eta, units),
        )
        cand.dispersion = pearson_dispersion(rows, eta, len(rows.prompt) - rows.num_prompts - rows.num_cells - 1)
        cand.robust_se = clustered_standard_error(rows, eta, X[:, 0], units)
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
