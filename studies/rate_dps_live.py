"""RateDPS live: tables and plots from `dps compare` runs over seeds (docs/results.md#rate-dps-live).

Each run is named LABEL=PATTERN, PATTERN a run folder with `{seed}` where the seed goes, e.g.

    dps compare --preset tiny-cpu --policies uniform,dps,ratedps --loss-aggs token-mean --steps 100 \\
        --seed S --set log.sweep_every=100 --out runs/live/sS
    .venv/bin/python studies/rate_dps_live.py \\
        uniform=runs/live/s{seed}/token-mean/uniform dps=runs/live/s{seed}/token-mean/dps \\
        ratedps=runs/live/s{seed}/token-mean/ratedps --plot docs/assets/rate-dps-tiny-cpu.png

(the sweeps at steps 0 and 100 roll out every training prompt k times). It prints, per seed and
run and then as the mean over the seeds every run finished, held-out accuracy at the start and the
end (sampled and greedy), the effective ratio, the rollouts, the distinct prompts trained on, and
the stranding: the share of training prompts whose last sweep shows 0 correct of k, with each
run's difference from the run labelled `uniform` seed by seed (and, over the seeds, its standard
error and the prompts learned and lost between the two sweeps). The plot shows held-out accuracy
against steps and against rollouts (mean over the seeds every run finished, thin lines each
seed) and each run's stranding against its effective ratio.
"""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

BASELINE = "uniform"


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def unsolved_share(dense: pl.DataFrame, step: int) -> float:
    """The share of training prompts whose sweep at `step` shows 0 correct."""
    at = dense.filter(pl.col("step") == step)
    return float((at["n_correct"] == 0).mean())  # type: ignore[arg-type]


def hard_prompt_visits(dense: pl.DataFrame, rollouts: pl.DataFrame, step: int) -> tuple[float, float]:
    """Per training prompt unsolved at the sweep of `step`: its groups in training, and those of
    them partially solved (the ones that carry a gradient)."""
    hard = dense.filter((pl.col("step") == step) & (pl.col("n_correct") == 0)).select("prompt_id")
    if hard.height == 0:
        return 0.0, 0.0
    trained = rollouts.join(hard, on="prompt_id")
    partial = ((trained["n_correct"] > 0) & (trained["n_correct"] < trained["n_rollouts"])).sum()
    return trained.height / hard.height, float(partial) / hard.height


def sweep_moves(dense: pl.DataFrame, first: int, last: int) -> tuple[float, float]:
    """Shares of the training prompts learned (0 correct at the first sweep, some at the last)
    and lost (the other way round)."""
    ends = dense.filter(pl.col("step") == first).join(dense.filter(pl.col("step") == last), on="prompt_id")
    start_unsolved, end_unsolved = ends["n_correct"] == 0, ends["n_correct_right"] == 0
    return float((start_unsolved & ~end_unsolved).mean()), float((~start_unsolved & end_unsolved).mean())  # type: ignore[arg-type]


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
        "greedy": (evals[0].get("test_accuracy_greedy", np.nan), evals[-1].get("test_accuracy_greedy", np.nan)),
        "unsolved": (unsolved_share(dense, first), unsolved_share(dense, last)),
        "sweep_steps": (first, last),
        "hard_visits": hard_prompt_visits(dense, rollouts, first),
        "moves": sweep_moves(dense, first, last),
        "curve_steps": [e["step"] for e in evals],
        "curve_rollouts": [e["rollouts_total"] for e in evals],
        "curve_sampled": [e["test_accuracy_sampled"] for e in evals],
    }


def parse_run(text: str) -> tuple[str, str]:
    label, sep, pattern = text.partition("=")
    if not sep or not label or "{seed}" not in pattern:
        raise argparse.ArgumentTypeError(f"{text!r}: give LABEL=PATTERN, the pattern with {{seed}} in it")
    return label, pattern


def collect(specs: list[tuple[str, str]]) -> dict[int, dict[str, dict[str, Any]]]:
    """seed -> label -> summary, for every finished run (its last sweep at its last step)."""
    runs: dict[int, dict[str, dict[str, Any]]] = {}
    for label, pattern in specs:
        head, tail = pattern.split("{seed}", 1)
        for folder in sorted(map(Path, glob.glob(pattern.replace("{seed}", "*")))):
            seed_text = str(folder)[len(head) : len(str(folder)) - len(tail)]
            if not seed_text.isdigit() or not (folder / "dense.parquet").exists():
                continue
            summary = run_summary(folder)
            if summary["sweep_steps"][1] == summary["steps"]:
                runs.setdefault(int(seed_text), {})[label] = summary
    return runs


def span(pair: tuple[float, float]) -> str:
    """start -> end, or - where the run did not measure it (the paper presets evaluate sampled only)."""
    return "-" if np.isnan(pair[0]) else f"{pair[0]:.3f} -> {pair[1]:.3f}"


def row(label: str, s: dict[str, Any], versus: str) -> str:
    return (
        f"| {label} | {s['rollouts']} | {s['effective_ratio']:.3f} | {s['distinct']} | "
        f"{span(s['sampled'])} | {span(s['greedy'])} | "
        f"{s['unsolved'][0]:.3f} -> {s['unsolved'][1]:.3f} | {versus} | "
        f"{s['hard_visits'][0]:.2f} ({s['hard_visits'][1]:.2f}) |"
    )


def stranding_gap(s: dict[str, Any], base: dict[str, Any] | None) -> str:
    return "" if base is None else f"{s['unsolved'][1] - base['unsolved'][1]:+.3f}"


def mean_summary(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    mean: dict[str, Any] = {
        key: tuple(float(np.mean([s[key][i] for s in summaries])) for i in range(2))
        for key in ("sampled", "greedy", "unsolved", "hard_visits", "moves")
    }
    return mean | {
        "rollouts": int(np.mean([s["rollouts"] for s in summaries])),
        "effective_ratio": float(np.mean([s["effective_ratio"] for s in summaries])),
        "distinct": f"{np.mean([s['distinct'] for s in summaries]):.0f}",
    }


def tables(runs: dict[int, dict[str, dict[str, Any]]], labels: list[str]) -> str:
    head = (
        "| seed, run | rollouts | effective ratio | distinct prompts | held-out sampled start -> end "
        "| held-out greedy start -> end | unsolved train prompts start -> end | unsolved end - uniform's "
        "| groups per prompt unsolved at start (partially solved) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = [head]
    for seed, by_label in sorted(runs.items()):
        for label in labels:
            if label in by_label:
                gap = stranding_gap(by_label[label], by_label.get(BASELINE))
                lines.append(row(f"{seed}, {label}", by_label[label], gap))
    complete = sorted(s for s, by in runs.items() if all(label in by for label in labels))
    lines += ["", f"Mean over seeds {', '.join(map(str, complete))}:", "", head.replace("seed, run", "run")]
    means = {label: mean_summary([runs[s][label] for s in complete]) for label in labels} if complete else {}
    for label, mean in means.items():
        lines.append(row(label, mean, stranding_gap(mean, means.get(BASELINE))))
    if complete:
        lines += ["", stranding_table(runs, labels, complete)]
    return "\n".join(lines)


def stranding_table(runs: dict[int, dict[str, dict[str, Any]]], labels: list[str], seeds: list[int]) -> str:
    """Where the unsolved count at the end comes from, mean over `seeds`: the gap to uniform with
    the standard error of its seed-paired differences, and the prompts learned and lost."""
    lines = [
        f"Stranding over seeds {', '.join(map(str, seeds))}:",
        "",
        "| run | unsolved end - uniform's (SE over seeds) | learned: unsolved at start, solved at end "
        "| lost: solved at start, unsolved at end |",
        "|---|---:|---:|---:|",
    ]
    for label in labels:
        moves = np.mean([runs[s][label]["moves"] for s in seeds], axis=0)
        gap = ""
        if BASELINE in labels and label != BASELINE:
            diffs = [runs[s][label]["unsolved"][1] - runs[s][BASELINE]["unsolved"][1] for s in seeds]
            se = np.std(diffs, ddof=1) / np.sqrt(len(diffs)) if len(diffs) > 1 else float("nan")
            gap = f"{np.mean(diffs):+.3f} ({se:.3f})"
        lines.append(f"| {label} | {gap} | {moves[0]:.3f} | {moves[1]:.3f} |")
    return "\n".join(lines)


def plot(runs: dict[int, dict[str, dict[str, Any]]], labels: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    colors = dict(zip(labels, plt.get_cmap("tab10").colors, strict=False))
    complete = [by for by in runs.values() if all(label in by for label in labels)]
    for label in labels:
        summaries = [by[label] for by in complete]
        if not summaries:
            continue
        steps = summaries[0]["curve_steps"]
        full = [s for s in summaries if len(s["curve_sampled"]) == len(steps)]
        for ax, x_key in ((axes[0], "curve_steps"), (axes[1], "curve_rollouts")):
            for s in summaries:
                ax.plot(s[x_key], s["curve_sampled"], color=colors[label], alpha=0.2, lw=0.8)
            xs = np.mean([s[x_key] for s in full], axis=0)
            ax.plot(
                xs,
                np.mean([s["curve_sampled"] for s in full], axis=0),
                color=colors[label],
                lw=2,
                label=f"{label} ({len(summaries)} seeds)",
            )
        ratios = [s["effective_ratio"] for s in summaries]
        stranded = [s["unsolved"][1] for s in summaries]
        axes[2].scatter(ratios, stranded, color=colors[label], alpha=0.45, s=18)
        axes[2].scatter(
            [np.mean(ratios)],
            [np.mean(stranded)],
            color=colors[label],
            s=90,
            marker="D",
            edgecolor="black",
            label=f"{label} (mean)",
        )
    axes[0].set(xlabel="step", ylabel="held-out accuracy (sampled, 16 at T = 0.6)", title="against steps")
    axes[1].set(xlabel="rollouts", ylabel="held-out accuracy (sampled)", title="against rollouts")
    axes[2].set(
        xlabel="effective ratio (share of trained groups partially solved)",
        ylabel="training prompts unsolved at the end",
        title="stranding against efficiency (dot: a seed)",
    )
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[2].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "runs", nargs="+", type=parse_run, help="LABEL=PATTERN, e.g. uniform=runs/live/s{seed}/token-mean/uniform"
    )
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--title", default="uniform, DPS and RateDPS (thin: each seed)")
    args = parser.parse_args()
    labels = [label for label, _ in args.runs]
    runs = collect(args.runs)
    if not runs:
        raise SystemExit("rate_dps_live: no finished run matches " + ", ".join(p for _, p in args.runs))
    print(tables(runs, labels))
    if args.plot:
        plot(runs, labels, args.plot, args.title)
        print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
