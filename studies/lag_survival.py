"""How much of each policy's gain survives selections in flight: `dps leaderboard --lag L` on the
shared real logs for L in 0, 1, 2, 4, 8, one table per log.

Each cell is a policy's effective ratio at that lag, mean over the leaderboard's seeds, with its
rollouts per effective prompt in brackets (a gate such as DS or GRESO reaches an effective ratio
of 1 and pays in rollouts). `kept`: the share of the policy's lag-0 saving in rollouts per
effective prompt over uniform (US) that remains at the largest lag, (US - policy) at the largest
lag over (US - policy) at lag 0; '-' where the policy saves nothing at lag 0.

    .venv/bin/python studies/lag_survival.py --out runs/lag
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import polars as pl

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LOGS = (
    DATA / "smollm2-arith-lr1e6" / "log.parquet",
    DATA / "smollm2-arith-lr3e6-pair" / "log_uniform.parquet",
    DATA / "smollm2-arith-lr3e6-pair" / "log_dps.parquet",
)
LAGS = (0, 1, 2, 4, 8)
#: The leaderboard's rows at each policy's defaults, in table order, with the label shown.
ROWS = {
    "DPS decay=0.7 (default)": "DPS",
    "MoPPS decay=1 (default)": "MoPPS",
    "GRESO": "GRESO",
    "BOTS forgetting=0.1 (default)": "BOTS",
    "HR": "HR",
    "US": "US",
    "DS": "DS",
    "oracle": "oracle (bound)",
}


def run_boards(out: Path, lags: tuple[int, ...], workers: int) -> pl.DataFrame:
    """Run the leaderboard at each lag (skipping a lag whose leaderboard.csv exists) and stack them."""
    dps = Path(sys.executable).with_name("dps")
    tables = []
    for lag in lags:
        folder = out / f"lag-{lag}"
        if not (folder / "leaderboard.csv").exists():
            cmd = [str(dps), "leaderboard", *map(str, LOGS), "--lag", str(lag), "--out", str(folder)]
            args = [*cmd, "--workers", str(workers), "--no-plots", "--quiet"]
            subprocess.run(args, check=True, stdout=subprocess.DEVNULL)  # the tables below are what it prints
        tables.append(pl.read_csv(folder / "leaderboard.csv"))
    return pl.concat(tables)


def kept(rows: pl.DataFrame, us: pl.DataFrame, first: int, last: int) -> str:
    def saving(lag: int) -> float:
        at = pl.col("lag") == lag
        return us.filter(at)["rollouts_per_effective"].item() - rows.filter(at)["rollouts_per_effective"].item()

    return f"{saving(last) / saving(first):.0%}" if saving(first) > 0 else "-"


def print_tables(board: pl.DataFrame, lags: tuple[int, ...]) -> None:
    for log in board["log"].unique(maintain_order=True):
        one = board.filter(pl.col("log") == log)
        us = one.filter(pl.col("policy") == "US")
        print(f"\n### `{Path(log).parent.name}/{Path(log).name}`\n")
        print("| policy | " + " | ".join(f"lag {lag}" for lag in lags) + f" | kept at lag {lags[-1]} |")
        print("|---|" + "---:|" * (len(lags) + 1))
        for name, label in ROWS.items():
            rows = one.filter(pl.col("policy") == name).sort("lag")
            cells = [
                f"{r['effective_ratio']:.3f} ({r['rollouts_per_effective']:.1f})" for r in rows.iter_rows(named=True)
            ]
            print(f"| {label} | " + " | ".join(cells) + f" | {kept(rows, us, lags[0], lags[-1])} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/lag"), help="a folder for the leaderboards")
    parser.add_argument("--lags", type=int, nargs="+", default=list(LAGS))
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    lags = tuple(args.lags)
    print_tables(run_boards(args.out, lags, args.workers), lags)


if __name__ == "__main__":
    main()
