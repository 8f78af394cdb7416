"""StepDriver, the policy's side of the verl integration, without verl (runs in `make test`)."""

from __future__ import annotations

import numpy as np
import pytest

from dps import DPS, DynamicSampling
from dps.integrations.verl.driver import FinishedGroup, StepDriver
from dps.logs import read_log


def group(uid: str, n_correct: int, k: int = 4) -> FinishedGroup:
    correct = [i < n_correct for i in range(k)]
    return FinishedGroup(uid, [1.0 if c else 0.0 for c in correct], correct)


def driver_with(policy, batch_size=4, log=None) -> StepDriver:
    driver = StepDriver(batch_size, log)
    driver.attach(policy, policy.num_prompts)
    return driver


def test_select_registers_uids_and_stops_at_the_step_budget():
    driver = driver_with(DynamicSampling(num_prompts=20, max_rounds=2))
    ids = driver.select(4, ["a", "b", "c", "d"])
    assert [driver.step.prompt_of[u] for u in "abcd"] == ids.tolist()
    assert driver.budget == 8 and driver.budget_left == 4
    assert len(driver.select(6, list("efghij"))) == 4  # clipped to the budget
    assert len(driver.select(1, ["k"])) == 0


def test_each_group_is_taken_once_and_the_step_observed_sorted(tmp_path):
    driver = driver_with(DPS(num_prompts=10, seed=0), log=tmp_path / "log.parquet")
    ids = driver.select(4, list("abcd"))
    assert driver.finish([group("c", 2), group("a", 4)], kept=0, in_flight=2) == set()
    assert driver.finish([group("a", 0), group("b", 1), group("d", 0)], kept=2, in_flight=0) == set()
    metrics = driver.end_step(global_step=1)
    assert metrics["dps/groups_rolled_out"] == 4
    assert driver.last_step.ids == [ids[2], ids[0], ids[1], ids[3]]  # a counted once, with its first result
    driver.log.write()
    log = read_log(tmp_path / "log.parquet")  # validates; prompt_key holds the ids as written
    assert log["prompt_key"].to_list() == sorted(ids.tolist())
    assert dict(zip(log["prompt_key"], log["n_correct"], strict=True)) == {ids[0]: 4, ids[1]: 1, ids[2]: 2, ids[3]: 0}


def test_unknown_uids_are_ignored():
    driver = driver_with(DPS(num_prompts=10, seed=0))
    driver.select(4, list("abcd"))
    driver.finish([group("zz", 2)], kept=0, in_flight=4)
    assert driver.step.ids == []


def test_rejected_groups_are_evicted_only_while_the_batch_can_still_fill():
    driver = driver_with(DynamicSampling(num_prompts=20, max_rounds=2))
    driver.select(4, list("abcd"))  # budget left: 4
    # two partial (kept), two all-correct (rejected): 2 kept + 0 in flight + 4 budget >= 4 -> evict both
    assert driver.finish([group("a", 2), group("b", 4), group("c", 1), group("d", 4)], kept=0, in_flight=0) == {
        "b",
        "d",
    }
    driver.select(4, list("efgh"))  # budget spent
    # 2 kept; 4 new all-wrong; nothing in flight, no budget: only 2 of them may go
    evicted = driver.finish([group(u, 0) for u in "efgh"], kept=2, in_flight=0)
    assert len(evicted) == 2
    metrics = driver.end_step(1)
    assert metrics["dps/groups_evicted"] == 4 and metrics["dps/gate_kept_at_cap"] == 2


def test_failed_groups_are_observed_without_the_gate_and_empty_ones_skipped():
    driver = driver_with(DynamicSampling(num_prompts=20, max_rounds=2))
    driver.select(4, list("abcd"))
    assert driver.finish([group("a", 4), FinishedGroup("b", [], [])], kept=0, in_flight=2, gate=False) == set()
    metrics = driver.end_step(1)
    assert metrics["dps/groups_rolled_out"] == 1 and metrics["dps/groups_unscored"] == 1


def test_a_failed_step_is_abandoned_and_the_next_selects_the_same():
    reference = DPS(num_prompts=30, seed=1)
    expected = reference.select(4)
    driver = driver_with(DPS(num_prompts=30, seed=1))
    driver.select(4, list("abcd"))
    driver.abandon(RuntimeError("rollout died"))
    assert driver.step.handed_out == 0
    assert driver.select(4, list("efgh")).tolist() == expected.tolist()


def test_policy_size_must_match_the_training_set_and_checkpoints_need_the_state(tmp_path):
    with pytest.raises(ValueError, match="built for 10 prompts but the training set has 12"):
        StepDriver(4).attach(DPS(num_prompts=10), 12)
    driver = driver_with(DPS(num_prompts=10))
    with pytest.raises(FileNotFoundError, match="no dps policy state"):
        driver.load(tmp_path, global_step=3)
    driver.select(4, list("abcd"))
    driver.finish([group(u, 1) for u in "abcd"], kept=0, in_flight=0)
    driver.end_step(1)
    driver.save(tmp_path / "global_step_1")
    other = driver_with(DPS(num_prompts=10))
    other.load(tmp_path / "global_step_1", global_step=1)
    assert other.select(4, list("wxyz")).tolist() == driver.select(4, list("wxyz")).tolist()
    assert np.array_equal(other.policy.predicted_state_probs(), driver.policy.predicted_state_probs())
