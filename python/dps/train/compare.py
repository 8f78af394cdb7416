"""Train the same preset with several policies (same seed, same warmed-up start) and compare.

    dps compare --preset tiny-cpu --policies uniform,ds,dps --steps 100 \\
        --loss-aggs token-mean,token-mean-informative --out runs/compare

Writes ``<out>/<agg>/<policy>/`` run folders, ``<out>/compare.md`` (a Markdown table) and
``<out>/compare.png`` (training reward, effective ratio, held-out accuracy against steps and
against rollouts). Runs are resumable: an interrupted comparison picks up where it stopped.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def listed(text: str, option: str, what: str) -> list[str]:
    """A comma-separated option's names: none empty, none twice."""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise ValueError(f"{option} {text!r}: an empty {what}")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"{option} {text!r}: {', '.join(twice)} given twice")
    return names


def run_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Train every (loss aggregation, policy); each run's config, task and policy are checked
    before the first one trains, so that a bad name costs nothing."""
    from dps.train.config import build_config
    from dps.train.trainer import Trainer

    out = Path(args.out)
    runs = []
    for agg in listed(args.loss_aggs, "--loss-aggs", "loss aggregation"):
        for pol in listed(args.policies, "--policies", "policy name"):
            ns = argparse.Namespace(
                config=args.config,
                preset=args.preset,
                policy=pol,
                steps=args.steps,
                seed=args.seed,
                out=str(out / agg / pol),
                engine=None,
                model=None,
                gguf_file=None,
                warmup_cache=str(out / "warmup-cache"),
                loss_agg=agg,
                set=list(args.set),
                no_progress=args.no_progress,
            )
            cfg = build_config(ns)
            trainer = Trainer(cfg, cfg.out)
            trainer.prepare()
            runs.append((agg, pol, cfg, trainer))
    results = []
    for agg, pol, cfg, trainer in runs:
        summary = trainer.run()
        import polars as pl

        log = pl.read_parquet(Path(cfg.out) / "rollouts.parquet")
        summary["distinct_prompts"] = int(log["prompt_id"].n_unique())
        summary["max_groups_per_prompt"] = int(log.group_by("prompt_id").len()["len"].max())  # type: ignore[arg-type]
        results.append(
            {
                "loss_agg": agg,
                "policy": pol,
                "summary": summary,
                "metrics": _rows(Path(cfg.out) / "metrics.jsonl"),
                "eval": _rows(Path(cfg.out) / "eval.jsonl"),
            }
        )
    return results


def _acc_at(evals: list[dict[str, Any]], key: str, x: float) -> float | None:
    """Held-out accuracy at the last eval with evals[key] <= x."""
    ok = [e for e in evals if e[key] <= x]
    return ok[-1]["test_accuracy"] if ok else None


def report(results: list[dict[str, Any]], out: Path) -> str:
    budget = min(r["eval"][-1]["rollouts_total"] for r in results if r["eval"])
    lines = [
        "| loss agg | policy | steps | rollouts | rollouts / trained group | effective ratio | "
        "distinct prompts (max uses) | train reward first 10 -> last 10 | held-out acc start | held-out acc end | "
        f"held-out acc at {budget} rollouts | s/step generate | s/step update |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s = r["summary"]
        at = _acc_at(r["eval"], "rollouts_total", budget)
        lines.append(
            f"| {r['loss_agg']} | {r['policy']} | {s['steps']} | {s['rollouts_total']} | "
            f"{s['rollouts_per_trained_group']:.1f} | {s['effective_ratio']:.2f} | "
            f"{s['distinct_prompts']} ({s['max_groups_per_prompt']}) | "
            f"{s['reward_first10']:.3f} -> {s['reward_last10']:.3f} | {s['test_accuracy_start']:.3f} | "
            f"{s['test_accuracy_end']:.3f} | {at:.3f} | {s['time_generate']:.2f} | {s['time_update']:.2f} |"
        )
    table = "\n".join(lines) + "\n"
    (out / "compare.md").write_text(table)
    _plot(results, out / "compare.png")
    return table


def _plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 2, figsize=(12, 8.5))
    styles = {agg: ls for agg, ls in zip(sorted({r["loss_agg"] for r in results}), ["-", "--", ":"], strict=False)}
    colours: dict[str, Any] = {}
    for r in results:
        c = colours.setdefault(r["policy"], f"C{len(colours)}")
        ls = styles[r["loss_agg"]]
        label = f"{r['policy']} ({r['loss_agg']})"
        m = r["metrics"]
        steps = np.array([x["step"] + 1 for x in m])

        def smooth(vals: list[Any], w: int = 9) -> Any:
            v = np.asarray([np.nan if x is None else x for x in vals], dtype=np.float64)
            k = np.ones(w) / w
            pad = np.pad(v, (w // 2, w - 1 - w // 2), mode="edge")
            fill = float(np.nanmean(v)) if np.isfinite(v).any() else 0.0
            return np.convolve(np.nan_to_num(pad, nan=fill), k, mode="valid")

        ax[0, 0].plot(steps, smooth([x["reward_mean"] for x in m]), ls, color=c, label=label)
        ax[0, 1].plot(steps, smooth([x["effective_ratio"] for x in m]), ls, color=c, label=label)
        e = r["eval"]
        ax[1, 0].plot(
            [x["step"] for x in e], [x["test_accuracy"] for x in e], ls, marker="o", ms=3, color=c, label=label
        )
        ax[1, 1].plot(
            [x["rollouts_total"] for x in e],
            [x["test_accuracy"] for x in e],
            ls,
            marker="o",
            ms=3,
            color=c,
            label=label,
        )
    ax[0, 0].set(title="training reward of the trained batch (9-step mean)", xlabel="step", ylabel="reward")
    ax[0, 1].set(
        title="effective ratio (share of partially solved groups)", xlabel="step", ylabel="ratio", ylim=(0, 1.05)
    )
    kind = "sampled (16 at T=0.6)" if "test_accuracy_sampled" in results[0]["eval"][0] else "greedy"
    ax[1, 0].set(title=f"held-out accuracy, {kind}, vs steps", xlabel="step", ylabel="accuracy")
    ax[1, 1].set(title=f"held-out accuracy, {kind}, vs rollouts", xlabel="rollouts generated", ylabel="accuracy")
    for a in ax.flat:
        a.grid(alpha=0.3)
    ax[1, 1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def handle(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = run_all(args)
    print(report(results, out))
    return 0
