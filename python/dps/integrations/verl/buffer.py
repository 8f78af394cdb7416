"""verl's replay buffers, with a dps policy observing and gating each finished group.

verl 0.9.1's `ReplayBuffer.sample` (sync mode) polls TransferQueue; each poll it asks
`_dapo_filtered_keys` which finished groups to evict, evicts them, and asks the trainer's
`refill_fn` for 2 new prompts per evicted group (its DAPO machinery), until a full batch is
sampleable and nothing is in flight. `DPSReplayBuffer` answers that question with the policy's
`admit` on each group the first time it is seen, and observes the step's groups once `sample`
returns. Failed groups (a session raised) stay sampleable as in verl; they are observed with
the responses that were scored.

`DPSAsyncReplayBuffer` does the same in verl's asynchronous modes (`ReplayBufferAsync`, which
evicts stale, filtered and failed groups and refills exactly as many): every finished group is
taken once, whichever step selected it, and the groups that finished by the time `sample`
returns are observed in flight (`FlightDriver`).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import Any

import transfer_queue as tq
from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer, ReplayBufferAsync

from dps.integrations.verl.driver import FinishedGroup, FlightDriver, StepDriver

#: Turns on verl's sync refill path (`filter_groups_metric is not None`); the groups it evicts
#: are the policy's, not a metric's.
GATE_METRIC = "dps"


class _GroupReader:
    """Reads finished groups' rewards from TransferQueue (what both buffers share).

    `correct_key`: read correctness from `reward_extra_info[correct_key]` (e.g. "acc");
    otherwise a response is correct when its reward (the sum of `rm_scores`) is >= `threshold`,
    so a small format bonus on a wrong answer does not count as correct."""

    partitions: dict[str, Any]
    correct_key: str | None
    threshold: float
    read_seconds: float

    def _read_groups(self, partition_id: str, uids: list[str]) -> list[FinishedGroup]:
        """Each group's final reward per session, from TransferQueue."""
        started = time.perf_counter()
        wanted = set(uids)
        last_key: dict[tuple[str, int], tuple[int, str]] = {}
        for key in self.partitions[partition_id]:
            uid, session, index = key.rsplit("_", 2)
            if uid in wanted:
                current = last_key.get((uid, int(session)))
                if current is None or int(index) > current[0]:
                    last_key[(uid, int(session))] = (int(index), key)
        keys = [key for _, key in (last_key[s] for s in sorted(last_key))]
        rewards, correct = self._scores(partition_id, keys)
        per_group: dict[str, tuple[list[float], list[bool]]] = defaultdict(lambda: ([], []))
        for key, reward, ok in zip(keys, rewards, correct, strict=True):
            group = per_group[key.rsplit("_", 2)[0]]
            group[0].append(reward)
            group[1].append(ok)
        self.read_seconds += time.perf_counter() - started
        return [FinishedGroup(uid, *per_group[uid]) if uid in per_group else FinishedGroup(uid, [], []) for uid in uids]

    def _scores(self, partition_id: str, keys: list[str]) -> tuple[list[float], list[bool]]:
        if not keys:
            return [], []
        fields = ["rm_scores"] + (["extra_fields"] if self.correct_key else [])
        data = tq.kv_batch_get(keys=keys, partition_id=partition_id, select_fields=fields)
        rewards = [float(value.sum().item()) for value in data["rm_scores"]]
        if not self.correct_key:
            return rewards, [r >= self.threshold for r in rewards]
        correct = []
        for key, extra in zip(keys, data["extra_fields"], strict=True):
            info = getattr(extra, "data", extra).get("reward_extra_info", {})
            if self.correct_key not in info:
                raise KeyError(f"trajectory {key}: reward_extra_info has no {self.correct_key!r} (dps.correct_key)")
            correct.append(float(info[self.correct_key]) >= 0.5)
        return rewards, correct


class DPSReplayBuffer(_GroupReader, ReplayBuffer):
    """`ReplayBuffer` whose group filter is a dps policy (see the module docstring)."""

    def __init__(self, driver: StepDriver, correct_key: str | None = None, threshold: float = 0.5, **kwargs: Any):
        kwargs["filter_groups_metric"] = GATE_METRIC
        kwargs.setdefault("gen_batch_size", 1)
        kwargs.setdefault("train_batch_size", driver.batch_size)
        super().__init__(**kwargs)
        if self.trainer_mode != "sync":
            raise ValueError(f"DPSReplayBuffer runs verl's sync mode only, not {self.trainer_mode!r}")
        self.driver = driver
        self.correct_key = correct_key
        self.threshold = float(threshold)
        self.read_seconds = 0.0

    # -- called by ReplayBuffer.sample on every poll ----------------------------------------
    def _dapo_filtered_keys(self, partition_id: str) -> tuple[set[str], Counter]:
        if partition_id == "val":
            return set(), Counter()
        finished, failed = self.finished_keys[partition_id], self.failure_keys[partition_id]
        terminal = finished | failed
        step = self.driver.step
        new = sorted(
            (uid for uid in terminal if uid not in step.seen and uid in step.prompt_of), key=step.prompt_of.__getitem__
        )
        if not new:
            return set(), Counter()
        groups = self._read_groups(partition_id, new)
        in_flight = len(self.pending_keys[partition_id]) + len(self.running_keys[partition_id])
        kept = len(terminal) - len(new)
        failed_new = [g for g in groups if g.uid in failed]
        self.driver.finish(failed_new, kept, in_flight, gate=False)
        finished_new = [g for g in groups if g.uid not in failed]
        evicted = self.driver.finish(finished_new, kept + len(failed_new), in_flight)
        by_uid = {g.uid: g for g in finished_new}
        counts = Counter(sum(by_uid[uid].rewards) / len(by_uid[uid].rewards) for uid in evicted)
        return evicted, counts

    # -- one training step ------------------------------------------------------------------
    def sample(self, global_steps: int, partition_id: str, batch_size: int) -> tuple[Any, dict]:
        if partition_id == "val":
            return super().sample(global_steps=global_steps, partition_id=partition_id, batch_size=batch_size)
        try:
            batch, metrics = super().sample(global_steps=global_steps, partition_id=partition_id, batch_size=batch_size)
        except BaseException as error:
            self.driver.abandon(error)
            raise
        metrics.update(self.driver.end_step(global_steps))
        metrics["dps/read_rewards_seconds"] = self.read_seconds
        self.read_seconds = 0.0
        return batch, metrics


class DPSAsyncReplayBuffer(_GroupReader, ReplayBufferAsync):
    """`ReplayBufferAsync` whose group filter is a dps policy observing groups in flight."""

    def __init__(self, driver: FlightDriver, correct_key: str | None = None, threshold: float = 0.5, **kwargs: Any):
        kwargs["filter_groups_metric"] = GATE_METRIC
        super().__init__(**kwargs)
        if self.trainer_mode == "sync":
            raise ValueError("DPSAsyncReplayBuffer runs verl's asynchronous modes; DPSReplayBuffer runs sync")
        self.driver = driver
        self.correct_key = correct_key
        self.threshold = float(threshold)
        self.read_seconds = 0.0

    # -- called by ReplayBufferAsync.wait_for_sampleable on every poll ------------------------
    def _dapo_filtered_keys(self, partition_id: str) -> tuple[set[str], Counter]:
        if partition_id == "val":
            return set(), Counter()
        finished, failed = self.finished_keys[partition_id], self.failure_keys[partition_id]
        known = finished | failed | self.pending_keys[partition_id] | self.running_keys[partition_id]
        self.driver.forget([uid for uid in list(self.driver.flights) if uid not in known])
        flights = self.driver.flights
        new = sorted(
            (uid for uid in finished | failed if uid in flights and flights[uid].status == "flying"),
            key=lambda uid: (flights[uid].selected_at, flights[uid].prompt_id),
        )
        if not new:
            return set(), Counter()
        groups = self._read_groups(partition_id, new)
        self.driver.finish([g for g in groups if g.uid in failed], gate=False)
        finished_new = [g for g in groups if g.uid not in failed]
        evicted = self.driver.finish(finished_new)
        by_uid = {g.uid: g for g in finished_new}
        counts = Counter(sum(by_uid[uid].rewards) / len(by_uid[uid].rewards) for uid in evicted)
        return evicted, counts

    # -- one training step ------------------------------------------------------------------
    def sample(self, global_steps: int, partition_id: str, batch_size: int) -> tuple[Any, dict]:
        batch, metrics = super().sample(global_steps=global_steps, partition_id=partition_id, batch_size=batch_size)
        if partition_id == "val":
            return batch, metrics
        metrics.update(self.driver.end_step(global_steps))
        metrics["dps/read_rewards_seconds"] = self.read_seconds
        self.read_seconds = 0.0
        return batch, metrics
