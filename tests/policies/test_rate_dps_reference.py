"""The RateDPS reference (tests/reference_rate_dps.py) does what docs/method.md#rate-dps says.

These tests check the reference against independent computations: the binomial filter against
a brute-force likelihood, the lazy form the Rust port will use against the eager updates, the
online fit against a world whose switch rate is known. The Rust port is then tested against the
reference.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from dps.replay.runner import replay
from dps.replay.worlds import SyntheticWorld, preset_params
from reference_rate_dps import (
    POPULATION_HALF_LIFE,
    START_SWITCH_RATE,
    SWITCH_RATES,
    ReferenceRateDPS,
    rate_grid,
    state_chances,
)


def groups(rng, ids, rates, n=8):
    return rng.binomial(n, rates[ids]).astype(np.int64), np.full(len(ids), n, np.int64)


def test_a_group_is_a_binomial_look_at_the_rate_for_any_n():
    policy = ReferenceRateDPS(4, switch_rate=0.0, revisit=0.0)
    prior = policy.main.prior[2].copy()
    policy.observe(np.array([2]), np.array([3]), np.array([11]))
    brute = np.array([prior[j] * math.comb(11, 3) * r**3 * (1 - r) ** 8 for j, r in enumerate(policy.rates)])
    np.testing.assert_allclose(policy.main.last_post[2], brute / brute.sum(), rtol=1e-12)


def test_predicted_states_are_the_binomial_predictive_of_the_rate_distribution():
    policy = ReferenceRateDPS(3)
    policy.observe(np.array([0, 1]), np.array([0, 5]), np.array([8, 8]))
    for n in (0, 1, 4, 8, 16):
        got = policy.predicted_states(np.array([0, 1, 2]), np.full(3, n))
        np.testing.assert_allclose(got.sum(axis=1), 1.0)
        want = policy.main.prior[[0, 1, 2]] @ state_chances(policy.rates, n)
        np.testing.assert_allclose(got, want)
    empty = policy.predicted_states(np.array([1]), np.array([0]))
    np.testing.assert_array_equal(empty, [[1.0, 0.0, 0.0]])  # an empty group has 0 correct
    assert policy.predicted_states(np.array([1]), np.array([1]))[0, 1] == 0.0  # one response is never partial


def test_an_unsolved_look_keeps_mass_above_zero_and_drifts_back_to_the_population():
    policy = ReferenceRateDPS(50, switch_rate=0.05, revisit=0.0)
    correct = np.full(50, 4)
    correct[7] = 0
    policy.observe(np.arange(50), correct, np.full(50, 8))
    after_zero = policy.scores()[7]
    assert 0.05 < after_zero < 0.5 < policy.scores()[0]
    for _ in range(60):
        policy.observe(np.array([0]), np.array([4]), np.array([8]))
    population_score = policy.main.population @ state_chances(policy.rates, 8)[:, 1]
    assert abs(policy.scores()[7] - population_score) < 0.1 * abs(after_zero - population_score)


def test_never_observed_prompts_predict_the_population():
    policy = ReferenceRateDPS(20)
    rng = np.random.default_rng(1)
    for _ in range(5):
        ids = rng.choice(10, 4, replace=False)
        policy.observe(ids, rng.binomial(8, 0.3, 4), np.full(4, 8))
    np.testing.assert_allclose(policy.main.prior[10:], np.tile(policy.main.population, (10, 1)))


def test_the_population_is_an_online_em_fit_of_what_switches_draw():
    """First looks are switches: after the first step the population is their mean posterior. A
    prompt observed again adds its posterior chance of having switched since, at each rate."""
    policy = ReferenceRateDPS(6, switch_rate=0.1, revisit=0.0)
    rates, main = policy.rates, policy.main
    policy.observe(np.arange(4), np.array([0, 2, 5, 8]), np.full(4, 8))
    first = main.last_post[:4].copy()
    np.testing.assert_allclose(main.population, first.mean(axis=0))
    g1, prior = main.population.copy(), main.prior[1].copy()
    np.testing.assert_allclose(prior, 0.9 * first[1] + 0.1 * g1)
    policy.observe(np.array([1]), np.array([7]), np.array([8]))
    likelihood = rates**7 * (1 - rates)
    switched = 0.1 * g1 * likelihood / (prior @ likelihood)  # the part of the prior that had switched
    keep = 0.5 ** (1 / POPULATION_HALF_LIFE)
    want = keep * first.sum(axis=0) + switched
    np.testing.assert_allclose(main.population, want / want.sum())


def test_the_lazy_form_of_the_port_matches_the_eager_updates():
    """docs/method.md#rate-dps-cost: an unobserved prompt's prediction is M_t + C(t0, t) (post - M_t0)
    (M_t0 taken before step t0's transition)
    with global M and C, so the port touches only observed prompts; and its ranking key does not
    change between its observations."""
    n, rng = 60, np.random.default_rng(3)
    rates = rng.uniform(size=n)
    policy = ReferenceRateDPS(n, revisit=0.0)
    grid = len(policy.rates)
    m_hist, log_c = [np.zeros(grid)], [0.0]  # M_t and log C(0, t) for t = 0, 1, ...
    last = {}  # prompt -> (t0, posterior after its observation at t0)
    chance = state_chances(policy.rates, 8)[:, 1]
    keys = {}
    for t in range(80):
        ids = rng.choice(n, 7, replace=False)
        c, k = groups(rng, ids, rates)
        policy.observe(ids, c, k)
        rho, g = policy.switch_rate, policy.main.population
        m_hist.append((1 - rho) * m_hist[-1] + rho * g)
        log_c.append(log_c[-1] + math.log(1 - rho))
        for i in ids:
            last[int(i)] = (t, policy.main.last_post[i].copy())
        for i, (t0, post) in last.items():
            decay = math.exp(log_c[t + 1] - log_c[t0])
            lazy = m_hist[t + 1] + decay * (post - m_hist[t0])
            np.testing.assert_allclose(lazy, policy.main.prior[i], atol=1e-10)
            np.testing.assert_allclose(decay * post, policy.main.kept[i], atol=1e-12)
            key = (post - m_hist[t0]) @ chance / math.exp(log_c[t0])
            if t0 < t:
                assert key == pytest.approx(keys[i], rel=1e-9)
            keys[i] = key


def test_the_online_fit_finds_the_switch_rate_of_a_switching_world():
    """A world whose rates are redrawn from a fixed population with chance rho each step."""
    n, rng = 400, np.random.default_rng(4)
    for true_rho in (0.01, 0.1):
        policy = ReferenceRateDPS(n, revisit=0.0)
        rates = 1 / (1 + np.exp(-rng.normal(0, 2, n)))
        for _ in range(150):
            switch = rng.random(n) < true_rho
            rates[switch] = 1 / (1 + np.exp(-rng.normal(0, 2, int(switch.sum()))))
            ids = rng.choice(n, 100, replace=False)
            policy.observe(ids, *groups(rng, ids, rates))
        assert policy.switch_rate == true_rho


def test_the_start_value_holds_while_the_candidates_tie():
    policy = ReferenceRateDPS(10)
    assert policy.switch_rate == START_SWITCH_RATE
    policy.observe(np.arange(5), np.array([0, 8, 4, 2, 6]), np.full(5, 8))  # first looks only: a tie
    assert policy.switch_rate == START_SWITCH_RATE
    assert START_SWITCH_RATE in SWITCH_RATES


def test_revisits_take_the_prompts_observed_least_recently():
    n, rng = 64, np.random.default_rng(5)
    policy = ReferenceRateDPS(n, revisit=0.25, revisit_by="age")
    policy.observe(np.arange(48), rng.binomial(8, 0.5, 48), np.full(48, 8))
    picked = policy.select(8)
    assert set(picked[:2]) <= set(range(48, 64))  # 2 of 8 go to never-observed prompts
    policy.observe(picked, rng.binomial(8, 0.5, 8), np.full(8, 8))
    again = policy.select(8)
    assert len(set(again)) == 8 and not set(again[:2]) & set(picked)


def test_selection_is_seeded_and_ties_differ_between_seeds():
    first = [ReferenceRateDPS(1000, seed=s).select(10) for s in (0, 0, 1)]
    np.testing.assert_array_equal(first[0], first[1])
    assert set(first[0]) != set(first[2])


def test_a_second_select_in_a_step_hands_out_other_prompts_and_abandon_returns_them():
    policy = ReferenceRateDPS(12)
    a, b = policy.select(6), policy.select(6)
    assert not set(a) & set(b)
    with pytest.raises(ValueError, match="exceeds"):
        policy.select(1)
    policy.abandon()
    np.testing.assert_array_equal(policy.select(6), a)


def test_empty_groups_carry_no_evidence():
    policy = ReferenceRateDPS(5, switch_rate=0.1)
    policy.observe(np.array([0, 1]), np.array([0, 3]), np.array([0, 8]))
    assert policy.last_step[0] == -1 and policy.last_step[1] == 0
    np.testing.assert_allclose(policy.main.prior[0], policy.main.population)


def test_group_size_follows_the_last_step_unless_fixed():
    policy = ReferenceRateDPS(6)
    policy.observe(np.arange(3), np.array([1, 2, 3]), np.array([4, 4, 16]))
    assert policy.group_size == 4
    fixed = ReferenceRateDPS(6, group_size=8)
    fixed.observe(np.arange(3), np.array([1, 2, 3]), np.array([4, 4, 16]))
    assert fixed.group_size == 8


@pytest.mark.parametrize(
    "ids, correct, total",
    [([0, 0], [1, 1], [8, 8]), ([0], [9], [8]), ([7], [1], [8]), ([0], [-1], [8])],
)
def test_bad_groups_are_refused_and_change_nothing(ids, correct, total):
    policy = ReferenceRateDPS(5)
    policy.observe(np.array([1]), np.array([2]), np.array([8]))
    before = policy.state_dict()
    with pytest.raises(ValueError):
        policy.observe(np.array(ids), np.array(correct), np.array(total))
    after = policy.state_dict()
    for key, value in before.items():
        np.testing.assert_array_equal(after[key], value)


def test_save_and_load_continue_exactly(tmp_path):
    n, rng = 200, np.random.default_rng(6)
    rates = rng.uniform(size=n)
    a = ReferenceRateDPS(n, seed=3, fit_sample=80)
    assert 40 < len(a.shadows[0].domain) < 120  # the shadows follow a hashed sample of about 80
    for _ in range(10):
        ids = a.select(16)
        a.observe(ids, *groups(rng, ids, rates))
    a.select(4)  # pending ids survive the round trip
    a.save(tmp_path / "state.npz")
    b = ReferenceRateDPS(n, seed=3, fit_sample=80)
    b.load(tmp_path / "state.npz")
    for _ in range(10):
        ids = a.select(16)
        np.testing.assert_array_equal(ids, b.select(16))
        c, k = groups(rng, ids, rates)
        a.observe(ids, c, k)
        b.observe(ids, c, k)
    np.testing.assert_array_equal(a.main.prior, b.main.prior)
    with pytest.raises(ValueError, match="shape"):
        ReferenceRateDPS(n + 1, seed=3).load(tmp_path / "state.npz")


def test_families_of_one_prompt_each_change_nothing_and_a_family_shares_its_first_look():
    rng = np.random.default_rng(7)
    plain, single = ReferenceRateDPS(30), ReferenceRateDPS(30, families=np.arange(30))
    for _ in range(8):
        ids = rng.choice(30, 5, replace=False)
        c, k = groups(rng, ids, rng.uniform(size=30))
        plain.observe(ids, c, k)
        single.observe(ids, c, k)
    np.testing.assert_allclose(plain.main.prior, single.main.prior, atol=1e-12)
    twins = ReferenceRateDPS(4, families=np.array([0, 0, 1, 1]))
    twins.observe(np.array([0, 2]), np.array([8, 0]), np.array([8, 8]))
    p_solved = twins.predicted_states(np.array([1, 3]), np.array([8, 8]))[:, 2]
    assert p_solved[0] > 0.4 > p_solved[1]  # the twin of a solved prompt is predicted solved


def test_replay_scores_its_prediction_and_it_is_calibrated_on_a_synthetic_world():
    world = SyntheticWorld(preset_params("countdown", num_prompts=400, steps=40), seed=0)
    result = replay(ReferenceRateDPS(400, seed=0), world, steps=40, batch_size=32, seed=0)
    assert result.summary["pred_groups"] == 40 * 32
    assert result.summary["ece"] < 0.1
    assert result.summary["brier"] < 0.2


def test_the_grid_spans_the_rates_a_group_can_tell_apart():
    rates = rate_grid(16, 7.0)
    assert rates[0] == pytest.approx(1 / (1 + math.exp(7))) and rates[-1] == pytest.approx(1 - rates[0])
    assert np.all(np.diff(rates) > 0)
