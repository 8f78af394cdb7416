"""The report's tables: the summary aggregated over seeds, in Markdown, and the reliability bins."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

    from dps.replay.intervals import PolicyIntervals

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

#: The intervals, each shown after its column: (PolicyIntervals field, header, format).
INTERVALS = (
    ("effective_ratio", "effective ratio 90% interval", "{:.3f}"),
    ("rollouts", "rollouts 90% interval", "{:,.0f}"),
)


def aggregate(summary: pl.DataFrame) -> pl.DataFrame:
    """Mean and standard deviation over seeds, per policy, in the scenario's order."""
    import polars as pl

    order = {p: i for i, p in enumerate(dict.fromkeys(summary["policy"].to_list()))}
    cols = [c for c, _, _ in TABLE if c in summary.columns]
    agg = summary.group_by("policy").agg(
        pl.len().alias("seeds"),
        *(pl.col(c).cast(pl.Float64).mean().alias(c) for c in cols),
        *(pl.col(c).cast(pl.Float64).std().alias(c + "_std") for c in cols),
    )
    return (
        agg.with_columns(pl.col("policy").replace_strict(order, return_dtype=pl.Int64).alias("_o"))
        .sort("_o")
        .drop("_o")
    )


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _cell(v: Any, fmt: str, sd: Any = None) -> str:
    if _missing(v):
        return "-"
    s = fmt.format(v)
    if isinstance(sd, float) and not math.isnan(sd) and sd > 0 and fmt.endswith(".3f}"):
        s += f" ± {sd:.3f}"
    return s


def _span(lo: float, hi: float, fmt: str) -> str:
    if _missing(lo) or _missing(hi):
        return "-"
    return f"{fmt.format(lo)} - {fmt.format(hi)}"


def markdown_table(agg: pl.DataFrame, intervals: dict[str, PolicyIntervals] | None = None) -> str:
    """The aggregated table in Markdown: mean ± sd per column, each policy's intervals after their columns."""
    cols = [(c, h, f) for c, h, f in TABLE if c in agg.columns]
    spans = INTERVALS if intervals else ()
    after = {c: [(s, h, f) for s, h, f in spans if s == c] for c, _, _ in cols}
    heads = [x for c, h, _ in cols for x in [h, *(hh for _, hh, _ in after[c])]]
    lines = ["| policy | seeds | " + " | ".join(heads) + " |", "|---|---:|" + "---:|" * len(heads)]
    for row in agg.iter_rows(named=True):
        cells = []
        for c, _, f in cols:
            cells.append(_cell(row[c], f, row[c + "_std"]))
            for s, _, ff in after[c]:
                assert intervals is not None
                interval = getattr(intervals[row["policy"]], s)
                cells.append(_span(interval.lo, interval.hi, ff))
        lines.append(f"| {row['policy']} | {row['seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
