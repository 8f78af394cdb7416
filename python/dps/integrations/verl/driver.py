"""A dps policy's steps inside a loop that refills rejected groups itself.

verl's V1 trainer asks for prompts in several calls per step (the batch, then refills) and
finishes groups one by one; `StepDriver` turns that into the policy's step: `select` per
request within a prompt budget, `admit` once per finished group, `observe` once per step
with every rolled-out group, and a rollout log row per group. `FlightDriver` does the same for
a trainer that generates ahead (verl's ``colocate_async``): prompts are selected while earlier
selections are in flight, and each step observes, in flight, the groups that finished since the
previous one (`Policy.observe_groups(groups, in_flight=True)`). Both import nothing from verl,
so their rules are tested without it.

What the policy observes (`observe`): ``correct``, the counts of correct responses, or
``reward``, each response's reward (`GroupOutcomes.from_rewards`: effective when the rewards
differ, otherwise solved at `threshold`; docs/method.md#graded-rewards).

Eviction is safe: a rejected group is evicted only while the groups kept, in flight and still
allowed by the budget can fill the batch without it. Past that point a rejected group is
trained on (`gate_kept_at_cap`), where `run_step` would report a shortfall: verl's replay
buffer waits until it has a full batch, so a shortfall would never end the step.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from dps.logs import RolloutLogWriter
from dps.outcomes import GroupOutcomes
from dps.policies.base import Policy, abandon_step, checked_selection, policy_size

POLICY_STATE_FILE = "dps_policy.npz"
#: `FlightDriver`'s table of the groups in flight, beside the policy state in a checkpoint.
FLIGHTS_FILE = "dps_flights.json"
#: What the policy observes of a group: its counts of correct responses, or its rewards.
OBSERVE = ("correct", "reward")


@dataclass
class FinishedGroup:
    """One prompt's scored responses: rewards (for the log) and which responses were correct."""

    uid: str
    rewards: list[float]
    correct: list[bool]


def scored_outcomes(
    ids: Sequence[int], groups: Sequence[FinishedGroup], observe: str, threshold: float
) -> GroupOutcomes:
    """The groups as the policy observes them: counts, or with `observe="reward"` each
    response's reward (solved at `threshold` when they are all equal), counts kept beside."""
    prompt_ids = np.asarray(ids, np.int64)
    n_rollouts = np.array([len(g.correct) for g in groups], np.int64)
    n_correct = np.array([sum(g.correct) for g in groups], np.int64)
    if observe == "correct":
        return GroupOutcomes.counts(prompt_ids, n_correct, n_rollouts)
    rewards = np.array([r for g in groups for r in g.rewards], np.float64)
    return GroupOutcomes.from_rewards(prompt_ids, rewards, n_rollouts, n_correct=n_correct, success_at=threshold)


def check_observe(observe: str) -> str:
    if observe not in OBSERVE:
        raise ValueError(f"dps.observe must be one of {list(OBSERVE)}, got {observe!r}")
    return observe


class _Driver:
    """What both drivers share: the attached policy, its time, the rollout log, the checkpoint."""

    def __init__(
        self, batch_size: int, log_path: str | Path | None = None, observe: str = "correct", threshold: float = 0.5
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.observe = check_observe(observe)
        self.threshold = float(threshold)
        self.policy: Policy | None = None
        self.log = RolloutLogWriter(log_path) if log_path is not None else None
        self.policy_seconds = 0.0  # time inside the policy's select / admit / observe, this step
        self.last_metrics: dict[str, float] = {}

    # -- the policy ------------------------------------------------------------------------
    def attach(self, policy: Policy, num_prompts: int) -> None:
        if policy_size(policy) != num_prompts:
            raise ValueError(
                f"the policy was built for {policy.num_prompts} prompts but the training set has {num_prompts}"
            )
        self.policy = policy

    def _policy(self) -> Policy:
        if self.policy is None:
            raise RuntimeError(f"{type(self).__name__}: no policy attached (attach() before the first step)")
        return self.policy

    def _outcomes(self, ids: Sequence[int], groups: Sequence[FinishedGroup]) -> GroupOutcomes:
        return scored_outcomes(ids, groups, self.observe, self.threshold)

    def _admit(self, groups: GroupOutcomes) -> np.ndarray:
        started = time.perf_counter()
        keep = np.asarray(self._policy().admit_groups(groups), dtype=bool)
        self.policy_seconds += time.perf_counter() - started
        if keep.shape != groups.prompt_ids.shape:
            raise ValueError(f"admit returned a mask of shape {keep.shape} for {len(groups)} groups")
        return keep

    def _metrics(self, groups: GroupOutcomes, counts: Mapping[str, float]) -> dict[str, float]:
        metrics = {f"dps/{k}": float(v) for k, v in self._policy().metrics().items()}
        metrics.update({f"dps/{k}": float(v) for k, v in counts.items()})
        metrics["dps/groups_rolled_out"] = float(len(groups))
        metrics["dps/partial_share_rolled_out"] = float(groups.effective.mean()) if len(groups) else 0.0
        metrics["dps/policy_seconds"] = self.policy_seconds
        return metrics

    # -- checkpoints -----------------------------------------------------------------------
    def save(self, folder: str | Path) -> None:
        """The policy state into a checkpoint folder, and the log so far beside the run."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._policy().save(folder / POLICY_STATE_FILE)
        if self.log is not None:
            self.log.write()

    def load(self, folder: str | Path, global_step: int) -> None:
        """Restore the policy from a checkpoint folder; keep the log's rows up to its step."""
        path = Path(folder) / POLICY_STATE_FILE
        if not path.exists():
            raise FileNotFoundError(
                f"{path}: the checkpoint has no dps policy state (was it written by the dps trainer?)"
            )
        self._policy().load(path)
        if self.log is not None:
            self.log.load(keep_below=global_step + 1)


@dataclass
class _Step:
    """What the current step handed out and saw."""

    prompt_of: dict[str, int] = field(default_factory=dict)  # uid -> prompt id
    handed_out: int = 0
    ids: list[int] = field(default_factory=list)
    groups: list[FinishedGroup] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    evicted: int = 0
    kept_at_cap: int = 0
    unscored: int = 0

    @property
    def n_correct(self) -> list[int]:
        """Each scored group's count of correct responses, in the order of `ids`."""
        return [sum(g.correct) for g in self.groups]


class StepDriver(_Driver):
    """Drives `policy` one training step at a time for a batch of `batch_size` prompts."""

    def __init__(
        self, batch_size: int, log_path: str | Path | None = None, observe: str = "correct", threshold: float = 0.5
    ):
        super().__init__(batch_size, log_path, observe, threshold)
        self.step = _Step()
        self.last_step = _Step()  # the previous step's record (its uid -> prompt id map, groups)

    @property
    def budget(self) -> int:
        """Prompts one step may hand out: max_rounds batches, at most the whole training set."""
        policy = self._policy()
        return min(policy.num_prompts, max(1, policy.max_rounds) * self.batch_size)

    @property
    def budget_left(self) -> int:
        return self.budget - self.step.handed_out

    # -- before rollout --------------------------------------------------------------------
    def select(self, count: int, uids: Sequence[str], step: int = 0) -> np.ndarray:
        """The policy's ids for `count` new prompts (fewer when the step's budget runs out),
        registered under `uids` (one per prompt, in order). `step` is not needed here: every
        prompt belongs to the open step."""
        count = min(count, self.budget_left)
        if count <= 0:
            return np.zeros(0, np.int64)
        started = time.perf_counter()
        policy = self._policy()
        earlier = [np.fromiter(self.step.prompt_of.values(), np.int64, len(self.step.prompt_of))]
        ids = checked_selection(policy, policy.select(count), count, earlier)
        self.policy_seconds += time.perf_counter() - started
        if ids.shape != (count,):
            raise ValueError(f"{type(self.policy).__name__}.select({count}) returned {ids.shape[0]} ids")
        for uid, prompt_id in zip(uids[:count], ids.tolist(), strict=True):
            self.step.prompt_of[uid] = int(prompt_id)
        self.step.handed_out += count
        return ids

    # -- after rollout ---------------------------------------------------------------------
    def finish(self, groups: Iterable[FinishedGroup], kept: int, in_flight: int, gate: bool = True) -> set[str]:
        """Take newly finished groups (each exactly once); return the uids to evict.

        `kept`: groups already sampleable, `in_flight`: groups dispatched and not finished.
        With `gate=False` (failed groups) the policy's admit is not asked."""
        new = [g for g in groups if g.uid not in self.step.seen and g.uid in self.step.prompt_of]
        if not new:
            return set()
        scored = self._record(new)
        if not gate or not scored:
            return set()
        keep = self._admit(self._outcomes([self.step.prompt_of[g.uid] for g in scored], scored))
        return self._evictions(scored, keep, kept, in_flight)

    def _record(self, new: list[FinishedGroup]) -> list[FinishedGroup]:
        """Note the groups as seen; return those with a scored response (the others: unscored)."""
        scored = []
        for group in new:
            self.step.seen.add(group.uid)
            if not group.correct:  # a failed group with no scored response: nothing to observe
                self.step.unscored += 1
                continue
            self.step.ids.append(self.step.prompt_of[group.uid])
            self.step.groups.append(group)
            scored.append(group)
        return scored

    def _evictions(self, scored: list[FinishedGroup], keep: np.ndarray, kept: int, in_flight: int) -> set[str]:
        kept += int(keep.sum())
        # Groups that can still reach the batch if this one goes: kept + in flight + budget.
        reachable = kept + in_flight + self.budget_left + int((~keep).sum())
        evict = set()
        for group, admitted in zip(scored, keep.tolist(), strict=True):
            if admitted:
                continue
            if reachable - 1 >= self.batch_size:
                evict.add(group.uid)
                reachable -= 1
            else:
                self.step.kept_at_cap += 1
        self.step.evicted += len(evict)
        return evict

    # -- end of step -----------------------------------------------------------------------
    def end_step(self, global_step: int) -> dict[str, float]:
        """Observe every group of the step once, log them, and return the step's metrics."""
        step, policy = self.step, self._policy()
        order = np.argsort(np.array(step.ids, np.int64), kind="stable")  # groups finish in any order
        ids = [step.ids[i] for i in order]
        finished = [step.groups[i] for i in order]
        groups = self._outcomes(ids, finished)
        started = time.perf_counter()
        policy.observe_groups(groups)
        self.policy_seconds += time.perf_counter() - started
        if self.log is not None:
            self.log.add(
                global_step, groups.prompt_ids, _n_correct(finished), groups.n_rollouts, rewards=_rewards(finished)
            )
        counts = {
            "prompts_handed_out": step.handed_out,
            "groups_evicted": step.evicted,
            "gate_kept_at_cap": step.kept_at_cap,
            "groups_unscored": step.unscored,
        }
        metrics = self._metrics(groups, counts)
        self.last_metrics, self.last_step = metrics, step
        self._reset()
        return metrics

    def abandon(self, error: BaseException) -> None:
        """A step that failed before `end_step`: undo its selection (see `Policy.abandon`)."""
        abandon_step(self._policy(), error)
        self._reset()

    def _reset(self) -> None:
        self.step = _Step()
        self.policy_seconds = 0.0

    def load(self, folder: str | Path, global_step: int) -> None:
        super().load(folder, global_step)
        self._reset()


def _n_correct(groups: Sequence[FinishedGroup]) -> np.ndarray:
    return np.array([sum(g.correct) for g in groups], np.int64)


def _rewards(groups: Sequence[FinishedGroup]) -> list[list[float]]:
    return [[float(r) for r in g.rewards] for g in groups]


@dataclass
class Flight:
    """A prompt handed out by `FlightDriver`: which, at which step, and what became of it."""

    prompt_id: int
    selected_at: int  # the trainer step whose prepare (or refill) selected it
    status: str = "flying"  # flying -> finished (waits for its step's observe) -> observed
    rewards: list[float] = field(default_factory=list)
    correct: list[bool] = field(default_factory=list)


class FlightDriver(_Driver):
    """Drives `policy` in a trainer that generates ahead, for batches of `batch_size` prompts.

    `select` hands out prompts at any time (a step's batch, the warm-up batches before the
    first step, refills); the policy keeps them in flight and never hands them out again before
    they are observed. `finish` takes groups as they finish, asks the policy's gate, and
    returns the rejected ones to evict while the step's refill budget lasts ((max_rounds - 1)
    batches; past it a rejected group is trained on, `gate_kept_at_cap`). `end_step` observes,
    in flight, every group that finished since the last step, in one `observe_groups` (one
    step of the policy), and logs it with the step it was selected at (`selected_step`).
    A group that failed without a scored response is handed back (`Policy.abandon`)."""

    def __init__(
        self, batch_size: int, log_path: str | Path | None = None, observe: str = "correct", threshold: float = 0.5
    ):
        super().__init__(batch_size, log_path, observe, threshold)
        self.flights: dict[str, Flight] = {}  # uid -> its prompt, until the trainer forgets the uid
        self._reset()

    def _reset(self) -> None:
        self.policy_seconds = 0.0
        self.selected_this_step = 0
        self.evicted = self.kept_at_cap = self.handed_back = 0
        self.refills_left = (max(1, self.policy.max_rounds) - 1) * self.batch_size if self.policy else 0

    def attach(self, policy: Policy, num_prompts: int) -> None:
        super().attach(policy, num_prompts)
        self._reset()

    # -- before rollout --------------------------------------------------------------------
    def select(self, count: int, uids: Sequence[str], step: int) -> np.ndarray:
        """The policy's ids for `count` new prompts, registered under `uids` as selected at `step`."""
        if count <= 0:
            return np.zeros(0, np.int64)
        policy = self._policy()
        started = time.perf_counter()
        ids = checked_selection(policy, policy.select(count), count, [])
        self.policy_seconds += time.perf_counter() - started
        out = [f.prompt_id for f in self.flights.values() if f.status != "observed"]
        if ids.shape != (count,) or np.isin(ids, out).any():
            what = f"returned {ids.shape[0]} ids" if ids.shape != (count,) else "returned an id in flight"
            raise ValueError(f"{type(policy).__name__}.select({count}) {what} (docs/policies.md#in-flight)")
        for uid, prompt_id in zip(uids, ids.tolist(), strict=True):
            self.flights[uid] = Flight(int(prompt_id), int(step))
        self.selected_this_step += count
        return ids

    # -- after rollout ---------------------------------------------------------------------
    def finish(self, groups: Iterable[FinishedGroup], gate: bool = True) -> set[str]:
        """Take newly finished groups (each exactly once; others are ignored); return the uids
        to evict. `gate=False` (failed groups): the gate is not asked."""
        new = [g for g in groups if g.uid in self.flights and self.flights[g.uid].status == "flying"]
        scored = [g for g in new if g.correct]
        for group in new:
            flight = self.flights[group.uid]
            flight.status = "finished"
            flight.rewards, flight.correct = [float(r) for r in group.rewards], [bool(c) for c in group.correct]
        unscored = [g for g in new if not g.correct]
        if unscored:  # a failed group with nothing scored: the prompt goes back to the policy
            for group in unscored:
                self.flights[group.uid].status = "observed"
            self._policy().abandon(np.array([self.flights[g.uid].prompt_id for g in unscored], np.int64))
            self.handed_back += len(unscored)
        if not gate or not scored:
            return set()
        keep = self._admit(self._outcomes([self.flights[g.uid].prompt_id for g in scored], scored))
        evict = set()
        for group, admitted in zip(scored, keep.tolist(), strict=True):
            if admitted:
                continue
            if self.refills_left > 0:
                evict.add(group.uid)
                self.refills_left -= 1
            else:
                self.kept_at_cap += 1
        self.evicted += len(evict)
        return evict

    def forget(self, uids: Iterable[str]) -> None:
        """The trainer no longer holds these uids (trained, evicted or cleared)."""
        for uid in uids:
            if uid in self.flights and self.flights[uid].status == "observed":
                del self.flights[uid]

    def in_flight(self) -> int:
        return sum(f.status != "observed" for f in self.flights.values())

    # -- end of step -----------------------------------------------------------------------
    def end_step(self, global_step: int) -> dict[str, float]:
        """Observe, in flight, every group finished since the last step; log them; metrics."""
        finished = sorted(
            (f for f in self.flights.values() if f.status == "finished"), key=lambda f: (f.selected_at, f.prompt_id)
        )
        records = [FinishedGroup("", f.rewards, f.correct) for f in finished]
        groups = self._outcomes([f.prompt_id for f in finished], records)
        started = time.perf_counter()
        self._policy().observe_groups(groups, in_flight=True)  # one step of the policy, even with no group
        self.policy_seconds += time.perf_counter() - started
        for flight in finished:
            flight.status = "observed"
        if self.log is not None and finished:
            selected = np.array([f.selected_at for f in finished], np.int64)
            self.log.add(
                global_step,
                groups.prompt_ids,
                _n_correct(records),
                groups.n_rollouts,
                rewards=_rewards(records),
                selected_step=selected,
            )
        lag = [global_step - f.selected_at for f in finished]
        counts = {
            "prompts_handed_out": self.selected_this_step,
            "groups_evicted": self.evicted,
            "gate_kept_at_cap": self.kept_at_cap,
            "groups_handed_back": self.handed_back,
            "groups_in_flight": self.in_flight(),
            "observed_lag_mean": float(np.mean(lag)) if lag else 0.0,
        }
        metrics = self._metrics(groups, counts)
        self.last_metrics = metrics
        self._reset()
        return metrics

    # -- checkpoints -----------------------------------------------------------------------
    def save(self, folder: str | Path) -> None:
        """The policy state (with what it has in flight) and the flight table."""
        super().save(folder)
        table = {uid: asdict(flight) for uid, flight in self.flights.items()}
        path = Path(folder) / FLIGHTS_FILE
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(table))
        tmp.replace(path)

    def load(self, folder: str | Path, global_step: int) -> None:
        super().load(folder, global_step)
        path = Path(folder) / FLIGHTS_FILE
        if not path.exists():
            raise FileNotFoundError(f"{path}: the checkpoint has no dps flight table (was it written by dps_async?)")
        self.flights = {uid: Flight(**record) for uid, record in json.loads(path.read_text()).items()}
        self._reset()
