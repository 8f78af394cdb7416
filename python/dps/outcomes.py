"""The vocabulary of a rolled-out group's outcome, written once for every layer.

A group is k responses to one prompt, `n_correct` of them correct. It is *partially solved*
when some but not all are correct (0 < n_correct < n_rollouts): only such a group gives GRPO a
gradient. The *effective ratio* of a batch is the share of its trained groups that were
partially solved. This module imports nothing of dps, so that policies, logs, replay, the
trainer and the integrations all use these definitions.
"""

from __future__ import annotations

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
