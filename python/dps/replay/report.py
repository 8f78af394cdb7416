"""The report folder of a sweep: Parquet results, summary.csv, a Markdown table, PNG plots."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import polars as pl

    from dps.replay.sweep import SweepResult

#: summary.csv always starts with these columns.
SUMMARY_COLUMNS = ("policy", "seed", "effective_ratio", "rollouts", "effective_prompts")

#: Columns of the aggregated table: (column, header, format).
TABLE = (
    ("effective_ratio", "effective ratio", "{:.3f}"),
    ("rollouts", "rollouts", "{:,.0f}"),
    ("effective_prompts", "effective prompts", "{:,.0f}"),
    ("rollouts_per_effective", "rollouts / effective", "{:.1f}"),
    ("mean_rounds", "rounds / step", "{:.2f}"),
    ("shortfall", "shortfall", "{:,.0f}"),
    ("distinct_share", "prompts seen", "{:.1%}"),
    ("count_cv", "count CV", "{:.2f}"),
    ("pred_accuracy", "pred acc", "{:.3f}"),
    ("pred_f1", "pred F1 (partial)", "{:.3f}"),
    ("brier", "Brier (partial)", "{:.3f}"),
    ("ece", "ECE (partial)", "{:.3f}"),
    ("policy_ms_per_step", "policy ms / step", "{:.2f}"),
)


#: Interval columns (per policy, the same on each of its rows): (column, header, format).
INTERVALS = (
    ("effective_ratio", "effective ratio 90% interval", "{:.3f}"),
    ("rollouts", "rollouts 90% interval", "{:,.0f}"),
)


def aggregate(summary: pl.DataFrame) -> pl.DataFrame:
    """Mean and standard deviation over seeds, per policy (in the scenario's order), and its intervals."""
    import polars as pl

    order = {p: i for i, p in enumerate(dict.fromkeys(summary["policy"].to_list()))}
    cols = [c for c, _, _ in TABLE if c in summary.columns]
    bounds = [f"{c}_{end}" for c, _, _ in INTERVALS for end in ("lo", "hi") if f"{c}_{end}" in summary.columns]
    agg = summary.group_by("policy").agg(
        pl.len().alias("seeds"),
        *(pl.col(c).cast(pl.Float64).mean().alias(c) for c in cols),
        *(pl.col(c).cast(pl.Float64).std().alias(c + "_std") for c in cols),
        *(pl.col(c).first() for c in bounds),
        *([pl.col("interval_from").first()] if "interval_from" in summary.columns else []),
    )
    return (
        agg.with_columns(pl.col("policy").replace_strict(order, return_dtype=pl.Int64).alias("_o"))
        .sort("_o")
        .drop("_o")
    )


def _cell(v: Any, fmt: str, sd: Any = None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    s = fmt.format(v)
    if sd is not None and isinstance(sd, float) and not math.isnan(sd) and sd > 0 and fmt.endswith(".3f}"):
        s += f" ± {sd:.3f}"
    return s


def markdown_table(agg: pl.DataFrame) -> str:
    cols = [(c, h, f) for c, h, f in TABLE if c in agg.columns]
    spans = [(c, h, f) for c, h, f in INTERVALS if f"{c}_lo" in agg.columns]
    after = {c: [(s, h, f) for s, h, f in spans if s == c] for c, _, _ in cols}
    heads = [x for c, h, _ in cols for x in [h, *(hh for _, hh, _ in after[c])]]
    head = "| policy | seeds | " + " | ".join(heads) + " |"
    sep = "|---|---:|" + "---:|" * len(heads)
    lines = [head, sep]
    for row in agg.iter_rows(named=True):
        cells = []
        for c, _, f in cols:
            cells.append(_cell(row[c], f, row.get(c + "_std")))
            cells += [_span(row.get(f"{s}_lo"), row.get(f"{s}_hi"), ff) for s, _, ff in after[c]]
        lines.append(f"| {row['policy']} | {row['seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _span(lo: Any, hi: Any, fmt: str) -> str:
    if (
        lo is None
        or hi is None
        or (isinstance(lo, float) and math.isnan(lo))
        or (isinstance(hi, float) and math.isnan(hi))
    ):
        return "-"
    return f"{fmt.format(lo)} - {fmt.format(hi)}"


def write_report(result: SweepResult, out: str | Path, plots: bool = True) -> dict[str, Path]:
    """Write a sweep's report folder (report.md, summary.csv/.parquet, steps.parquet, and the
    plots unless `plots` is False); returns the written paths by name."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary, steps = result.summary, result.steps
    paths: dict[str, Path] = {}
    front = list(SUMMARY_COLUMNS)
    ordered = summary.select(front + [c for c in summary.columns if c not in front])
    ordered.write_csv(out / "summary.csv")
    ordered.write_parquet(out / "summary.parquet")
    steps.write_parquet(out / "steps.parquet")
    paths.update(summary_csv=out / "summary.csv", summary_parquet=out / "summary.parquet", steps=out / "steps.parquet")
    if result.draws is not None:
        result.draws.write_parquet(out / "interval_draws.parquet")
        paths["interval_draws"] = out / "interval_draws.parquet"
    if result.logs:
        import re

        (out / "logs").mkdir(exist_ok=True)
        for (policy, seed), log in result.logs.items():
            safe = re.sub(r"[^A-Za-z0-9_.=-]+", "_", policy)
            log.write_parquet(out / "logs" / f"{safe}-seed{seed}.parquet")
        paths["logs"] = out / "logs"
    agg = aggregate(summary)
    table = markdown_table(agg)
    sc = result.scenario
    meta = {
        "scenario": sc.name,
        "source": str(sc.source) if sc.source else None,
        "world": result.world,
        "steps": int(steps["step"].to_numpy().max()) + 1,
        "batch_size": sc.batch_size,
        "seeds": sc.seeds,
        "wall_s": round(result.wall_s, 2),
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
    paths["meta"] = out / "meta.json"
    md = [f"# Replay report: {sc.name}", ""]
    if sc.description:
        md += [sc.description, ""]
    w = result.world
    md += [
        f"World: {w.get('kind')} with {w.get('num_prompts')} prompts, k = {w.get('k')}; "
        f"{meta['steps']} steps of batch {sc.batch_size}; seeds {sc.seeds}; sweep wall time {result.wall_s:.1f} s.",
        "",
        *closed_loop_lines(w),
        *interval_lines(agg, w),
        "Mean over seeds (± standard deviation where shown). `effective ratio`: share of the trained batch "
        "whose group was partially solved; `rollouts`: every generated response, rejected groups included; "
        "`count CV`: coefficient of variation of per-prompt sample counts; `pred`: the predictive policy's "
        "argmax prediction against the observed state, over the selected groups; `Brier`, `ECE`: its predicted "
        "probability that a selected group is partially solved against whether it was (ECE over 10 equal-width bins; "
        "reliability.csv and reliability.png hold the bins).",
        "",
        table,
        "",
    ]
    if result.calibration is not None:
        md += calibration_section(result.calibration)
        if plots:
            md += ["![calibration](calibration.png)", ""]
        paths.update(write_calibration(result.calibration, out, plots=plots, title=f"log world of {sc.name}"))
    if plots:
        paths.update(plot_all(steps, out))
        md += ["![effective ratio](effective_ratio.png)", "", "![rollouts](rollouts_vs_effective.png)", ""]
        if "confusion" in paths:
            md += ["![confusion](dps_confusion.png)", ""]
    if result.reliability is not None:
        paths.update(write_reliability(result.reliability, out, plots))
        if plots:
            md += ["![reliability](reliability.png)", ""]
    (out / "report.md").write_text("\n".join(md))
    paths["report"] = out / "report.md"
    return paths


def closed_loop_lines(w: dict[str, Any]) -> list[str]:
    if "closed_loop_gain" not in w:
        return []
    return [
        f"Closed loop fitted from the log: a prompt's first trained, partially solved group moves it by "
        f"{w.get('closed_loop_first_training', w['closed_loop_gain']):+.4f} logits (the effect's initial rate "
        f"{w['closed_loop_gain']:+.4f} per training, standard error {w['closed_loop_gain_se']:.4f}; at most "
        f"{_logits(w.get('closed_loop_most', 'inf'))} logits in all; half-life "
        f"{w['closed_loop_half_life']} steps), minus the log run's own trainings. Rows named "
        f'"(open loop)" replay the same log without it.',
        "",
        f"Effect of repeated trainings: {shape_sentence(w)}.",
        "",
    ]


def interval_lines(agg: pl.DataFrame, w: dict[str, Any]) -> list[str]:
    """What the 90% intervals hold, and, in words, what the log could not tell."""
    if "effective_ratio_lo" not in agg.columns:
        return []
    sources = [str(x) for x in agg["interval_from"].to_list()] if "interval_from" in agg.columns else []
    drawn = next((x for x in sources if x.startswith("closed loop")), None)
    lines = []
    if drawn is not None:
        n = drawn.split(", ")[-1].split()[0]
        lines.append(
            f"90% intervals: where one more replay falls 9 times in 10. Closed-loop rows: from {n} replays, each "
            "with its own seed and an effect drawn from what the log allows (a shape by its weight, the gain from "
            "its standard error): seed noise, the fit's uncertainty and the shapes the log cannot tell apart. Other "
            "rows: from their seeds alone (replay noise only; an open-loop row's interval says nothing of how far "
            "the open loop is off). Neither holds the log world's own error, nor what the log cannot show at all: "
            "how the prompts a policy leaves untrained would have moved under it."
        )
    else:
        lines.append(
            "90% intervals: from the seeds alone (where one more seed's replay falls 9 times in 10; replay noise only)."
        )
    lines.append("")
    if drawn is not None and w.get("closed_loop_shape_weights"):
        lines += [identification_sentence(w), ""]
    return lines


def identification_sentence(w: dict[str, Any]) -> str:
    """Whether the log pinned the closed loop down, in words (weights of the shapes it cannot rule out)."""
    weights: dict[str, float] = w.get("closed_loop_shape_weights") or {}
    kept = {c: x for c, x in weights.items() if x >= 0.01}
    top = max(weights.values()) if weights else 1.0
    phi = w.get("closed_loop_dispersion", 1.0)
    spill = w.get("closed_loop_spillover") or ""
    drift_by = w.get("closed_loop_drift_by") or ""
    how = (
        f"A training counts for every prompt with the same {spill} (similar_by)"
        if spill
        else "Each prompt's trainings count for it alone (no similar_by)"
    )
    how += f"; the drift is fitted per {drift_by} (drift_by)." if drift_by else "; one drift for all prompts."
    shapes = ", ".join(f"saturation {c}: {x:.2f}" for c, x in kept.items())
    if top >= 0.9:
        verdict = (
            f"The log identifies how the effect of repeated trainings levels off ({shapes}); the interval is narrow "
            "because the log pins the effect down, not because the effect is small."
        )
    else:
        verdict = (
            f"The log cannot tell how the effect of repeated trainings levels off: the shapes it allows ({shapes}) "
            "predict different futures for a policy that trains some prompts far more often than the log did, and the "
            "interval is wide because of it. More evidence would narrow it: sweeps of every prompt, prompts logged "
            "under several ids (similar_by), or a longer log."
        )
    return (
        f"{how} {verdict} The log's groups vary {phi:.2f} times as much as binomial noise around the fit (its "
        "likelihoods are divided by that), and the gain's standard error counts each unit of prompts sharing "
        "trainings once, however many rows it holds."
    )


def _logits(v: Any) -> str:
    return v if isinstance(v, str) else f"{v:.3f}"


def shape_sentence(w: dict[str, Any]) -> str:
    """How the effect of a prompt's n-th training shrinks, and why this shape (see closedloop.fit.choose_shape)."""
    sat = w.get("closed_loop_saturation", "inf")
    shape = "linear: every training adds the same" if sat == "inf" else f"saturating after about {sat} trainings"
    reason = w.get("closed_loop_shape", "given")
    scores: dict[str, float] = w.get("closed_loop_shape_loglik") or {}
    if reason == "given" or not scores:
        return f"shape {shape}, as given"
    default = w.get("closed_loop_shape_default")
    best = max(scores, key=lambda c: scores[c])
    ref = scores.get(str(default), 0.0)
    lik = ", ".join(f"{c}: {v - ref:+.1f}" for c, v in scores.items())
    margin = w.get("closed_loop_shape_margin", float("nan"))
    why = (
        f"the log prefers it over the default, saturation at the log's own {default} trainings per prompt, "
        f"by more than BIC's margin of {margin}"
        if reason == "fitted"
        else f"the default, saturation at the log's own {default} trainings per prompt: the log cannot tell the shapes "
        f"apart (the best, saturation {best}, beats it by less than BIC's margin of {margin}); "
        f'[world] effect_saturation = "linear" replays the other end, an effect that never saturates'
    )
    return f"shape {shape}; {why}; log-likelihood by saturation count, relative to the default: {lik}"


def calibration_section(cal: Any) -> list[str]:
    from dps.replay.calibration import markdown

    return [
        "## How well the log world predicts its own log",
        "",
        "Each logged group predicted with its (step, prompt) cell held out (calibration.csv, calibration.json): "
        + cal.line()
        + ". Trust a replay of this log about as far as the predicted and observed columns agree.",
        "",
        *([cal.population[0].upper() + cal.population[1:] + ".", ""] if cal.population else []),
        markdown(cal),
        "",
    ]


def write_calibration(cal: Any, out: Path, plots: bool, title: str) -> dict[str, Path]:
    from dps.replay.calibration import write

    return write(cal, out, "calibration", plots, title)


def _smooth(y: np.ndarray, w: int) -> np.ndarray:
    if w <= 1 or len(y) < w:
        return y
    k = np.ones(w) / w
    pad = np.concatenate([np.full(w // 2, y[0]), y, np.full(w - 1 - w // 2, y[-1])])
    return np.convolve(pad, k, mode="valid")


def curve_label(policy: str, y: np.ndarray, drawn: dict[str, np.ndarray]) -> str:
    """The legend label of a curve: its policy, and the first drawn one it coincides with."""
    same = [q for q, yq in drawn.items() if len(yq) == len(y) and np.allclose(yq, y, atol=1e-3)]
    return policy + (f" (same as {same[0]})" if same else "")


def plot_all(steps: pl.DataFrame, out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import polars as pl

    paths: dict[str, Path] = {}
    policies = list(dict.fromkeys(steps["policy"].to_list()))
    cmap = plt.get_cmap("tab10" if len(policies) <= 10 else "tab20")
    colors = {p: cmap(i % cmap.N) for i, p in enumerate(policies)}
    # Policies often overlap (every gate sits at 1.0): vary the dash too.
    dashes = ["-", "--", "-.", ":"]
    styles = {p: dashes[i % len(dashes)] for i, p in enumerate(policies)}
    markers = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">"]
    T = int(steps["step"].to_numpy().max()) + 1
    win = max(1, T // 40)

    fig, ax = plt.subplots(figsize=(8, 4.8))
    drawn: dict[str, np.ndarray] = {}
    for i, p in enumerate(policies):
        d = (
            steps.filter(pl.col("policy") == p)
            .group_by("step")
            .agg(
                pl.col("effective_ratio").mean().alias("m"),
                pl.col("effective_ratio").min().alias("lo"),
                pl.col("effective_ratio").max().alias("hi"),
            )
            .sort("step")
        )
        x, y = d["step"].to_numpy(), _smooth(d["m"].to_numpy(), win)
        # Lines that coincide (every gate sits at 1.0) would hide each other: staggered markers
        # keep each visible, and the legend says which curves are the same.
        every = max(1, len(x) // 8)
        ax.plot(
            x,
            y,
            label=curve_label(p, y, drawn),
            color=colors[p],
            ls=styles[p],
            lw=1.8,
            marker=markers[i % len(markers)],
            ms=5,
            markevery=(i * every // max(1, len(policies)), every),
        )
        ax.fill_between(
            x, _smooth(d["lo"].to_numpy(), win), _smooth(d["hi"].to_numpy(), win), color=colors[p], alpha=0.15, lw=0
        )
        drawn[p] = y
    ax.set_xlabel("step")
    ax.set_ylabel("effective ratio (partially solved share of batch)")
    ax.set_ylim(0, 1.05)
    ax.set_title(
        f"Effective ratio per step (mean over seeds, {win}-step moving average; band: seed range)", fontsize=10
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(out / "effective_ratio.png", dpi=120)
    plt.close(fig)
    paths["effective_ratio_png"] = out / "effective_ratio.png"

    fig, ax = plt.subplots(figsize=(8, 4.8))
    for p in policies:
        d = (
            steps.filter(pl.col("policy") == p)
            .group_by("step")
            .agg(pl.col("cum_rollouts").mean(), pl.col("cum_effective_prompts").mean())
            .sort("step")
        )
        ax.plot(
            d["cum_rollouts"].to_numpy() / 1e6,
            d["cum_effective_prompts"].to_numpy() / 1e3,
            label=p,
            color=colors[p],
            ls=styles[p],
            lw=1.8,
        )
    ax.set_xlabel("cumulative rollouts (millions)")
    ax.set_ylabel("cumulative effective prompts (thousands)")
    ax.set_title("Effective prompts bought per rollout (mean over seeds; steeper is better)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(out / "rollouts_vs_effective.png", dpi=120)
    plt.close(fig)
    paths["rollouts_png"] = out / "rollouts_vs_effective.png"

    conf_cols = [f"conf_{i}{j}" for i in range(3) for j in range(3)]
    if all(c in steps.columns for c in conf_cols):
        pred = steps.filter(pl.col("conf_00").is_not_null())
        pred_policies = [p for p in policies if p in set(pred["policy"].to_list())][:4]
        if pred_policies:
            n_win = 4
            edges = np.linspace(0, T, n_win + 1).astype(int)
            fig, axes = plt.subplots(
                len(pred_policies), n_win, figsize=(3.0 * n_win, 2.9 * len(pred_policies)), squeeze=False
            )
            labels = ["unsolved", "partial", "solved"]
            for r, p in enumerate(pred_policies):
                d = pred.filter(pl.col("policy") == p)
                for c in range(n_win):
                    lo, hi = edges[c], edges[c + 1]
                    dd = d.filter((pl.col("step") >= lo) & (pl.col("step") < hi))
                    m = np.array([dd[col].sum() for col in conf_cols], dtype=np.float64).reshape(3, 3)
                    rows = m.sum(axis=1, keepdims=True)
                    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
                    ax = axes[r, c]
                    ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
                    for i in range(3):
                        for j in range(3):
                            ax.text(
                                j,
                                i,
                                f"{norm[i, j]:.2f}\n({int(m[i, j])})",
                                ha="center",
                                va="center",
                                fontsize=7,
                                color="white" if norm[i, j] > 0.6 else "black",
                            )
                    ax.set_xticks(range(3), labels, fontsize=7)
                    ax.set_yticks(range(3), labels, fontsize=7)
                    if r == len(pred_policies) - 1:
                        ax.set_xlabel("predicted (argmax prior)", fontsize=8)
                    if c == 0:
                        ax.set_ylabel(f"{p}\nobserved", fontsize=8)
                    ax.set_title(f"steps {lo}-{hi - 1}", fontsize=8)
            fig.suptitle(
                "Predicted vs observed state of the selected groups (rows normalised; counts in brackets)", fontsize=10
            )
            fig.tight_layout()
            fig.savefig(out / "dps_confusion.png", dpi=120)
            plt.close(fig)
            paths["confusion"] = out / "dps_confusion.png"
    return paths


def reliability_table(bins: pl.DataFrame) -> pl.DataFrame:
    """Per (policy, bin), summed over seeds: count, mean prediction and observed partial share."""
    import polars as pl

    order = {p: i for i, p in enumerate(dict.fromkeys(bins["policy"].to_list()))}
    agg = bins.group_by("policy", "bin").agg(
        pl.col("lo").first(),
        pl.col("hi").first(),
        pl.col("count").sum(),
        pl.col("sum_pred").sum(),
        pl.col("sum_obs").sum(),
    )
    agg = agg.with_columns(
        (pl.col("sum_pred") / pl.col("count")).alias("mean_predicted"),
        (pl.col("sum_obs") / pl.col("count")).alias("observed"),
        pl.col("policy").replace_strict(order, return_dtype=pl.Int64).alias("_o"),
    )
    return agg.sort("_o", "bin").drop("_o", "sum_pred", "sum_obs")


def write_reliability(bins: pl.DataFrame, out: Path, plots: bool) -> dict[str, Path]:
    """reliability.csv (bins summed over seeds) and, with plots, reliability.png."""
    table = reliability_table(bins)
    table.write_csv(out / "reliability.csv")
    paths = {"reliability_csv": out / "reliability.csv"}
    if plots:
        paths["reliability_png"] = plot_reliability(table, out / "reliability.png")
    return paths


def plot_reliability(table: pl.DataFrame, path: Path) -> Path:
    """One reliability curve per predictive policy: observed partial share against the mean
    predicted P(partial) of each bin (points sized by count); the diagonal is perfect calibration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import polars as pl

    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls=":", label="perfectly calibrated")
    policies = list(dict.fromkeys(table["policy"].to_list()))
    cmap = plt.get_cmap("tab10" if len(policies) <= 10 else "tab20")
    total = max(1, int(table["count"].to_numpy().max(initial=1)))
    for i, p in enumerate(policies):
        d = table.filter((pl.col("policy") == p) & (pl.col("count") > 0)).sort("bin")
        x, y, n = d["mean_predicted"].to_numpy(), d["observed"].to_numpy(), d["count"].to_numpy()
        ax.plot(x, y, color=cmap(i % cmap.N), lw=1.4, label=p)
        ax.scatter(x, y, s=12 + 120 * n / total, color=cmap(i % cmap.N), alpha=0.7)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted P(partially solved)")
    ax.set_ylabel("observed share partially solved")
    ax.set_title("Reliability of each policy's predictions (selected groups, all seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
