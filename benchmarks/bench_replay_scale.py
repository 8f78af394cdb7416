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

`--stages` instead times the stages of this checkout's code in this process, in CPU seconds (one
thread: RAYON_NUM_THREADS=1 unless set): reading the log, each part of the log world's build, the
calibration, saving and loading the built world (what a sweep's workers do), and the world's
share of one replay step.
"""

from __future__ import annotations

import argparse
import math
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


def stages(log_path: Path) -> None:
    """CPU seconds of each stage of `dps replay`'s log world, in this process."""
    import resource
    import tempfile

    import dps.replay.logworld as lw
    from dps.logs import LogSpec, load_log
    from dps.replay.calibration import calibrate

    spent: dict[str, float] = {}

    def timed(name: str, f):  # noqa: ANN001, ANN202  (a wrapper that adds its CPU time to `spent`)
        def run(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            t = time.process_time()
            try:
                return f(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.process_time() - t

        return run

    # The build's parts, timed where LogWorld calls them (the switch-rate choice includes its own builds).
    lw.RowLog.__init__ = timed("sort the rows by (prompt, step) (core)", lw.RowLog.__init__)  # type: ignore[method-assign]
    lw.selection_test = timed("selection test", lw.selection_test)
    lw.PopulationPrior.__init__ = timed("population prior", lw.PopulationPrior.__init__)  # type: ignore[method-assign]
    choose = timed("switch rate: 10 candidates on 4,000 prompts", lw.LogWorld._select_switch_rate)
    lw.LogWorld._select_switch_rate = choose  # type: ignore[method-assign]
    t = time.process_time()
    log = load_log(log_path, LogSpec.from_dict({}, "[world]"))
    spent["read and check the Parquet log (dps.logs.load_log)"] = time.process_time() - t
    t = time.process_time()
    world = lw.LogWorld(log.groups, num_prompts=log.info.num_prompts)
    total = time.process_time() - t
    parts = sum(v for k, v in spent.items() if not k.startswith("read"))
    spent["both message passes over every row (core), and the rest"] = total - parts
    spent["log world build in all"] = total
    t = time.process_time()
    calibrate(world)
    spent["calibration (50,000 held-out groups)"] = time.process_time() - t
    del log  # as in a worker, which never reads the log
    with tempfile.TemporaryDirectory() as tmp:
        t = time.process_time()
        world.save(tmp)
        spent["save the built world (for a sweep's workers)"] = time.process_time() - t
        del world
        t = time.process_time()
        world = lw.LogWorld.load(tmp)
        spent["load it (in each worker)"] = time.process_time() - t
    rng = np.random.default_rng(0)
    ids = [np.sort(rng.choice(world.num_prompts, PER_STEP, replace=False)) for _ in range(1000)]
    per_step = math.inf
    for _ in range(3):
        t = time.process_time()
        for step, batch in enumerate(ids):
            world.rollout(step, batch, 0)
        per_step = min(per_step, (time.process_time() - t) / len(ids))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print("| stage | CPU s |")
    print("|---|---:|")
    for name, value in spent.items():
        print(f"| {name} | {value:.2f} |")
    print(f"| world's share of one replay step (B = {PER_STEP:,}; best of 3 x 1,000 steps) | {per_step:.5f} |")
    print(f"\nmessages kept: {world.log.core.message_bytes / 1e9:.2f} GB; peak RSS of this process {peak:.2f} GB")


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
    ap.add_argument("--stages", action="store_true", help="time the stages of this checkout's code in this process")
    args = ap.parse_args()
    folder = args.dir.resolve()
    log = folder / "log.parquet"
    if not log.exists():
        t0 = time.perf_counter()
        write_log(log)
        print(f"wrote {log} in {time.perf_counter() - t0:.1f} s", flush=True)
    if args.stages:
        os.environ.setdefault("RAYON_NUM_THREADS", "1")
        stages(log)
        return 0
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
