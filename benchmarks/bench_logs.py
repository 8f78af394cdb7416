"""Reading rollout logs: wall time and peak memory of `dps.logs.load_log` on large logs.

    .venv/bin/python benchmarks/bench_logs.py                       # 10^7 group rows, 10^6 response rows
    .venv/bin/python benchmarks/bench_logs.py --group-rows 1000000 --response-rows 200000

Writes the logs under --dir (default runs/bench-logs), then reads each in a fresh process and
prints one row per case: rows, the file's size, the wall and CPU (user + system) time of
load_log and the process's peak resident memory (ru_maxrss, which includes the ~150 MB of the
interpreter with polars and numpy loaded). Cases:
- group, int ids: per-group Parquet, ids drawn from 10^6 prompts, 10^4 steps of 1,000 groups
  each (the issue's 10^7-row log), rows in step order, prompts in random order within a step;
- group, sparse int ids: the same with ids spread over 0..2^40 (mapped to dense ids);
- response, string ids: per-response JSONL as a TRL-style log, the prompt text as its id, a
  `global_step` column and a completion text that the reader never parses into the result.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

READ = """
import resource, sys, time
from dps.logs import LogSpec, load_log
spec = LogSpec(columns={cols})
t0 = time.perf_counter()
cpu0 = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
log = load_log({path!r}, spec)
wall = time.perf_counter() - t0
use = resource.getrusage(resource.RUSAGE_SELF)
print(log.groups.height, log.info.num_prompts, f"{{wall:.2f}}", f"{{use.ru_utime + use.ru_stime - cpu0:.2f}}",
f"{{use.ru_maxrss / 1024:.0f}}")
"""


def write_group_logs(folder: Path, rows: int, prompts: int) -> tuple[Path, Path]:
    import polars as pl

    per_step = 1000
    steps = rows // per_step
    rng = np.random.default_rng(0)
    step = np.repeat(np.arange(steps, dtype=np.int64), per_step)
    pid = rng.integers(0, prompts, rows)
    nc = rng.binomial(8, 0.5, rows)
    df = pl.DataFrame({"step": step, "prompt_id": pid, "n_rollouts": np.full(rows, 8), "n_correct": nc})
    dense, sparse = folder / "group_int.parquet", folder / "group_sparse.parquet"
    df.write_parquet(dense)
    spread = rng.permutation(prompts).astype(np.int64) * 1_000_003 + 17  # distinct, up to ~2^40
    df.with_columns(pl.Series("prompt_id", spread[pid])).write_parquet(sparse)
    return dense, sparse


def write_response_log(folder: Path, rows: int, prompts: int) -> Path:
    path = folder / "responses.jsonl"
    rng = np.random.default_rng(1)
    k = 8
    with open(path, "w") as f:
        for g in range(rows // k):
            q = int(rng.integers(prompts))
            text = f"Question {q}: what is {q} + {q * 7 % 13}?"
            for _ in range(k):
                reward = float(rng.random() < 0.5) + 0.1
                f.write(
                    json.dumps(
                        {
                            "global_step": g // 64,
                            "prompt": text,
                            "completion": "The answer is 42. " * 10,
                            "reward": reward,
                        }
                    )
                    + "\n"
                )
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--group-rows", type=int, default=10_000_000)
    ap.add_argument("--prompts", type=int, default=1_000_000)
    ap.add_argument("--response-rows", type=int, default=1_000_000)
    ap.add_argument("--dir", default="runs/bench-logs")
    args = ap.parse_args()
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    dense, sparse = write_group_logs(folder, args.group_rows, args.prompts)
    resp = write_response_log(folder, args.response_rows, 20_000)
    cases = [
        ("group, int ids < 10^6", dense, {}),
        ("group, sparse int ids", sparse, {}),
        ("response JSONL, prompt text ids", resp, {"step": "global_step", "prompt_id": "prompt"}),
    ]
    print("| log | file rows | file MB | groups | prompts | load_log wall s | CPU s | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, path, cols in cases:
        out = subprocess.run(
            [sys.executable, "-c", READ.format(cols=cols, path=str(path))], capture_output=True, text=True, check=True
        )
        groups, prompts, wall, cpu, peak = out.stdout.split()
        rows = args.group_rows if path.suffix == ".parquet" else args.response_rows
        size = path.stat().st_size / 1e6
        print(f"| {name} | {rows:,} | {size:,.0f} | {int(groups):,} | {int(prompts):,} | {wall} | {cpu} | {peak} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
