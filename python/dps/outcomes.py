"""The vocabulary of a rolled-out group's outcome, written once for every layer.

A group is k responses to one prompt, `n_correct` of them correct. It is *partially solved*
when some but not all are correct (0 < n_correct < n_rollouts): only such a group gives GRPO a
gradient. The *effective ratio* of a batch is the share of its trained groups that were
partially solved. A group observed as graded rewards is effective when its rewards' spread
exceeds `SPREAD_TOL`, and is otherwise solved or unsolved by `SUCCESS_AT`; `GroupOutcomes` is
the one object that carries a step's groups, counts or rewards, between every layer. This module
imports nothing of dps, so that policies, logs, replay, the trainer and the integrations all use
these definitions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

#: A group's state by its outcome, in the order of `group_states` (and of a policy's predicted states).
STATE_NAMES = ("unsolved", "partial", "solved")


def partially_solved(n_correct: Any, n_rollouts: Any) -> np.ndarray:
    """True for each group with some but not all responses correct (0 < n_correct < n_rollouts)."""
    c, n = np.asarray(n_correct), np.asarray(n_rollouts)
    return (c > 0) & (c < n)


def effective_ratio(partial_groups: Any, trained_groups: Any) -> float:
    """The share of trained groups that were partially solved; 0.0 when nothing was trained."""
    return float(partial_groups / trained_groups) if trained_groups else 0.0


def partial_share(n_correct: Any, n_rollouts: Any) -> float:
    """The share of the given groups that were partially solved (NaN for no groups)."""
    partial = partially_solved(n_correct, n_rollouts)
    return float(partial.mean()) if partial.size else float("nan")


def group_states(n_correct: Any, n_rollouts: Any) -> np.ndarray:
    """Each group's state: 0 unsolved (none correct), 1 partial, 2 solved (all correct)."""
    c, n = np.asarray(n_correct), np.asarray(n_rollouts)
    return np.where(c == 0, 0, np.where(c >= n, 2, 1)).astype(np.int64)


#: A graded group is *effective* (its rewards differ, so GRPO's advantages are not all zero) when
#: the population standard deviation of its rewards exceeds this. verl's `filter_groups` keeps
#: std > 0; rewards that are all exactly equal have a spread of 0 here whatever the tolerance,
#: and 1e-8 (the absolute tolerance of TRL's own zero-std test) keeps rewards that differ only by
#: float rounding from counting as a spread.
SPREAD_TOL = 1e-8
#: A graded group whose rewards are all equal is *solved* when that reward is at least this, else
#: *unsolved* (what DPS, GRESO and HR see of it): dps's correctness threshold for a scored
#: response everywhere else (a log's `threshold`, TRL's `correct_threshold`). For 0/1 rewards any
#: value in (0, 1] gives the states of the counts (docs/method.md#graded-rewards).
SUCCESS_AT = 0.5


def int_array(name: str, values: Any) -> np.ndarray:
    """A 1-d contiguous int64 array; floats are refused with a TypeError (a mean reward is not a count)."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {array.dtype}")
    if array.dtype.kind == "u" and array.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name} holds values too large for int64")
    return np.ascontiguousarray(array, dtype=np.int64)


def _per_group(name: str, array: np.ndarray, groups: int) -> np.ndarray:
    if array.shape != (groups,):
        raise ValueError(f"lengths differ: prompt_ids has {groups}, {name} {len(array)} (one value per group)")
    return array


def _finite(name: str, values: Any, ids: np.ndarray) -> np.ndarray:
    """One finite float per group; NaN or infinity is refused, naming the group and its prompt."""
    array = np.asarray(values)
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold numbers, got dtype {array.dtype}")
    array = _per_group(name, np.ascontiguousarray(array, dtype=np.float64), len(ids))
    bad = np.flatnonzero(~np.isfinite(array))
    if len(bad):
        i = int(bad[0])
        raise ValueError(f"{name}[{i}] (prompt {int(ids[i])}) is {array[i]}: rewards must be finite")
    return array


def _setting(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


@dataclass(frozen=True, eq=False)
class GroupOutcomes:
    """Scored groups, one entry per group: what a rollout returns to the step loop, what a gate
    admits from and what a policy observes (`Policy.observe_groups`). One object for every layer.

    Group i is `n_rollouts[i]` responses to prompt `prompt_ids[i]`, given as counts
    (`n_correct[i]` correct) or as graded rewards (`reward_mean[i]` and `reward_std[i]`, the
    mean and population standard deviation of its rewards), or both: the rewards then decide
    what a policy sees, the counts are kept for metrics. Build one with `counts`,
    `from_rewards` or `from_moments`; a bad value is refused at construction, naming the group.

    `spread_tol` and `success_at` map a graded group to the states the policies model
    (`states`): effective when its spread exceeds `spread_tol`, else solved when its reward is
    at least `success_at`, else unsolved (docs/method.md#graded-rewards).
    """

    prompt_ids: np.ndarray
    n_rollouts: np.ndarray
    n_correct: np.ndarray | None = None
    reward_mean: np.ndarray | None = None
    reward_std: np.ndarray | None = None
    spread_tol: float = SPREAD_TOL
    success_at: float = SUCCESS_AT

    def __post_init__(self) -> None:
        ids = int_array("prompt_ids", self.prompt_ids)
        sizes = _per_group("n_rollouts", int_array("n_rollouts", self.n_rollouts), len(ids))
        if np.any(sizes < 1):
            i = int(np.argmax(sizes < 1))
            raise ValueError(f"n_rollouts[{i}] = {sizes[i]}: a group needs at least one rollout")
        correct = None
        if self.n_correct is not None:
            correct = _per_group("n_correct", int_array("n_correct", self.n_correct), len(ids))
            if np.any(correct < 0):
                i = int(np.argmax(correct < 0))
                raise ValueError(f"n_correct[{i}] = {correct[i]} is negative")
            if np.any(correct > sizes):
                i = int(np.argmax(correct > sizes))
                raise ValueError(f"n_correct[{i}] = {correct[i]} exceeds n_rollouts[{i}] = {sizes[i]}")
        if (self.reward_mean is None) != (self.reward_std is None):
            raise ValueError("give reward_mean and reward_std together (a graded group's mean and spread)")
        mean = std = None
        if self.reward_mean is not None:
            mean = _finite("reward_mean", self.reward_mean, ids)
            std = _finite("reward_std", self.reward_std, ids)
            if np.any(std < 0):
                i = int(np.argmax(std < 0))
                raise ValueError(f"reward_std[{i}] (prompt {int(ids[i])}) is {std[i]}: a spread is >= 0")
        elif correct is None:
            raise ValueError("groups need counts (n_correct) or rewards (reward_mean and reward_std)")
        tol, at = _setting("spread_tol", self.spread_tol), _setting("success_at", self.success_at)
        if tol < 0:
            raise ValueError(f"spread_tol must be >= 0, got {tol}")
        fields: dict[str, Any] = {"prompt_ids": ids, "n_rollouts": sizes, "n_correct": correct}
        fields.update(reward_mean=mean, reward_std=std, spread_tol=tol, success_at=at)
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    @classmethod
    def counts(cls, prompt_ids: Any, n_correct: Any, n_rollouts: Any) -> GroupOutcomes:
        """Groups of `n_correct` correct responses out of `n_rollouts` (integers, never a mean reward)."""
        return cls(prompt_ids, n_rollouts, n_correct=n_correct)

    @classmethod
    def from_moments(
        cls,
        prompt_ids: Any,
        n_rollouts: Any,
        reward_mean: Any,
        reward_std: Any,
        *,
        n_correct: Any = None,
        spread_tol: float = SPREAD_TOL,
        success_at: float = SUCCESS_AT,
    ) -> GroupOutcomes:
        """Graded groups given by each group's mean reward and population standard deviation."""
        return cls(prompt_ids, n_rollouts, n_correct, reward_mean, reward_std, spread_tol, success_at)

    @classmethod
    def from_rewards(
        cls,
        prompt_ids: Any,
        rewards: Any,
        n_rollouts: Any = None,
        *,
        n_correct: Any = None,
        spread_tol: float = SPREAD_TOL,
        success_at: float = SUCCESS_AT,
    ) -> GroupOutcomes:
        """Graded groups from each response's reward: a (groups, k) array, or with `n_rollouts`
        (each group's number of responses) the rewards of every group one after the other.
        NaN or infinite rewards are refused, naming the group and the response."""
        ids = int_array("prompt_ids", prompt_ids)
        flat, sizes = _response_rewards(rewards, n_rollouts, len(ids))
        bad = np.flatnonzero(~np.isfinite(flat))
        if len(bad):
            group = int(np.searchsorted(np.cumsum(sizes), bad[0], side="right"))
            response = int(bad[0] - (np.cumsum(sizes)[group - 1] if group else 0))
            raise ValueError(
                f"the reward of response {response} of group {group} (prompt {int(ids[group])}) is "
                f"{flat[bad[0]]}: rewards must be finite"
            )
        mean, std = group_moments(flat, sizes)
        return cls(ids, sizes, n_correct, mean, std, spread_tol, success_at)

    def __len__(self) -> int:
        return len(self.prompt_ids)

    @property
    def graded(self) -> bool:
        """Whether the groups carry rewards (which then decide what a policy sees)."""
        return self.reward_mean is not None

    @property
    def mean(self) -> np.ndarray:
        """Each group's mean reward, or its share of correct responses."""
        if self.reward_mean is not None:
            return self.reward_mean
        assert self.n_correct is not None
        return self.n_correct / self.n_rollouts

    @property
    def successes(self) -> np.ndarray:
        """What a policy of success rates counts: the correct responses, or k x the mean reward."""
        if self.reward_mean is not None:
            return self.reward_mean * self.n_rollouts
        assert self.n_correct is not None
        return self.n_correct.astype(np.float64)

    @property
    def states(self) -> np.ndarray:
        """Each group's state: 0 unsolved, 1 partial (effective), 2 solved."""
        if self.reward_mean is None or self.reward_std is None:
            return group_states(self.n_correct, self.n_rollouts)
        solved = np.where(self.reward_mean >= self.success_at, 2, 0)
        return np.where(self.reward_std > self.spread_tol, 1, solved).astype(np.int64)

    @property
    def effective(self) -> np.ndarray:
        """True for each group that gives GRPO a gradient: partially solved, or a graded group
        whose rewards' spread exceeds `spread_tol`."""
        return self.states == 1

    def take(self, index: Any) -> GroupOutcomes:
        """The groups at `index` (indices or a boolean mask), with the same rule."""

        def pick(array: np.ndarray | None) -> np.ndarray | None:
            return None if array is None else array[index]

        return replace(
            self,
            prompt_ids=self.prompt_ids[index],
            n_rollouts=self.n_rollouts[index],
            n_correct=pick(self.n_correct),
            reward_mean=pick(self.reward_mean),
            reward_std=pick(self.reward_std),
        )

    @classmethod
    def concat(cls, parts: Sequence[GroupOutcomes]) -> GroupOutcomes:
        """Groups one part after the other; the parts must carry the same fields and rule."""
        if not parts:
            return cls.counts(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
        first = parts[0]
        for part in parts[1:]:
            same = (part.graded, part.n_correct is None, part.spread_tol, part.success_at)
            if same != (first.graded, first.n_correct is None, first.spread_tol, first.success_at):
                raise ValueError("groups to join must all carry counts, or all rewards, under one rule")

        def joined(name: str) -> np.ndarray | None:
            arrays = [getattr(p, name) for p in parts]
            return None if arrays[0] is None else np.concatenate(arrays)

        arrays: dict[str, Any] = {name: joined(name) for name in _ARRAYS}
        return replace(first, **arrays)


_ARRAYS = ("prompt_ids", "n_rollouts", "n_correct", "reward_mean", "reward_std")


def _response_rewards(rewards: Any, n_rollouts: Any, groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Every response's reward, one group after the other, and each group's number of responses."""
    if n_rollouts is None:
        table = np.asarray(rewards)
        if table.ndim != 2 or table.shape[0] != groups:
            raise ValueError(
                f"rewards has shape {table.shape}; give a ({groups}, k) array of each group's rewards, or "
                "the rewards one group after the other with n_rollouts"
            )
        flat = table.reshape(-1)
        sizes = np.full(groups, table.shape[1], np.int64)
    else:
        flat = np.asarray(rewards)
        sizes = _per_group("n_rollouts", int_array("n_rollouts", n_rollouts), groups)
        if flat.ndim != 1 or len(flat) != int(sizes.sum()):
            raise ValueError(f"rewards has shape {flat.shape}; n_rollouts says {int(sizes.sum())} responses")
    if flat.dtype.kind not in "fiub":
        raise TypeError(f"rewards must hold numbers, got dtype {flat.dtype}")
    if np.any(sizes < 1):
        i = int(np.argmax(sizes < 1))
        raise ValueError(f"group {i} has {sizes[i]} responses: a group needs at least one")
    return np.ascontiguousarray(flat, dtype=np.float64), sizes


def group_moments(rewards: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each group's mean reward and population standard deviation (ddof 0), from every
    response's reward one group after the other; exactly 0 where a group's rewards are all equal."""
    if len(sizes) == 0:
        return np.zeros(0), np.zeros(0)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    mean = np.add.reduceat(rewards, starts) / sizes
    deviation = rewards - np.repeat(mean, sizes)
    std = np.sqrt(np.add.reduceat(deviation * deviation, starts) / sizes)
    equal = np.maximum.reduceat(rewards, starts) == np.minimum.reduceat(rewards, starts)
    return mean, np.where(equal, 0.0, std)
