"""Log world at scale: build and replay a big sparse log; wall time and peak memory.

    python benchmarks/bench_logworld.py [--prompts 1000000] [--steps 10000] [--per-step 1000] [--policies US DPS]

Makes a log of `steps` x `per-step` groups (distinct prompts within a step, drawn uniformly from
`prompts`; k = 8; each prompt's success rate drifts in logit space), builds a LogWorld from it
(switch rate and prior chosen from the log, as by default) and replays each policy for every
step of the log with batch = per-step. Prints one Markdown row per stage: wall seconds and the
process's peak resident memory so far (ru_maxrss, which includes the log frame itself).

This times the log world's parts in one process, from a frame in memory: no Parquet read, no
held-out calibration, no sweep (the replays run one after the other here, where `dps replay`
runs them in worker processes), no report. What a user's `dps replay` of such a log costs as a
whole is benchmarks/bench_replay_scale.py.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np
import polars as pl

from dps.policies.registry import make_policy
from dps.replay.logworld import LogWorld
from dps.replay.runner import replay

POLICIES = {"US": "uniform", "DPS": "dps"}


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def distinct_ids(rng: np.random.Generator, steps: int, prompts: int, per_step: int) -> np.ndarray:
    """(steps * per_step,) ids, distinct within each step, in blocks to bound memory."""
    out = np.empty(steps * per_step, np.int64)
    block = max(1, 2_000_000 // per_step)
    for s0 in range(0, steps, block):
        n = min(block, steps - s0)
        draws = rng.integers(0, prompts, (n, per_step + per_step // 4 + 16))
        order = np.argsort(draws, axis=1, kind="stable")
        ranked = np.take_along_axis(draws, order, axis=1)
        repeat = np.zeros_like(draws, dtype=bool)
        repeat[:, 1:] = ranked[:, 1:] == ranked[:, :-1]
        dup = np.zeros_like(repeat)
        np.put_along_axis(dup, order, repeat, axis=1)
        keep = ~dup & (np.cumsum(~dup, axis=1) <= per_step)
        if not np.all(keep.sum(axis=1) == per_step):
            raise RuntimeError("too many repeats: raise the draw margin")
        out[s0 * per_step : (s0 + n) * per_step] = draws[keep]
    return out


def make_log(prompts: int, steps: int, per_step: int, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    base = rng.normal(0.0, 2.5, prompts)
    gain = rng.gamma(2.0, 0.75, prompts)
    ids = distinct_ids(rng, steps, prompts, per_step)
    step = np.repeat(np.arange(steps, dtype=np.int64), per_step)
    logit = base[ids] + gain[ids] * (step / steps)
    nc = rng.binomial(8, 1.0 / (1.0 + np.exp(-logit)))
    del logit
    return pl.DataFrame(
        {"step": step, "prompt_id": ids, "n_rollouts": np.full(len(ids), 8, np.int64), "n_correct": nc.astype(np.int64)}
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=1_000_000)
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--per-step", type=int, default=1000)
    ap.add_argument("--policies", nargs="+", default=["US", "DPS"], choices=sorted(POLICIES))
    args = ap.parse_args()
    print("| stage | rows | wall s | world ms/step | policy ms/step | effective ratio | peak RSS GiB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    t0 = time.perf_counter()
    log = make_log(args.prompts, args.steps, args.per_step)
    print(
        f"| make the log (numpy) | {log.height:,} | {time.perf_counter() - t0:.1f} | | | | {peak_gib():.2f} |",
        flush=True,
    )
    t0 = time.perf_counter()
    world = LogWorld(log, num_prompts=args.prompts)
    print(
        f"| build LogWorld (switch rate {world.switch_rate:g}, prior half-life {world.prior.half_life:g}) | "
        f"{log.height:,} | {time.perf_counter() - t0:.1f} | | | | {peak_gib():.2f} |",
        flush=True,
    )
    for name in args.policies:
        policy = make_policy(POLICIES[name], args.prompts, 0)
        t0 = time.perf_counter()
        res = replay(policy, world, steps=world.steps, batch_size=args.per_step, seed=0)
        s = res.summary
        print(
            f"| replay {name}, {world.steps:,} steps x {args.per_step:,} | {log.height:,} |"
            f" {time.perf_counter() - t0:.1f} | "
            f"{s['world_ms_per_step']:.2f} | {s['policy_ms_per_step']:.2f} | {s['effective_ratio']:.3f} |"
            f" {peak_gib():.2f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
