"""Type stubs for the Rust extension `dps._core` (hand-written; checked by mypy's stubtest)."""

import os
from typing import ClassVar, Generic, NotRequired, TypedDict, TypeVar, final

import numpy as np
import numpy.typing as npt
from typing_extensions import disjoint_base

__all__ = [
    "Selector",
    "DpsCore",
    "UniformCore",
    "HistoryCore",
    "MoppsCore",
    "GresoCore",
    "BotsCore",
    "RateDpsCore",
    "admit_mask",
    "top_k",
    "LogRows",
    "hashed_uniforms",
    "draw_correct",
    "__version__",
]

__version__: str

_Ids = npt.NDArray[np.int64]
_F32 = npt.NDArray[np.float32]
_F64 = npt.NDArray[np.float64]
_Config = TypeVar("_Config")
_State = TypeVar("_State")

# Each policy's options and state, as the core's records define them (rust/<policy>.rs,
# `record!`); tests/core/test_stubs.py checks these against `state_fields()` and `config()`.

class _SeedConfig(TypedDict):
    seed: int

class _DpsConfig(TypedDict):
    decay: float
    prior_alpha: list[list[float]]
    prior_state: list[float]
    entropy_weight: float
    candidate_ratio: float | None
    seed: int

class _DpsState(TypedDict):
    alpha: _F32
    post: _F32
    step: int
    pending: _Ids
    in_flight: _Ids
    confusion: _Ids
    pool_epoch: int
    pool_cursor: int
    pool_order: _Ids

class _UniformState(TypedDict):
    step: int
    pending: _Ids
    in_flight: _Ids
    epoch: int
    cursor: int
    order: NotRequired[_Ids]  # left out by state(with_order=False)

class _HistoryState(TypedDict):
    step: int
    resets: int
    excluded: npt.NDArray[np.uint8]
    pending: _Ids
    in_flight: _Ids
    epoch: int
    cursor: int
    order: _Ids

class _MoppsConfig(TypedDict):
    decay: float
    prior_a: float
    prior_b: float
    target: float
    threshold: tuple[float, float] | None
    candidate_ratio: float | None
    seed: int

class _MoppsState(TypedDict):
    step: int
    a: _F64
    b: _F64
    pending: _Ids
    in_flight: _Ids
    pool_epoch: int
    pool_cursor: int
    pool_order: _Ids

class _GresoConfig(TypedDict):
    p_easy: float
    p_hard: float
    step_size: float
    p_min: float
    p_max: float
    min_keep: float
    target_easy: float
    target_hard: float
    adapt_from_epoch: int
    seed: int

class _GresoState(TypedDict):
    step: int
    calls: int
    skipped: int
    p_easy_now: float
    p_hard_now: float
    easy: npt.NDArray[np.uint16]
    hard: npt.NDArray[np.uint16]
    pending: _Ids
    in_flight: _Ids
    epoch: int
    cursor: int
    order: _Ids

class _BotsConfig(TypedDict):
    forgetting: float
    implicit_weight: float
    prior_a: float
    prior_b: float
    target: float
    pseudo_count: float | None
    smoothing: float
    thompson: bool
    candidate_ratio: float | None
    seed: int

class _BotsState(TypedDict):
    step: int
    a: _F64
    b: _F64
    capability: float | None
    pending: _Ids
    in_flight: _Ids
    pool_epoch: int
    pool_cursor: int
    pool_order: _Ids

class _RateDpsConfig(TypedDict):
    grid: int
    logit_max: float
    switch_rate: float | None
    switch_rates: list[float]
    revisit: float
    revisit_by: str
    selection: str
    group_size: int | None
    family_shrink: float
    fit_sample: int
    seed: int

class _RateDpsState(TypedDict):
    step: int
    last_step: _Ids
    group_size: int
    switch_rate: float
    pending: _Ids
    in_flight: _Ids
    post: _F64
    population: _F64
    switches: _F64
    mixture: _F64
    unswitched: _F64
    family_sums: _F64
    log_predictive: _F64
    groups: _Ids
    shadow_post: _F64
    shadow_population: _F64
    shadow_switches: _F64
    shadow_mixture: _F64
    shadow_unswitched: _F64
    shadow_family_sums: _F64
    shadow_log_predictive: _F64
    shadow_groups: _Ids

@disjoint_base
class Selector(Generic[_Config, _State]):
    """A policy of the core (the `Selector` trait of rust/selector.rs): every class below is one."""

    @property
    def num_prompts(self) -> int: ...
    @property
    def step(self) -> int: ...
    def select(self, batch_size: int) -> _Ids: ...
    def observe(self, prompt_ids: _Ids, n_correct: _Ids, n_rollouts: _Ids) -> None: ...
    def observe_groups(
        self,
        prompt_ids: _Ids,
        n_rollouts: _Ids,
        *,
        n_correct: _Ids | None = None,
        reward_mean: _F64 | None = None,
        reward_std: _F64 | None = None,
        spread_tol: float,
        success_at: float,
        arrival: str,
    ) -> None: ...
    def hand_back(self, prompt_ids: _Ids) -> _Ids: ...
    def in_flight(self) -> _Ids: ...
    def config(self) -> _Config: ...
    def state(self) -> _State: ...
    def state_fields(self) -> list[tuple[str, str, tuple[int | None, ...] | None]]: ...
    def load_state(self, state: _State) -> None: ...

@final
class DpsCore(Selector[_DpsConfig, _DpsState]):
    DEFAULT_DECAY: ClassVar[float]
    PRIORS: ClassVar[dict[str, list[list[float]]]]
    def __new__(cls, num_prompts: int, config: _DpsConfig) -> DpsCore: ...
    def predicted(self, prompt_ids: _Ids) -> _F64: ...
    def scores(self) -> _F32: ...
    def confusion(self) -> npt.NDArray[np.uint64]: ...
    def bytes_per_prompt(self) -> float: ...

@final
class UniformCore(Selector[_SeedConfig, _UniformState]):
    def __new__(cls, num_prompts: int, config: _SeedConfig) -> UniformCore: ...
    def state(self, with_order: bool = True) -> _UniformState: ...

@final
class HistoryCore(Selector[_SeedConfig, _HistoryState]):
    def __new__(cls, num_prompts: int, config: _SeedConfig) -> HistoryCore: ...
    @property
    def excluded_count(self) -> int: ...
    @property
    def resets(self) -> int: ...

@final
class MoppsCore(Selector[_MoppsConfig, _MoppsState]):
    def __new__(cls, num_prompts: int, config: _MoppsConfig) -> MoppsCore: ...
    def predicted(self, prompt_ids: _Ids, n_rollouts: _Ids) -> _F64: ...

@final
class GresoCore(Selector[_GresoConfig, _GresoState]):
    def __new__(cls, num_prompts: int, config: _GresoConfig) -> GresoCore: ...
    @property
    def p_easy(self) -> float: ...
    @property
    def p_hard(self) -> float: ...
    @property
    def skipped(self) -> int: ...
    @property
    def epoch_index(self) -> int: ...
    def predicted(self, prompt_ids: _Ids) -> _F64: ...

@final
class BotsCore(Selector[_BotsConfig, _BotsState]):
    def __new__(cls, num_prompts: int, config: _BotsConfig, anchors: _F64 | None = None) -> BotsCore: ...
    @property
    def capability(self) -> float | None: ...
    def predicted(self, prompt_ids: _Ids, n_rollouts: _Ids) -> _F64: ...

@final
class RateDpsCore(Selector[_RateDpsConfig, _RateDpsState]):
    SWITCH_RATES: ClassVar[list[float]]
    START_SWITCH_RATE: ClassVar[float]
    FIT_SAMPLE: ClassVar[int]
    SELECTION: ClassVar[str]
    SELECTIONS: ClassVar[list[str]]
    REVISIT_BY: ClassVar[str]
    REVISIT_BYS: ClassVar[list[str]]
    def __new__(cls, num_prompts: int, config: _RateDpsConfig, families: _Ids | None = None) -> RateDpsCore: ...
    def predicted(self, prompt_ids: _Ids, n_rollouts: _Ids) -> _F64: ...
    def rate_distribution(self, prompt_ids: _Ids) -> _F64: ...
    def scores(self) -> _F64: ...
    @property
    def rates(self) -> _F64: ...
    @property
    def group_size(self) -> int: ...
    def metrics(self) -> dict[str, float]: ...
    def bytes_per_prompt(self) -> float: ...

def admit_mask(n_correct: _Ids, n_rollouts: _Ids, band: tuple[float, float] | None = None) -> npt.NDArray[np.bool_]: ...
def top_k(scores: npt.NDArray[np.float32], k: int, seed: int) -> _Ids: ...

@final
class LogRows:
    """A rollout log's groups sorted by (prompt, step), with the log world's model (rust/logworld/)."""

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
