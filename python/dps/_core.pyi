"""Type stubs for the Rust extension `dps._core` (hand-written; checked by mypy's stubtest)."""

import os
from typing import ClassVar, final

import numpy as np
import numpy.typing as npt

__all__ = [
    "DpsCore",
    "UniformCore",
    "HistoryCore",
    "MoppsCore",
    "GresoCore",
    "BotsCore",
    "admit_mask",
    "top_k",
    "LogRows",
    "hashed_uniforms",
    "draw_correct",
    "__version__",
]

__version__: str

_Ids = npt.NDArray[np.int64]

class _Selector:
    """What every policy core has (`selector_methods!` in rust/python.rs); not a runtime class."""

    @property
    def num_prompts(self) -> int: ...
    @property
    def step(self) -> int: ...
    def select(self, batch_size: int) -> _Ids: ...
    def observe(self, prompt_ids: _Ids, n_correct: _Ids, n_rollouts: _Ids) -> None: ...

@final
class DpsCore(_Selector):
    DEFAULT_DECAY: ClassVar[float]
    def __new__(
        cls,
        num_prompts: int,
        decay: float,
        alpha0: list[float],
        pi0: list[float],
        entropy_weight: float,
        seed: int,
        candidate_ratio: float | None = None,
    ) -> DpsCore: ...
    def predicted(self, prompt_ids: _Ids) -> npt.NDArray[np.float64]: ...
    def scores(self) -> npt.NDArray[np.float32]: ...
    def confusion(self) -> npt.NDArray[np.uint64]: ...
    def bytes_per_prompt(self) -> float: ...
    def state(self) -> dict[str, object]: ...
    def load_state(
        self,
        alpha: npt.NDArray[np.float32],
        post: npt.NDArray[np.float32],
        step: int,
        pending: _Ids,
        confusion: _Ids,
        pool_epoch: int,
        pool_cursor: int,
        pool_order: _Ids,
    ) -> None: ...

@final
class UniformCore(_Selector):
    def __new__(cls, num_prompts: int, seed: int) -> UniformCore: ...
    def state(self, with_order: bool = True) -> dict[str, object]: ...
    def load_state(self, step: int, pending: _Ids, epoch: int, cursor: int, order: _Ids) -> None: ...

@final
class HistoryCore(_Selector):
    def __new__(cls, num_prompts: int, seed: int) -> HistoryCore: ...
    @property
    def excluded_count(self) -> int: ...
    @property
    def resets(self) -> int: ...
    def state(self) -> dict[str, object]: ...
    def load_state(
        self,
        step: int,
        resets: int,
        excluded: npt.NDArray[np.uint8],
        pending: _Ids,
        epoch: int,
        cursor: int,
        order: _Ids,
    ) -> None: ...

@final
class MoppsCore(_Selector):
    def __new__(
        cls,
        num_prompts: int,
        decay: float,
        prior_a: float,
        prior_b: float,
        target: float,
        band: tuple[float, float] | None,
        seed: int,
        candidate_ratio: float | None = None,
    ) -> MoppsCore: ...
    def predicted(self, prompt_ids: _Ids, n_rollouts: _Ids) -> npt.NDArray[np.float64]: ...
    def state(self) -> dict[str, object]: ...
    def load_state(
        self,
        step: int,
        a: npt.NDArray[np.float64],
        b: npt.NDArray[np.float64],
        pending: _Ids,
        pool_epoch: int,
        pool_cursor: int,
        pool_order: _Ids,
    ) -> None: ...

@final
class GresoCore(_Selector):
    def __new__(
        cls,
        num_prompts: int,
        p_easy: float,
        p_hard: float,
        step_size: float,
        p_min: float,
        p_max: float,
        min_keep: float,
        target_easy: float,
        target_hard: float,
        adapt_from_epoch: int,
        seed: int,
    ) -> GresoCore: ...
    @property
    def p_easy(self) -> float: ...
    @property
    def p_hard(self) -> float: ...
    @property
    def skipped(self) -> int: ...
    @property
    def epoch_index(self) -> int: ...
    def predicted(self, prompt_ids: _Ids) -> npt.NDArray[np.float64]: ...
    def state(self) -> dict[str, object]: ...
    def load_state(
        self,
        step: int,
        calls: int,
        skipped: int,
        p_easy_now: float,
        p_hard_now: float,
        easy: npt.NDArray[np.uint16],
        hard: npt.NDArray[np.uint16],
        pending: _Ids,
        epoch: int,
        cursor: int,
        order: _Ids,
    ) -> None: ...

@final
class BotsCore(_Selector):
    def __new__(
        cls,
        num_prompts: int,
        forgetting: float,
        implicit_weight: float,
        prior_a: float,
        prior_b: float,
        target: float,
        pseudo_count: float | None,
        smoothing: float,
        thompson: bool,
        seed: int,
        candidate_ratio: float | None = None,
        anchors: npt.NDArray[np.float64] | None = None,
    ) -> BotsCore: ...
    @property
    def capability(self) -> float | None: ...
    def predicted(self, prompt_ids: _Ids, n_rollouts: _Ids) -> npt.NDArray[np.float64]: ...
    def state(self) -> dict[str, object]: ...
    def load_state(
        self,
        step: int,
        a: npt.NDArray[np.float64],
        b: npt.NDArray[np.float64],
        capability: float,
        pending: _Ids,
        pool_epoch: int,
        pool_cursor: int,
        pool_order: _Ids,
    ) -> None: ...

def admit_mask(n_correct: _Ids, n_rollouts: _Ids, band: tuple[float, float] | None = None) -> npt.NDArray[np.bool_]: ...
def top_k(scores: npt.NDArray[np.float32], k: int, seed: int) -> _Ids: ...

@final
class LogRows:
    """A rollout log's groups sorted by (prompt, step), with the log world's model (rust/logworld.rs)."""

    def __new__(cls, step: _Ids, prompt_id: _Ids, n_correct: _Ids, n_rollouts: _Ids, origin: int) -> LogRows: ...
    @property
    def rows(self) -> int: ...
    @property
    def message_bytes(self) -> int: ...
    def save(self, path: str | os.PathLike[str]) -> None: ...
    @staticmethod
    def load(path: str | os.PathLike[str]) -> LogRows: ...
    def steps(self) -> _Ids: ...
    def offsets(self) -> _Ids: ...
    def pairs(self) -> _Ids: ...
    def pair_index(self) -> npt.NDArray[np.uint32]: ...
    def row_info(self, rows: _Ids) -> tuple[_Ids, _Ids, _Ids, _Ids]: ...
    def subset(self, prompts: _Ids) -> LogRows: ...
    def build(
        self,
        emission: npt.NDArray[np.float32],
        prior: npt.NDArray[np.float64],
        prior_start: float,
        prior_scale: float,
        rate: float,
        floor: float,
        p_grid: npt.NDArray[np.float64],
        float16: bool,
        every: int,
    ) -> None: ...
    def messages(self, forward: bool) -> npt.NDArray[np.float32]: ...
    def posterior(self, t: _Ids, ids: _Ids, include_cell: bool) -> npt.NDArray[np.float64]: ...
    def held_out_posterior(self, rows: _Ids) -> npt.NDArray[np.float64]: ...
    def lookup(self, t: int, ids: _Ids, seed: int) -> tuple[npt.NDArray[np.bool_], _Ids, _Ids]: ...
    def draw(self, t: int, ids: _Ids, draw_seed: int, mean: bool) -> npt.NDArray[np.float64]: ...
    def rollout(self, t: int, ids: _Ids, seed: int, k: int, draw_seed: int, mean: bool) -> tuple[_Ids, _Ids]: ...

def hashed_uniforms(seed: int, step: int, ids: _Ids, k: int) -> npt.NDArray[np.float64]: ...
def draw_correct(seed: int, step: int, ids: _Ids, p: npt.NDArray[np.float64], k: int) -> _Ids: ...
