"""Replay speed: policies replayed on a large synthetic world, and the MATH demo sweep.

    .venv/bin/python benchmarks/bench_replay.py                  # N = 10^6, 100 steps
    .venv/bin/python benchmarks/bench_replay.py --sizes 100000 1000000 --steps 100 --demo

Prints one row per (N, policy): wall time of the whole replay (world build excluded), the
policy's own time per step (select + admit + observe), the world's time per step, and the
effective ratio. The world is the MATH preset's dynamics stretched to N prompts.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from dps.replay.runner import replay
from dps.replay.scenario import PolicySpec, build_policy
from dps.replay.worlds import SyntheticWorld, preset_params

POLICIES = {
    "DPS": PolicySpec("DPS", "dps", {"decay": 0.7}),
    "US": PolicySpec("US", "uniform", {}),
    "MoPPS": PolicySpec("MoPPS", "mopps", {"decay": 1.0}),
    "DS": PolicySpec("DS", "dynamic_sampling", {"max_rounds": 4}),
    "oracle": PolicySpec("oracle", "oracle", {}),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--policies", nargs="+", default=["DPS", "US"], choices=sorted(POLICIES))
    ap.add_argument("--demo", action="store_true", help="also time `dps replay replay/math.toml` (the make demo sweep)")
    args = ap.parse_args()

    print("| N | policy | steps | replay wall s | policy ms/step | world ms/step | effective ratio |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for n in args.sizes:
        t0 = time.perf_counter()
        world = SyntheticWorld(preset_params("math", num_prompts=n, steps=args.steps), seed=0)
        build_s = time.perf_counter() - t0
        for name in args.policies:
            policy = build_policy(POLICIES[name], world, seed=0)
            t0 = time.perf_counter()
            res = replay(policy, world, args.steps, args.batch_size, seed=0)
            wall = time.perf_counter() - t0
            s = res.summary
            print(
                f"| {n:,} | {name} | {args.steps} | {wall:.2f} | {s['policy_ms_per_step']:.2f} | "
                f"{s['world_ms_per_step']:.2f} | {s['effective_ratio']:.3f} |",
                flush=True,
            )
        print(f"(world with {n:,} prompts built in {build_s:.2f} s)", file=sys.stderr)

    if args.demo:
        root = Path(__file__).resolve().parents[1]
        dps_bin = Path(sys.executable).with_name("dps")
        cmd = [
            str(dps_bin),
            "replay",
            str(root / "replay/math.toml"),
            "--out",
            str(root / "runs/bench-demo"),
            "--quiet",
            "--no-plots",
        ]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        print(
            "\nMATH demo sweep (7 policies x 3 seeds, 360 steps, no plots), end to end: "
            f"{time.perf_counter() - t0:.1f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
