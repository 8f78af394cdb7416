"""Binomial logistic regression with a free level per prompt and per drift cell, by Newton's method.

The model of row r, `correct[r]` of `rollouts[r]` responses correct, of prompt i = `prompt[r]`
in drift cell s = `cell[r]`:

    logit p_r = level[i] + drift[s] + X[r] @ coef

with a weak Normal(0, PRIOR_SD^2) prior on each prompt level (a prompt whose every response was
correct keeps a finite level). The closed loop's fit (`dps.replay.closedloop.fit`) calls it with
one regressor per candidate shape of the training effect; its studies call it with several.

Each Newton step eliminates the prompt levels (a diagonal block of the Hessian) by their Schur
complement and solves the remaining (cells + regressors)-sized system; where no prompt spans two
strata of cells, the drift block is block-diagonal and is solved stratum by stratum. The block
that couples drift cells and prompt levels is kept as the list of observed (cell, prompt) pairs,
so memory follows the rows, not cells x prompts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np

from dps.replay.worlds import sigmoid

#: The prompt levels' prior standard deviation (logits).
PRIOR_SD = 4.0
#: Probabilities are kept this far from 0 and 1 in likelihoods (a log of 0 is -inf).
PROB_CLIP = 1e-6
#: Added to each row's Newton weight n p (1 - p), and to each level's and cell's total weight, so that
#: a row the model already fits exactly (p at 0 or 1) leaves no zero on the diagonal.
WEIGHT_FLOOR = 1e-12
#: Ridge on the drift cells' diagonal and on the coefficients' block: a cell or a regressor without
#: information leaves the system solvable (its step is then ~0).
DRIFT_RIDGE = 1e-8
COEF_RIDGE = 1e-12
#: Newton steps at most.
MAX_ITERATIONS = 50
#: A step is accepted when the objective falls by no more than this share of itself (rounding), and
#: halved otherwise down to SMALLEST_STEP.
ACCEPT_TOLERANCE = 1e-9
SMALLEST_STEP = 1e-4
#: Converged when a step gains less than this share of the objective (at least of 1).
CONVERGED = 1e-10
#: Pairs of cells in one chunk of the drift block's sum (each pair keeps three indices).
PAIR_CHUNK = 4_000_000
#: Up to this many (cell, prompt) entries the drift block may be formed from a dense matrix.
DENSE_CELLS = 4_000_000
#: A cell pair costs about this many dense multiply-adds (measured: bincount against BLAS).
PAIR_COST = 30

#: Chunks of (first cell, second cell, place in the flattened cells x cells block).
CellPairs: TypeAlias = list[tuple[np.ndarray, np.ndarray, np.ndarray]]


def clipped_sigmoid(eta: np.ndarray) -> np.ndarray:
    return np.clip(sigmoid(eta), PROB_CLIP, 1 - PROB_CLIP)


@dataclass(frozen=True)
class Rows:
    """The observations of a fit: each row's prompt and drift cell, and its counts."""

    prompt: np.ndarray  # int64 in [0, num_prompts)
    cell: np.ndarray  # int64 in [0, num_cells)
    correct: np.ndarray  # float64
    rollouts: np.ndarray  # float64
    num_prompts: int
    num_cells: int


@dataclass(frozen=True)
class CellLayout:
    """The observed (drift cell, prompt) pairs: each row's pair, each pair's cell and prompt, and the
    pairs of pairs that share a prompt (None where the drift block is formed densely: small and mostly
    filled, where BLAS is faster). Built once for fits that share their rows."""

    pair_of_row: np.ndarray
    pair_cell: np.ndarray
    pair_prompt: np.ndarray
    shared: CellPairs | None

    @classmethod
    def of(cls, rows: Rows) -> CellLayout:
        N, S = rows.num_prompts, rows.num_cells
        pairs, pair_of_row = np.unique(rows.cell.astype(np.int64) * N + rows.prompt, return_inverse=True)
        pair_cell, pair_prompt = pairs // N, pairs % N
        per_prompt = np.bincount(pair_prompt, minlength=N)
        dense = S * N <= DENSE_CELLS and float(per_prompt @ per_prompt) * PAIR_COST > float(S) * S * N
        shared = None if dense else _pairs_sharing_a_prompt(pair_prompt, pair_cell, S)
        return cls(pair_of_row.ravel(), pair_cell, pair_prompt, shared)


@dataclass(frozen=True)
class LogisticFit:
    """The maximum of the (penalised) likelihood."""

    coef: np.ndarray
    levels: np.ndarray  # per prompt
    drift: np.ndarray  # per cell
    loglik_per_rollout: float
    #: the coefficients' covariance (the inverse of their Schur complement at the last step)
    covariance: np.ndarray

    def standard_error(self, j: int = 0) -> float:
        variance = float(self.covariance[j, j])
        return math.sqrt(variance) if variance > 0 else float("nan")

    def eta(self, rows: Rows, X: np.ndarray) -> np.ndarray:
        """Each row's fitted logit."""
        return self.levels[rows.prompt] + self.drift[rows.cell] + X @ self.coef


def binomial_loglik(correct: np.ndarray, rollouts: np.ndarray, eta: np.ndarray) -> float:
    """The rows' binomial log-likelihood at logits `eta`, without the binomial coefficients."""
    p = clipped_sigmoid(eta)
    return float(np.sum(correct * np.log(p) + (rollouts - correct) * np.log1p(-p)))


def fit_logistic(
    rows: Rows,
    X: np.ndarray,
    start: tuple[np.ndarray, np.ndarray] | None = None,
    strata: np.ndarray | None = None,
    layout: CellLayout | None = None,
    max_iterations: int = MAX_ITERATIONS,
) -> LogisticFit:
    """Maximum likelihood of logit p = level[prompt] + drift[cell] + X @ coef (X: rows x regressors).

    `start`: (levels, drift) of a similar fit to start from (the coefficients start at 0).
    `strata`: each drift cell's stratum, when no prompt spans two strata (the drift block is then
    solved stratum by stratum). `layout`: `CellLayout.of(rows)`, when several fits share the rows.
    """
    S, q = rows.num_cells, X.shape[1]
    prior = 1.0 / PRIOR_SD**2  # the levels' prior precision
    levels, rest = np.zeros(rows.num_prompts), np.zeros(S + q)  # rest = (drift, coef)
    if start is not None:
        levels[:] = start[0]
        rest[:S] = start[1]
    layout = layout if layout is not None else CellLayout.of(rows)

    def eta(levels: np.ndarray, rest: np.ndarray) -> np.ndarray:
        return levels[rows.prompt] + rest[rows.cell] + X @ rest[S:]

    def objective(levels: np.ndarray, rest: np.ndarray) -> float:
        return binomial_loglik(rows.correct, rows.rollouts, eta(levels, rest)) - 0.5 * prior * float(levels @ levels)

    current = objective(levels, rest)
    covariance = np.full((q, q), np.nan)
    for _ in range(max_iterations):
        d_levels, d_rest, covariance = _newton_direction(rows, X, layout, levels, eta(levels, rest), prior, strata)
        step = 1.0
        while step > SMALLEST_STEP:
            new = objective(levels + step * d_levels, rest + step * d_rest)
            if new >= current - ACCEPT_TOLERANCE * abs(current):
                break
            step /= 2
        levels, rest = levels + step * d_levels, rest + step * d_rest
        converged = new - current < CONVERGED * max(1.0, abs(current))
        current = new
        if converged:
            break
    loglik = binomial_loglik(rows.correct, rows.rollouts, eta(levels, rest))
    return LogisticFit(rest[S:], levels, rest[:S], loglik / float(rows.rollouts.sum()), covariance)


def _newton_direction(
    rows: Rows,
    X: np.ndarray,
    layout: CellLayout,
    levels: np.ndarray,
    eta: np.ndarray,
    prior: float,
    strata: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Newton step (for the levels, for the drift and coefficients) and the coefficients' covariance."""
    N, S, q = rows.num_prompts, rows.num_cells, X.shape[1]
    prompt, cell = rows.prompt, rows.cell
    pair_cell, pair_prompt = layout.pair_cell, layout.pair_prompt
    p = sigmoid(eta)
    residual, weight = rows.correct - rows.rollouts * p, rows.rollouts * p * (1 - p) + WEIGHT_FLOOR
    grad_levels = np.bincount(prompt, residual, N) - prior * levels
    grad_rest = np.concatenate([np.bincount(cell, residual, S), residual @ X])
    level_curvature = np.bincount(prompt, weight, N) + prior  # the levels' (diagonal) Hessian block
    pair_weight = np.bincount(layout.pair_of_row, weight, len(pair_cell))  # H[drift, level] at the observed pairs
    weighted_X = weight[:, None] * X
    coef_level = (  # H[coef_j, level_i]
        np.stack([np.bincount(prompt, weighted_X[:, j], N) for j in range(q)]) if q else np.zeros((0, N))
    )
    schur = np.zeros((S + q, S + q))
    if layout.shared is None:
        block = np.zeros((S, N))
        block[pair_cell, pair_prompt] = pair_weight
        schur[:S, :S] = -(block / level_curvature) @ block.T
    else:
        schur[:S, :S] = -_shared_sum(layout.shared, pair_weight / np.sqrt(level_curvature[pair_prompt]), S)
    schur[np.arange(S), np.arange(S)] += np.bincount(cell, weight, S) + DRIFT_RIDGE
    for j in range(q):
        column = np.bincount(cell, weighted_X[:, j], S) - np.bincount(
            pair_cell, pair_weight * coef_level[j][pair_prompt] / level_curvature[pair_prompt], S
        )
        schur[:S, S + j] = schur[S + j, :S] = column
    schur[S:, S:] = X.T @ weighted_X - (coef_level / level_curvature) @ coef_level.T + COEF_RIDGE * np.eye(q)
    levels_alone = grad_levels / level_curvature  # the levels' own step
    rhs = grad_rest - np.concatenate(
        [np.bincount(pair_cell, pair_weight * levels_alone[pair_prompt], S), coef_level @ levels_alone]
    )
    d_rest, covariance = _block_solve(schur, rhs, S, strata)
    d_levels = (
        grad_levels - np.bincount(pair_prompt, pair_weight * d_rest[pair_cell], N) - coef_level.T @ d_rest[S:]
    ) / level_curvature
    return d_levels, d_rest, covariance


def _solve(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.solve(A, B)
    except np.linalg.LinAlgError:
        return np.linalg.pinv(A) @ B


def _block_solve(
    system: np.ndarray, rhs: np.ndarray, S: int, strata: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Solve system @ x = rhs, system = [[A, C], [C', E]] with A (S x S) block-diagonal over `strata`;
    also return the inverse of the coefficients' Schur complement E - C' A^-1 C (their covariance)."""
    q = system.shape[0] - S
    blocks = [np.arange(S)] if strata is None else [np.flatnonzero(strata == b) for b in np.unique(strata)]
    C, E = system[:S, S:], system[S:, S:]
    y, Z = np.zeros(S), np.zeros((S, q))  # A^-1 rhs_drift, A^-1 C
    for idx in blocks:
        solution = _solve(system[np.ix_(idx, idx)], np.column_stack([rhs[idx], C[idx]]))
        y[idx], Z[idx] = solution[:, 0], solution[:, 1:]
    reduced = E - C.T @ Z
    covariance = _solve(reduced, np.eye(q)) if q else np.zeros((0, 0))
    coef = covariance @ (rhs[S:] - C.T @ y) if q else np.zeros(0)
    return np.concatenate([y - Z @ coef, coef]), covariance


def _pairs_sharing_a_prompt(pair_prompt: np.ndarray, pair_cell: np.ndarray, S: int) -> CellPairs:
    """Every two observed (cell, prompt) pairs of the same prompt, in chunks: (first, second, their place
    in the flattened (S, S) drift block). Built once per fit; the pairs' values change per step."""
    order = np.argsort(pair_prompt, kind="stable")
    bounds = np.flatnonzero(np.diff(pair_prompt[order])) + 1
    starts = np.concatenate([[0], bounds]).astype(np.int64)
    sizes = np.diff(np.concatenate([starts, [len(pair_prompt)]]))
    start, size = np.repeat(starts, sizes), np.repeat(sizes, sizes)  # per pair, in prompt order
    chunks = []
    total = np.cumsum(size)
    lo = 0
    while lo < len(order):
        hi = max(int(np.searchsorted(total, (total[lo - 1] if lo else 0) + PAIR_CHUNK, side="right")), lo + 1)
        k = size[lo:hi]
        first = np.repeat(np.arange(lo, hi), k)
        second = np.repeat(start[lo:hi], k) + (np.arange(len(first)) - np.repeat(np.cumsum(k) - k, k))
        first, second = order[first], order[second]
        chunks.append((first, second, pair_cell[first] * S + pair_cell[second]))
        lo = hi
    return chunks


def _shared_sum(shared: CellPairs, values: np.ndarray, S: int) -> np.ndarray:
    """(S, S) sum over prompts of the outer product of the prompt's pair values, at the pairs' cells."""
    out = np.zeros(S * S)
    for first, second, place in shared:
        out += np.bincount(place, values[first] * values[second], S * S)
    return out.reshape(S, S)


# --------------------------------------------------------------------------------------------
# What a fit's rows say beyond its coefficients


def unit_logliks(rows: Rows, eta: np.ndarray, units: np.ndarray) -> np.ndarray:
    """Each unit's log-likelihood (binomial, without the coefficients); `units`: each row's unit."""
    p = clipped_sigmoid(eta)
    return np.bincount(units, rows.correct * np.log(p) + (rows.rollouts - rows.correct) * np.log1p(-p))


#: Alternating projections of the clustered standard error at most, and their tolerance.
DEMEAN_ITERATIONS = 500
DEMEAN_TOLERANCE = 1e-9


def clustered_standard_error(rows: Rows, eta: np.ndarray, x: np.ndarray, units: np.ndarray) -> float:
    """The standard error of the coefficient of regressor `x`, clustered by unit (a sandwich over units
    of the score).

    A prompt's residuals are correlated over time (its curve is not the population's), which the
    binomial standard error, even scaled by the dispersion, takes for independent evidence. The
    regressor is first made orthogonal to the prompt levels and the drift (two-way weighted
    demeaning, by alternating projections); the score of each unit is its residuals times that.
    """
    N, S, prompt, cell = rows.num_prompts, rows.num_cells, rows.prompt, rows.cell
    p = clipped_sigmoid(eta)
    weight, residual = rows.rollouts * p * (1 - p), rows.correct - rows.rollouts * p
    per_prompt = np.bincount(prompt, weight, N) + WEIGHT_FLOOR
    per_cell = np.bincount(cell, weight, S) + WEIGHT_FLOOR
    x = np.asarray(x, np.float64).copy()
    for _ in range(DEMEAN_ITERATIONS):
        shift = np.bincount(prompt, weight * x, N)[prompt] / per_prompt[prompt]
        x -= shift
        x -= np.bincount(cell, weight * x, S)[cell] / per_cell[cell]
        if float(np.max(np.abs(shift), initial=0.0)) < DEMEAN_TOLERANCE * (1.0 + float(np.max(np.abs(x), initial=0.0))):
            break
    information = float(weight @ (x * x))
    if information <= 0:
        return float("nan")
    scores = np.bincount(units, residual * x)
    return math.sqrt(float(scores @ scores)) / information


def pearson_dispersion(rows: Rows, eta: np.ndarray, dof: int) -> float:
    """Pearson's chi-square per degree of freedom of the fit, at least 1."""
    p = clipped_sigmoid(eta)
    chi2 = float(np.sum((rows.correct - rows.rollouts * p) ** 2 / (rows.rollouts * p * (1 - p))))
    return max(1.0, chi2 / max(dof, 1))
