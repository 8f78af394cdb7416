"""The policy's share of a step, for every built-in: `run_step` with a rollout that costs nothing
(outcomes drawn up front), so the time is select, admit, observe and the step's undo point.

Prints one row per policy: the median milliseconds per step over `--steps` steps, the best of
`--repeats` runs. To compare two builds on one machine, run it under each (e.g. another
checkout's `python/` first on PYTHONPATH) in one session. Usage:
    .venv/bin/python benchmarks/bench_policy_step.py [--prompts 7500] [--batch 256] [--steps 200]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import dps
from dps import BOTS, DPS, GRESO, DynamicSampling, HistoryResampling, MoPPS, Uniform, run_step

POLICIES = {
    "US": lambda n: Uniform(n, seed=0),
    "HR": lambda n: HistoryResampling(n, seed=0),
    "DS": lambda n: DynamicSampling(num_prompts=n, seed=0),
    "MoPPS": lambda n: MoPPS(n, seed=0),
    "GRESO": lambda n: GRESO(n, seed=0),
    "BOTS": lambda n: BOTS(n, seed=0),
    "DPS": lambda n: DPS(n, seed=0),
}


def step_times(make, n: int, batch: int, steps: int, k: int = 16) -> list[float]:
    rng = np.random.default_rng(0)
    rate = rng.uniform(size=n)
    outcomes = rng.binomial(k, rate, size=(64, n))
    policy = make(n)
    times = []
    for step in range(steps):

        def rollout(ids: np.ndarray, table: np.ndarray = outcomes[step % 64]) -> tuple[np.ndarray, np.ndarray]:
            return table[ids], np.full(len(ids), k, np.int64)

        t0 = time.perf_counter()
        run_step(policy, batch, rollout)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=7500)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"dps from {dps.__file__}; N = {args.prompts}, B = {args.batch}, {args.steps} steps")
    print("| policy | ms / step (median, best of runs) |\n|---|---|")
    for name, make in POLICIES.items():
        best = min(
            statistics.median(step_times(make, args.prompts, args.batch, args.steps)) for _ in range(args.repeats)
        )
        print(f"| {name} | {best * 1e3:.3f} |", flush=True)


if __name__ == "__main__":
    main()
