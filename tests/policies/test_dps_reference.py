"""DPS in Rust agrees with the per-prompt Python reference of docs/method.md#filter."""

import numpy as np
import pytest

from dps import DPS
from dps.policies import PRIORS
from reference_dps import ReferenceDPS

STEPS = 500
N = 40
OBSERVED_PER_STEP = 10


def random_outcomes(rng, ids, skill):
    """Groups of 8 whose success rate drifts, so that every transition (jumps too) occurs."""
    p = np.clip(skill[ids] + rng.normal(0, 0.3, len(ids)), 0, 1)
    return rng.binomial(8, p), np.full(len(ids), 8)


@pytest.mark.parametrize("prior", ["ones", "progress", "stability", "local"])
@pytest.mark.parametrize("decay", [0.5, 0.7, 1.0])
def test_predicted_distribution_matches_reference(prior, decay):
    rng = np.random.default_rng(hash((prior, decay)) % 2**32)
    ours = DPS(num_prompts=N, decay=decay, prior_alpha=prior, seed=0)
    reference = ReferenceDPS(N, decay, PRIORS[prior])
    skill = rng.uniform(0, 1, N)
    worst = 0.0
    for step in range(STEPS):
        skill = np.clip(skill + rng.normal(0.002, 0.02, N), 0, 1)
        # Half the steps observe what DPS selects, half a random subset.
        ids = ours.select(OBSERVED_PER_STEP) if step % 2 else rng.choice(N, OBSERVED_PER_STEP, replace=False)
        correct, total = random_outcomes(rng, ids, skill)
        ours.observe(ids, correct, total)
        reference.observe({int(i): (int(c), int(n)) for i, c, n in zip(ids, correct, total, strict=True)})
        got = ours.predicted_state_probs()
        want = np.array(reference.priors())
        worst = max(worst, float(np.abs(got - want).max()))
        assert worst < 1e-6, f"step {step}: max difference {worst}"
    assert np.isfinite(worst)


@pytest.mark.parametrize("decay", [0.5, 1.0])
def test_selection_takes_the_reference_top_scores(decay):
    rng = np.random.default_rng(7)
    ours = DPS(num_prompts=N, decay=decay, seed=3)
    reference = ReferenceDPS(N, decay, PRIORS["ones"])
    skill = rng.uniform(0, 1, N)
    for _ in range(100):
        picked = ours.select(8)
        scores = np.array([p[1] for p in reference.priors()])
        # Every pick is at least as good as the best prompt left out (ties allowed).
        left_out = np.setdiff1d(np.arange(N), picked)
        assert scores[picked].min() >= scores[left_out].max() - 1e-6
        correct, total = random_outcomes(rng, picked, skill)
        ours.observe(picked, correct, total)
        reference.observe({int(i): (int(c), int(n)) for i, c, n in zip(picked, correct, total, strict=True)})


def test_entropy_variant_scores_partial_plus_entropy():
    from reference_dps import entropy

    ours = DPS(num_prompts=3, decay=0.7, entropy_weight=0.5)
    ours.observe([0, 1], [0, 4], [8, 8])
    probs = ours.predicted_state_probs()
    want = [p[1] + 0.5 * entropy(p) for p in probs]
    assert np.allclose(ours._core.scores(), want, atol=1e-6)
    # prompt 2 (unobserved, uniform) has the highest entropy and ties prompt 1 on P(partial) + H.
    assert ours.select(1)[0] in (1, 2)
