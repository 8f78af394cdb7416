"""Scenario files (TOML): a world, run settings, and the policies to replay.

```toml
name = "math"                 # optional
description = "..."           # optional

[world]                       # one of three kinds (dps.replay.worldconfig.WorldConfig):
preset = "math"               # synthetic: a preset ("math", "countdown") and any SyntheticParams field over it
seed = 0                      #   (num_prompts, steps, k, ...); seed: the dynamics' seed
# log = "logs/run.parquet"    # a log world (path relative to this file): k, num_prompts, the estimator
#   (dps.replay.logworld.LogEstimator: switch_rate, prior_half_life, draw, extrapolate, population) and
#   how to read the log (dps.logs.LogSpec: threshold, format, layout, prompt_ids, group_by, kinds and
#   [world.columns], e.g. step = "global_step")
# closed_loop = "fit"         # a log world with the closed loop ("fit" or a gain; "off" is the plain log
#   world), shaped by dps.replay.closedloop.ClosedLoopSettings: train_log, effect_half_life,
#   effect_saturation, effect_cap, prompt_table with similar_by / drift_by

[run]
steps = 360                   # default: the world's horizon
batch_size = 256              # default: the preset's batch size
seeds = [0, 1, 2]             # replay seeds: policy seed and outcome noise
workers = 2                   # processes; default: all cores
interval_draws = 40           # closed loop: replays with effects drawn from the fit, for the 90% interval (0: none)
lag = 0                       # selections in flight: step t is selected having observed steps up to t - 1 - lag

[[policies]]
name = "DPS"                  # label in the report (default: type)
type = "dps"                  # see POLICY_TYPES, or "python" with class = "module:Class"
decay = 0.7                   # passed to the constructor
[policies.sweep]              # optional: a grid, one policy per combination
decay = [0.5, 0.7, 1.0]
```

Every table is read by `dps.config.load` (the trainer's config too): an unknown key or a
wrong-typed value is a ValueError naming the file and the key, and the `--set` that gave it.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import itertools
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar

from dps.config import (
    Check,
    Count,
    FieldError,
    NonNegativeInt,
    apply_sets,
    check_value,
    load,
    read_toml,
    rest,
    toml_key,
)
from dps.policies.base import Policy
from dps.policies.gate import DynamicSampling
from dps.policies.registry import GATES, SELECTORS, make_policy
from dps.replay.worldconfig import ClosedLoopWorldConfig, LogWorldConfig, SyntheticWorldConfig, WorldConfig
from dps.replay.worlds import World

#: Policy types a scenario may name (case-insensitive): the registry's, the oracle, and
#: "python" with class = "module:Class".
POLICY_TYPES = {*SELECTORS, *GATES, "oracle", "python"}
#: The most seeds a scenario may replay (each policy once per seed).
MAX_SEEDS = 10_000
#: Replays per policy with closed-loop effects drawn from the fit, for the interval (the default with a closed loop).
DEFAULT_INTERVAL_DRAWS = 40
#: What `--set` may set: name, description, and keys of [world] and [run].
SETTABLE = ("name", "description", "world", "run")


# --------------------------------------------------------------------------------------------
# The file's tables


def _seeds_ok(v: int | list[int]) -> bool:
    return 1 <= v <= MAX_SEEDS if isinstance(v, int) else 0 < len(v) <= MAX_SEEDS and all(s >= 0 for s in v)


@dataclass
class RunConfig:
    """The [run] table: how long, how wide and how often to replay."""

    #: default: the world's horizon
    steps: Count | None = None
    #: default: the preset's batch size (a log world needs one)
    batch_size: Count | None = None
    #: replay seeds (policy seed and outcome noise): a count (3: 0, 1, 2) or a list
    seeds: Annotated[
        int | list[int],
        Check(_seeds_ok, f"a count >= 1 or a non-empty list of integers >= 0 (at most {MAX_SEEDS:,} seeds)"),
    ] = 1
    #: processes; default: all cores
    workers: Count | None = None
    #: closed loop: replays with effects drawn from the fit, for the 90% interval (0: none);
    #: default DEFAULT_INTERVAL_DRAWS
    interval_draws: NonNegativeInt | None = None
    #: selections in flight: the policies select step t having observed the groups of steps up
    #: to t - 1 - lag (an asynchronous trainer's); 0 is lockstep
    lag: NonNegativeInt = 0

    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)


def _sweep_ok(v: dict[str, list[Any]]) -> bool:
    return all(v.values())


@dataclass
class PolicyEntry:
    """One [[policies]] table: a policy type, its label, options for its constructor and an optional grid."""

    type: str
    #: the label in the report (default: type)
    name: str | None = None
    #: "module:Class" for type = "python"
    class_: str | None = field(default=None, metadata=toml_key("class"))
    #: a grid: one policy per combination of these options' values
    sweep: Annotated[dict[str, list[Any]], Check(_sweep_ok, "a table of non-empty lists")] = field(default_factory=dict)
    #: every other key: passed to the constructor
    options: dict[str, Any] = field(default_factory=dict, metadata=rest())

    KEY_HINTS: ClassVar[dict[str, str]] = {"type": f"missing (one of {', '.join(sorted(POLICY_TYPES))})"}

    def __post_init__(self) -> None:
        if self.type.lower() not in POLICY_TYPES:
            known = ", ".join(sorted(POLICY_TYPES))
            raise FieldError("type", f"unknown policy type {self.type!r}; known: {known}")
        if self.type.lower() == "python" and self.class_ is None:
            raise FieldError("class", 'type "python" needs class = "module:Class"')


@dataclass
class ScenarioFile:
    """A scenario file as written: its tables, each checked."""

    world: WorldConfig
    name: str | None = None
    description: str = ""
    run: RunConfig = field(default_factory=RunConfig)
    policies: list[PolicyEntry] = field(default_factory=list)

    KEY_HINTS: ClassVar[dict[str, str]] = {"world": 'missing [world] (preset = "math", or log = "file.parquet")'}


# --------------------------------------------------------------------------------------------
# The scenario, resolved


@dataclass
class PolicySpec:
    name: str
    type: str
    params: dict[str, Any] = field(default_factory=dict)
    cls: str | None = None  # "module:Class" for type = "python"
    import_dirs: tuple[str, ...] = ()  # where a "python" module may live: the scenario's folder, the current one


@dataclass
class Scenario:
    name: str
    world: SyntheticWorldConfig | LogWorldConfig | ClosedLoopWorldConfig
    policies: list[PolicySpec]
    steps: int
    batch_size: int
    seeds: list[int]
    workers: int
    source: Path | None = None
    description: str = ""
    #: closed loop: replays with effects drawn from what the log allows (the interval); 0: none
    interval_draws: int = 0
    #: steps between a selection and the observation of its groups ([run] lag)
    lag: int = 0

    def build_world(self) -> World:
        return self.world.build()


def parse_scenario(data: dict[str, Any], source: Path | None = None, origins: dict[str, str] | None = None) -> Scenario:
    """The scenario of a TOML table (`source`: its file, for messages and relative paths; `origins`:
    the `--set` items that gave values, from `dps.config.apply_sets`)."""
    where = str(source) if source else "scenario"
    file: ScenarioFile = load(ScenarioFile, data, where, origins)
    world = file.world.resolved(source.parent) if source is not None else file.world
    run = file.run
    batch = run.batch_size or world.default_batch()
    if batch is None:
        raise ValueError(f"{where}: run.batch_size: required for this world")
    dirs = tuple(dict.fromkeys([*([str(source.resolve().parent)] if source else []), os.getcwd()]))
    closed = isinstance(world, ClosedLoopWorldConfig)
    draws = run.interval_draws if run.interval_draws is not None else DEFAULT_INTERVAL_DRAWS if closed else 0
    return Scenario(
        name=file.name if file.name is not None else source.stem if source else "scenario",
        world=world,
        policies=expand_policies(file.policies, where, dirs),
        steps=run.steps or world.horizon() or 0,
        batch_size=batch,
        seeds=run.seed_list(),
        workers=max(1, run.workers or os.cpu_count() or 1),
        source=source,
        description=file.description,
        interval_draws=draws,
        lag=run.lag,
    )


def load_scenario(path: str | Path, overrides: list[str] | None = None) -> Scenario:
    """Read a scenario file, with `--set KEY=VALUE` overrides of its name, description, [world] and [run]."""
    path = Path(path)
    data = read_toml(path, "scenario file")
    origins = apply_sets(data, overrides or [], SETTABLE)
    return parse_scenario(data, path, origins)


# --------------------------------------------------------------------------------------------
# Policies


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def expand_policies(
    entries: list[PolicyEntry], where: str = "scenario", import_dirs: tuple[str, ...] = ()
) -> list[PolicySpec]:
    """One PolicySpec per policy, a sweep's grid expanded (labels "NAME key=value ..."); the options of
    built-in policies checked against their constructors' types."""
    specs: list[PolicySpec] = []
    for i, entry in enumerate(entries):
        ptype = entry.type.lower()
        _check_options(ptype, entry, f"policies[{i}]", where)
        name = entry.name if entry.name is not None else entry.type
        keys = list(entry.sweep)
        for combo in itertools.product(*(entry.sweep[k] for k in keys)):
            params = copy.deepcopy(entry.options)
            params.update(zip(keys, combo, strict=True))
            label = name + "".join(f" {k}={_fmt(v)}" for k, v in zip(keys, combo, strict=True))
            specs.append(PolicySpec(label, ptype, params, entry.class_, import_dirs))
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"{where}: policy names must be unique; repeated: {', '.join(dup)}")
    if not specs:
        raise ValueError(f"{where}: the scenario lists no [[policies]]")
    return specs


def _check_options(ptype: str, entry: PolicyEntry, key: str, where: str) -> None:
    """The options (and sweep values) a built-in constructor plainly types as a number or an integer."""
    cls = DynamicSampling if ptype in GATES else SELECTORS.get(ptype)
    if cls is None:
        return
    for option, value in entry.options.items():
        if not (ptype in GATES and option == "selector"):
            _check_option(cls, option, value, f"{key}.{option}", where)
    for option, values in entry.sweep.items():
        for j, value in enumerate(values):
            _check_option(cls, option, value, f"{key}.sweep.{option}[{j}]", where)


def _check_option(cls: Any, option: str, value: Any, key: str, where: str) -> None:
    annotation = _numeric_annotation(cls, option)
    if annotation is not None:
        check_value(value, annotation, key, where)


def _numeric_annotation(cls: Any, option: str) -> Any:
    """int / float (or either | None) when a constructor parameter plainly wants one, else None."""
    try:
        param = inspect.signature(cls).parameters.get(option)
    except (TypeError, ValueError):
        return None
    if param is None:
        return None
    text = param.annotation if isinstance(param.annotation, str) else getattr(param.annotation, "__name__", "")
    known = {"float": float, "float|None": float | None, "int": int, "int|None": int | None}
    if text.replace(" ", "") in known:
        return known[text.replace(" ", "")]
    if param.annotation is inspect.Parameter.empty and isinstance(param.default, (int, float)):
        return float if not isinstance(param.default, bool) else None
    return None


def build_policy(spec: PolicySpec, world: World, seed: int, num_prompts: int | None = None) -> Policy:
    """Construct one policy; constructor errors become ValueErrors naming the policy."""
    n = int(num_prompts or world.num_prompts)
    params = copy.deepcopy(spec.params)
    if spec.type == "oracle":
        from dps.replay.oracle import Oracle

        try:
            return Oracle(world, num_prompts=n, seed=seed, **params)
        except TypeError as e:
            raise ValueError(f"policy {spec.name!r}: bad parameters {sorted(params)} ({e})") from e
    if spec.type == "python":
        assert spec.cls is not None
        if ":" not in spec.cls:
            raise ValueError(f"policy {spec.name!r}: class must read 'module:Class', not {spec.cls!r}")
        with _importable_from(spec.import_dirs):
            return _named(spec, spec.cls, n, seed, params)
    if spec.type in GATES and "selector" in params:
        selector = _selector_spec(spec, params.pop("selector"))
        try:
            return DynamicSampling(build_policy(selector, world, seed, n), **params)
        except TypeError as e:
            raise ValueError(f"policy {spec.name!r}: bad parameters {sorted(params)} ({e})") from e
    return _named(spec, spec.type, n, seed, params)


def _selector_spec(gate: PolicySpec, table: Any) -> PolicySpec:
    """The selector a gate's `selector = "dps"` or `selector = { type = "dps", ... }` names."""
    entry: PolicyEntry = load(
        PolicyEntry, {"type": table} if isinstance(table, str) else table, f"policy {gate.name!r}"
    )
    if entry.sweep:
        raise ValueError(f"policy {gate.name!r}: the selector cannot hold a sweep")
    (spec,) = expand_policies(
        [PolicyEntry(**{**entry.__dict__, "name": f"{gate.name}.selector"})], f"policy {gate.name!r}"
    )
    return spec


@contextlib.contextmanager
def _importable_from(dirs: tuple[str, ...]) -> Iterator[None]:
    """Let `import` find a user's policy module next to the scenario or in the current folder."""
    added = [d for d in dirs if d not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for d in added:
            if d in sys.path:
                sys.path.remove(d)


def _named(spec: PolicySpec, name: str, n: int, seed: int, params: dict[str, Any]) -> Policy:
    try:
        return make_policy(name, n, seed, **params)
    except ValueError as e:
        raise ValueError(f"policy {spec.name!r}: {e}") from e
