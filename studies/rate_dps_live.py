"""RateDPS live: tables and a plot from `dps compare` runs of several seeds (docs/results.md#rate-dps-live).

Each seed's comparison was run as

    dps compare --preset tiny-cpu --policies uniform,dps,ratedps --steps 100 --seed S \\
        --set log.sweep_every=100 --out RUNS/sS

(the sweeps at steps 0 and 100 roll out every training prompt k times). This reads
RUNS/s*/token-mean/<policy>/ and prints, per seed and policy and then as the mean over seeds,
held-out accuracy at the start and the end (sampled and greedy), the effective ratio, the
rollouts, the distinct prompts trained on, and the stranding: the share of training prompts whose
last sweep shows 0 correct of k. It writes the plot (held-out accuracy against steps and against
rollouts, mean over seeds) to --plot.

    .venv/bin/python studies/rate_dps_live.py runs/live --plot docs/assets/rate-dps-tiny-cpu.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

POLICIES = ("uniform", "dps", "ratedps")


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def unsolved_share(dense: pl.DataFrame, step: int) -> float:
    """The share of training prompts whose sweep at `step` shows 0 correct."""
    at = dense.filter(pl.col("step") == step)
    return float((at["n_correct"] == 0).mean())  # type: ignore[arg-type]


def run_summary(folder: Path) -> dict[str, Any]:
    evals, metrics = jsonl(folder / "eval.jsonl"), jsonl(folder / "metrics.jsonl")
    dense = pl.read_parquet(folder / "dense.parquet")
    rollouts = pl.read_parquet(folder / "rollouts.parquet")
    first, last = int(dense["step"].min()), int(dense["step"].max())  # type: ignore[arg-type]
    return {
        "steps": len(metrics),
        "rollouts": metrics[-1]["rollouts_total"],
        "effective_ratio": float(np.mean([m["effective_ratio"] for m in metrics])),
        "distinct": rollouts["prompt_id"].n_unique(),
        "sampled": (evals[0]["test_accuracy_sampled"], evals[-1]["test_accuracy_sampled"]),
        "greedy": (evals[0]["test_accuracy_greedy"], evals[-1]["test_accuracy_greedy"]),
        "unsolved": (unsolved_share(dense, first), unsolved_share(dense, last)),
        "sweep_steps": (first, last),
        "curve_steps": [e["step"] for e in evals],
        "curve_rollouts": [e["rollouts_total"] for e in evals],
        "curve_sampled": [e["test_accuracy_sampled"] for e in evals],
        "curve_greedy": [e["test_accuracy_greedy"] for e in evals],
    }


def collect(root: Path) -> dict[int, dict[str, dict[str, Any]]]:
    runs: dict[int, dict[str, dict[str, Any]]] = {}
    for seed_dir in sorted(d for d in root.glob("s[0-9]*") if d.is_dir()):
        seed = int(seed_dir.name[1:])
        for policy in POLICIES:
            folder = seed_dir / "token-mean" / policy
            if (folder / "dense.parquet").exists() and (folder / "eval.jsonl").exists():
                summary = run_summary(folder)
                if summary["sweep_steps"][1] == summary["steps"]:  # finished: the last sweep is at the end
                    runs.setdefault(seed, {})[policy] = summary
    return runs


def row(label: str, s: dict[str, Any]) -> str:
    return (
        f"| {label} | {s['rollouts']} | {s['effective_ratio']:.3f} | {s['distinct']} | "
        f"{s['sampled'][0]:.3f} -> {s['sampled'][1]:.3f} | {s['greedy'][0]:.3f} -> {s['greedy'][1]:.3f} | "
        f"{s['unsolved'][0]:.3f} -> {s['unsolved'][1]:.3f} |"
    )


def tables(runs: dict[int, dict[str, dict[str, Any]]]) -> str:
    head = (
        "| seed, policy | rollouts | effective ratio | distinct prompts | held-out sampled start -> end "
        "| held-out greedy start -> end | unsolved train prompts start -> end |\n|---|---:|---:|---:|---:|---:|---:|"
    )
    lines = [head]
    for seed, by_policy in sorted(runs.items()):
        for policy in POLICIES:
            if policy in by_policy:
                lines.append(row(f"{seed}, {policy}", by_policy[policy]))
    complete = [s for s, by in runs.items() if all(p in by for p in POLICIES)]
    lines += ["", f"Mean over seeds {', '.join(map(str, complete))}:", "", head.replace("seed, policy", "policy")]
    for policy in POLICIES:
        summaries = [runs[s][policy] for s in complete]
        if not summaries:
            continue
        mean = {
            key: tuple(np.mean([s[key][i] for s in summaries]) for i in range(2))
            for key in ("sampled", "greedy", "unsolved")
        }
        mean |= {
            "rollouts": int(np.mean([s["rollouts"] for s in summaries])),
            "effective_ratio": float(np.mean([s["effective_ratio"] for s in summaries])),
            "distinct": f"{np.mean([s['distinct'] for s in summaries]):.0f}",
        }
        lines.append(row(policy, mean))
    return "\n".join(lines)


def plot(runs: dict[int, dict[str, dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    colors = {"uniform": "tab:gray", "dps": "tab:blue", "ratedps": "tab:red"}
    for policy in POLICIES:
        summaries = [by[policy] for by in runs.values() if policy in by]
        if not summaries:
            continue
        steps = summaries[0]["curve_steps"]
        for key, ax, x_key in (
            ("curve_sampled", axes[0], "curve_steps"),
            ("curve_sampled", axes[1], "curve_rollouts"),
            ("curve_greedy", axes[2], "curve_steps"),
        ):
            for s in summaries:
                ax.plot(s[x_key], s[key], color=colors[policy], alpha=0.25, lw=0.8)
            mean = np.mean([s[key] for s in summaries if len(s[key]) == len(steps)], axis=0)
            xs = np.mean([s[x_key] for s in summaries if len(s[key]) == len(steps)], axis=0)
            ax.plot(xs, mean, color=colors[policy], lw=2, label=f"{policy} (mean of {len(summaries)} seeds)")
    axes[0].set(xlabel="step", ylabel="held-out accuracy (sampled, 16 at T = 0.6)", title="against steps")
    axes[1].set(xlabel="rollouts", ylabel="held-out accuracy (sampled)", title="against rollouts")
    axes[2].set(xlabel="step", ylabel="held-out accuracy (greedy)", title="greedy, against steps")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("tiny-cpu: uniform, DPS and RateDPS (thin: each seed)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", type=Path, help="the folder holding s0/, s1/, ... (one dps compare each)")
    parser.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args()
    runs = collect(args.root)
    if not runs:
        raise SystemExit(f"rate_dps_live: no finished run under {args.root}/s*/token-mean/<policy>/")
    print(tables(runs))
    if args.plot:
        plot(runs, args.plot)
        print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
