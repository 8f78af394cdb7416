"""Sweeps: every (policy, seed) of a scenario replayed, in parallel over processes."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import multiprocessing as mp
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dps.policies.base import check_lag
from dps.replay.calibration import Calibration, world_calibration
from dps.replay.closedloop import ClosedLoopWorld, TrainingEffect
from dps.replay.intervals import PolicyIntervals, policy_intervals, with_intervals
from dps.replay.logworld import LogWorld
from dps.replay.runner import replay
from dps.replay.scenario import PolicySpec, Scenario, build_policy
from dps.replay.worldconfig import ClosedLoopWorldConfig, LogWorldConfig, SyntheticWorldConfig
from dps.replay.worlds import World

if TYPE_CHECKING:
    import polars as pl

_WORLDS: dict[str, World] = {}
#: Worlds the sweep's main process built and saved for its workers: key -> folder (LogWorld.save).
_SAVED: dict[str, str] = {}
#: Closed-loop effects the main process fitted, for its workers: key -> TrainingEffect.
_EFFECTS: dict[str, TrainingEffect] = {}
#: Salt of the interval's effect draws (draw r uses the generator seeded with (salt, r) in every process).
_DRAW_SALT = 0x1A7E_5EED


WorldConfig = SyntheticWorldConfig | LogWorldConfig | ClosedLoopWorldConfig


def _key(cfg: WorldConfig) -> str:
    return repr(cfg)


def _world(cfg: WorldConfig) -> World:
    """Built once per process (or loaded, where the main process saved it); a closed-loop world
    and its open-loop twin share the base world."""
    key = _key(cfg)
    if key not in _WORLDS:
        if len(_WORLDS) >= 2:
            _WORLDS.clear()
        if key in _SAVED:
            _WORLDS[key] = LogWorld.load(_SAVED[key])
            return _WORLDS[key]
        if isinstance(cfg, ClosedLoopWorldConfig):
            _WORLDS[key] = cfg.build(_world(cfg.open_loop()), _EFFECTS.get(key))
        else:
            _WORLDS[key] = cfg.build()
    return _WORLDS[key]


def _drawn_world(cfg: WorldConfig, draw: int) -> World:
    """The closed-loop world of `cfg` with its effect's `draw`-th draw (the same in every process)."""
    world = _world(cfg)
    return world.with_effect(world.effect.draw(np.random.default_rng([_DRAW_SALT, draw])))  # type: ignore[attr-defined]


def save_log_worlds(cfg: WorldConfig, world: World, folder: Path) -> dict[str, str]:
    """Save the log world of a sweep (or of its closed loop's base) for the worker processes:
    loading it takes a fraction of building it again. Key -> folder."""
    pairs: list[tuple[WorldConfig, Any]] = [(cfg, world)]
    if isinstance(cfg, ClosedLoopWorldConfig):
        pairs.append((cfg.open_loop(), getattr(world, "base", None)))
    saved: dict[str, str] = {}
    for c, w in pairs:
        if isinstance(w, LogWorld):
            saved[_key(c)] = str(w.save(folder / f"world-{len(saved)}"))
    return saved


def closed_loop_on(cfg: WorldConfig) -> bool:
    return isinstance(cfg, ClosedLoopWorldConfig)


@dataclass
class Job:
    index: int
    world: WorldConfig
    spec: PolicySpec
    seed: int
    steps: int
    batch_size: int
    record: bool = False
    #: log worlds the main process saved for the workers (save_log_worlds)
    saved: dict[str, str] = field(default_factory=dict)
    #: >= 0: a replay of the interval, with the closed loop's effect drawn (draw number)
    draw: int = -1
    #: closed-loop effects the main process fitted (key -> TrainingEffect), so a worker does not fit again
    effects: dict[str, TrainingEffect] = field(default_factory=dict)
    #: steps between a selection and the observation of its groups
    lag: int = 0


@dataclass
class ReplayOutput:
    """One (policy, seed) replay, as a worker hands it back."""

    index: int
    policy: str
    type: str
    seed: int
    steps: dict[str, np.ndarray]
    summary: dict[str, Any]
    groups: dict[str, Any] | None
    reliability: np.ndarray | None


@dataclass
class DrawOutput:
    """One replay of a closed loop's interval: the effect drawn, and what the policy did under it."""

    index: int
    policy: str
    draw: int
    seed: int
    saturation: float
    half_life: float
    gain: float
    effective_ratio: float
    rollouts: int


def run_job(job: Job) -> ReplayOutput | DrawOutput:
    """Build the world (cached per process) and the policy, replay, return plain arrays."""
    _SAVED.update(job.saved)
    _EFFECTS.update(job.effects)
    world = _world(job.world) if job.draw < 0 else _drawn_world(job.world, job.draw)
    policy = build_policy(job.spec, world, job.seed)
    res = replay(policy, world, job.steps, job.batch_size, job.seed, record=job.record, lag=job.lag)
    name, seed = job.spec.name, job.seed
    if job.draw >= 0:
        effect = world.effect  # type: ignore[attr-defined]
        ratio, rollouts = res.summary["effective_ratio"], res.summary["rollouts"]
        return DrawOutput(
            job.index, name, job.draw, seed, effect.saturation, effect.half_life, effect.gain, ratio, rollouts
        )
    return ReplayOutput(job.index, name, job.spec.type, seed, res.steps, res.summary, res.groups, res.reliability)


def _init_worker() -> None:
    # Each worker process replays one policy at a time: keep any native thread pool small so
    # that processes x threads does not oversubscribe the cores.
    os.environ.setdefault("RAYON_NUM_THREADS", "1")


@dataclass(frozen=True)
class WorldFacts:
    """What a report says of the replayed world: typed, and its own description for meta.json."""

    kind: str
    num_prompts: int
    k: int
    #: `World.describe()`: what meta.json records
    description: dict[str, Any]
    #: a closed loop's effect (fitted, or a gain given) and the most trainings of a prompt it counts
    effect: TrainingEffect | None = None
    cap: float = math.inf

    @classmethod
    def of(cls, world: World) -> WorldFacts:
        description = world.describe()
        kind, n, k = str(description["kind"]), world.num_prompts, world.k
        if isinstance(world, ClosedLoopWorld):
            return cls(kind, n, k, description, world.effect, world.cap)
        return cls(kind, n, k, description)


@dataclass
class SweepResult:
    """What `run_sweep` returns: the per-(policy, seed) summary and per-step rows, and what the report needs."""

    scenario: Scenario
    world: WorldFacts
    summary: pl.DataFrame  # one row per (policy, seed), with each policy's intervals as columns
    steps: pl.DataFrame  # one row per (policy, seed, step)
    wall_s: float
    #: each policy's 90% intervals, in the scenario's order
    intervals: dict[str, PolicyIntervals] = field(default_factory=dict)
    #: (policy, seed) -> the replay's own rollouts as a per-group log, when recorded
    logs: dict[tuple[str, int], pl.DataFrame] | None = None
    #: a log world's held-out calibration on its own log (dps.replay.calibration)
    calibration: Calibration | None = None
    #: the predictive policies' reliability bins of P(partial), one row per (policy, seed, bin)
    reliability: pl.DataFrame | None = None
    #: the closed loop's interval replays: one row per (policy, draw) with the effect drawn and the result
    draws: pl.DataFrame | None = None


def make_jobs(scenario: Scenario, world: World, record: bool = False) -> list[Job]:
    """Every (policy, seed); with a closed loop, each policy also against the open-loop world, named "NAME (open
    loop)"."""
    steps = scenario.steps or world.steps
    variants: list[tuple[WorldConfig, str]] = [(scenario.world, "")]
    if isinstance(scenario.world, ClosedLoopWorldConfig):
        variants.append((scenario.world.open_loop(), " (open loop)"))
    jobs: list[Job] = []
    for spec in scenario.policies:
        for cfg, suffix in variants:
            named = dataclasses.replace(spec, name=spec.name + suffix)
            for seed in scenario.seeds:
                jobs.append(Job(len(jobs), cfg, named, seed, steps, scenario.batch_size, record, lag=scenario.lag))
    if closed_loop_on(scenario.world) and getattr(getattr(world, "effect", None), "candidates", None):
        first = max(scenario.seeds) + 1  # the interval's replays use seeds of their own
        for spec in scenario.policies:
            for r in range(scenario.interval_draws):
                job = Job(len(jobs), scenario.world, spec, first + r, steps, scenario.batch_size, False, draw=r)
                jobs.append(dataclasses.replace(job, lag=scenario.lag))
    return jobs


def run_sweep(
    scenario: Scenario, workers: int | None = None, progress: bool = True, record: bool = False
) -> SweepResult:
    """Replay every policy of `scenario` over its seeds (in `workers` processes; None: the
    scenario's own setting), with the closed-loop and open-loop twins and interval draws it asks
    for. `record` keeps each replay's own rollouts as a per-group log."""
    import polars as pl
    from tqdm import tqdm

    t0 = time.perf_counter()
    variants = 2 if closed_loop_on(scenario.world) else 1
    workers = max(1, min(workers or scenario.workers, len(scenario.policies) * variants * len(scenario.seeds)))
    with contextlib.ExitStack() as stack:
        pool = None
        if workers > 1:  # the workers start (spawn, imports) while this process builds the world
            ctx = mp.get_context("spawn")  # no fork after native thread pools have started
            pool = stack.enter_context(ctx.Pool(workers, initializer=_init_worker))
        world = scenario.build_world()
        calibration = world_calibration(world)
        if scenario.batch_size > world.num_prompts:
            raise ValueError(f"batch_size {scenario.batch_size} exceeds the world's {world.num_prompts} prompts")
        # Construct every policy once here, so that a bad parameter fails before any work starts.
        for spec in scenario.policies:
            policy = build_policy(spec, world, scenario.seeds[0])
            try:
                check_lag(policy, scenario.lag)
            except ValueError as e:
                raise ValueError(f"policy {spec.name!r}: {e}") from None
        jobs = make_jobs(scenario, world, record)
        outputs: list[ReplayOutput | DrawOutput] = []
        bar = tqdm(total=len(jobs), desc=f"replay {scenario.name}", unit="run", disable=not progress)
        facts = WorldFacts.of(world)
        if pool is None:
            _WORLDS.clear()
            if isinstance(scenario.world, ClosedLoopWorldConfig):
                _WORLDS[_key(scenario.world.open_loop())] = world.base  # type: ignore[attr-defined]
            _WORLDS[_key(scenario.world)] = world
            for job in jobs:
                outputs.append(run_job(job))
                bar.update()
        else:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="dps-sweep-"))
            saved = save_log_worlds(scenario.world, world, Path(tmp))
            effects = {_key(scenario.world): facts.effect} if facts.effect is not None else {}
            del world  # the workers hold their own
            # Longest first: gates that roll out several rounds per step take longest.
            order = sorted(jobs, key=lambda j: j.spec.type not in ("dynamic_sampling", "ds", "greso"))
            jobs_out = [dataclasses.replace(j, saved=saved, effects=effects) for j in order]
            for out in pool.imap_unordered(run_job, jobs_out, chunksize=1):
                outputs.append(out)
                bar.update()
    bar.close()
    outputs.sort(key=lambda r: r.index)
    replays = [r for r in outputs if isinstance(r, ReplayOutput)]
    drawn = [dataclasses.asdict(r) for r in outputs if isinstance(r, DrawOutput)]
    draws = pl.DataFrame(drawn) if drawn else None
    summary = pl.DataFrame([{"policy": r.policy, "type": r.type, "seed": r.seed, **r.summary} for r in replays])
    intervals = policy_intervals(summary, draws)
    logs = {(r.policy, r.seed): pl.DataFrame(r.groups) for r in replays} if record else None
    return SweepResult(
        scenario,
        facts,
        with_intervals(summary, intervals),
        steps_frame(replays),
        time.perf_counter() - t0,
        intervals,
        logs,
        calibration,
        reliability_frame(replays),
        draws,
    )


def steps_frame(replays: list[ReplayOutput]) -> pl.DataFrame:
    """Every replay's per-step rows, led by policy, type and seed."""
    import polars as pl

    frames = [
        pl.DataFrame(r.steps).with_columns(
            pl.lit(r.policy).alias("policy"), pl.lit(r.type).alias("type"), pl.lit(r.seed).alias("seed")
        )
        for r in replays
    ]
    steps = pl.concat(frames, how="diagonal_relaxed")
    front = ["policy", "type", "seed"]
    return steps.select(front + [c for c in steps.columns if c not in front])


def reliability_frame(replays: list[ReplayOutput]) -> pl.DataFrame | None:
    """The replays' reliability bins as rows (policy, seed, bin, lo, hi, count, sum_pred, sum_obs)."""
    import polars as pl

    rows = []
    for r in replays:
        if r.reliability is None:
            continue
        n = len(r.reliability)
        for i, (count, sum_pred, sum_obs) in enumerate(r.reliability):
            rows.append(
                {
                    "policy": r.policy,
                    "seed": r.seed,
                    "bin": i,
                    "lo": i / n,
                    "hi": (i + 1) / n,
                    "count": int(count),
                    "sum_pred": float(sum_pred),
                    "sum_obs": float(sum_obs),
                }
            )
    return pl.DataFrame(rows) if rows else None
