"""Tabulate live `dps train` runs laid out as ROOT/s<seed>/<name>/ (the candidate-pool study).

    python benchmarks/pool_live_table.py runs/cand

One row per run: rollouts, effective ratio, distinct prompts trained on (most uses of one
prompt), and held-out accuracy at 0, half and all of the run's rollouts; then the mean over
seeds per run name, and the mean held-out accuracy against rollouts spent. Only finished runs
(with summary.json) are read.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import polars as pl


def accuracy_at(evals: list[dict], rollouts: int, key: str = "test_accuracy") -> float:
    """Held-out accuracy at the last evaluation made with at most `rollouts` rollouts spent
    (`test_accuracy`: the run's main evaluation; `test_accuracy_greedy` where it made both)."""
    return [e for e in evals if e["rollouts_total"] <= rollouts][-1].get(key, float("nan"))


def run_row(folder: Path) -> dict:
    summary = json.loads((folder / "summary.json").read_text())
    log = pl.read_parquet(folder / "rollouts.parquet")
    evals = [json.loads(line) for line in (folder / "eval.jsonl").read_text().splitlines()]
    total = summary["rollouts_total"]
    return {
        "seed": summary["seed"],
        "run": folder.name,
        "rollouts": total,
        "effective_ratio": summary["effective_ratio"],
        "distinct": int(log["prompt_id"].n_unique()),
        "max_uses": int(log.group_by("prompt_id").len()["len"].max()),  # type: ignore[arg-type]
        "acc_0": accuracy_at(evals, 0),
        "acc_half": accuracy_at(evals, total // 2),
        "acc_end": accuracy_at(evals, total),
        "greedy_0": accuracy_at(evals, 0, "test_accuracy_greedy"),
        "greedy_end": accuracy_at(evals, total, "test_accuracy_greedy"),
        "curve": {e["rollouts_total"]: e["test_accuracy"] for e in evals},
    }


def main(root: Path) -> None:
    rows = [run_row(f) for f in sorted(root.glob("s*/*")) if (f / "summary.json").exists()]
    half = rows[0]["rollouts"] // 2 if rows else 0
    print(
        "| seed | run | rollouts | effective ratio | distinct prompts (max uses) |"
        f" held-out acc at 0 / {half} / all rollouts "
        "| greedy acc at 0 / all rollouts |"
    )
    print("|---|---|---:|---:|---:|---|---|")
    for r in rows:
        print(
            f"| {r['seed']} | {r['run']} | {r['rollouts']} | {r['effective_ratio']:.2f} |"
            f" {r['distinct']} ({r['max_uses']}) | "
            f"{r['acc_0']:.3f} / {r['acc_half']:.3f} / {r['acc_end']:.3f} |"
            f" {r['greedy_0']:.3f} / {r['greedy_end']:.3f} |"
        )
    print("\n| run | seeds | effective ratio | distinct prompts | held-out acc start -> end (change) | greedy change |")
    print("|---|---:|---:|---:|---|---|")
    for name in dict.fromkeys(r["run"] for r in rows):
        group = [r for r in rows if r["run"] == name]
        mean = {k: float(np.mean([r[k] for r in group])) for k in ("effective_ratio", "distinct", "acc_0", "acc_end")}
        change = [r["acc_end"] - r["acc_0"] for r in group]
        greedy = [r["greedy_end"] - r["greedy_0"] for r in group]
        print(
            f"| {name} | {len(group)} | {mean['effective_ratio']:.2f} | {mean['distinct']:.0f} | "
            f"{mean['acc_0']:.3f} -> {mean['acc_end']:.3f} ({', '.join(f'{c:+.3f}' for c in change)}) | "
            f"{', '.join(f'{c:+.3f}' for c in greedy)} |"
        )
    points = sorted(set.intersection(*(set(r["curve"]) for r in rows)))[::2] if rows else []
    print("\nHeld-out accuracy against rollouts spent, mean over seeds:\n")
    print("| run | " + " | ".join(f"{p:,}" for p in points) + " |")
    print("|---|" + "---:|" * len(points))
    for name in dict.fromkeys(r["run"] for r in rows):
        group = [r for r in rows if r["run"] == name]
        print(f"| {name} | " + " | ".join(f"{np.mean([r['curve'][p] for r in group]):.3f}" for p in points) + " |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/cand"))
