"""One training step of a dps policy inside a loop that refills rejected groups itself.

verl's V1 trainer asks for prompts in several calls per step (the batch, then refills) and
finishes groups one by one; `StepDriver` turns that into the policy's step: `select` per
request within a prompt budget, `admit` once per finished group, `observe` once per step
with every rolled-out group, and a rollout log row per group. It imports nothing from verl,
so its rules are tested without it.

Eviction is safe: a rejected group is evicted only while the groups kept, in flight and still
allowed by the budget can fill the batch without it. Past that point a rejected group is
trained on (`gate_kept_at_cap`), where `run_step` would report a shortfall: verl's replay
buffer waits until it has a full batch, so a shortfall would never end the step.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dps.logs import RolloutLogWriter
from dps.outcomes import partial_share
from dps.policies.base import Policy, abandon_step, checked_selection, policy_size

POLICY_STATE_FILE = "dps_policy.npz"


@dataclass
class FinishedGroup:
    """One prompt's scored responses: rewards (for the log) and which responses were correct."""

    uid: str
    rewards: list[float]
    correct: list[bool]


@dataclass
class _Step:
    """What the current step handed out and saw."""

    prompt_of: dict[str, int] = field(default_factory=dict)  # uid -> prompt id
    handed_out: int = 0
    ids: list[int] = field(default_factory=list)
    n_correct: list[int] = field(default_factory=list)
    n_rollouts: list[int] = field(default_factory=list)
    rewards: list[list[float]] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    evicted: int = 0
    kept_at_cap: int = 0
    unscored: int = 0


class StepDriver:
    """Drives `policy` one training step at a time for a batch of `batch_size` prompts."""

    def __init__(self, batch_size: int, log_path: str | Path | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.policy: Policy | None = None
        self.log = RolloutLogWriter(log_path) if log_path is not None else None
        self.step = _Step()
        self.policy_seconds = 0.0  # time inside the policy's select / admit / observe, this step
        self.last_metrics: dict[str, float] = {}
        self.last_step = _Step()  # the previous step's record (its uid -> prompt id map, groups)

    # -- the policy ------------------------------------------------------------------------
    def attach(self, policy: Policy, num_prompts: int) -> None:
        if policy_size(policy) != num_prompts:
            raise ValueError(
                f"the policy was built for {policy.num_prompts} prompts but the training set has {num_prompts}"
            )
        self.policy = policy

    def _policy(self) -> Policy:
        if self.policy is None:
            raise RuntimeError("StepDriver: no policy attached (attach() before the first step)")
        return self.policy

    @property
    def budget(self) -> int:
        """Prompts one step may hand out: max_rounds batches, at most the whole training set."""
        policy = self._policy()
        return min(policy.num_prompts, max(1, policy.max_rounds) * self.batch_size)

    @property
    def budget_left(self) -> int:
        return self.budget - self.step.handed_out

    # -- before rollout --------------------------------------------------------------------
    def select(self, count: int, uids: Sequence[str]) -> np.ndarray:
        """The policy's ids for `count` new prompts (fewer when the step's budget runs out),
        registered under `uids` (one per prompt, in order)."""
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
        ids, n_correct, n_rollouts = self._record(new)
        if not gate:
            return set()
        started = time.perf_counter()
        keep = np.asarray(self._policy().admit(ids, n_correct, n_rollouts), dtype=bool)
        self.policy_seconds += time.perf_counter() - started
        if keep.shape != ids.shape:
            raise ValueError(f"admit returned a mask of shape {keep.shape} for {len(ids)} groups")
        return self._evictions(new, keep, kept, in_flight)

    def _record(self, new: list[FinishedGroup]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        for group in new:
            self.step.seen.add(group.uid)
            if not group.correct:  # a failed group with no scored response: nothing to observe
                self.step.unscored += 1
                continue
            self.step.ids.append(self.step.prompt_of[group.uid])
            self.step.n_correct.append(int(sum(group.correct)))
            self.step.n_rollouts.append(len(group.correct))
            self.step.rewards.append([float(r) for r in group.rewards])
        scored = [g for g in new if g.correct]
        return (
            np.array([self.step.prompt_of[g.uid] for g in scored], np.int64),
            np.array([sum(g.correct) for g in scored], np.int64),
            np.array([len(g.correct) for g in scored], np.int64),
        )

    def _evictions(self, new: list[FinishedGroup], keep: np.ndarray, kept: int, in_flight: int) -> set[str]:
        scored = [g for g in new if g.correct]
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
        ids = np.array(step.ids, np.int64)[order]
        n_correct = np.array(step.n_correct, np.int64)[order]
        n_rollouts = np.array(step.n_rollouts, np.int64)[order]
        rewards = [step.rewards[i] for i in order]
        started = time.perf_counter()
        policy.observe(ids, n_correct, n_rollouts)
        self.policy_seconds += time.perf_counter() - started
        if self.log is not None:
            self.log.add(global_step, ids, n_correct, n_rollouts, rewards=rewards)
        metrics = {f"dps/{k}": float(v) for k, v in policy.metrics().items()}
        metrics.update(
            {
                "dps/groups_rolled_out": float(len(ids)),
                "dps/prompts_handed_out": float(step.handed_out),
                "dps/groups_evicted": float(step.evicted),
                "dps/gate_kept_at_cap": float(step.kept_at_cap),
                "dps/groups_unscored": float(step.unscored),
                "dps/partial_share_rolled_out": partial_share(n_correct, n_rollouts) if len(ids) else 0.0,
                "dps/policy_seconds": self.policy_seconds,
            }
        )
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
        self._reset()
