"""Uniform replayed on a DPS run's training log alone (a selective, sparse log), against its sweeps' truth.

For each DPS run (a `dps train` folder with log.sweep_every, or the SmolLM2 pair's live DPS run),
the log world is built from the training groups alone (what a user's DPS run leaves), uniform is
replayed on it, and the result is set against the truth: the mean partially solved share of the
run's sweeps (uniform's expected effective ratio). Beside it: how many prompts and first looks the
log holds, where the first looks fall, their partial share against the sweeps' at those steps, and
the replay with the closed loop fitted from the log itself.

    .venv/bin/python studies/selective_log.py /work/runs-closedloop/s0-dps /work/runs-closedloop/s1-dps \\
        /work/runs-closedloop/s2-dps --pair
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import polars as pl

from dps.policies.registry import make_policy
from dps.replay.closedloop import ClosedLoopWorld, fit_training_effect
from dps.replay.logworld import LogEstimator, LogWorld
from dps.replay.runner import replay

PAIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "smollm2-arith-lr3e6-pair"
COLS = ["step", "prompt_id", "n_rollouts", "n_correct"]
PARTIAL = (pl.col("n_correct") > 0) & (pl.col("n_correct") < pl.col("n_rollouts"))


def uniform(world: object, batch: int, steps: int, seeds: int = 3) -> float:
    runs = [replay(make_policy("uniform", world.num_prompts, s), world, steps, batch, seed=s) for s in range(seeds)]  # type: ignore[attr-defined]
    return float(np.mean([r.summary["effective_ratio"] for r in runs]))


def check(name: str, train: pl.DataFrame, sweeps: pl.DataFrame, num_prompts: int, batch: int) -> None:
    truth = float(sweeps.group_by("step").agg(PARTIAL.mean().alias("s"))["s"].mean())
    first = train.sort("step").unique("prompt_id", keep="first")
    looks = first["step"].to_numpy()
    share = float(first.select(PARTIAL.mean()).item())
    se = float(np.sqrt(share * (1 - share) / len(looks)))
    at = sweeps.filter(pl.col("step") <= int(np.median(looks)) + 4).select(PARTIAL.mean()).item()
    world = LogWorld(train, num_prompts=num_prompts)
    steps = world.steps
    open_loop = uniform(world, batch, steps)
    every = uniform(LogWorld(train, LogEstimator(population="all"), num_prompts=num_prompts), batch, steps)
    try:
        effect = fit_training_effect(train, train, num_prompts=num_prompts)
        closed = f"{uniform(ClosedLoopWorld(world, effect, train), batch, steps):.3f}"
    except ValueError as e:
        closed = f"refused ({str(e).split(':')[0]})"
    print(
        f"| {name} | {train.height:,} | {train['prompt_id'].n_unique()} of {num_prompts} | {len(looks)} at steps "
        f"{int(np.min(looks))}-{int(np.max(looks))} (median {int(np.median(looks))}) "
        f"| {share:.3f} +- {se:.3f} (sweeps to then: {at:.3f}) "
        f"| {truth:.3f} | {open_loop:.3f} ({open_loop - truth:+.3f}) | {every:.3f} | {closed} |",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="*", type=Path)
    ap.add_argument("--pair", action="store_true", help="also the SmolLM2 pair's live DPS run")
    a = ap.parse_args()
    print(
        "| DPS run | training groups | prompts logged | first looks | first looks partial (sweeps) | truth "
        "| uniform replayed (error) | prior on every group | closed loop from the log |"
    )
    print("|---|---:|---:|---|---|---:|---:|---:|---|")
    for run in a.runs:
        train = pl.read_parquet(run / "rollouts.parquet").select(COLS)
        sweeps = pl.read_parquet(run / "dense.parquet").select(COLS)
        n = int(sweeps["prompt_id"].max()) + 1  # type: ignore[arg-type]
        batch = int(train.group_by("step").len()["len"].min())  # type: ignore[arg-type]
        check(run.name, train, sweeps, n, batch)
    if a.pair:
        log = pl.read_parquet(PAIR / "log_dps.parquet")
        train = log.filter(pl.col("kind") == "train").select(COLS)
        sweeps = log.filter((pl.col("kind") == "sweep") & (pl.col("step") < 108)).select(COLS)
        check("SmolLM2 pair, live DPS", train, sweeps, 1024, 64)


if __name__ == "__main__":
    main()
