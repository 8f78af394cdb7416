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

from dps.replay.calibration import world_calibration
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
_EFFECTS: dict[str, Any] = {}
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
    effects: dict[str, Any] = field(default_factory=dict)


def run_job(job: Job) -> dict[str, Any]:
    """Build the world (cached per process) and the policy, replay, return plain arrays."""
    _SAVED.update(job.saved)
    _EFFECTS.update(job.effects)
    world = _world(job.world) if job.draw < 0 else _drawn_world(job.world, job.draw)
    policy = build_policy(job.spec, world, job.seed)
    res = replay(policy, world, job.steps, job.batch_size, job.seed, record=job.record)
    if job.draw >= 0:
        effect = world.effect  # type: ignore[attr-defined]
        return {
            "index": job.index,
            "policy": job.spec.name,
            "draw": job.draw,
            "seed": job.seed,
            "saturation": effect.saturation,
            "half_life": effect.half_life,
            "gain": effect.gain,
            "effective_ratio": res.summary["effective_ratio"],
            "rollouts": res.summary["rollouts"],
        }
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
    """What `run_sweep` returns: the per-(policy, seed) summary and per-step rows, and what the report needs."""

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
                jobs.append(Job(len(jobs), cfg, named, seed, steps, scenario.batch_size, record))
    if closed_loop_on(scenario.world) and getattr(getattr(world, "effect", None), "candidates", None):
        first = max(scenario.seeds) + 1  # the interval's replays use seeds of their own
        for spec in scenario.policies:
            for r in range(scenario.interval_draws):
                jobs.append(Job(len(jobs), scenario.world, spec, first + r, steps, scenario.batch_size, False, draw=r))
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
            build_policy(spec, world, scenario.seeds[0])
        jobs = make_jobs(scenario, world, record)
        results: list[dict[str, Any]] = []
        bar = tqdm(total=len(jobs), desc=f"replay {scenario.name}", unit="run", disable=not progress)
        described = world.describe()
        if pool is None:
            _WORLDS.clear()
            if isinstance(scenario.world, ClosedLoopWorldConfig):
                _WORLDS[_key(scenario.world.open_loop())] = world.base  # type: ignore[attr-defined]
            _WORLDS[_key(scenario.world)] = world
            for job in jobs:
                results.append(run_job(job))
                bar.update()
        else:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="dps-sweep-"))
            saved = save_log_worlds(scenario.world, world, Path(tmp))
            effects = {_key(scenario.world): world.effect} if closed_loop_on(scenario.world) else {}  # type: ignore[attr-defined]
            del world  # the workers hold their own
            # Longest first: gates that roll out several rounds per step take longest.
            order = sorted(jobs, key=lambda j: j.spec.type not in ("dynamic_sampling", "ds", "greso"))
            jobs_out = [dataclasses.replace(j, saved=saved, effects=effects) for j in order]
            for res in pool.imap_unordered(run_job, jobs_out, chunksize=1):
                results.append(res)
                bar.update()
    bar.close()
    results.sort(key=lambda r: r["index"])
    draws = pl.DataFrame([r for r in results if "draw" in r]) if any("draw" in r for r in results) else None
    results = [r for r in results if "draw" not in r]
    rows, frames = [], []
    for r in results:
        rows.append({"policy": r["policy"], "type": r["type"], "seed": r["seed"], **r["summary"]})
        f = pl.DataFrame(r["steps"]).with_columns(
            pl.lit(r["policy"]).alias("policy"), pl.lit(r["type"]).alias("type"), pl.lit(r["seed"]).alias("seed")
        )
        frames.append(f)
    summary = with_intervals(pl.DataFrame(rows), draws)
    steps_df = pl.concat(frames, how="diagonal_relaxed")
    front = ["policy", "type", "seed"]
    steps_df = steps_df.select(front + [c for c in steps_df.columns if c not in front])
    logs = None
    if record:
        logs = {(r["policy"], r["seed"]): pl.DataFrame(r["groups"]) for r in results}
    reliability = reliability_frame(results)
    wall = time.perf_counter() - t0
    return SweepResult(scenario, described, summary, steps_df, wall, logs, calibration, reliability, draws)


#: The interval's level: a replay of the same scenario falls inside it this often.
INTERVAL_LEVEL = 0.9
#: Summary columns that get an interval (column_lo, column_hi).
INTERVAL_COLUMNS = ("effective_ratio", "rollouts")


def with_intervals(summary: pl.DataFrame, draws: pl.DataFrame | None) -> pl.DataFrame:
    """Add COLUMN_lo / COLUMN_hi (a 90% interval) and interval_from to every (policy, seed) row.

    A closed-loop policy with interval replays gets the interval of those replays (each with its
    own seed and an effect drawn from what the log allows: seed noise, the fitted gain's
    uncertainty and the shapes the log cannot tell apart): `prediction_interval`. Every other row
    gets one from its seeds alone (the replay noise; in a log world without a closed loop, not
    how far the open loop itself is off): a normal prediction interval for one more seed.
    """
    import polars as pl

    by_draws: dict[str, pl.DataFrame] = {}
    if draws is not None:
        by_draws = {str(p[0]): d for p, d in draws.group_by("policy")}
    parts = []
    for (policy,), rows in summary.group_by("policy", maintain_order=True):
        d = by_draws.get(str(policy))
        cols = {}
        for col in INTERVAL_COLUMNS:
            if d is not None:
                lo, hi = prediction_interval(d[col].to_numpy().astype(np.float64))
            else:
                lo, hi = seed_interval(rows[col].to_numpy().astype(np.float64))
            cols[f"{col}_lo"], cols[f"{col}_hi"] = lo, hi
        source = f"closed loop, {d.height} draws" if d is not None else "seeds"
        parts.append(
            rows.with_columns(
                *(pl.lit(v, pl.Float64).alias(k) for k, v in cols.items()), pl.lit(source).alias("interval_from")
            )
        )
    return pl.concat(parts) if parts else summary


def prediction_interval(values: np.ndarray, level: float = INTERVAL_LEVEL) -> tuple[float, float]:
    """The order statistics (k, n + 1 - k) of n draws: a new draw falls between them with probability
    (n + 1 - 2k) / (n + 1), k the largest that keeps this at `level` (k = 1, the range, below 19 draws)."""
    x = np.sort(values[np.isfinite(values)])
    n = len(x)
    if n == 0:
        return float("nan"), float("nan")
    k = max(1, int(math.floor((n + 1) * (1 - level) / 2)))
    return float(x[k - 1]), float(x[n - k])


def seed_interval(values: np.ndarray, level: float = INTERVAL_LEVEL) -> tuple[float, float]:
    """mean +- t sd sqrt(1 + 1/n): where one more seed's replay falls with probability `level` (NaN from one seed)."""
    x = values[np.isfinite(values)]
    n = len(x)
    if n < 2:
        return float("nan"), float("nan")
    half = _t_quantile(0.5 + level / 2, n - 1) * float(np.std(x, ddof=1)) * math.sqrt(1 + 1 / n)
    m = float(np.mean(x))
    return m - half, m + half


def _t_quantile(q: float, df: int) -> float:
    """Student's t quantile by bisection on its CDF (regularised incomplete beta by continued fraction)."""
    lo, hi = 0.0, 1e3
    for _ in range(200):
        mid = (lo + hi) / 2
        if _t_cdf(mid, df) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _t_cdf(t: float, df: int) -> float:
    x = df / (df + t * t)
    return 1.0 - 0.5 * _betainc(df / 2, 0.5, x)


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b) (Lentz's continued fraction)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x > (a + 1) / (a + b + 2):
        return 1.0 - _betainc(b, a, 1 - x)
    f, c, d = 1.0, 1.0, 0.0
    for i in range(400):
        m = i // 2
        if i == 0:
            num = 1.0
        elif i % 2 == 0:
            num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        else:
            num = -((a + m) * (a + b + m) * x) / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > 1e-300 else 1e-300)
        c = 1.0 + num / (c if abs(c) > 1e-300 else 1e-300)
        f *= c * d
        if abs(1.0 - c * d) < 1e-12:
            break
    return front * (f - 1.0) / a


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
            rows.append(
                {
                    "policy": r["policy"],
                    "seed": r["seed"],
                    "bin": i,
                    "lo": i / n,
                    "hi": (i + 1) / n,
                    "count": int(count),
                    "sum_pred": float(sum_pred),
                    "sum_obs": float(sum_obs),
                }
            )
    return pl.DataFrame(rows) if rows else None
