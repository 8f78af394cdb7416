"""Selections in flight and graded rewards at the policy API (issue 23): a step's groups
observed `lag` steps later, resumed exactly from a saved state; graded groups as the rule in
docs/method.md#graded-rewards says; bad input refused with the state unchanged."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from dps import BOTS, DPS, GRESO, DynamicSampling, HistoryResampling, MoPPS, Policy, Uniform, run_step
from dps.outcomes import SPREAD_TOL, GroupOutcomes
from dps.policies.base import LaggedSteps

N, B, K = 60, 6, 4

FACTORIES: dict[str, Callable[[], Policy]] = {
    "dps": lambda: DPS(N, seed=1),
    "dps-pool": lambda: DPS(N, candidate_ratio=2.0, seed=1),
    "uniform": lambda: Uniform(N, seed=1),
    "history": lambda: HistoryResampling(N, seed=1),
    "mopps": lambda: MoPPS(N, seed=1),
    "mopps-whole": lambda: MoPPS(N, candidate_ratio=None, seed=1),
    "greso": lambda: GRESO(N, seed=1),
    "greso-batch": lambda: GRESO(N, rounds="batch", adapt_from_epoch=0, max_rounds=2, seed=1),
    "bots": lambda: BOTS(N, seed=1),
    "bots-anchors": lambda: BOTS(N, anchors=np.random.default_rng(1).uniform(size=(N, 2)), seed=1),
    "ds": lambda: DynamicSampling(num_prompts=N, seed=1, max_rounds=2),
    "ds-dps": lambda: DynamicSampling(DPS(N, seed=1), max_rounds=2),
}


def counts_world(seed: int = 0) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    p = np.random.default_rng(seed).uniform(size=N)

    def rollout(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([seed, *ids.tolist()])
        return rng.binomial(K, p[ids]).astype(np.int64), np.full(len(ids), K, np.int64)

    return rollout


def graded_world(seed: int = 0) -> Callable[[np.ndarray], GroupOutcomes]:
    """Rewards in [0, 1] on a grid of quarters: some groups all equal but not 0 or 1."""
    p = np.random.default_rng(seed).uniform(size=N)

    def rollout(ids: np.ndarray) -> GroupOutcomes:
        rng = np.random.default_rng([seed, 7, *ids.tolist()])
        rewards = np.round(rng.binomial(4, np.repeat(p[ids], K)) / 4, 2).reshape(len(ids), K)
        rewards[ids % 5 == 0] = 0.75  # all equal, not 0/1
        return GroupOutcomes.from_rewards(ids, rewards)

    return rollout


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)


@pytest.mark.parametrize("name", FACTORIES)
@pytest.mark.parametrize("make_world", [counts_world, graded_world], ids=["counts", "graded"])
def test_a_policy_in_flight_at_lag_2_resumes_exactly(name: str, make_world) -> None:
    rollout = make_world()
    live = LaggedSteps(FACTORIES[name](), lag=2)
    for _ in range(6):
        live.step(B, rollout)
    saved, due = live.policy.state_dict(), list(live.due)
    assert len(live.policy.in_flight()) >= 2 * B
    resumed = LaggedSteps(FACTORIES[name](), lag=2)
    resumed.policy.load_state_dict(saved)
    resumed.due.extend(due)
    for _ in range(6):
        a, b = live.step(B, rollout), resumed.step(B, rollout)
        assert np.array_equal(a.prompt_ids, b.prompt_ids)
        flying = np.concatenate([g.prompt_ids for g in list(live.due)[:-1]])
        assert not np.isin(a.prompt_ids, flying).any(), "an id in flight was handed out again"
    assert same_state(live.policy.state_dict(), resumed.policy.state_dict())


@pytest.mark.parametrize("name", FACTORIES)
def test_lag_0_is_run_step(name: str) -> None:
    a, b = FACTORIES[name](), LaggedSteps(FACTORIES[name](), lag=0)
    rollout = counts_world()
    for _ in range(8):
        assert np.array_equal(run_step(a, B, rollout).prompt_ids, b.step(B, rollout).prompt_ids)
    assert same_state(a.state_dict(), b.policy.state_dict())


@pytest.mark.parametrize("name", FACTORIES)
def test_in_flight_refusals_leave_the_state_unchanged(name: str) -> None:
    loop = LaggedSteps(FACTORIES[name](), lag=1)
    rollout = counts_world()
    for _ in range(3):
        loop.step(B, rollout)
    policy = loop.policy
    flying = policy.in_flight()
    never = int(np.setdiff1d(np.arange(N), flying)[0])
    one = lambda i: GroupOutcomes.counts([i], [1], [K])  # noqa: E731
    before = policy.state_dict()
    cases = [
        (lambda: policy.observe_groups(one(never), in_flight=True), "not in flight"),
        (lambda: policy.warm_start(one(int(flying[0]))), "is in flight"),
        (lambda: policy.abandon([never]), "not in flight"),
        (lambda: policy.abandon([int(flying[0])] * 2), "twice"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
        assert same_state(policy.state_dict(), before), message
    policy.observe_groups(one(int(flying[0])), in_flight=True)
    after = policy.state_dict()
    with pytest.raises(ValueError, match="not in flight"):  # observed twice
        policy.observe_groups(one(int(flying[0])), in_flight=True)
    assert same_state(policy.state_dict(), after)


def test_a_lag_below_0_is_refused() -> None:
    with pytest.raises(ValueError, match="lag must be >= 0"):
        LaggedSteps(DPS(N), lag=-1)
    with pytest.raises(TypeError, match="lag must be an int"):
        LaggedSteps(DPS(N), lag=1.5)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", FACTORIES)
def test_abandon_names_what_it_hands_back(name: str) -> None:
    policy = FACTORIES[name]()
    first = policy.select(B)
    none = GroupOutcomes.counts([], [], [])
    policy.observe_groups(none, in_flight=True)  # a step at which no group arrived: first stays in flight
    second = policy.select(B)  # this step's
    assert set(policy.in_flight()) == set(first) | set(second)
    assert sorted(policy.abandon()) == sorted(second)
    assert set(policy.in_flight()) == set(first)
    back = policy.abandon(first[:2])
    assert np.array_equal(back, first[:2])
    assert set(policy.in_flight()) == set(first[2:])
    assert len(policy.abandon()) == 0, "nothing selected in this step"


def test_warm_start_keeps_what_is_in_flight() -> None:
    policy = DPS(N, seed=3)
    flying = policy.select(B)
    log = np.setdiff1d(np.arange(N), flying)[:5]
    policy.warm_start(GroupOutcomes.counts(log, np.full(5, 2), np.full(5, K)))
    assert policy.step == 1 and set(policy.in_flight()) == set(flying)
    assert not np.isin(policy.select(B), flying).any()
    # Lockstep observe still takes groups never selected (a log replayed step after step).
    policy.observe(log, np.full(5, 1), np.full(5, K))
    assert len(policy.in_flight()) == 0


class Mine(Policy):
    """A policy of counts in lockstep, as people wrote them before selections in flight."""

    def __init__(self, num_prompts: int = N) -> None:
        self.num_prompts = num_prompts
        self.seen: list[np.ndarray] = []

    def select(self, batch_size: int) -> np.ndarray:
        return np.arange(batch_size, dtype=np.int64)

    def observe(self, prompt_ids, n_correct, n_rollouts) -> None:
        self.seen.append(np.asarray(n_correct))

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def test_a_policy_of_counts_runs_as_before_and_says_what_it_lacks() -> None:
    mine = Mine()
    run_step(mine, B, counts_world())
    assert len(mine.seen) == 1
    with pytest.raises(NotImplementedError, match="does not take selections in flight"):
        mine.observe_groups(GroupOutcomes.counts([0], [1], [K]), in_flight=True)
    with pytest.raises(TypeError, match="carry only rewards"):
        run_step(mine, B, graded_world())


# -- graded rewards ------------------------------------------------------------------------


def test_dynamic_sampling_by_spread_keeps_no_group_whose_rewards_are_all_equal() -> None:
    policy = DynamicSampling(num_prompts=N, seed=2, max_rounds=4)
    rollout = graded_world(1)
    kept = 0
    for _ in range(10):
        result = run_step(policy, B, rollout)
        admitted = result.groups.take(result.admitted)
        assert np.all(admitted.reward_std > SPREAD_TOL)
        rejected = result.groups.take(~result.admitted)
        assert np.all(rejected.reward_std <= SPREAD_TOL)
        kept += len(admitted)
        assert result.effective_ratio == 1.0 or len(result.trained) == 0
    assert kept > 0


@pytest.mark.parametrize("name", ["dps", "uniform", "history", "greso", "ds-dps"])
def test_binary_rewards_observed_graded_give_what_their_counts_give(name: str) -> None:
    counted, graded = FACTORIES[name](), FACTORIES[name]()
    rollout = counts_world(4)

    def as_rewards(ids: np.ndarray) -> GroupOutcomes:
        c, n = rollout(ids)
        rewards = (np.arange(K)[None, :] < c[:, None]).astype(np.float64)
        return GroupOutcomes.from_rewards(ids, rewards)

    for _ in range(8):
        a, b = run_step(counted, B, rollout), run_step(graded, B, as_rewards)
        assert np.array_equal(a.prompt_ids, b.prompt_ids)
    assert same_state(counted.state_dict(), graded.state_dict())


@pytest.mark.parametrize("make", [lambda: MoPPS(N, seed=1), lambda: BOTS(N, seed=1)], ids=["mopps", "bots"])
def test_beta_policies_count_k_times_the_mean_and_refuse_rewards_outside_0_1(make) -> None:
    policy = make()
    ids = policy.select(2)
    policy.observe_groups(GroupOutcomes.from_rewards(ids, [[0.25, 0.5], [1.0, 1.0]]))
    state = policy.state_dict()
    assert np.allclose(state["a"][ids], [1 + 0.75, 1 + 2.0])  # a0 = 1, plus k x mean
    before = policy.state_dict()
    ids = policy.select(1)
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        policy.observe_groups(GroupOutcomes.from_rewards(ids, [[1.0, 2.0]]))
    policy.abandon()
    assert same_state(policy.state_dict(), before)


def test_dps_takes_graded_groups_by_spread_and_threshold() -> None:
    policy = DPS(6, seed=0)
    groups = GroupOutcomes.from_rewards([0, 1, 2, 3], [[0.7, 0.7], [0.2, 0.2], [0.0, 0.1], [1.1, 1.1]])
    assert list(groups.states) == [2, 0, 1, 2]
    policy.observe_groups(groups)
    post = policy.state_dict()["post"]
    assert list(np.argmax(post[:4], axis=1)) == [2, 0, 1, 2]
    assert policy.metrics()["confusion_11"] + policy.metrics()["confusion_10"] + policy.metrics()["confusion_12"] == 1


def test_bad_rewards_are_refused_naming_the_group() -> None:
    with pytest.raises(ValueError, match=r"response 1 of group 1 \(prompt 7\) is nan"):
        GroupOutcomes.from_rewards([3, 7], [[0.0, 1.0], [0.5, np.nan]])
    with pytest.raises(ValueError, match=r"response 0 of group 0 \(prompt 3\) is inf"):
        GroupOutcomes.from_rewards([3], [np.inf, 1.0], n_rollouts=[2])
    with pytest.raises(ValueError, match=r"reward_mean\[1\] \(prompt 7\) is nan"):
        GroupOutcomes.from_moments([3, 7], [4, 4], [0.5, np.nan], [0.1, 0.1])
    with pytest.raises(ValueError, match="reward_std"):
        GroupOutcomes.from_moments([3], [4], [0.5], [-0.1])
    with pytest.raises(ValueError, match="says 4 responses"):
        GroupOutcomes.from_rewards([3, 7], [0.1, 0.2, 0.3], n_rollouts=[2, 2])
    policy = DPS(N)
    before = policy.state_dict()
    with pytest.raises(TypeError, match="GroupOutcomes"):
        policy.observe_groups((np.array([1]), np.array([1]), np.array([2])))  # type: ignore[arg-type]
    assert same_state(policy.state_dict(), before)
