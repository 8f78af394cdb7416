"""BOTS against a plain reference written from the paper's equations (tests/reference_bots.py):
the beliefs step by step, the selection by posterior mean, the distribution of Thompson
selections, and the Beta-binomial prediction."""

from __future__ import annotations

import random

import numpy as np
import pytest

from dps import BOTS, run_step
from dps.policies.registry import make_policy
from reference_bots import ReferenceBOTS
from sampling_stats import chi2_pvalue

N = 30


def random_steps(seed: int, steps: int, k_choices=(8,)):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        size = int(rng.integers(0, 10))
        ids = rng.choice(N, size=size, replace=False).astype(np.int64)
        n = rng.choice(k_choices, size=size).astype(np.int64)
        c = rng.binomial(n, rng.uniform(size=size)).astype(np.int64)
        yield ids, c, n


CASES = {
    "defaults": ({}, {}),
    "population anchors": (dict(anchors="population"), dict(anchors=[(0.0, 1.0)] * N)),
    "anchors": (
        dict(forgetting=0.2, implicit_weight=0.4, smoothing=0.7),
        dict(forgetting=0.2, implicit_weight=0.4, smoothing=0.7),
    ),
    "fixed m, varied k": (dict(pseudo_count=16.0, forgetting=0.05), dict(pseudo_count=16.0, forgetting=0.05)),
    "no forgetting, no implicit": (
        dict(forgetting=0.0, implicit_weight=0.0),
        dict(forgetting=0.0, implicit_weight=0.0),
    ),
    "prior and full forgetting": (
        dict(prior_a=2.0, prior_b=0.5, forgetting=1.0),
        dict(prior=(2.0, 0.5), forgetting=1.0),
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_beliefs_follow_the_reference(case):
    ours_kw, ref_kw = dict(CASES[case][0]), dict(CASES[case][1])
    if case == "anchors":
        anchors = np.random.default_rng(3).uniform(size=(N, 2))
        ours_kw["anchors"], ref_kw["anchors"] = anchors, [tuple(r) for r in anchors]
    policy = BOTS(N, **ours_kw)
    ref = ReferenceBOTS(N, **ref_kw)
    k_choices = (4, 8, 16) if case == "fixed m, varied k" else (8,)
    for ids, c, n in random_steps(list(CASES).index(case), 40, k_choices):
        policy.observe(ids, c, n)
        ref.observe(ids, c, n)
        state = policy.state_dict()
        np.testing.assert_allclose(state["a"], ref.alpha, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(state["b"], ref.beta, rtol=1e-12, atol=1e-12)
        if ref.capability is None:
            assert state["capability"] is None
        else:
            assert state["capability"] == pytest.approx(ref.capability, rel=1e-12, abs=1e-12)


def test_posterior_mean_selection_is_the_references():
    policy = BOTS(N, thompson=False, anchors=np.random.default_rng(4).uniform(size=(N, 2)))
    ref = ReferenceBOTS(N, anchors=[tuple(r) for r in np.random.default_rng(4).uniform(size=(N, 2))])
    for ids, c, n in random_steps(7, 25):
        policy.observe(ids, c, n)
        ref.observe(ids, c, n)
        picked = policy.select(6)
        assert sorted(picked.tolist()) == sorted(ref.select_by_mean(6))
        policy.abandon()


def test_thompson_selections_have_the_references_distribution():
    """Three prompts with fixed beliefs, one pick per step: how often each is picked matches the
    chance that its Beta draw is the closest to 0.5 (estimated from the reference's draws)."""
    a, b = np.array([2.0, 6.0, 1.0]), np.array([6.0, 5.0, 1.0])
    policy = BOTS(3, forgetting=0.0, implicit_weight=0.0, seed=11)
    state = policy.state_dict()
    policy.load_state_dict({**state, "a": a, "b": b})
    counts = np.zeros(3)
    for _ in range(3000):
        counts[policy.select(1)[0]] += 1
        policy.observe([], [], [])  # nothing observed and nothing forgotten: same beliefs, new draws
    ref = ReferenceBOTS(3, forgetting=0.0, implicit_weight=0.0)
    ref.alpha, ref.beta = a.tolist(), b.tolist()
    rng = random.Random(5)
    expected = np.zeros(3)
    for _ in range(60_000):
        expected[ref.select_thompson(1, rng)[0]] += 1
    assert chi2_pvalue(counts, expected / expected.sum()) > 1e-3, (counts, expected / expected.sum())


def test_prediction_is_the_beta_binomial_predictive():
    policy = BOTS(N)
    ref = ReferenceBOTS(N)
    for ids, c, n in random_steps(9, 10):
        policy.observe(ids, c, n)
        ref.observe(ids, c, n)
    ids = np.arange(N)
    k = np.resize(np.array([1, 4, 8, 16]), N)
    ours = policy.predicted_states(ids, k)
    want = np.array([ref.state_probs(int(i), int(kk)) for i, kk in zip(ids, k, strict=True)])
    np.testing.assert_allclose(ours, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(policy.predicted_states(ids[:3], 8), policy.predicted_states(ids[:3], [8, 8, 8]))
    with pytest.raises(TypeError, match="n_rollouts is needed"):
        policy.predicted_states(ids, None)
    with pytest.raises(ValueError, match="outside"):
        policy.predicted_states([N], [8])


def test_bad_options_are_refused():
    for kw, message in [
        (dict(forgetting=1.5), "forgetting"),
        (dict(implicit_weight=-0.1), "implicit_weight"),
        (dict(target=2.0), "target"),
        (dict(pseudo_count=0), "pseudo_count"),
        (dict(smoothing=-1.0), "smoothing"),
        (dict(prior_a=0.0), "prior_a"),
        (dict(candidate_ratio=0.5), "candidate_ratio"),
        (dict(anchors=np.zeros((N, 3))), "shape"),
        (dict(anchors=np.full((N, 2), 1.5)), r"\[0, 1\]"),
        (dict(anchors=np.full((N, 2), np.nan)), "finite"),
        (dict(anchors="reference"), "population"),
    ]:
        with pytest.raises(ValueError, match=message):
            BOTS(N, **kw)
    with pytest.raises(TypeError, match="thompson"):
        BOTS(N, thompson="yes")
    with pytest.raises(TypeError, match="anchors must hold numbers"):
        BOTS(N, anchors=np.full((N, 2), "a"))


def test_state_with_other_anchors_or_a_bad_capability_is_refused():
    anchors = np.random.default_rng(0).uniform(size=(N, 2))
    policy = BOTS(N, anchors=anchors)
    policy.observe([0, 1], [3, 8], [8, 8])
    state = policy.state_dict()
    other = BOTS(N, anchors=anchors[::-1].copy())
    with pytest.raises(ValueError, match="options"):
        other.load_state_dict(state)
    for bad in (float("inf"), "0.5", True):
        with pytest.raises(ValueError, match="capability"):
            policy.load_state_dict({**state, "capability": bad})
    assert policy.state_dict()["capability"] == state["capability"]


def test_bots_beats_uniform_and_informative_anchors_help():
    """Success rates from Beta(0.5, 0.5) (most prompts nearly always or never solved): BOTS at
    the paper's defaults beats uniform sampling; with anchors that carry each prompt's rate
    (r0 = 0, r1 = its true rate: the plug-in then needs only the capability c = 1) it beats it
    by far more, as implicit evidence is meant to; the population guess (anchors (0, 1) for
    every prompt) does worse than no implicit evidence."""
    p = np.random.default_rng(2).beta(0.5, 0.5, 400)

    def mean_ratio(name, **options):
        rng = np.random.default_rng(3)

        def rollout(ids):
            return rng.binomial(8, p[ids]).astype(np.int64), np.full(len(ids), 8, np.int64)

        policy = make_policy(name, num_prompts=400, seed=0, **options)
        return np.mean([run_step(policy, 32, rollout).effective_ratio for _ in range(60)])

    uniform, bots = mean_ratio("uniform"), mean_ratio("bots")
    anchored = mean_ratio("bots", anchors=np.stack([np.zeros(400), p], axis=1))
    population = mean_ratio("bots", anchors="population")
    assert bots > uniform + 0.05, (uniform, bots)
    assert anchored > bots + 0.1, (bots, anchored)
    assert population < bots, (population, bots)
