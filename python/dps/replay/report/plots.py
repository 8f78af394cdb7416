"""The report's plots: effective ratio per step, effective prompts per rollout, the predicted
against the observed state of the selected groups, and each predictor's reliability."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dps.outcomes import STATE_NAMES

if TYPE_CHECKING:
    import polars as pl


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


@dataclass
class Styles:
    """Each policy's colour, dash and marker, the same in every plot."""

    policies: list[str]
    colors: dict[str, Any]
    dashes: dict[str, str]
    markers: list[str]

    @classmethod
    def of(cls, policies: list[str]) -> Styles:
        import matplotlib.pyplot as plt

        cmap = plt.get_cmap("tab10" if len(policies) <= 10 else "tab20")
        # Policies often overlap (every gate sits at 1.0): vary the dash too.
        dashes = ["-", "--", "-.", ":"]
        return cls(
            policies,
            {p: cmap(i % cmap.N) for i, p in enumerate(policies)},
            {p: dashes[i % len(dashes)] for i, p in enumerate(policies)},
            ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">"],
        )


def plot_all(steps: pl.DataFrame, out: Path) -> dict[str, Path]:
    """effective_ratio.png, rollouts_vs_effective.png and, with a predictive policy, dps_confusion.png."""
    import matplotlib

    matplotlib.use("Agg")

    styles = Styles.of(list(dict.fromkeys(steps["policy"].to_list())))
    paths = {
        "effective_ratio_png": plot_effective_ratio(steps, styles, out / "effective_ratio.png"),
        "rollouts_png": plot_rollouts(steps, styles, out / "rollouts_vs_effective.png"),
    }
    confusion = plot_confusion(steps, styles.policies, out / "dps_confusion.png")
    if confusion is not None:
        paths["confusion"] = confusion
    return paths


#: Up to this many policies share one plot of the effective ratio; more get a panel each.
OVERLAY_POLICIES = 6
#: Panels in a row of the many-policies view.
PANEL_COLUMNS = 4


@dataclass
class RatioCurve:
    """One policy's mean effective ratio per step over its seeds (smoothed), and the seeds' range."""

    x: np.ndarray
    y: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    @classmethod
    def of(cls, steps: pl.DataFrame, policy: str, window: int) -> RatioCurve:
        import polars as pl

        d = (
            steps.filter(pl.col("policy") == policy)
            .group_by("step")
            .agg(
                pl.col("effective_ratio").mean().alias("m"),
                pl.col("effective_ratio").min().alias("lo"),
                pl.col("effective_ratio").max().alias("hi"),
            )
            .sort("step")
        )
        return cls(*(d["step"].to_numpy(), *(_smooth(d[c].to_numpy(), window) for c in ("m", "lo", "hi"))))


def plot_effective_ratio(steps: pl.DataFrame, styles: Styles, path: Path) -> Path:
    """Each policy's effective ratio per step (smoothed), with its seeds' range as a band: on one
    plot for a few policies; for more, a panel each (best mean first), the others in grey behind."""
    T = int(steps["step"].to_numpy().max()) + 1
    window = max(1, T // 40)
    curves = {p: RatioCurve.of(steps, p, window) for p in styles.policies}
    title = f"Effective ratio per step (mean over seeds, {window}-step moving average; band: seed range)"
    if len(curves) <= OVERLAY_POLICIES:
        return _ratio_on_one_plot(curves, styles, title, path)
    return _ratio_panels(curves, title, path)


def _ratio_on_one_plot(curves: dict[str, RatioCurve], styles: Styles, title: str, path: Path) -> Path:
    import matplotlib.pyplot as plt

    colors, dashes, markers = styles.colors, styles.dashes, styles.markers
    fig, ax = plt.subplots(figsize=(8, 4.8))
    drawn: dict[str, np.ndarray] = {}
    for i, (p, c) in enumerate(curves.items()):
        # Lines that coincide (every gate sits at 1.0) would hide each other: staggered markers
        # keep each visible, and the legend says which curves are the same.
        every = max(1, len(c.x) // 8)
        ax.plot(
            c.x,
            c.y,
            label=curve_label(p, c.y, drawn),
            color=colors[p],
            ls=dashes[p],
            lw=1.8,
            marker=markers[i % len(markers)],
            ms=5,
            markevery=(i * every // max(1, len(curves)), every),
        )
        ax.fill_between(c.x, c.lo, c.hi, color=colors[p], alpha=0.15, lw=0)
        drawn[p] = c.y
    ax.set_xlabel("step")
    ax.set_ylabel("effective ratio (partially solved share of batch)")
    ax.set_ylim(0, 1.05)
    ax.set_title(title, fontsize=10)
    return _save_with_legend_beside(fig, ax, path)


def _ratio_panels(curves: dict[str, RatioCurve], title: str, path: Path) -> Path:
    """Small multiples: a panel per policy, ordered by mean effective ratio, each over the others in grey."""
    import matplotlib.pyplot as plt

    order = sorted(curves, key=lambda p: -float(np.nanmean(curves[p].y)))
    rows = -(-len(order) // PANEL_COLUMNS)
    fig, axes = plt.subplots(
        rows, PANEL_COLUMNS, figsize=(3.2 * PANEL_COLUMNS, 2.3 * rows + 0.6), sharex=True, sharey=True, squeeze=False
    )
    for ax, p in zip(axes.flat, order, strict=False):
        for q in order:
            if q != p:
                ax.plot(curves[q].x, curves[q].y, color="0.75", lw=0.8)
        c = curves[p]  # one colour for every panel's own curve: the title names it, and tab20's pale ones fade
        ax.fill_between(c.x, c.lo, c.hi, color="tab:blue", alpha=0.2, lw=0)
        ax.plot(c.x, c.y, color="tab:blue", lw=2.0)
        ax.set_title(f"{p}  (mean {float(np.nanmean(c.y)):.2f})", fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(order) :]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("effective ratio", fontsize=8)
    for column in axes.T:  # the lowest panel of each column carries the steps
        lowest = [ax for ax in column if ax.get_visible()][-1]
        lowest.xaxis.set_tick_params(labelbottom=True)
        lowest.set_xlabel("step", fontsize=8)
    fig.suptitle(title + "; grey: the other policies", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_rollouts(steps: pl.DataFrame, styles: Styles, path: Path) -> Path:
    """Cumulative effective prompts against cumulative rollouts, per policy."""
    import matplotlib.pyplot as plt
    import polars as pl

    policies, colors, dashes = styles.policies, styles.colors, styles.dashes
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
            ls=dashes[p],
            lw=1.8,
        )
    ax.set_xlabel("cumulative rollouts (millions)")
    ax.set_ylabel("cumulative effective prompts (thousands)")
    ax.set_title("Effective prompts bought per rollout (mean over seeds; steeper is better)", fontsize=10)
    return _save_with_legend_beside(fig, ax, path)


#: The confusion plot's policies at most (its rows: every predictive policy of a leaderboard), and its
#: time windows (its columns).
CONFUSION_POLICIES = 12
CONFUSION_WINDOWS = 4
CONFUSION_COLUMNS = [f"conf_{i}{j}" for i in range(3) for j in range(3)]  # observed i, predicted j


def plot_confusion(steps: pl.DataFrame, policies: list[str], path: Path) -> Path | None:
    """Predicted against observed state of the selected groups, in time windows, for every
    predictive policy (the first CONFUSION_POLICIES, said in the title when there are more); None
    without one."""
    import matplotlib.pyplot as plt
    import polars as pl

    if not all(c in steps.columns for c in CONFUSION_COLUMNS):
        return None
    pred = steps.filter(pl.col("conf_00").is_not_null())
    predictive = [p for p in policies if p in set(pred["policy"].to_list())]
    shown = predictive[:CONFUSION_POLICIES]
    if not shown:
        return None
    left_out = (
        f"; the first {len(shown)} of {len(predictive)} predictive policies" if len(shown) < len(predictive) else ""
    )
    T = int(steps["step"].to_numpy().max()) + 1
    edges = np.linspace(0, T, CONFUSION_WINDOWS + 1).astype(int)
    fig, axes = plt.subplots(
        len(shown), CONFUSION_WINDOWS, figsize=(3.0 * CONFUSION_WINDOWS, 2.9 * len(shown)), squeeze=False
    )
    for r, p in enumerate(shown):
        d = pred.filter(pl.col("policy") == p)
        for c in range(CONFUSION_WINDOWS):
            lo, hi = edges[c], edges[c + 1]
            window = d.filter((pl.col("step") >= lo) & (pl.col("step") < hi))
            counts = np.array([window[col].sum() for col in CONFUSION_COLUMNS], dtype=np.float64).reshape(3, 3)
            ax = axes[r, c]
            _confusion_panel(ax, counts)
            if r == len(shown) - 1:
                ax.set_xlabel("predicted (argmax prior)", fontsize=8)
            if c == 0:
                ax.set_ylabel(f"{p}\nobserved", fontsize=8)
            ax.set_title(f"steps {lo}-{hi - 1}", fontsize=8)
    fig.suptitle(
        f"Predicted vs observed state of the selected groups (rows normalised; counts in brackets{left_out})",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / fig.get_figheight()))  # room for the title above the top row
    return _save(fig, path)


def _confusion_panel(ax: Any, counts: np.ndarray) -> None:
    """One window's 3 x 3 counts, rows normalised, each cell labelled with its share and its count."""
    rows = counts.sum(axis=1, keepdims=True)
    norm = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
    for i in range(3):
        for j in range(3):
            ax.text(
                j,
                i,
                f"{norm[i, j]:.2f}\n({int(counts[i, j])})",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if norm[i, j] > 0.6 else "black",
            )
    ax.set_xticks(range(3), STATE_NAMES, fontsize=7)
    ax.set_yticks(range(3), STATE_NAMES, fontsize=7)


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
    return _save_with_legend_beside(fig, ax, path)


def _save_with_legend_beside(fig: Any, ax: Any, path: Path) -> Path:
    """A one-axes plot's grid and legend (right of the axes), laid out and saved."""
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
