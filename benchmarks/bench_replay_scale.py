"""The two-policy replay of a 10^7-row log, as a user runs it: `dps replay` on a scenario.

    python benchmarks/bench_replay_scale.py [--dir runs/bench-scale] [--base COMMIT] [--repeat 1]

The log: 10^6 prompts whose success rates are drawn once from Beta(0.5, 0.5), 10^4 steps of
1,000 prompts drawn at random (distinct within a step) x 8 rollouts, one Parquet file (written
once, seeded, then reused). The scenario: that log as the world (estimator at its defaults),
B = 1,000, replay seed 0, uniform and DPS at their defaults, workers at their default (all cores).

Each code tree runs `dps replay SCENARIO --quiet --no-plots` under `/usr/bin/time -v`: the whole
command (Parquet read, log world build with its selection test and switch-rate choice, the
held-out calibration, both replays, the report). Wall seconds, CPU seconds (user + system, the
worker processes included) and the maximum resident set size of the largest process are printed
per tree, one Markdown row each. `--base COMMIT` also runs
the code of COMMIT (checked out with `git worktree` under DIR, its extension built there with
cargo) on the same log, back to back with this checkout's code, so their ratio is measured in one
run. The load average before each run is printed beside it (the machine may be shared).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PROMPTS, STEPS, PER_STEP, K = 1_000_000, 10_000, 1000, 8

SCENARIO = """name = "scale"
description = "10^6 prompts, p ~ Beta(0.5, 0.5); 10^4 steps of 1,000 x 8 (benchmarks/bench_replay_scale.py)"

[world]
log = "{log}"

[run]
batch_size = 1000
seeds = [0]

[[policies]]
name = "US"
type = "uniform"

[[policies]]
name = "DPS"
type = "dps"
"""


def distinct_ids(rng: np.random.Generator, steps: int, prompts: int, per_step: int) -> np.ndarray:
    """(steps * per_step,) ids, distinct within each step, uniform over range(prompts)."""
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


def write_log(path: Path, seed: int = 0) -> None:
    import polars as pl

    rng = np.random.default_rng(seed)
    p = rng.beta(0.5, 0.5, PROMPTS)
    ids = distinct_ids(rng, STEPS, PROMPTS, PER_STEP)
    nc = rng.binomial(K, p[ids])
    frame = pl.DataFrame(
        {
            "step": np.repeat(np.arange(STEPS, dtype=np.int64), PER_STEP),
            "prompt_id": ids,
            "n_rollouts": np.full(len(ids), K, np.int64),
            "n_correct": nc.astype(np.int64),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path)


def base_tree(commit: str, folder: Path) -> Path:
    """A checkout of `commit` with its extension built in place (python/dps/_core.abi3.so)."""
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", commit], capture_output=True, text=True, check=True
    ).stdout.strip()
    tree = folder / f"base-{commit[:12]}"
    if not tree.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), commit], check=True)
    lib = tree / "python" / "dps" / "_core.abi3.so"
    if not lib.exists():
        subprocess.run(["cargo", "build", "--release", "--features", "python", "-q"], cwd=tree, check=True)
        shutil.copy(tree / "target" / "release" / "libdps_core.so", lib)
    return tree


def run_tree(tree: Path, scenario: Path, out: Path) -> dict[str, float | str]:
    """`dps replay` from `tree`'s python/ under /usr/bin/time -v: wall s, max RSS GB, and the report's US/DPS ratios."""
    env = dict(os.environ, PYTHONPATH=str(tree / "python"), OMP_NUM_THREADS="1")
    code = "import sys; from dps.cli import main; sys.exit(main())"
    cmd = [
        "/usr/bin/time",
        "-v",
        sys.executable,
        "-c",
        code,
        "replay",
        str(scenario),
        "--out",
        str(out),
        "--quiet",
        "--no-plots",
    ]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{tree}: dps replay failed\n{proc.stdout}\n{proc.stderr}")

    def measured(name: str) -> float:
        return float(re.search(rf"{name}: ([0-9.]+)", proc.stderr).group(1))  # type: ignore[union-attr]

    rss_kib = measured(r"Maximum resident set size \(kbytes\)")
    cpu = measured(r"User time \(seconds\)") + measured(r"System time \(seconds\)")
    ratios = dict(re.findall(r"^\| (US|DPS) \|[^|]*\| ([0-9.]+)", proc.stdout, re.M))
    commit = subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "commit": commit,
        "wall": wall,
        "cpu": cpu,
        "rss_gb": rss_kib * 1024 / 1e9,
        "load": load,
        "us": ratios.get("US", "?"),
        "dps": ratios.get("DPS", "?"),
        "stdout": proc.stdout,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--dir",
        type=Path,
        default=ROOT / "runs" / "bench-scale",
        help="where the log, scenario, reports and base checkout go",
    )
    ap.add_argument(
        "--base", default=None, help="also run this commit's code (e.g. the commit this branch started from)"
    )
    ap.add_argument("--repeat", type=int, default=1, help="runs of each tree, alternating")
    ap.add_argument("--verbose", action="store_true", help="print each run's own output")
    args = ap.parse_args()
    folder = args.dir.resolve()
    log = folder / "log.parquet"
    if not log.exists():
        t0 = time.perf_counter()
        write_log(log)
        print(f"wrote {log} in {time.perf_counter() - t0:.1f} s", flush=True)
    scenario = folder / "scale.toml"
    scenario.write_text(SCENARIO.format(log=log))
    trees = [("this checkout", ROOT)]
    if args.base:
        trees.insert(0, ("base", base_tree(args.base, folder)))
    print("| code | commit | wall s | CPU s | max RSS GB | US eff. ratio | DPS eff. ratio | load avg before |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    walls: dict[str, list[float]] = {}
    cpus: dict[str, list[float]] = {}
    for _ in range(args.repeat):
        for name, tree in trees:
            r = run_tree(tree, scenario, folder / f"report-{name.replace(' ', '-')}")
            walls.setdefault(name, []).append(float(r["wall"]))
            cpus.setdefault(name, []).append(float(r["cpu"]))
            cells = [name, r["commit"], f"{r['wall']:.1f}", f"{r['cpu']:.1f}", f"{r['rss_gb']:.2f}", r["us"], r["dps"]]
            print("| " + " | ".join(map(str, cells)) + f" | {r['load']:.2f} |", flush=True)
            if args.verbose:
                print(r["stdout"])
    if args.base:
        wall = min(walls["base"]) / min(walls["this checkout"])
        cpu = min(cpus["base"]) / min(cpus["this checkout"])
        print(f"\nbase / this checkout, best of {args.repeat}: wall {wall:.2f}x, CPU {cpu:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
