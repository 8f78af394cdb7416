"""The report folder: every file a sweep's report writes, written here."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from dps.replay.report.markdown import report
from dps.replay.report.tables import SUMMARY_COLUMNS, aggregate, markdown_table, reliability_table

if TYPE_CHECKING:
    import polars as pl

    from dps.replay.sweep import SweepResult


def write_report(result: SweepResult, out: str | Path, plots: bool = True) -> dict[str, Path]:
    """Write a sweep's report folder (report.md, summary.csv/.parquet, steps.parquet, meta.json, the
    interval replays, the replays' own logs, the calibration and reliability tables, and the plots
    unless `plots` is False); returns the written paths by name."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = write_tables(result, out)
    images: list[tuple[str, str]] = []
    if result.calibration is not None:
        from dps.replay.calibration import write

        title = f"log world of {result.scenario.name}"
        paths.update(write(result.calibration, out, "calibration", plots, title))
        if plots:
            images.append(("calibration", "calibration.png"))
    if plots:
        from dps.replay.report.plots import plot_all

        paths.update(plot_all(result.steps, out))
        images += [("effective ratio", "effective_ratio.png"), ("rollouts", "rollouts_vs_effective.png")]
        if "confusion" in paths:
            images.append(("confusion", "dps_confusion.png"))
    if result.reliability is not None:
        paths.update(write_reliability(result.reliability, out, plots))
        if plots:
            images.append(("reliability", "reliability.png"))
    table = markdown_table(aggregate(result.summary), result.intervals)
    (out / "report.md").write_text(report(result, table, images))
    paths["report"] = out / "report.md"
    return paths


def write_tables(result: SweepResult, out: Path) -> dict[str, Path]:
    """summary.csv and .parquet, steps.parquet, meta.json, interval_draws.parquet and logs/."""
    summary, steps = result.summary, result.steps
    front = list(SUMMARY_COLUMNS)
    ordered = summary.select(front + [c for c in summary.columns if c not in front])
    ordered.write_csv(out / "summary.csv")
    ordered.write_parquet(out / "summary.parquet")
    steps.write_parquet(out / "steps.parquet")
    paths = {
        "summary_csv": out / "summary.csv",
        "summary_parquet": out / "summary.parquet",
        "steps": out / "steps.parquet",
    }
    if result.draws is not None:
        result.draws.write_parquet(out / "interval_draws.parquet")
        paths["interval_draws"] = out / "interval_draws.parquet"
    if result.logs:
        (out / "logs").mkdir(exist_ok=True)
        for (policy, seed), log in result.logs.items():
            safe = re.sub(r"[^A-Za-z0-9_.=-]+", "_", policy)
            log.write_parquet(out / "logs" / f"{safe}-seed{seed}.parquet")
        paths["logs"] = out / "logs"
    sc = result.scenario
    meta = {
        "scenario": sc.name,
        "source": str(sc.source) if sc.source else None,
        "world": result.world.description,
        "steps": int(steps["step"].to_numpy().max()) + 1,
        "batch_size": sc.batch_size,
        "seeds": sc.seeds,
        "lag": sc.lag,
        "wall_s": round(result.wall_s, 2),
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
    paths["meta"] = out / "meta.json"
    return paths


def write_reliability(bins: pl.DataFrame, out: Path, plots: bool) -> dict[str, Path]:
    """reliability.csv (bins summed over seeds) and, with plots, reliability.png."""
    table = reliability_table(bins)
    table.write_csv(out / "reliability.csv")
    paths = {"reliability_csv": out / "reliability.csv"}
    if plots:
        from dps.replay.report.plots import plot_reliability

        paths["reliability_png"] = plot_reliability(table, out / "reliability.png")
    return paths
