"""The policy API: properties, determinism, exact resumption, and refusal of bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dps import (
    BOTS,
    DPS,
    GRESO,
    DynamicSampling,
    GroupOutcomes,
    HistoryResampling,
    MoPPS,
    Policy,
    RateDPS,
    Uniform,
    run_step,
)
from dps.policies import PRIORS

N = 60
B = 8

FACTORIES = {
    "dps": lambda seed=0: DPS(num_prompts=N, decay=0.7, seed=seed),
    "dps-local": lambda seed=0: DPS(num_prompts=N, decay=0.5, prior_alpha="local", seed=seed),
    "uniform": lambda seed=0: Uniform(num_prompts=N, seed=seed),
    "history": lambda seed=0: HistoryResampling(num_prompts=N, seed=seed),
    "mopps": lambda seed=0: MoPPS(num_prompts=N, decay=0.5, seed=seed),
    "mopps-band": lambda seed=0: MoPPS(num_prompts=N, threshold=(0.3, 0.7), seed=seed),
    # Pools of 24 (two per epoch of 60, 12 prompts dropped) and of 20 (three per epoch).
    "dps-pool": lambda seed=0: DPS(num_prompts=N, decay=0.7, candidate_ratio=3.0, seed=seed),
    "mopps-pool": lambda seed=0: MoPPS(num_prompts=N, decay=0.5, candidate_ratio=2.5, seed=seed),
    "greso": lambda seed=0: GRESO(num_prompts=N, max_rounds=3, seed=seed),
    "greso-released": lambda seed=0: GRESO(num_prompts=N, seed=seed),
    "greso-batch": lambda seed=0: GRESO(num_prompts=N, rounds="batch", adapt_from_epoch=0, seed=seed),
    "bots": lambda seed=0: BOTS(num_prompts=N, seed=seed),
    "bots-anchors": lambda seed=0: BOTS(
        num_prompts=N,
        forgetting=0.2,
        implicit_weight=0.3,
        anchors=np.random.default_rng(1).uniform(size=(N, 2)),
        seed=seed,
    ),
    "bots-pool": lambda seed=0: BOTS(
        num_prompts=N, candidate_ratio=2.5, pseudo_count=16, anchors="population", seed=seed
    ),
    "bots-mean": lambda seed=0: BOTS(num_prompts=N, thompson=False, seed=seed),
    "ratedps": lambda seed=0: RateDPS(num_prompts=N, seed=seed),
    "ratedps-fixed": lambda seed=0: RateDPS(num_prompts=N, switch_rate=0.05, group_size=8, seed=seed),
    "ratedps-families": lambda seed=0: RateDPS(num_prompts=N, families=np.arange(N) % 7, fit_sample=20, seed=seed),
    "ds": lambda seed=0: DynamicSampling(num_prompts=N, seed=seed, max_rounds=3),
    "ds-dps": lambda seed=0: DynamicSampling(DPS(num_prompts=N, seed=seed), lo=0.1, hi=0.9, max_rounds=2),
    "ds-dps-pool": lambda seed=0: DynamicSampling(DPS(num_prompts=N, candidate_ratio=2.0, seed=seed), max_rounds=3),
}


class World:
    """Prompts with fixed success rates; outcomes drawn from a seeded generator."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.p = np.random.default_rng(99).beta(0.6, 0.6, N)

    def __call__(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.rng.binomial(8, self.p[ids]), np.full(len(ids), 8)


def run(policy: Policy, steps: int, world: World) -> list[np.ndarray]:
    return [run_step(policy, B, world).prompt_ids for _ in range(steps)]


def assert_states_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], np.ndarray):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        else:
            assert a[key] == b[key], key


@pytest.mark.parametrize("name", FACTORIES)
def test_select_returns_distinct_valid_ids(name):
    policy = FACTORIES[name]()
    world = World()
    for _ in range(15):
        ids = policy.select(B)
        assert ids.dtype == np.int64 and len(ids) == B
        assert len(np.unique(ids)) == B and ids.min() >= 0 and ids.max() < N
        more = policy.select(B)  # a second round in the same step never repeats a prompt
        assert len(np.intersect1d(ids, more)) == 0
        both = np.concatenate([ids, more])
        policy.observe(both, *world(both))


@pytest.mark.parametrize("name", FACTORIES)
def test_same_seed_same_selections(name):
    a = run(FACTORIES[name](seed=5), 20, World(1))
    b = run(FACTORIES[name](seed=5), 20, World(1))
    c = run(FACTORIES[name](seed=6), 20, World(1))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    if name not in ("dps", "dps-local", "ds-dps", "bots-mean"):  # DPS differs by seed only through ties
        assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


@pytest.mark.parametrize("name", FACTORIES)
@pytest.mark.parametrize("mid_step", [False, True])
def test_save_load_continue_is_exact(name, mid_step, tmp_path):
    world_a, world_b = World(2), World(2)
    straight = FACTORIES[name]()
    run(straight, 12, world_a)
    resumed = FACTORIES[name]()
    run(resumed, 12, world_b)
    if mid_step:  # save between a select and its observe
        first_a, first_b = straight.select(3), resumed.select(3)
        assert np.array_equal(first_a, first_b)
    resumed.save(tmp_path / "state.npz")
    fresh = FACTORIES[name]()
    fresh.load(tmp_path / "state.npz")
    assert_states_equal(fresh.state_dict(), resumed.state_dict())
    if mid_step:
        rest_a, rest_b = straight.select(B), fresh.select(B)
        assert np.array_equal(rest_a, rest_b)
        ids = np.concatenate([first_a, rest_a])
        outcome = world_a(ids)
        world_b(ids)  # keep the two worlds' generators in step
        straight.observe(ids, *outcome)
        fresh.observe(ids, *outcome)
    a, b = run(straight, 12, world_a), run(fresh, 12, world_b)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert_states_equal(straight.state_dict(), fresh.state_dict())
    assert straight.metrics().keys() == fresh.metrics().keys()


@settings(max_examples=40, deadline=None)
@given(
    prior=st.sampled_from(sorted(PRIORS)),
    decay=st.floats(0.05, 1.0),
    outcomes=st.lists(
        st.lists(st.tuples(st.integers(0, 19), st.integers(0, 8)), min_size=0, max_size=10), min_size=1, max_size=40
    ),
    batch=st.integers(0, 20),
)
def test_dps_beliefs_stay_distributions(prior, decay, outcomes, batch):
    policy = DPS(num_prompts=20, decay=decay, prior_alpha=prior)
    for step in outcomes:
        groups = dict(step)  # one group per prompt per step
        ids = np.array(list(groups), dtype=np.int64)
        policy.observe(ids, np.array(list(groups.values()), dtype=np.int64), np.full(len(ids), 8))
        probs = policy.predicted_state_probs()
        assert np.all(np.isfinite(probs)) and np.all(probs >= 0)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
        alpha = policy.state_dict()["alpha"]
        assert np.all(np.isfinite(alpha)) and np.all(alpha >= 0)
        assert np.all(alpha.sum(axis=1) > 0)  # every column keeps a positive mass
    picked = policy.select(batch)
    assert len(picked) == batch == len(np.unique(picked))
    assert np.all((picked >= 0) & (picked < 20))


def test_local_prior_jump_is_not_nan():
    policy = DPS(num_prompts=2, decay=1.0, prior_alpha="local")
    for correct in [0, 8, 0, 8, 8, 0]:  # unsolved <-> solved, which 'local' gives no mass
        policy.observe([0], [correct], [8])
        assert np.all(np.isfinite(policy.predicted_state_probs()))
    assert np.all(np.isfinite(policy.state_dict()["alpha"]))


def test_unpicked_prompt_drifts_back_to_uniform():
    policy = DPS(num_prompts=2, decay=0.5)
    for _ in range(5):
        policy.observe([0], [8], [8])
    assert policy.predicted_state_probs([0])[0, 2] > 0.5
    for _ in range(60):
        policy.observe([1], [4], [8])
    np.testing.assert_allclose(policy.predicted_state_probs([0])[0], 1 / 3, atol=1e-4)


def test_dps_prefers_partially_solved_prompts():
    policy = DPS(num_prompts=30, decay=0.7)
    ids = np.arange(30)
    correct = np.where(ids < 10, 0, np.where(ids < 20, 4, 8))
    for _ in range(5):
        policy.observe(ids, correct, np.full(30, 8))
    assert set(policy.select(10).tolist()) == set(range(10, 20))
    m = policy.metrics()
    assert m["pred_accuracy"] == 1.0 and m["pred_f1"] == 1.0 and m["confusion_11"] == 10


def test_dynamic_sampling_rounds_and_shortfall():
    policy = DynamicSampling(num_prompts=N, max_rounds=4)
    everything_solved = lambda ids: (np.full(len(ids), 8), np.full(len(ids), 8))  # noqa: E731
    result = run_step(policy, B, everything_solved)
    assert result.rounds == 4 and result.shortfall == B and result.rollouts == 4 * B * 8
    assert policy.metrics()["ds_rejected"] == 4 * B
    half = lambda ids: (np.full(len(ids), 4), np.full(len(ids), 8))  # noqa: E731
    result = run_step(policy, B, half)
    assert result.rounds == 1 and result.shortfall == 0 and result.effective_ratio == 1.0


BAD_OBSERVATIONS = {
    "out of range": ([0, N], [1, 1], [8, 8], ValueError, "outside"),
    "negative id": ([-1], [1], [8], ValueError, "outside"),
    "repeated id": ([3, 3], [1, 1], [8, 8], ValueError, "more than once"),
    "too many correct": ([3], [9], [8], ValueError, "exceeds"),
    "negative correct": ([3], [-1], [8], ValueError, "negative"),
    "no rollouts": ([3], [0], [0], ValueError, "at least one rollout"),
    "lengths": ([3, 4], [1], [8, 8], ValueError, "lengths differ"),
    "float ids": (np.array([1.0, 2.0]), [1, 1], [8, 8], TypeError, "prompt_ids must hold integers"),
    "float counts": ([1], np.array([0.5]), [8], TypeError, "n_correct must hold integers"),
    "2-d ids": (np.array([[1, 2]]), [1, 1], [8, 8], ValueError, "one-dimensional"),
}


@pytest.mark.parametrize("name", FACTORIES)
@pytest.mark.parametrize("case", BAD_OBSERVATIONS)
def test_bad_observations_are_refused_without_change(name, case):
    policy = FACTORIES[name]()
    run(policy, 3, World())
    before = policy.state_dict()
    ids, correct, total, error, message = BAD_OBSERVATIONS[case]
    with pytest.raises(error, match=message):
        policy.observe(ids, correct, total)
    assert_states_equal(policy.state_dict(), before)


def graded_one(prompt: int, rewards: list[float]) -> GroupOutcomes:
    return GroupOutcomes.from_rewards([prompt], [rewards])


@pytest.mark.parametrize("name", FACTORIES)
def test_bad_groups_in_flight_are_refused_without_change(name):
    """Issue 23: an id never selected, or observed twice, is refused with the state unchanged."""
    policy = FACTORIES[name]()
    run(policy, 3, World())
    out = policy.select(B)
    never = int(np.setdiff1d(np.arange(N), out)[0])
    before = policy.state_dict()
    with pytest.raises(ValueError, match="not in flight"):
        policy.observe_groups(graded_one(never, [0.0, 1.0]), in_flight=True)
    assert_states_equal(policy.state_dict(), before)
    policy.observe_groups(graded_one(int(out[0]), [0.0, 1.0]), in_flight=True)
    observed = policy.state_dict()
    with pytest.raises(ValueError, match="not in flight"):
        policy.observe_groups(graded_one(int(out[0]), [0.0, 1.0]), in_flight=True)
    assert_states_equal(policy.state_dict(), observed)


@pytest.mark.parametrize("name", FACTORIES)
def test_a_reward_outside_what_the_policy_takes_is_refused_without_change(name):
    """MoPPS, BOTS and RateDPS (and a gate over them) model a success rate: a mean reward outside
    [0, 1] is refused; the others map any finite reward by spread and threshold."""
    policy = FACTORIES[name]()
    run(policy, 3, World())
    out = policy.select(B)
    before = policy.state_dict()
    beta = isinstance(getattr(policy, "selector", policy), (MoPPS, BOTS, RateDPS))
    groups = GroupOutcomes.from_rewards(out, np.tile([1.5, 1.5, 2.0, 2.0], (len(out), 1)))
    if beta:
        with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
            policy.observe_groups(groups)
        assert_states_equal(policy.state_dict(), before)
    else:
        policy.observe_groups(groups)


@pytest.mark.parametrize("name", FACTORIES)
def test_bad_batch_size_is_refused_without_change(name):
    policy = FACTORIES[name]()
    before = policy.state_dict()
    with pytest.raises(ValueError, match="exceeds num_prompts"):
        policy.select(N + 1)
    with pytest.raises(TypeError, match="batch_size must be an int"):
        policy.select(2.5)
    with pytest.raises(ValueError, match="non-negative"):
        policy.select(-1)
    assert_states_equal(policy.state_dict(), before)
    policy.select(N - 2)
    with pytest.raises(ValueError, match="not yet selected in this step"):
        policy.select(3)


@pytest.mark.parametrize("name", FACTORIES)
def test_corrupt_or_mismatched_state_is_refused(name, tmp_path):
    policy = FACTORIES[name]()
    run(policy, 3, World())
    before = policy.state_dict()
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a state file")
    with pytest.raises(ValueError, match="not a saved policy state"):
        policy.load(garbage)
    other = Uniform(num_prompts=N) if not isinstance(policy, Uniform) else DPS(num_prompts=N)
    other.save(tmp_path / "other.npz")
    with pytest.raises(ValueError, match="state"):
        policy.load(tmp_path / "other.npz")
    bigger = type(policy)(num_prompts=N + 1) if not isinstance(policy, DynamicSampling) else None
    if bigger is not None:
        bigger.save(tmp_path / "bigger.npz")
        with pytest.raises(ValueError, match="prompts"):
            policy.load(tmp_path / "bigger.npz")
    assert_states_equal(policy.state_dict(), before)


@pytest.mark.parametrize("key", ["alpha", "post"])
def test_damaged_dps_arrays_load_nothing(key):
    policy = DPS(num_prompts=N)
    run(policy, 3, World())
    before = policy.state_dict()
    damaged = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in before.items()}
    damaged[key].flat[-1] = np.nan
    with pytest.raises(ValueError, match=f"{key} of prompt {N - 1}"):
        policy.load_state_dict(damaged)
    damaged[key] = damaged[key][:-1]
    with pytest.raises(ValueError, match="shape"):
        policy.load_state_dict(damaged)
    assert_states_equal(policy.state_dict(), before)


def test_options_are_checked():
    with pytest.raises(ValueError, match="decay"):
        DPS(num_prompts=10, decay=0.0)
    with pytest.raises(ValueError, match="unknown prior_alpha"):
        DPS(num_prompts=10, prior_alpha="sticky")
    with pytest.raises(ValueError, match="num_prompts"):
        Uniform(num_prompts=0)
    with pytest.raises(ValueError, match="threshold"):
        MoPPS(num_prompts=10, threshold=(0.8, 0.2))
    with pytest.raises(ValueError, match="band"):
        DynamicSampling(num_prompts=10, lo=0.9, hi=0.1)
    with pytest.raises(ValueError, match="state was saved with options"):
        saved = DPS(num_prompts=10, decay=0.5).state_dict()
        DPS(num_prompts=10, decay=0.7).load_state_dict(saved)


def test_batch_work_releases_the_gil():
    """While DPS updates a large state in one thread, Python code runs in another. A call that
    held the GIL would leave the middle half of its interval without a single tick (the GIL
    changes hands every 5 ms, so ticks can only land near the ends); checked with a regex that
    holds it, which gets none."""
    import threading
    import time

    policy = DPS(num_prompts=8_000_000)
    intervals: list[tuple[float, float]] = []

    def work():
        for _ in range(2):  # the first two steps update every prompt; later ones skip settled prompts
            start = time.perf_counter()
            policy.observe([0], [4], [8])  # one native call per interval
            intervals.append((start, time.perf_counter()))

    worker = threading.Thread(target=work)
    ticks = []
    worker.start()
    while worker.is_alive():
        ticks.append(time.perf_counter())
    worker.join()
    assert min(b - a for a, b in intervals) > 0.02, "the calls were too short to tell"
    middle = sum(any(a + 0.25 * (b - a) < t < a + 0.75 * (b - a) for a, b in intervals) for t in ticks)
    assert middle > 0, "no Python code ran while the core was working: the GIL was held"


def test_gate_rounds_stop_when_the_dataset_is_spent():
    policy = DynamicSampling(num_prompts=20, max_rounds=10)
    solved = lambda ids: (np.full(len(ids), 8), np.full(len(ids), 8))  # noqa: E731
    result = run_step(policy, 8, solved)
    assert len(np.unique(result.prompt_ids)) == 20 == len(result.prompt_ids)
    assert result.rounds == 3 and result.shortfall == 8


def pool_of_last_select(state: dict, pool_size: int) -> np.ndarray:
    """The pool the last select drew: the slice of the epoch order just before the cursor."""
    cursor = int(state["pool_cursor"])
    return np.asarray(state["pool_order"])[cursor - pool_size : cursor]


@pytest.mark.parametrize("policy_class", [DPS, MoPPS])
def test_pool_has_the_ratio_size_covers_each_epoch_once_and_yields_its_top_b(policy_class):
    # 70 prompts, pools of floor(2.7 x 8) = 21: three per epoch, 7 prompts dropped each epoch.
    policy = policy_class(num_prompts=70, candidate_ratio=2.7, seed=4)
    world = World(3)
    world.p = np.random.default_rng(5).uniform(0, 1, 70)
    pools = []
    for _ in range(9):
        scores = policy._core.scores() if isinstance(policy, DPS) else None
        ids = policy.select(B)
        state = policy.state_dict()
        pool = pool_of_last_select(state, 21)
        assert len(pool) == 21 and len(np.unique(pool)) == 21
        assert np.all(np.isin(ids, pool))
        if scores is not None:  # the picks are the pool's best scores (ties allowed)
            rest = np.setdiff1d(pool, ids)
            assert scores[ids].min() >= scores[rest].max()
        pools.append(pool)
        policy.observe(ids, *world(ids))
    for epoch in range(3):
        covered = np.concatenate(pools[3 * epoch : 3 * epoch + 3])
        assert len(np.unique(covered)) == 63  # each prompt at most once, 7 dropped
    assert int(policy.state_dict()["pool_epoch"]) == 3


def test_a_pool_as_large_as_the_dataset_is_plain_dps():
    plain = DPS(num_prompts=N, decay=0.5, seed=2)
    whole = DPS(num_prompts=N, decay=0.5, seed=2, candidate_ratio=N / B)  # pool of N
    a, b = run(plain, 25, World(4)), run(whole, 25, World(4))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert whole.state_dict()["pool_order"].size == 0  # the epoch order was never drawn


def test_dps_ratio_one_selects_the_uniform_loaders_batches():
    dps = DPS(num_prompts=64, candidate_ratio=1.0, seed=8)
    uniform = Uniform(num_prompts=64, seed=8)
    for _ in range(20):
        a, b = dps.select(B), uniform.select(B)
        assert set(a.tolist()) == set(b.tolist())
        dps.observe(a, np.full(B, 4), np.full(B, 8))
        uniform.observe(b, np.full(B, 4), np.full(B, 8))


def test_a_pool_spreads_dps_over_more_prompts():
    plain, pooled = DPS(num_prompts=N, decay=0.5), DPS(num_prompts=N, decay=0.5, candidate_ratio=2.5)
    used = [len(np.unique(np.concatenate(run(p, 30, World(6))))) for p in (plain, pooled)]
    assert used[1] > used[0] + 10, used


@pytest.mark.parametrize("policy_class", [DPS, MoPPS])
@pytest.mark.parametrize("ratio", [0.5, 0.0, -1.0, float("nan"), float("inf")])
def test_bad_candidate_ratio_is_refused(policy_class, ratio):
    with pytest.raises(ValueError, match="candidate_ratio must be a finite number >= 1"):
        policy_class(num_prompts=N, candidate_ratio=ratio)


def test_candidate_ratio_must_be_a_number():
    with pytest.raises(TypeError, match="candidate_ratio must be a number"):
        DPS(num_prompts=N, candidate_ratio="4")
    with pytest.raises(TypeError, match="candidate_ratio must be a number"):
        MoPPS(num_prompts=N, candidate_ratio=True)


def test_damaged_pool_order_loads_nothing():
    policy = FACTORIES["dps-pool"]()
    run(policy, 3, World())
    before = policy.state_dict()
    damaged = dict(before, pool_order=before["pool_order"][:-1])
    with pytest.raises(ValueError, match="candidate pool's order holds 59 ids"):
        policy.load_state_dict(damaged)
    damaged = dict(before, pool_cursor=N + 1)
    with pytest.raises(ValueError, match="cursor"):
        policy.load_state_dict(damaged)
    assert_states_equal(policy.state_dict(), before)


def test_registry_passes_candidate_ratio():
    from dps.policies.registry import make_policy

    gated = make_policy("dps+ds", num_prompts=N, seed=1, candidate_ratio=2.0, max_rounds=2)
    assert isinstance(gated, DynamicSampling) and gated.selector.config()["candidate_ratio"] == 2.0
    assert make_policy("mopps", num_prompts=N, candidate_ratio=3).config()["candidate_ratio"] == 3.0
    with pytest.raises(ValueError, match="candidate_ratio"):
        make_policy("dps", num_prompts=N, candidate_ratio=0.9)
