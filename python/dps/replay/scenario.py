"""Scenario files (TOML): a world, run settings, and the policies to replay.

```toml
name = "math"                 # optional
description = "..."           # optional

[world]
preset = "math"               # a synthetic preset ("math", "countdown"), or
# log = "logs/run.parquet"    # a rollout log (path relative to this file)
seed = 0                      # synthetic: the dynamics' seed
# synthetic: any SyntheticParams field overrides the preset (num_prompts, steps, k, ...)
# log: switch_rate, prior_half_life, draw ("posterior" | "mean"), extrapolate, k, num_prompts, and how to
#   read it (dps.logs.LogSpec): threshold, format, layout, prompt_ids, group_by, kinds and
#   [world.columns] (step = "global_step", prompt_id = "prompt", reward = "score", ...)
#   closed_loop ("fit" | "off" | a gain), train_log, effect_half_life, effect_saturation, effect_cap,
#   prompt_table with similar_by / drift_by (see dps.replay.closedloop; the checks: check_closed_loop_config)

[run]
steps = 360                   # default: the world's horizon
batch_size = 256              # default: the preset's batch size
seeds = [0, 1, 2]             # replay seeds: policy seed and outcome noise
workers = 2                   # processes; default: all cores
interval_draws = 40           # closed loop: replays with effects drawn from the fit, for the 90% interval (0: none)

[[policies]]
name = "DPS"                  # label in the report (default: type)
type = "dps"                  # see POLICY_TYPES, or "python" with class = "module:Class"
decay = 0.7                   # passed to the constructor
[policies.sweep]              # optional: a grid, one policy per combination
decay = [0.5, 0.7, 1.0]
```
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dps.logs import LogSpec, load_log
from dps.policies.base import Policy
from dps.policies.gate import DynamicSampling
from dps.policies.registry import GATES, SELECTORS, make_policy
from dps.replay.closedloop import (
    CLOSED_LOOP_KEYS,
    closed_loop_enabled,
    closed_loop_world,
    parse_half_life,
    parse_saturation,
)
from dps.replay.logworld import ESTIMATOR_KEYS, LogEstimator, LogWorld
from dps.replay.worlds import (
    PRESET_BATCH,
    SyntheticParams,
    SyntheticWorld,
    World,
    preset_params,
)
from dps.tomlfile import parse_value, read_toml, set_dotted

#: Policy types a scenario may name (case-insensitive): the registry's, the oracle, and
#: "python" with class = "module:Class".
POLICY_TYPES = {*SELECTORS, *GATES, "oracle", "python"}
TOP_KEYS = {"name", "description", "world", "run", "policies"}
RUN_KEYS = {"steps", "batch_size", "seeds", "workers", "interval_draws"}
LOG_KEYS = {"log", "k", "num_prompts", *ESTIMATOR_KEYS, *LogSpec.KEYS, *CLOSED_LOOP_KEYS}
POLICY_META_KEYS = {"name", "type", "class", "sweep"}
#: Replays per policy with closed-loop effects drawn from the fit, for the interval (the default with a closed loop).
DEFAULT_INTERVAL_DRAWS = 40


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
    world: dict[str, Any]
    policies: list[PolicySpec]
    steps: int
    batch_size: int
    seeds: list[int]
    workers: int
    source: Path | None = None
    description: str = ""
    #: closed loop: replays with effects drawn from what the log allows (the interval); 0: none
    interval_draws: int = 0

    def build_world(self) -> World:
        return build_world(self.world)


def build_world(cfg: dict[str, Any], base: World | None = None, effect: Any = None) -> World:
    """The world a [world] table describes; a closed-loop log world may be given its open-loop
    `base` and its fitted `effect` (dps.replay.closedloop.TrainingEffect), so neither is built again."""
    cfg = dict(cfg)
    if closed_loop_enabled(cfg):
        return closed_loop_world(base or build_world(open_loop(cfg)), cfg, effect)
    if "log" in cfg:
        unknown = sorted(set(cfg) - LOG_KEYS)
        if unknown:
            raise ValueError(
                f"[world]: unknown key(s) for a log world: {', '.join(unknown)}; known: {', '.join(sorted(LOG_KEYS))}"
            )
        log = load_log(cfg["log"], LogSpec.from_dict(cfg, "[world]"))
        est = LogEstimator.from_dict({k: cfg[k] for k in ESTIMATOR_KEYS if k in cfg})
        num_prompts = max(
            int(cfg.get("num_prompts") or 0), log.info.num_prompts
        )  # prompts a kinds filter left out stay
        keys = log.keys if log.info.id_mapping == "dense" else None  # else the dense ids are the user's own
        return LogWorld(log.groups, est, k=cfg.get("k"), num_prompts=num_prompts, keys=keys)
    seed = int(cfg.pop("seed", 0))
    preset = cfg.pop("preset", None)
    params = preset_params(preset, **cfg) if preset is not None else SyntheticParams.from_dict(cfg)
    return SyntheticWorld(params, seed=seed)


def open_loop(cfg: dict[str, Any]) -> dict[str, Any]:
    """The same [world] table without the closed loop."""
    return {k: v for k, v in cfg.items() if k not in CLOSED_LOOP_KEYS}


def _check_keys(table: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


# --------------------------------------------------------------------------------------------
# Value types: a wrong-typed value names the file, the table and the key (and the --set that
# gave it, when one did).

#: "table.key" -> the --set item that gave it (filled by apply_overrides).
OVERRIDES_KEY = "__set__"


def _bad(where: str, key: str, want: str, value: Any, origins: dict[str, str], table: str) -> ValueError:
    via = origins.get(f"{table}.{key}")
    return ValueError(f"{where}: {key} must be {want}, not {value!r}" + (f" (from {via})" if via else ""))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


#: A kind of value: (test, how the error names it).
VALUE_KINDS: dict[str, tuple[Any, str]] = {
    "seed": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "count": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "number": (_is_number, "a number"),
    "auto": (lambda v: v == "auto" or (_is_number(v) and v > 0), 'a number > 0 or "auto"'),
    "rate": (lambda v: v == "auto" or (_is_number(v) and 0 <= v < 1), 'a number in [0, 1) or "auto"'),
    "window": (lambda v: v in ("auto", "inf") or (_is_number(v) and v > 0), 'a number > 0, "inf" or "auto"'),
    "flag": (lambda v: isinstance(v, bool), "true or false"),
    "string": (lambda v: isinstance(v, str), "a string"),
    "pair": (lambda v: isinstance(v, list) and len(v) == 2 and all(_is_number(x) for x in v), "a list of two numbers"),
}


def _check_value(where: str, table: str, key: str, value: Any, kind: str, origins: dict[str, str]) -> None:
    test, phrase = VALUE_KINDS[kind]
    if not test(value):
        raise _bad(where, key, phrase, value, origins, table)


def _synthetic_kinds() -> dict[str, str]:
    from dataclasses import fields

    out = {}
    for f in fields(SyntheticParams):
        default = f.default
        out[f.name] = "pair" if isinstance(default, tuple) else "count" if _is_int(default) else "number"
    return out


LOG_VALUE_KINDS = {
    "log": "string",
    "switch_rate": "rate",
    "prior_half_life": "window",
    "draw": "string",
    "extrapolate": "flag",
    "k": "count",
    "num_prompts": "count",
}


def check_closed_loop_config(cfg: dict[str, Any], where: str = "scenario") -> None:
    """Errors that name the file and the [world] key, before any work starts."""
    mode = cfg.get("closed_loop", "off")
    number = isinstance(mode, (int, float)) and not isinstance(mode, bool) and math.isfinite(mode)
    if not (mode is False or mode in ("off", "fit") or number):
        raise ValueError(
            f'{where} [world] closed_loop: must be "fit", "off" or a number (the logit gain per trained partial '
            f"group), not {mode!r}"
        )
    present = sorted(CLOSED_LOOP_KEYS & set(cfg))
    if "log" not in cfg:
        if present:
            raise ValueError(
                f"{where} [world] {present[0]}: the closed loop is fitted from a log (log = ...); a synthetic world "
                "has train_gain"
            )
        return
    if "train_log" in cfg and not isinstance(cfg["train_log"], str):
        raise ValueError(f"{where} [world] train_log: must be a path to a log file, not {cfg['train_log']!r}")
    if "effect_half_life" in cfg and cfg["effect_half_life"] != "auto":
        try:
            parse_half_life(cfg["effect_half_life"], "effect_half_life")
        except ValueError as e:
            raise ValueError(f"{where} {e}") from None
    sat = cfg.get("effect_saturation", "auto")
    if sat == "auto" and mode != "fit" and "effect_saturation" in cfg:
        raise ValueError(
            f'{where} [world] effect_saturation: "auto" needs closed_loop = "fit"; with a gain of your own give a '
            'number or "linear"'
        )
    if sat != "auto":
        try:
            parse_saturation(sat, "effect_saturation")
        except ValueError as e:
            raise ValueError(f"{where} {e}") from None
    cap = cfg.get("effect_cap", "none")
    if not (cap in ("none", "log") or (isinstance(cap, (int, float)) and not isinstance(cap, bool) and cap > 0)):
        raise ValueError(
            f'{where} [world] effect_cap: must be "none", "log" or a positive number of trainings, not {cap!r}'
        )
    for key in ("prompt_table", "similar_by", "drift_by"):
        if key in cfg and not (isinstance(cfg[key], str) and cfg[key]):
            raise ValueError(
                f"{where} [world] {key}: must be a {'path' if key == 'prompt_table' else 'column name'} (a "
                f"string), not {cfg[key]!r}"
            )
    labels = sorted({"similar_by", "drift_by"} & set(cfg))
    if labels and "prompt_table" not in cfg:
        raise ValueError(
            f"{where} [world] {labels[0]}: names a column of the prompt table; give prompt_table = "
            '"prompts.parquet" too'
        )
    if "prompt_table" in cfg and not labels:
        raise ValueError(
            f'{where} [world] prompt_table: say which column to use: similar_by = "question" and/or drift_by = "level"'
        )
    if "drift_by" in cfg and mode != "fit":
        raise ValueError(f'{where} [world] drift_by: only the fit uses it (closed_loop = "fit")')
    extra = sorted((CLOSED_LOOP_KEYS - {"closed_loop"}) & set(cfg))
    if (mode is False or mode == "off") and extra:
        raise ValueError(f'{where} [world] {extra[0]}: needs closed_loop = "fit" (or a gain)')


def _check_world_values(world: dict[str, Any], where: str, origins: dict[str, str]) -> None:
    kinds = dict(LOG_VALUE_KINDS) if "log" in world else {**_synthetic_kinds(), "preset": "string", "seed": "seed"}
    for key, value in world.items():
        if key in kinds:
            _check_value(where, "world", key, value, kinds[key], origins)


def _check_run_values(run: dict[str, Any], where: str, origins: dict[str, str]) -> list[int] | None:
    """Check [run]'s values; return its seeds as a list (None when not given)."""
    for key in ("steps", "batch_size", "workers"):
        if key in run:
            _check_value(where, "run", key, run[key], "count", origins)
    if "interval_draws" in run and not (_is_int(run["interval_draws"]) and run["interval_draws"] >= 0):
        raise _bad(where, "interval_draws", "an integer >= 0", run["interval_draws"], origins, "run")
    if "seeds" not in run:
        return None
    seeds = run["seeds"]
    if _is_int(seeds) and seeds >= 1:
        return list(range(seeds))
    if isinstance(seeds, list) and seeds and all(_is_int(s) and s >= 0 for s in seeds):
        return list(seeds)
    raise _bad(where, "seeds", "a count >= 1 or a non-empty list of integers >= 0", seeds, origins, "run")


def _expected_kind(cls: Any, key: str) -> str | None:
    """'number' / 'integer' when a constructor parameter plainly wants one (annotation or default)."""
    import inspect

    try:
        param = inspect.signature(cls).parameters.get(key)
    except (TypeError, ValueError):
        return None
    if param is None:
        return None
    ann = param.annotation if isinstance(param.annotation, str) else getattr(param.annotation, "__name__", "")
    ann = ann.replace(" ", "")
    if ann in ("float", "float|None", "int", "int|None"):
        return ("integer" if ann.startswith("int") else "number") + ("|None" if ann.endswith("None") else "")
    if param.annotation is inspect.Parameter.empty and _is_number(param.default):
        return "number"
    return None


def _check_policy_values(cls: Any, params: dict[str, Any], where: str) -> None:
    for key, value in params.items():
        want = _expected_kind(cls, key)
        if want is None or (value is None and want.endswith("|None")):
            continue
        if (want.startswith("integer") and not _is_int(value)) or (want.startswith("number") and not _is_number(value)):
            raise ValueError(
                f"{where}: {key} must be {'an integer' if want.startswith('integer') else 'a number'}, not {value!r}"
            )


def _policy_classes(ptype: str, params: dict[str, Any]) -> list[tuple[Any, dict[str, Any]]]:
    """The built-in classes a policy type constructs, each with the parameters it receives."""
    if ptype in GATES:
        gate = {k: v for k, v in params.items() if k != "selector"}
        return [(DynamicSampling, gate)]
    if ptype in SELECTORS:
        return [(SELECTORS[ptype], params)]
    return []


def expand_policies(
    tables: list[dict[str, Any]], where: str = "scenario", import_dirs: tuple[str, ...] = ()
) -> list[PolicySpec]:
    specs: list[PolicySpec] = []
    for i, tab in enumerate(tables):
        if not isinstance(tab, dict):
            raise ValueError(f"{where} [[policies]] entry {i} is not a table")
        if "type" not in tab:
            raise ValueError(
                f"{where} [[policies]] entry {i}: missing 'type' (one of {', '.join(sorted(POLICY_TYPES))})"
            )
        ptype = str(tab["type"]).lower()
        if ptype not in POLICY_TYPES:
            raise ValueError(
                f"{where} [[policies]] entry {i}: unknown policy type {tab['type']!r}; known: "
                f"{', '.join(sorted(POLICY_TYPES))}"
            )
        if ptype == "python" and "class" not in tab:
            raise ValueError(f"{where} [[policies]] entry {i}: type 'python' needs class = \"module:Class\"")
        base = {k: v for k, v in tab.items() if k not in POLICY_META_KEYS}
        name = str(tab.get("name", tab["type"]))
        sweep = tab.get("sweep", {})
        if not isinstance(sweep, dict) or any(not isinstance(v, list) or not v for v in sweep.values()):
            raise ValueError(f"{where} [[policies]] {name!r}: sweep must be a table of non-empty lists")
        keys = list(sweep)
        for combo in itertools.product(*(sweep[k] for k in keys)):
            params = copy.deepcopy(base)
            params.update(zip(keys, combo, strict=True))
            label = (
                name if not keys else name + " " + " ".join(f"{k}={_fmt(v)}" for k, v in zip(keys, combo, strict=True))
            )
            for cls, given in _policy_classes(ptype, params):
                _check_policy_values(cls, given, f"{where} [[policies]] {label!r}")
            specs.append(PolicySpec(label, ptype, params, tab.get("class"), import_dirs))
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"{where}: policy names must be unique; repeated: {', '.join(dup)}")
    if not specs:
        raise ValueError(f"{where}: the scenario lists no [[policies]]")
    return specs


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
        sel = params.pop("selector")
        if isinstance(sel, str):
            sel = {"type": sel}
        sub = expand_policies([{"name": f"{spec.name}.selector", **sel}])
        if len(sub) != 1:
            raise ValueError(f"policy {spec.name!r}: the selector cannot hold a sweep")
        try:
            return DynamicSampling(build_policy(sub[0], world, seed, n), **params)
        except TypeError as e:
            raise ValueError(f"policy {spec.name!r}: bad parameters {sorted(params)} ({e})") from e
    return _named(spec, spec.type, n, seed, params)


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


def parse_scenario(data: dict[str, Any], source: Path | None = None) -> Scenario:
    where = str(source) if source else "scenario"
    data = dict(data)
    origins: dict[str, str] = data.pop(OVERRIDES_KEY, {})
    _check_keys(data, TOP_KEYS, where)
    world = dict(data.get("world", {}))
    if not world:
        raise ValueError(f'{where}: missing [world] (preset = "math", or log = "file.parquet")')
    _check_world_values(world, f"{where} [world]", origins)
    check_closed_loop_config(world, where)
    if "log" in world:
        _check_keys(world, LOG_KEYS, f"{where} [world]")
        LogSpec.from_dict(world, f"{where} [world]")
        try:
            LogEstimator.from_dict({k: world[k] for k in ESTIMATOR_KEYS if k in world})
        except ValueError as e:
            raise ValueError(f"{where} [world]: {e}") from None
        for key in ("log", "train_log", "prompt_table"):
            if key not in world:
                continue
            log = Path(world[key])
            if source is not None and not log.is_absolute():
                log = source.parent / log
            world[key] = str(log)
    elif "preset" in world:
        preset_params(world["preset"], **{k: v for k, v in world.items() if k not in ("preset", "seed")})
    else:
        SyntheticParams.from_dict({k: v for k, v in world.items() if k != "seed"})
    run = dict(data.get("run", {}))
    _check_keys(run, RUN_KEYS, f"{where} [run]")
    seeds = _check_run_values(run, f"{where} [run]", origins) or [0]
    preset = str(world.get("preset", "")).lower()
    steps = run.get("steps")
    if steps is None and "log" not in world:  # a log world's horizon is known once it is read
        steps = world.get("steps") or (preset_params(preset).steps if preset else SyntheticParams().steps)
    batch = run.get("batch_size", PRESET_BATCH.get(preset))
    if batch is None:
        raise ValueError(f"{where} [run]: batch_size is required for this world")
    workers = int(run.get("workers", os.cpu_count() or 1))
    dirs = tuple(dict.fromkeys([*([str(source.resolve().parent)] if source else []), os.getcwd()]))
    policies = expand_policies(list(data.get("policies", [])), where, dirs)
    return Scenario(
        name=str(data.get("name", source.stem if source else "scenario")),
        world=world,
        policies=policies,
        steps=int(steps) if steps else 0,
        batch_size=int(batch),
        seeds=seeds,
        workers=max(1, workers),
        source=source,
        description=str(data.get("description", "")),
        interval_draws=int(run.get("interval_draws", DEFAULT_INTERVAL_DRAWS if closed_loop_enabled(world) else 0)),
    )


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `table.key=value` settings (value in TOML syntax) to [world] or [run], or `name=...`.

    Keys may be dotted further: `world.columns.step="global_step"` sets [world.columns] step.
    """
    data = copy.deepcopy(data)
    for item in overrides:
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"--set {item!r}: expected table.key=value, e.g. world.train_gain=0.1")
        parsed = parse_value(value)
        table, dot, name = key.strip().partition(".")
        data.setdefault(OVERRIDES_KEY, {})[key.strip()] = f"--set {item}"
        if not dot:
            if table not in ("name", "description"):
                raise ValueError(f"--set {item!r}: only name, description, world.* and run.* can be set")
            data[table] = parsed
        elif table in ("world", "run"):  # world.columns.step=... sets a key of [world.columns]
            set_dotted(data.setdefault(table, {}), name, parsed, f"--set {item!r}: {table}")
        else:
            raise ValueError(f"--set {item!r}: only world.* and run.* keys can be set")
    return data


def load_scenario(path: str | Path, overrides: list[str] | None = None) -> Scenario:
    path = Path(path)
    data = read_toml(path, "scenario file")
    if overrides:
        data = apply_overrides(data, overrides)
    return parse_scenario(data, path)
