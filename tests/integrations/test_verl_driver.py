"""StepDriver and FlightDriver, the policy's side of the verl integration, without verl (runs in `make test`)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from dps import DPS, DynamicSampling
from dps.integrations.verl.driver import FinishedGroup, FlightDriver, StepDriver
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


def flight_driver(policy, batch_size=4, log=None, observe="correct") -> FlightDriver:
    driver = FlightDriver(batch_size, log, observe=observe)
    driver.attach(policy, policy.num_prompts)
    return driver


def test_a_flight_driver_selects_while_groups_are_in_flight_and_observes_what_finished(tmp_path):
    driver = flight_driver(DPS(num_prompts=12, seed=0), log=tmp_path / "log.parquet")
    first = driver.select(4, list("abcd"), step=1)  # the warm-up batch
    second = driver.select(4, list("efgh"), step=1)  # step 1's batch, the first still generating
    assert not set(first.tolist()) & set(second.tolist())
    driver.finish([group(u, n) for u, n in zip("abcd", (0, 1, 2, 4), strict=True)])
    metrics = driver.end_step(1)
    assert metrics["dps/groups_rolled_out"] == 4 and metrics["dps/groups_in_flight"] == 4
    assert sorted(driver.policy.in_flight().tolist()) == sorted(second.tolist())
    third = driver.select(4, list("ijkl"), step=2)  # selected before step 1's batch is observed
    assert not set(third.tolist()) & set(second.tolist())
    driver.finish([group("e", 2), group("zz", 1)])  # one of step 1's groups; an unknown uid is ignored
    driver.finish([group("e", 0)])  # taken once, with its first result
    metrics = driver.end_step(2)
    assert metrics["dps/groups_rolled_out"] == 1 and metrics["dps/observed_lag_mean"] == 1.0
    driver.log.write()
    log = pl.read_parquet(tmp_path / "log.parquet")
    assert log["step"].to_list() == [1] * 4 + [2] and log["selected_step"].to_list() == [1] * 5
    assert read_log(tmp_path / "log.parquet").height == 5  # the extra column is no obstacle to readers


def test_a_flight_drivers_gate_evicts_within_its_refill_budget_and_failed_groups_go_back():
    driver = flight_driver(DynamicSampling(num_prompts=20, max_rounds=2))  # 4 refills per step
    driver.select(8, list("abcdefgh"), step=1)
    assert driver.finish([group(u, 4) for u in "abcdef"]) == set("abcd")  # 2 all-correct kept at the cap
    handed = driver.policy.in_flight()
    driver.finish([FinishedGroup("g", [], [])], gate=False)  # failed, nothing scored
    assert len(driver.policy.in_flight()) == len(handed) - 1
    metrics = driver.end_step(1)
    assert metrics["dps/groups_evicted"] == 4 and metrics["dps/gate_kept_at_cap"] == 2
    assert metrics["dps/groups_handed_back"] == 1 and metrics["dps/groups_in_flight"] == 1
    driver.select(4, list("ijkl"), step=2)
    assert driver.finish([group(u, 0) for u in "ij"]) == {"i", "j"}  # the budget is per step


def test_a_flight_driver_observes_rewards_and_resumes_with_its_flights(tmp_path):
    driver = flight_driver(DynamicSampling(DPS(num_prompts=12, seed=0)), observe="reward")
    driver.select(4, list("abcd"), step=1)
    driver.select(4, list("efgh"), step=1)
    bonus = [FinishedGroup(u, [0.1, 0.1, 0.0, 0.1], [False] * 4) for u in "ab"]  # no answer right, rewards differ
    equal = [FinishedGroup(u, [0.1] * 4, [False] * 4) for u in "cd"]
    assert driver.finish(bonus + equal) == {"c", "d"}  # by the spread of the rewards, not by correctness
    driver.end_step(1)
    driver.save(tmp_path / "global_step_1")
    resumed = flight_driver(DynamicSampling(DPS(num_prompts=12, seed=0)), observe="reward")
    resumed.load(tmp_path / "global_step_1", global_step=1)
    assert {u: f.status for u, f in resumed.flights.items()} == {u: f.status for u, f in driver.flights.items()}
    resumed.finish([group(u, 2) for u in "efgh"])  # verl's re-issued prompts, under their own uids
    driver.finish([group(u, 2) for u in "efgh"])
    resumed.end_step(2)
    driver.end_step(2)
    assert resumed.select(4, list("mnop"), step=3).tolist() == driver.select(4, list("mnop"), step=3).tolist()
    with pytest.raises(FileNotFoundError, match="no dps flight table"):
        (tmp_path / "global_step_1" / "dps_flights.json").unlink()
        resumed.load(tmp_path / "global_step_1", global_step=1)
    with pytest.raises(ValueError, match="dps.observe must be one of"):
        FlightDriver(4, observe="spread")


def test_a_step_driver_observing_rewards_gates_by_their_spread():
    driver = StepDriver(2, observe="reward")
    driver.attach(DynamicSampling(num_prompts=20, max_rounds=2), 20)
    driver.select(2, ["a", "b"])
    bonus = FinishedGroup("a", [0.1, 0.0, 0.0, 0.0], [False] * 4)  # no answer right, a format bonus's spread
    equal = FinishedGroup("b", [0.1] * 4, [False] * 4)
    assert driver.finish([bonus, equal], kept=0, in_flight=0) == {"b"}
    metrics = driver.end_step(1)
    assert metrics["dps/partial_share_rolled_out"] == 0.5
