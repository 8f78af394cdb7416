"""A scenario's [world] table: one typed config per kind of world, chosen by its keys, and the world each builds.

With `log = ...` the table is a log world (`LogWorldConfig`), and with `closed_loop = "fit"` or a
gain as well, a closed loop over that log world (`ClosedLoopWorldConfig`); without `log`, a
synthetic world (`SyntheticWorldConfig`). `WorldConfig` is that tagged union, read by
`dps.config.load` like every other config: an unknown key or a wrong-typed value is an error
naming the key.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from dps.config import Check, Count, FieldError, NonNegativeInt, Tagged, flatten, load
from dps.logs import LogSpec
from dps.replay.closedloop import CLOSED_LOOP_KEYS, ClosedLoopSettings, closed_loop_world
from dps.replay.logworld import LogEstimator, LogWorld
from dps.replay.worlds import PRESET_BATCH, PRESETS, SyntheticParams, SyntheticWorld, World

if TYPE_CHECKING:
    from dps.replay.closedloop import TrainingEffect


def _preset_defaults(table: dict[str, Any]) -> dict[str, Any]:
    """The synthetic parameters of the table's preset, under its own."""
    preset = table.get("preset")
    if preset is None:
        return {}
    if preset.lower() not in PRESETS:
        raise FieldError("preset", f"unknown preset {preset!r}; known: {', '.join(sorted(PRESETS))}")
    return PRESETS[preset.lower()]


_FROM_A_LOG = "the closed loop is fitted from a log (log = ...); a synthetic world has train_gain"
_NEEDS_THE_LOOP = 'needs closed_loop = "fit" (or a gain)'


@dataclass
class SyntheticWorldConfig:
    """A synthetic world: a preset's dynamics (or SyntheticParams' defaults), any parameter set over them."""

    preset: str | None = None
    #: the dynamics' seed
    seed: NonNegativeInt = 0
    params: SyntheticParams = field(default_factory=SyntheticParams, metadata=flatten(_preset_defaults))

    KEY_HINTS: ClassVar[dict[str, str]] = dict.fromkeys(CLOSED_LOOP_KEYS, _FROM_A_LOG)

    def build(self) -> World:
        return SyntheticWorld(self.params, seed=self.seed)

    def horizon(self) -> int | None:
        """The world's steps, known before it is built."""
        return self.params.steps

    def default_batch(self) -> int | None:
        """The batch size the paper used with the preset."""
        return PRESET_BATCH.get(self.preset.lower()) if self.preset else None

    def resolved(self, folder: Path) -> SyntheticWorldConfig:
        return self


def _non_empty(v: str) -> bool:
    return bool(v)


@dataclass
class LogWorldBase:
    """What a log world and a closed loop over it share: the log, how to read it, and how to estimate
    what it lacks (docs/replay.md#log-world)."""

    log: Annotated[str, Check(_non_empty, "a path to a log file")]
    #: responses per group where the log has none (default: the log's)
    k: Count | None = None
    #: at least this many prompts (the log's own, and more the log knows nothing about)
    num_prompts: Count | None = None
    spec: LogSpec = field(default_factory=LogSpec, metadata=flatten())
    estimator: LogEstimator = field(default_factory=LogEstimator, metadata=flatten())

    def horizon(self) -> int | None:
        """None: a log world's steps are known once the log is read."""
        return None

    def default_batch(self) -> int | None:
        return None

    def open_loop(self) -> LogWorldConfig:
        """The log world alone."""
        return LogWorldConfig(self.log, self.k, self.num_prompts, spec=self.spec, estimator=self.estimator)


@dataclass
class LogWorldConfig(LogWorldBase):
    """A log world (docs/replay.md#log-world), open-loop."""

    closed_loop: Literal["off", False] = "off"
    #: what the policies observe of a logged group: its counts, or its graded rewards (a log with
    #: reward columns; docs/replay.md#graded-logs)
    rewards: Literal["counts", "graded"] = "counts"

    KEY_HINTS: ClassVar[dict[str, str]] = {key: _NEEDS_THE_LOOP for key in CLOSED_LOOP_KEYS if key != "closed_loop"}

    def build(self) -> World:
        from dps.logs import load_log

        log = load_log(self.log, self.spec)
        num_prompts = max(self.num_prompts or 0, log.info.num_prompts)  # prompts a kinds filter left out stay
        keys = log.keys if log.info.id_mapping == "dense" else None  # else the dense ids are the user's own
        graded = self.rewards == "graded"
        if graded and log.info.rewards is None:
            raise ValueError(
                f'world.rewards: "graded" needs graded rewards in the log (a reward per response, a rewards list, or '
                f'reward_mean and reward_std per group); {self.log} has counts alone (or leave rewards = "counts")'
            )
        return LogWorld(
            log.groups,
            self.estimator,
            k=self.k,
            num_prompts=num_prompts,
            keys=keys,
            graded=graded,
            success_at=self.spec.threshold,
        )

    def resolved(self, folder: Path) -> LogWorldConfig:
        """The same world with its relative paths taken relative to `folder` (the scenario file's)."""
        return dataclasses.replace(self, log=_under(folder, self.log))


def _gain_ok(v: float | str) -> bool:
    return v == "fit" if isinstance(v, str) else math.isfinite(v)


@dataclass
class ClosedLoopWorldConfig(LogWorldBase):
    """A log world with the closed loop (docs/replay.md#closed-loop): the effect of what a replay trains
    on, fitted from the log (`closed_loop = "fit"`) or a logit gain per trained partial group."""

    closed_loop: Annotated[
        float | str, Check(_gain_ok, '"fit", "off" or a number (the logit gain per trained partial group)')
    ] = "fit"
    loop: ClosedLoopSettings = field(default_factory=ClosedLoopSettings, metadata=flatten())

    KEY_HINTS: ClassVar[dict[str, str]] = {
        "rewards": "a closed loop replays counts; graded rewards replay on a log world without closed_loop"
    }

    def __post_init__(self) -> None:
        problem = self.loop.problem(fitted=self.closed_loop == "fit")
        if problem is not None:
            raise FieldError(*problem)

    def build(self, base: World | None = None, effect: TrainingEffect | None = None) -> World:
        """The closed-loop world; `base`: its open-loop world when built already, `effect`: its fitted effect
        (a sweep's worker gets the main process's), so that neither is made again."""
        base = base or self.open_loop().build()
        return closed_loop_world(base, self.log, self.spec, self.closed_loop, self.loop, effect)

    def resolved(self, folder: Path) -> ClosedLoopWorldConfig:
        loop = self.loop
        paths = {key: _under(folder, getattr(loop, key)) for key in ("train_log", "prompt_table") if getattr(loop, key)}
        return dataclasses.replace(self, log=_under(folder, self.log), loop=dataclasses.replace(loop, **paths))


def _under(folder: Path, path: str) -> str:
    p = Path(path)
    return str(p if p.is_absolute() else folder / p)


def world_kind(table: dict[str, Any]) -> type:
    """The kind of world a [world] table describes, by its keys."""
    if not table:
        raise FieldError("", 'missing [world] (preset = "math", or log = "file.parquet")')
    if "log" not in table:
        return SyntheticWorldConfig
    mode = table.get("closed_loop", "off")
    return LogWorldConfig if mode is False or mode == "off" else ClosedLoopWorldConfig


#: The [world] table: a synthetic world, a log world, or a closed loop over a log world.
WorldConfig = Annotated[SyntheticWorldConfig | LogWorldConfig | ClosedLoopWorldConfig, Tagged(world_kind)]


@dataclass
class _WorldTable:
    world: WorldConfig


def load_world(
    table: dict[str, Any], where: str = "scenario"
) -> SyntheticWorldConfig | LogWorldConfig | ClosedLoopWorldConfig:
    """The typed config of a [world] table (its keys as a scenario file writes them); `.build()` makes the world.
    Errors name `where` and the key."""
    config: _WorldTable = load(_WorldTable, {"world": table}, where)
    return config.world
