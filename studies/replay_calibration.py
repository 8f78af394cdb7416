"""Is a log world calibrated? Uniform sampling replayed on a log against the truth.

    python studies/replay_calibration.py [--runs RUN_DIR ...] [--old-worlds OLD.py] [--seeds 3]

Checks, each printed as a Markdown row (uniform replay's effective ratio, mean over replay
seeds, against the truth, and the log world's held-out calibration):

* the stationary log with a known answer: 40,000 prompts, p ~ Beta(0.5, 0.5) drawn once,
  512 random prompts x 8 rollouts per step for 1,000 steps; exact ratio 1 - 2 E[p^8] = 0.607;
* the shared SmolLM2 GRPO log (../shared/data/smollm2-arith-lr1e6/log.parquet): its dense sweep
  rows alone and its sparse training rows alone, against the mean partial share of its sweeps;
* runs of `dps train ... --set log.sweep_every=N` (each RUN_DIR's dense.parquet and
  rollouts.parquet), against the mean partial share of that run's sweeps.

With --synthetic-dps N, DPS's training logs of synthetic worlds with a known truth (presets
countdown and math; 512 x 100 steps x B = 16, 1,000 x 100 x 16, 2,000 x 150 x 32; N world seeds
each): the selection test's z, and uniform replayed on the log with the population prior fitted
as "auto" decides and on every group, against uniform on the world itself.

With --old-worlds, the same replays also run on the LogWorld of an older dps.replay.worlds module
saved as a file (e.g. `git show b3b4bd8:python/dps/replay/worlds.py > old_worlds.py`).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from dps.policies.registry import make_policy
from dps.replay.calibration import calibrate
from dps.replay.logworld import LogWorld
from dps.replay.runner import replay

ROOT = Path(__file__).resolve().parents[1]
SHARED_LOG = ROOT.parent / "shared" / "data" / "smollm2-arith-lr1e6" / "log.parquet"
PARTIAL = (pl.col("n_correct") > 0) & (pl.col("n_correct") < pl.col("n_rollouts"))


def stationary_log(
    seed: int = 0, prompts: int = 40_000, steps: int = 1000, batch: int = 512, k: int = 8
) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    p = rng.beta(0.5, 0.5, prompts)
    ids = np.concatenate([rng.choice(prompts, batch, replace=False) for _ in range(steps)])
    return pl.DataFrame(
        {
            "step": np.repeat(np.arange(steps), batch),
            "prompt_id": ids,
            "n_rollouts": np.full(len(ids), k),
            "n_correct": rng.binomial(k, p[ids]),
        }
    )


def uniform_ratio(world: Any, batch: int, seeds: int, steps: int) -> float:
    runs = [
        replay(make_policy("uniform", world.num_prompts, s), world, steps=steps, batch_size=batch, seed=s)
        for s in range(seeds)
    ]
    return float(np.mean([r.summary["effective_ratio"] for r in runs]))


def sweep_truth(dense: pl.DataFrame) -> float:
    """Mean over sweep steps of the share of partially solved groups: uniform's expected effective ratio."""
    return float(dense.group_by("step").agg(PARTIAL.mean().alias("s"))["s"].mean())


def load_old(path: str | None) -> Any:
    if not path:
        return None
    spec = importlib.util.spec_from_file_location("old_worlds", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["old_worlds"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def dense_ids(groups: pl.DataFrame) -> pl.DataFrame:
    """The old LogWorld wants ids 0..N-1."""
    return groups.select("step", "prompt_id", "n_rollouts", "n_correct")


def row(
    name: str,
    groups: pl.DataFrame,
    truth: float,
    batch: int,
    args: argparse.Namespace,
    old: Any,
    num_prompts: int | None = None,
) -> None:
    t0 = time.perf_counter()
    world = LogWorld(groups, num_prompts=num_prompts)
    build = time.perf_counter() - t0
    new = uniform_ratio(world, batch, args.seeds, world.steps)
    cal = calibrate(world)
    old_txt = "-"
    if old is not None:
        ow = old.LogWorld(dense_ids(groups), num_prompts=num_prompts)
        old_ratio = uniform_ratio(ow, batch, args.seeds, world.steps)
        old_txt = f"{old_ratio:.3f} ({old_ratio - truth:+.3f})"
    print(
        f"| {name} | {groups.height:,} | {truth:.3f} | {old_txt} | {new:.3f} ({new - truth:+.3f}) | "
        f"{world.switch_rate:g} | {world.population.replace('_', ' ')} | {cal.ece:.3f} | {cal.skill:.2f} |"
        f" {build:.1f} |",
        flush=True,
    )


def synthetic_dps_rows(seeds: int, replay_seeds: int) -> None:
    """DPS logs of synthetic worlds: is the selection found, and how close is uniform's replay of the log?"""
    from dps.replay.logworld import LogEstimator
    from dps.replay.worlds import SyntheticWorld, preset_params

    print(
        "\n| preset | prompts x steps x B | world seed | logged prompts | z | prior fitted on | truth |"
        " replay (error) | on every group (error) |"
    )
    print("|---|---|---:|---:|---:|---|---:|---:|---:|")
    for preset in ("countdown", "math"):
        for n, steps, batch in ((512, 100, 16), (1000, 100, 16), (2000, 150, 32)):
            for ws in range(seeds):
                world = SyntheticWorld(preset_params(preset, num_prompts=n, steps=steps), seed=ws)
                truth = uniform_ratio(world, batch, replay_seeds, steps)
                rec = replay(make_policy("dps", n, ws), world, steps, batch, seed=ws, record=True)
                log = pl.DataFrame(rec.groups).select("step", "prompt_id", "n_rollouts", "n_correct")
                auto = LogWorld(log, num_prompts=n)
                every = LogWorld(log, LogEstimator(population="all"), num_prompts=n)
                a, e = uniform_ratio(auto, batch, replay_seeds, steps), uniform_ratio(every, batch, replay_seeds, steps)
                print(
                    f"| {preset} | {n} x {steps} x {batch} | {ws} | {auto.logged_prompts} | {auto.selection.z:+.1f} | "
                    f"{auto.population.replace('_', ' ')} | {truth:.3f} | {a:.3f} ({a - truth:+.3f}) |"
                    f" {e:.3f} ({e - truth:+.3f}) |",
                    flush=True,
                )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="*", default=[], help="dps train run folders made with log.sweep_every")
    ap.add_argument("--old-worlds", default=None, help="an older worlds.py to compare against")
    ap.add_argument("--seeds", type=int, default=3, help="replay seeds per check (default 3)")
    ap.add_argument("--skip-stationary", action="store_true")
    ap.add_argument(
        "--synthetic-dps",
        type=int,
        default=0,
        metavar="N",
        help="also DPS logs of synthetic worlds, N world seeds per size",
    )
    args = ap.parse_args()
    old = load_old(args.old_worlds)
    print(
        "| log | rows | truth | old replay (error) | new replay (error) | switch rate | prior fitted on |"
        " held-out ECE | skill | build s |"
    )
    print("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|")
    if not args.skip_stationary:
        row("stationary Beta(0.5, 0.5), 512 x 8 per step", stationary_log(), 1 - 2 * 12870 / 4**8, 512, args, old)
    if SHARED_LOG.exists():
        log = pl.read_parquet(SHARED_LOG)
        truth = sweep_truth(log.filter(pl.col("kind") == "sweep"))
        for kind, label in (("sweep", "dense sweep rows"), ("train", "sparse training rows (uniform run)")):
            row(
                f"SmolLM2 GRPO log: {label}",
                log.filter(pl.col("kind") == kind).drop("kind"),
                truth,
                64,
                args,
                old,
                1024,
            )
    else:
        print(f"({SHARED_LOG} not found: skipped)", file=sys.stderr)
    for run in args.runs:
        folder = Path(run)
        dense = pl.read_parquet(folder / "dense.parquet").select("step", "prompt_id", "n_rollouts", "n_correct")
        train = pl.read_parquet(folder / "rollouts.parquet").select("step", "prompt_id", "n_rollouts", "n_correct")
        n = int(max(dense["prompt_id"].max(), train["prompt_id"].max())) + 1  # type: ignore[arg-type]
        batch = int(train.group_by("step").len()["len"].min())  # type: ignore[arg-type]
        truth = sweep_truth(dense)
        row(f"{folder.name}: dense sweep rows", dense, truth, batch, args, old, n)
        row(f"{folder.name}: training rows", train, truth, batch, args, old, n)
    if args.synthetic_dps:
        synthetic_dps_rows(args.synthetic_dps, args.seeds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
