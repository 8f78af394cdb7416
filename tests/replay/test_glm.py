"""The closed loop's GLM solver: it reaches the penalised maximum likelihood, whatever the layout of its
drift block, and recovers a known effect."""

from __future__ import annotations

import numpy as np
import pytest

from dps.replay.closedloop import glm
from dps.replay.closedloop.glm import PRIOR_SD, CellLayout, Rows, fit_logistic
from dps.replay.worlds import sigmoid


def simulated(seed: int = 0, prompts: int = 150, steps: int = 12, effect: float = 0.4) -> tuple[Rows, np.ndarray]:
    """Every prompt observed at every step, one regressor (a count that grows for half the prompts)."""
    rng = np.random.default_rng(seed)
    prompt = np.repeat(np.arange(prompts), steps)
    cell = np.tile(np.arange(steps), prompts)
    x = np.where(prompt % 2 == 0, cell, 0).astype(np.float64)
    eta = rng.normal(0, 1.5, prompts)[prompt] + np.linspace(-0.5, 0.5, steps)[cell] + effect * x
    rollouts = np.full(len(prompt), 16.0)
    correct = rng.binomial(16, sigmoid(eta)).astype(np.float64)
    return Rows(prompt, cell, correct, rollouts, prompts, steps), x[:, None]


def score_equations(rows: Rows, X: np.ndarray, fit: glm.LogisticFit) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The penalised likelihood's gradient: per prompt level, per drift cell, per coefficient."""
    residual = rows.correct - rows.rollouts * sigmoid(fit.eta(rows, X))
    levels = np.bincount(rows.prompt, residual, rows.num_prompts) - fit.levels / PRIOR_SD**2
    return levels, np.bincount(rows.cell, residual, rows.num_cells), residual @ X


def test_the_fit_solves_the_score_equations_and_recovers_the_effect() -> None:
    rows, X = simulated()
    fit = fit_logistic(rows, X)
    for gradient in score_equations(rows, X, fit):
        assert np.max(np.abs(gradient)) < 1e-5
    assert abs(fit.coef[0] - 0.4) < 3 * fit.standard_error() and fit.standard_error() < 0.05
    assert fit.loglik_per_rollout < 0


def test_the_layouts_of_the_drift_block_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    rows, X = simulated(seed=1)
    dense = fit_logistic(rows, X)
    assert CellLayout.of(rows).shared is None  # small and full: formed densely
    monkeypatch.setattr(glm, "DENSE_CELLS", 0)
    monkeypatch.setattr(glm, "PAIR_CHUNK", 50)  # many chunks
    layout = CellLayout.of(rows)
    assert layout.shared is not None and len(layout.shared) > 1
    paired = fit_logistic(rows, X, layout=layout)
    assert np.allclose(paired.coef, dense.coef, atol=1e-9) and np.allclose(paired.drift, dense.drift, atol=1e-9)


def test_strata_solve_the_same_system_block_by_block() -> None:
    rows, X = simulated(seed=2)
    stratum = rows.prompt % 2  # each prompt in one stratum: cells (stratum, step)
    cell = stratum * rows.num_cells + rows.cell
    by_stratum = Rows(rows.prompt, cell, rows.correct, rows.rollouts, rows.num_prompts, 2 * rows.num_cells)
    strata = np.repeat([0, 1], rows.num_cells)
    whole = fit_logistic(by_stratum, X)
    blocks = fit_logistic(by_stratum, X, strata=strata)
    assert np.allclose(whole.coef, blocks.coef, atol=1e-8) and np.allclose(whole.covariance, blocks.covariance)


def test_a_warm_start_reaches_the_same_fit() -> None:
    rows, X = simulated(seed=3)
    cold = fit_logistic(rows, X)
    warm = fit_logistic(rows, 0.9 * X, start=(cold.levels, cold.drift))
    again = fit_logistic(rows, 0.9 * X)
    assert np.allclose(warm.coef, again.coef, atol=1e-7)
