"""DS, dynamic sampling (DAPO) as an admission gate that wraps any selector."""

from __future__ import annotations

from typing import Any

import numpy as np

from dps.outcomes import GroupOutcomes
from dps.policies.base import Policy
from dps.policies.builtin import DEFAULT_MAX_ROUNDS, Uniform, check_count, checked_groups


class DynamicSampling(Policy):
    """Roll out, keep only effective groups (reward spread > 0: partially solved counts, or
    graded rewards that differ; or a mean inside [lo, hi]), and roll out more prompts from the
    selector until the batch is full or `max_rounds` is reached; then the step trains on what it
    kept and the step loop reports the shortfall.

    `DynamicSampling(num_prompts=N, seed=s)` is DAPO's DS over a uniform dataloader;
    `DynamicSampling(DPS(num_prompts=N))` gates another selector.
    """

    def __init__(
        self,
        selector: Policy | None = None,
        *,
        num_prompts: int | None = None,
        seed: int = 0,
        lo: float | None = None,
        hi: float | None = None,
        max_rounds: int = DEFAULT_MAX_ROUNDS,
    ) -> None:
        if selector is None:
            if num_prompts is None:
                raise TypeError("DynamicSampling needs a selector or num_prompts")
            selector = Uniform(num_prompts, seed=seed)
        elif num_prompts is not None and num_prompts != selector.num_prompts:
            raise ValueError(f"num_prompts {num_prompts} differs from the selector's {selector.num_prompts}")
        if (lo is None) != (hi is None):
            raise ValueError("give both lo and hi for a band on the mean, or neither")
        self.band = None if lo is None or hi is None else (float(lo), float(hi))
        if self.band is not None and not 0.0 <= self.band[0] <= self.band[1] <= 1.0:
            raise ValueError(f"the band [lo, hi] = {list(self.band)} must satisfy 0 <= lo <= hi <= 1")
        self.max_rounds = check_count("max_rounds", max_rounds)
        if self.max_rounds < 1:
            raise ValueError("max_rounds must be at least 1")
        self.selector = selector
        self._kept = 0
        self._rejected = 0
        self._last = {"ds_kept": 0.0, "ds_rejected": 0.0}

    @property
    def num_prompts(self) -> int:  # type: ignore[override]
        return self.selector.num_prompts

    def select(self, batch_size: int) -> np.ndarray:
        return self.selector.select(batch_size)

    def admit(self, prompt_ids: Any, n_correct: Any, n_rollouts: Any) -> np.ndarray:
        return self.admit_groups(GroupOutcomes.counts(prompt_ids, n_correct, n_rollouts))

    def admit_groups(self, groups: GroupOutcomes) -> np.ndarray:
        groups = checked_groups(groups)
        if self.band is None:
            keep = groups.effective.copy()
        else:
            lo, hi = self.band
            keep = (lo <= groups.mean) & (groups.mean <= hi)
        keep &= np.asarray(self.selector.admit_groups(groups), dtype=bool)
        self._kept += int(keep.sum())
        self._rejected += int((~keep).sum())
        return keep

    def observe(self, prompt_ids: Any, n_correct: Any, n_rollouts: Any) -> None:
        self.observe_groups(GroupOutcomes.counts(prompt_ids, n_correct, n_rollouts))

    def observe_groups(self, groups: GroupOutcomes, *, in_flight: bool = False) -> None:
        self.selector.observe_groups(groups, in_flight=in_flight)
        self._end_step()

    def warm_start(self, groups: GroupOutcomes) -> None:
        self.selector.warm_start(groups)
        self._end_step()

    def _end_step(self) -> None:
        self._last = {"ds_kept": float(self._kept), "ds_rejected": float(self._rejected)}
        self._kept = self._rejected = 0

    def in_flight(self) -> np.ndarray:
        return self.selector.in_flight()

    def abandon(self, prompt_ids: Any = None) -> np.ndarray:
        back = self.selector.abandon(prompt_ids)
        if prompt_ids is None:
            self._kept = self._rejected = 0
        return back

    def metrics(self) -> dict[str, float]:
        return {**self.selector.metrics(), **self._last}

    def state_dict(self) -> dict[str, Any]:
        inner = {f"selector.{k}": v for k, v in self.selector.state_dict().items()}
        gate = {"band": list(self.band) if self.band else None, "max_rounds": self.max_rounds}
        return {"gate": gate, "kept": self._kept, "rejected": self._rejected, **inner}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or "gate" not in state:
            raise ValueError("state does not fit DynamicSampling: missing 'gate'")
        gate = {"band": list(self.band) if self.band else None, "max_rounds": self.max_rounds}
        if state["gate"] != gate:
            raise ValueError(f"state was saved with gate options {state['gate']}, this gate has {gate}")
        inner = {k.removeprefix("selector."): v for k, v in state.items() if k.startswith("selector.")}
        self.selector.load_state_dict(inner)
        self._kept, self._rejected = int(state.get("kept", 0)), int(state.get("rejected", 0))
