"""DPSAsyncTrainer (verl's colocate_async with a dps policy) against a real TransferQueue on CPU.

The rollouts are `LateRollout` / `SeededRollout` (seeded rewards written into TransferQueue);
the loop is verl 0.9.1's own async replay buffer (polling, stale / filtered / failed eviction,
exact refills), warm-up batches, prompt submission and re-issue, with our overrides.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

pytest.importorskip("verl.trainer.ppo.v1", reason="verl is tested in its own venv: make test-verl")

import ray  # noqa: E402
import transfer_queue as tq  # noqa: E402

from dps.integrations.verl.testing import (  # noqa: E402
    LateRollout,
    SeededRollout,
    clear_partition,
    cpu_config,
    cpu_trainer,
    run_async_steps,
)
from dps.integrations.verl.trainer import DPSAsyncTrainer  # noqa: E402
from dps.logs import read_log  # noqa: E402
from dps.outcomes import GroupOutcomes  # noqa: E402
from dps.policies.base import Policy  # noqa: E402
from dps.policies.registry import make_policy  # noqa: E402

N, B, K = 40, 8, 4


@pytest.fixture(scope="module", autouse=True)
def transfer_queue():
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    tq.init()
    yield
    tq.close()
    ray.shutdown()


@pytest.fixture(autouse=True)
def clean_partition():
    yield
    clear_partition()


class Calls(Policy):
    """Wraps a policy and records, in order, every select and observe the trainer makes."""

    def __init__(self, inner: Policy):
        self.inner, self.num_prompts, self.max_rounds = inner, inner.num_prompts, inner.max_rounds
        self.calls: list[tuple[str, list[int]]] = []
        self.graded: list[bool] = []

    def select(self, batch_size):
        ids = self.inner.select(batch_size)
        self.calls.append(("select", ids.tolist()))
        return ids

    def observe(self, prompt_ids, n_correct, n_rollouts):
        raise AssertionError("the async trainer observes groups in flight, never lockstep")

    def observe_groups(self, groups, *, in_flight=False):
        assert in_flight
        self.calls.append(("observe", groups.prompt_ids.tolist()))
        self.graded.append(groups.graded)
        self.inner.observe_groups(groups, in_flight=True)

    def admit_groups(self, groups):
        return self.inner.admit_groups(groups)

    def in_flight(self):
        return self.inner.in_flight()

    def abandon(self, prompt_ids=None):
        return self.inner.abandon(prompt_ids)

    def metrics(self):
        return self.inner.metrics()

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, state):
        self.inner.load_state_dict(state)

    def save(self, path):
        self.inner.save(path)

    def load(self, path):
        self.inner.load(path)


def mixed_success(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.repeat([1.0, 0.0, 0.5], [14, 13, 13]))


def build(tmp_path, rollout, policy="dps", options=None, resume=False, observe="correct"):
    dps = {"policy": policy, "seed": 3, "options": options or {}, "observe": observe}
    config = cpu_config(tmp_path, B, dps, resume=resume, mode="dps_async")
    trainer = cpu_trainer(config, rollout, N, trainer_class=DPSAsyncTrainer)
    calls = Calls(trainer.driver.policy)
    trainer.driver.policy = calls
    return trainer, calls


def test_each_step_selects_before_the_previous_steps_groups_are_observed(tmp_path):
    rollout = LateRollout(mixed_success(), k=K, seed=1)
    trainer, calls = build(tmp_path, rollout, "dps", {"decay": 0.7})
    metrics = run_async_steps(trainer, 4)
    kinds = [kind for kind, _ in calls.calls]
    # warm-up batch, step 1's batch, then per step: observe the batch selected one step earlier, select the next
    assert kinds == ["select", "select", "observe", "select", "observe", "select", "observe", "select", "observe"]
    selections = [ids for kind, ids in calls.calls if kind == "select"]
    observations = [ids for kind, ids in calls.calls if kind == "observe"]
    assert rollout.batches == selections  # verl rolled out exactly the policy's prompts
    for t, observed in enumerate(observations):
        assert sorted(observed) == sorted(selections[t])  # step t + 1 observes the batch selected at step t
        assert not set(selections[t + 1]) & set(selections[t])  # never handed out again while in flight
    assert all(m["dps/groups_in_flight"] == B for m in metrics)  # one batch always generating
    trainer.driver.log.write()  # (the trainer writes it with each checkpoint)
    log = read_log(tmp_path / "rollouts.parquet")
    assert log["step"].to_list() == [s for s in (1, 2, 3, 4) for _ in range(B)]
    import polars as pl

    selected = pl.read_parquet(tmp_path / "rollouts.parquet")["selected_step"].to_list()
    assert selected == [1] * B + [s for s in (1, 2, 3) for _ in range(B)]  # warm-up and step 1 both at step 1


def test_the_log_of_an_async_run_replays_the_policys_selection(tmp_path):
    """A fresh policy fed the calls in the same order selects the same prompts: the in-flight
    observations are what the policy was given."""
    rollout = LateRollout(mixed_success(), k=K, seed=1)
    trainer, calls = build(tmp_path, rollout, "dps", {"decay": 0.7})
    run_async_steps(trainer, 4)
    trainer.driver.log.write()
    import polars as pl

    log = pl.read_parquet(tmp_path / "rollouts.parquet")
    fresh = make_policy("dps", num_prompts=N, seed=3, decay=0.7)
    step_groups = {s: log.filter(pl.col("step") == s) for s in (1, 2, 3, 4)}
    selected = [fresh.select(B).tolist(), fresh.select(B).tolist()]
    for step in (1, 2, 3, 4):
        rows = step_groups[step]
        groups = GroupOutcomes.counts(
            rows["prompt_id"].to_numpy(), rows["n_correct"].to_numpy(), rows["n_rollouts"].to_numpy()
        )
        fresh.observe_groups(groups, in_flight=True)
        if step < 4:
            selected.append(fresh.select(B).tolist())
    assert selected[:5] == [ids for kind, ids in calls.calls if kind == "select"][:5]


def test_graded_rewards_reach_the_policy_and_the_gate_evicts_equal_rewards(tmp_path):
    # wrong answers earn a 0.2 format bonus: a group all wrong has equal, non-zero rewards
    rollout = SeededRollout(mixed_success(), k=K, seed=1, reward_correct=1.2, reward_wrong=0.2, delay=0.002)
    trainer, calls = build(tmp_path, rollout, "ds", {"max_rounds": 4}, observe="reward")
    trainer.replay_buffer.poll_interval = 0.005
    metrics = run_async_steps(trainer, 3)
    for thread in rollout.threads:
        thread.join(timeout=10)
    assert sum(m["dps/groups_evicted"] for m in metrics) > 0  # groups of equal rewards went back to verl
    assert all(len(m["trained_uids"]) == B for m in metrics)
    assert calls.graded and all(calls.graded)  # the policy saw rewards, not counts
    trainer.driver.log.write()
    log = read_log(tmp_path / "rollouts.parquet")
    assert {round(r, 6) for rs in log["rewards"].to_list() for r in rs} <= {0.2, 1.2}
    observed = Counter(p for kind, ids in calls.calls if kind == "observe" for p in ids)
    handed_out = Counter(p for kind, ids in calls.calls if kind == "select" for p in ids)
    assert all(observed[p] <= handed_out[p] for p in observed)  # each group observed at most once


def test_checkpoint_resume_continues_the_selection_exactly(tmp_path):
    """Killed after the step-3 checkpoint with a batch in flight: verl re-issues that batch, the
    policy keeps it in flight, and steps 4 and 5 make the uninterrupted run's calls."""

    def rollout():  # a prompt's outcomes do not depend on the step verl dispatched it at
        return LateRollout(mixed_success(), k=K, seed=1, by_step=False)

    straight, straight_calls = build(tmp_path / "straight", rollout(), "dps", {"decay": 0.7})
    run_async_steps(straight, 5)
    clear_partition()  # the straight run's last batch, still generating
    first, _ = build(tmp_path / "resumed", rollout(), "dps", {"decay": 0.7})
    run_async_steps(first, 3, save_every=3)
    clear_partition()
    resumed, resumed_calls = build(tmp_path / "resumed", rollout(), "dps", {"decay": 0.7}, resume=True)
    assert resumed.global_steps == 3
    assert len(resumed.driver.policy.in_flight()) == B  # the batch generating at the checkpoint
    run_async_steps(resumed, 2)
    straight_tail = straight_calls.calls[-4:]
    assert resumed_calls.calls == straight_tail
