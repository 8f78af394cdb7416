"""Sweeps: every (policy, seed) of a scenario replayed, in parallel over processes."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing as mp
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dps.replay.calibration import world_calibration
from dps.replay.closedloop import closed_loop_enabled
from dps.replay.logworld import LogWorld
from dps.replay.runner import replay
from dps.replay.scenario import PolicySpec, Scenario, build_policy, build_world, open_loop
from dps.replay.worlds import World

if TYPE_CHECKING:
    import polars as pl

_WORLDS: dict[str, World] = {}
#: Worlds the sweep's main process built and saved for its workers: key -> folder (LogWorld.save).
_SAVED: dict[str, str] = {}


def _key(cfg: dict[str, Any]) -> str:
    return json.dumps(cfg, sort_keys=True, default=str)


def _world(cfg: dict[str, Any]) -> World:
    """Built once per process (or loaded, where the main process saved it); a closed-loop world
    and its open-loop twin share the base world."""
    key = _key(cfg)
    if key not in _WORLDS:
        if len(_WORLDS) >= 2:
            _WORLDS.clear()
        if key in _SAVED:
            _WORLDS[key] = LogWorld.load(_SAVED[key])
            return _WORLDS[key]
        base = None
        if closed_loop_on(cfg):
            base = _world(open_loop(cfg))
        _WORLDS[key] = build_world(cfg, base)
    return _WORLDS[key]


def save_log_worlds(cfg: dict[str, Any], world: World, folder: Path) -> dict[str, str]:
    """Save the log world of a sweep (or of its closed loop's base) for the worker processes:
    loading it takes a fraction of building it again. Key -> folder."""
    saved: dict[str, str] = {}
    for c, w in ((cfg, world), (open_loop(cfg), getattr(world, "base", None))):
        if isinstance(w, LogWorld):
            saved[_key(c)] = str(w.save(folder / f"world-{len(saved)}"))
    return saved


def closed_loop_on(cfg: dict[str, Any]) -> bool:
    return closed_loop_enabled(cfg)


@dataclass
class Job:
    index: int
    world: dict[str, Any]
    spec: PolicySpec
    seed: int
    steps: int
    batch_size: int
    record: bool = False
    #: log worlds the main process saved for the workers (save_log_worlds)
    saved: dict[str, str] = field(default_factory=dict)


def run_job(job: Job) -> dict[str, Any]:
    """Build the world (cached per process) and the policy, replay, return plain arrays."""
    _SAVED.update(job.saved)
    world = _world(job.world)
    policy = build_policy(job.spec, world, job.seed)
    res = replay(policy, world, job.steps, job.batch_size, job.seed, record=job.record)
    return {
        "index": job.index,
        "policy": job.spec.name,
        "type": job.spec.type,
        "seed": job.seed,
        "steps": res.steps,
        "summary": res.summary,
        "sample_counts_hist": np.bincount(np.minimum(res.sample_counts, 10_000)),
        "groups": res.groups,
        "reliability": res.reliability,
    }


def _init_worker() -> None:
    # Each worker process replays one policy at a time: keep any native thread pool small so
    # that processes x threads does not oversubscribe the cores.
    os.environ.setdefault("RAYON_NUM_THREADS", "1")


@dataclass
class SweepResult:
    scenario: Scenario
    world: dict[str, Any]
    summary: pl.DataFrame  # one row per (policy, seed)
    steps: pl.DataFrame  # one row per (policy, seed, step)
    wall_s: float
    #: (policy, seed) -> the replay's own rollouts as a per-group log, when recorded
    logs: dict[tuple[str, int], pl.DataFrame] | None = None
    #: a log world's held-out calibration on its own log (dps.replay.calibration)
    calibration: Any = None
    #: the predictive policies' reliability bins of P(partial), one row per (policy, seed, bin)
    reliability: pl.DataFrame | None = None


def make_jobs(scenario: Scenario, world: World, record: bool = False) -> list[Job]:
    """Every (policy, seed); with a closed loop, each policy also against the open-loop world, named "NAME (open loop)"."""
    steps = scenario.steps or world.steps
    variants = [(scenario.world, "")]
    if closed_loop_on(scenario.world):
        variants.append((open_loop(scenario.world), " (open loop)"))
    jobs: list[Job] = []
    for spec in scenario.policies:
        for cfg, suffix in variants:
            named = dataclasses.replace(spec, name=spec.name + suffix)
            for seed in scenario.seeds:
                jobs.append(Job(len(jobs), cfg, named, seed, steps, scenario.batch_size, record))
    return jobs


def run_sweep(scenario: Scenario, workers: int | None = None, progress: bool = True, record: bool = False) -> SweepResult:
    import polars as pl
    from tqdm import tqdm  # type: ignore[import-untyped]

    t0 = time.perf_counter()
    variants = 2 if closed_loop_on(scenario.world) else 1
    workers = max(1, min(workers or scenario.workers, len(scenario.policies) * variants * len(scenario.seeds)))
    with contextlib.ExitStack() as stack:
        pool = None
        if workers > 1:  # the workers start (spawn, imports) while this process builds the world
            ctx = mp.get_context("spawn")  # no fork after native thread pools have started
            pool = stack.enter_context(ctx.Pool(workers, initializer=_init_worker))
        world = build_world(scenario.world)
        calibration = world_calibration(world)
        if scenario.batch_size > world.num_prompts:
            raise ValueError(f"batch_size {scenario.batch_size} exceeds the world's {world.num_prompts} prompts")
        # Construct every policy once here, so that a bad parameter fails before any work starts.
        for spec in scenario.policies:
            build_policy(spec, world, scenario.seeds[0])
        jobs = make_jobs(scenario, world, record)
        results: list[dict[str, Any]] = []
        bar = tqdm(total=len(jobs), desc=f"replay {scenario.name}", unit="run", disable=not progress)
        described = world.describe()
        if pool is None:
            _WORLDS.clear()
            if closed_loop_on(scenario.world):
                _WORLDS[_key(open_loop(scenario.world))] = world.base  # type: ignore[attr-defined]
            _WORLDS[_key(scenario.world)] = world
            for job in jobs:
                results.append(run_job(job))
                bar.update()
        else:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="dps-sweep-"))
            saved = save_log_worlds(scenario.world, world, Path(tmp))
            del world  # the workers hold their own
            # Longest first: gates that roll out several rounds per step take longest.
            order = sorted(jobs, key=lambda j: j.spec.type not in ("dynamic_sampling", "ds", "greso"))
            for res in pool.imap_unordered(run_job, [dataclasses.replace(j, saved=saved) for j in order], chunksize=1):
                results.append(res)
                bar.update()
    bar.close()
    results.sort(key=lambda r: r["index"])
    rows, frames = [], []
    for r in results:
        rows.append({"policy": r["policy"], "type": r["type"], "seed": r["seed"], **r["summary"]})
        f = pl.DataFrame(r["steps"]).with_columns(
            pl.lit(r["policy"]).alias("policy"), pl.lit(r["type"]).alias("type"), pl.lit(r["seed"]).alias("seed")
        )
        frames.append(f)
    summary = pl.DataFrame(rows)
    steps_df = pl.concat(frames, how="diagonal_relaxed")
    front = ["policy", "type", "seed"]
    steps_df = steps_df.select(front + [c for c in steps_df.columns if c not in front])
    logs = None
    if record:
        logs = {(r["policy"], r["seed"]): pl.DataFrame(r["groups"]) for r in results}
    reliability = reliability_frame(results)
    wall = time.perf_counter() - t0
    return SweepResult(scenario, described, summary, steps_df, wall, logs, calibration, reliability)


def reliability_frame(results: list[dict[str, Any]]) -> pl.DataFrame | None:
    """The replays' reliability bins as rows (policy, seed, bin, lo, hi, count, sum_pred, sum_obs)."""
    import polars as pl

    rows = []
    for r in results:
        bins = r.get("reliability")
        if bins is None:
            continue
        n = len(bins)
        for i, (count, sum_pred, sum_obs) in enumerate(bins):
            rows.append({"policy": r["policy"], "seed": r["seed"], "bin": i, "lo": i / n, "hi": (i + 1) / n,
                         "count": int(count), "sum_pred": float(sum_pred), "sum_obs": float(sum_obs)})
    return pl.DataFrame(rows) if rows else None
