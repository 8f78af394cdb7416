"""The oracle (replay only): knows every prompt's true p and picks the B most likely partial."""

from __future__ import annotations

from typing import Any

import numpy as np

from dps.outcomes import GroupOutcomes
from dps.policies.base import Policy
from dps.replay.worlds import World


class Oracle(Policy):
    """Picks the B prompts with the highest chance of a partial group, 1 - p^k - (1-p)^k.

    An upper bound, not a method: it reads the world's p at the current step. Ties are broken
    by a seeded random order. Within one step, repeated selects return fresh prompts; with
    selections in flight, prompts in flight are not selected again (what it observes is never
    used: it knows p).
    """

    def __init__(self, world: World, num_prompts: int | None = None, k: int | None = None, seed: int = 0):
        self.world = world
        self.num_prompts = int(num_prompts if num_prompts is not None else world.num_prompts)
        self.k = int(k if k is not None else world.k)
        self.seed = int(seed)
        self.step = 0
        self._jitter = np.random.default_rng([self.seed, 0x0AC]).random(self.num_prompts) * 1e-9
        self._taken: list[np.ndarray] = []
        self._flying = np.zeros(0, np.int64)

    def select(self, batch_size: int) -> np.ndarray:
        if not 0 < batch_size <= self.num_prompts:
            raise ValueError(f"batch_size {batch_size} must be in [1, {self.num_prompts}]")
        p = np.asarray(self.world.p(self.step), np.float64)[: self.num_prompts]
        score = 1.0 - p**self.k - (1.0 - p) ** self.k + self._jitter
        for ids in (*self._taken, self._flying):
            score[ids] = -np.inf
        avail = int(np.isfinite(score).sum())
        b = min(batch_size, avail)
        if b == 0:
            return np.zeros(0, np.int64)
        top = np.argpartition(-score, b - 1)[:b] if b < len(score) else np.arange(len(score))
        top = top[np.argsort(-score[top], kind="stable")].astype(np.int64)
        self._taken.append(top)
        return top

    def observe(self, prompt_ids: np.ndarray, n_correct: np.ndarray, n_rollouts: np.ndarray) -> None:
        self._next_step(np.zeros(0, np.int64))

    def observe_groups(self, groups: GroupOutcomes, *, in_flight: bool = False) -> None:
        out = self.in_flight()
        if not in_flight:
            return self._next_step(np.zeros(0, np.int64))
        missing = np.setdiff1d(groups.prompt_ids, out)
        if len(missing):
            raise ValueError(f"prompt {int(missing[0])} is not in flight")
        self._next_step(out[~np.isin(out, groups.prompt_ids)])

    def _next_step(self, flying: np.ndarray) -> None:
        self.step += 1
        self._taken = []
        self._flying = flying

    def in_flight(self) -> np.ndarray:
        return np.concatenate([*self._taken, self._flying]).astype(np.int64)

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "seed": self.seed,
            "num_prompts": self.num_prompts,
            "k": self.k,
            "in_flight": self.in_flight(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state.get("num_prompts", -1)) != self.num_prompts:
            raise ValueError("oracle state is for a different number of prompts")
        self.step = int(state["step"])
        self._taken = []
        self._flying = np.asarray(state.get("in_flight", np.zeros(0, np.int64)), np.int64)
