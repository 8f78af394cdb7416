"""The baselines as their authors released them (Infini-AI-Lab/GRESO b277843, thu-rllab/MoPPS
a883f51), one test per point where our first versions differed (docs/method.md):

1. GRESO adapts p_easy / p_hard only from the second epoch on (ray_trainer.py: `if epoch > 0`),
   and lowers p when the zero-variance share is >= its target;
2. GRESO's rounds: 1.5 x B prompts first, then what is still missing scaled by the round's
   zero-variance share and 1.25, at least 64 and at most 1.5 x B, with no cap on the rounds;
3. MoPPS's threshold variant ranks draws outside the band by their distance to the nearest edge;
4. MoPPS scores a pool of 16 x B candidates (the MATH script's ts_ratio), the whole set when
   that pool would hold it.
"""

from __future__ import annotations

import numpy as np
import pytest

from dps import GRESO, MoPPS, run_step
from dps.policies.builtin import released_round_size

K = 8


def scripted(partial_per_round: list[int]):
    """A rollout whose i-th call returns partial groups (4 of 8) for its first
    partial_per_round[i] prompts and solved groups (8 of 8) for the rest."""
    calls = []

    def rollout(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m = partial_per_round[len(calls)] if len(calls) < len(partial_per_round) else 0
        calls.append(len(ids))
        correct = np.where(np.arange(len(ids)) < m, 4, 8).astype(np.int64)
        return correct, np.full(len(ids), K, np.int64)

    return rollout, calls


# -- 1. when p adapts -------------------------------------------------------------------------


def test_greso_adapts_only_from_the_second_epoch():
    policy = GRESO(40, rounds="batch", max_rounds=1, seed=0)
    solved = lambda ids: (np.full(len(ids), K), np.full(len(ids), K))  # noqa: E731
    while True:
        run_step(policy, 8, solved)
        if policy._core.epoch_index > 0:
            break
        assert (policy.metrics()["p_easy"], policy.metrics()["p_hard"]) == (0.5, 0.5), "epoch 0 never adapts"
    assert policy.metrics()["p_easy"] == pytest.approx(0.49), "the first step of epoch 1 adapts"
    assert policy.metrics()["p_hard"] == pytest.approx(0.51)
    ours = GRESO(40, rounds="batch", max_rounds=1, adapt_from_epoch=0, seed=0)
    run_step(ours, 8, solved)
    assert ours.metrics()["p_easy"] == pytest.approx(0.49), "adapt_from_epoch=0: from the first step"


def test_greso_lowers_p_when_the_share_equals_its_target():
    # Targets 0.25 and 0.5; four groups: one all correct (0.25) and two all wrong (0.5).
    policy = GRESO(4, target_easy=0.25, target_hard=0.5, adapt_from_epoch=0)
    policy.observe([0, 1, 2, 3], [8, 0, 0, 3], [8, 8, 8, 8])
    assert policy.metrics()["p_easy"] == pytest.approx(0.49)
    assert policy.metrics()["p_hard"] == pytest.approx(0.49)


# -- 2. the rounds of a step ------------------------------------------------------------------


def test_released_round_sizes():
    B = 256
    assert released_round_size(B, [], 1.5) == 384
    # 384 groups, 96 kept (zero-variance 0.75): int(160 / 0.25 * 1.25) = 800 -> capped at 384, not last.
    assert released_round_size(B, [(384, 96)], 1.5) == 384
    # Then 384 more with 150 kept (share 0.609): int(10 / 0.39 * 1.25) = 32 -> at least 64; it fits, so last.
    assert released_round_size(B, [(384, 96), (384, 150)], 1.5) == 64
    assert released_round_size(B, [(384, 96), (384, 150), (64, 3)], 1.5) == 0  # the last round ran
    assert released_round_size(B, [(384, 300)], 1.5) == 0  # the batch is full
    # A round of nothing but zero-variance groups asks for a full round again, and is never the last.
    assert released_round_size(B, [(384, 0)], 1.5) == 384
    assert released_round_size(B, [(384, 0), (384, 0)], 1.5) == 384


def test_greso_rolls_out_one_and_a_half_batches_then_what_is_missing():
    B = 16
    policy = GRESO(400, seed=1)
    # Round 1: 24 prompts, 12 partial: 4 missing, share 0.5 -> int(4 / 0.5 * 1.25) = 10, which
    # fits in 24 so the next round is the last, of max(10, 64) = 64 prompts.
    rollout, calls = scripted([12, 1])
    result = run_step(policy, B, rollout)
    assert calls == [24, 64] and result.rounds == 2
    assert len(result.trained) == 13 and result.shortfall == 3, "the last round ends the step, full or not"
    # A first round that fills the batch is the only one.
    rollout, calls = scripted([20])
    result = run_step(policy, B, rollout)
    assert calls == [24] and len(result.trained) == B


def test_greso_has_no_round_cap_by_default_and_ours_is_an_option():
    # One partial group per round: the estimate never fits in a round, so the released trainer
    # keeps going until the batch is full (16 rounds here), far past our former cap of 10. With
    # B = 16 a later round is 64 prompts: the floor of 64 applies after the cap of 1.5 x B.
    rollout, calls = scripted([1] * 40)
    result = run_step(GRESO(2000, seed=2), 16, rollout)
    assert result.rounds == 16 and len(result.trained) == 16 and calls == [24] + [64] * 15
    rollout, calls = scripted([1] * 40)
    result = run_step(GRESO(2000, rounds="batch", seed=2), 16, rollout)
    assert result.rounds == 10 and calls == [16] * 10 and result.shortfall == 6


def test_greso_stops_when_no_prompt_can_be_partial():
    """Nothing but zero-variance groups: the released trainer would divide by zero; ours rolls
    out the rest of the dataset once (every prompt at most once a step) and trains on nothing."""
    policy = GRESO(100, seed=3)
    solved = lambda ids: (np.full(len(ids), K), np.full(len(ids), K))  # noqa: E731
    for _ in range(3):
        result = run_step(policy, 16, solved)
        assert result.shortfall == 16
        assert len(np.unique(result.prompt_ids)) == len(result.prompt_ids) == 100
        assert result.rounds == 3  # 24 + 64 + the 12 left


# -- 3. MoPPS's band --------------------------------------------------------------------------


def test_mopps_band_ranks_the_rest_by_distance_to_the_nearest_edge():
    # Beliefs sharp at 0.30, 0.95 and 0.58 with the band [0.6, 0.9] and target 0.5: none is
    # inside; the nearest edge ranks 0.58 (0.02), 0.95 (0.05), 0.30 (0.30), while distance to
    # the target would rank 0.58, 0.30, 0.95.
    policy = MoPPS(3, threshold=(0.6, 0.9), candidate_ratio=None, seed=0)
    state = policy.state_dict()
    policy.load_state_dict({**state, "a": np.array([3e5, 9.5e5, 5.8e5]), "b": np.array([7e5, 0.5e5, 4.2e5])})
    assert policy.select(2).tolist() == [2, 1]


# -- 4. MoPPS's candidate pool ----------------------------------------------------------------


def test_mopps_scores_a_pool_of_sixteen_batches_by_default():
    policy = MoPPS(1000, seed=0)
    assert policy.config()["candidate_ratio"] == 16.0
    policy.select(8)
    state = policy.state_dict()
    assert len(state["pool_order"]) == 1000 and int(state["pool_cursor"]) == 128
    small = MoPPS(100, seed=0)  # 16 x 8 = 128 >= 100 prompts: the whole set, as Countdown's scripts
    small.select(8)
    assert small.state_dict()["pool_order"].size == 0
    whole = MoPPS(1000, candidate_ratio=None, seed=0)
    whole.select(8)
    assert whole.state_dict()["pool_order"].size == 0
