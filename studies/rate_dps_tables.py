"""The tables of docs/results.md#rate-dps-design, from what studies/rate_dps_design.py wrote.

    .venv/bin/python studies/rate_dps_tables.py runs/rate-dps-design runs/rate-dps-heldout \\
        runs/rate-dps-families runs/rate-dps-feed --extra runs/rate-dps-design-h30 runs/rate-dps-heldout-h30
"""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl

BASELINES = [
    "US",
    "DPS decay=0.7 (default)",
    "DPS decay=0.5",
    "DPS decay=0.9",
    "MoPPS decay=1 (default)",
    "MoPPS decay=0.5",
    "RateDPS",
]
WORLD_ORDER = ["math", "countdown", "countdown closed loop", "lr1e-6", "lr3e-6 uniform", "lr3e-6 DPS"]


def read(path: Path) -> pl.DataFrame:
    """A CSV the study wrote, every column but the names as floats (NaN where nothing was measured)."""
    frame = pl.read_csv(path, infer_schema_length=None)
    names = {"world", "policy", "log"}
    return frame.with_columns(pl.col(c).cast(pl.Float64, strict=False) for c in frame.columns if c not in names)


def mean_table(runs: pl.DataFrame) -> pl.DataFrame:
    metrics = [c for c in runs.columns if c not in ("world", "policy", "seed")]
    return runs.group_by("world", "policy").agg(
        *[pl.col(m).mean() for m in metrics], pl.col("effective_ratio").std().alias("effective_sd")
    )


def fmt(v: object, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def against_baselines(agg: pl.DataFrame) -> None:
    for world in WORLD_ORDER:
        part = agg.filter(pl.col("world") == world)
        if not part.height:
            continue
        logged = "brier_logged" in part.columns and part["brier_logged"].drop_nulls().len() > 0
        header = "| policy | effective ratio | rollouts / effective prompt | Brier (partial) | ECE (partial) |"
        header += " Brier, logged cells | ECE, logged cells |" if logged else ""
        header += " prompts used | rho chosen |"
        print(f"\n{world}\n\n{header}\n|---|" + "---:|" * (header.count("|") - 2))
        for name in BASELINES:
            r = part.filter(pl.col("policy") == name)
            if not r.height:
                continue
            r = r.row(0, named=True)
            cells = [f"{r['effective_ratio']:.3f} ± {r['effective_sd']:.3f}", fmt(r["rollouts_per_effective"], 2)]
            cells += [fmt(r["brier"]), fmt(r["ece"])]
            cells += [fmt(r["brier_logged"]), fmt(r["ece_logged"])] if logged else []
            cells += [f"{r['prompts_used']:.0%}", fmt(r["switch_rate"], 3) if name == "RateDPS" else "-"]
            print(f"| {name} | " + " | ".join(cells) + " |")


def stranding(agg: pl.DataFrame) -> None:
    names = [*BASELINES, "RateDPS revisit=0", "RateDPS revisit=1/16", "RateDPS revisit=1/4"]
    logs = [w for w in WORLD_ORDER if w.startswith("lr") and w in agg["world"].to_list()]
    print(
        "\n| policy | "
        + " | ".join(f"{w}: hard tried late / found partial" for w in logs)
        + " | countdown closed loop: unsolved at the end |"
    )
    print("|---|" + "---:|" * (len(logs) + 1))
    for name in names:
        cells = []
        for w in logs:
            r = agg.filter((pl.col("world") == w) & (pl.col("policy") == name))
            cells.append("-" if not r.height else f"{r['hard_tried_late'][0]:.2f} / {r['hard_found'][0]:.2f}")
        r = agg.filter((pl.col("world") == "countdown closed loop") & (pl.col("policy") == name))
        cells.append("-" if not r.height else f"{r['unsolved_end'][0]:.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    for w in logs:
        r = agg.filter(pl.col("world") == w)
        print(f"\n{w}: {int(r['hard_prompts'].drop_nulls()[0])} hard prompts")


def design_choices(agg: pl.DataFrame, worlds: list[str], order: list[str]) -> None:
    names = [p for p in dict.fromkeys(order) if p not in BASELINES[:-1]]
    print("\n| design | " + " | ".join(worlds) + " |")
    print("|---|" + "---:|" * len(worlds))
    for name in names:
        cells = []
        for w in worlds:
            r = agg.filter((pl.col("world") == w) & (pl.col("policy") == name))
            cells.append(
                "-" if not r.height else f"{r['effective_ratio'][0]:.3f} / {r['brier'][0]:.3f} / {r['ece'][0]:.3f}"
            )
        print(f"| {name} | " + " | ".join(cells) + " |")


def feed_table(feed: pl.DataFrame) -> None:
    logs = list(dict.fromkeys(feed["log"].to_list()))
    print("\n| model | " + " | ".join(f"{w}: log lik / Brier / ECE" for w in logs) + " |")
    print("|---|" + "---:|" * len(logs))
    for name in dict.fromkeys(feed["policy"].to_list()):
        cells = []
        for w in logs:
            r = feed.filter((pl.col("log") == w) & (pl.col("policy") == name)).row(0, named=True)
            ll = r.get("loglik_per_group")
            rho = r.get("switch_rate")
            tail = f" (rho {rho:g})" if rho == rho and rho is not None and "rho=" not in name else ""
            cells.append(f"{fmt(ll)} / {r['brier']:.3f} / {r['ece']:.3f}{tail}")
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("design", type=Path)
    ap.add_argument("heldout", type=Path)
    ap.add_argument("families", type=Path)
    ap.add_argument("feed", type=Path)
    ap.add_argument("--extra", type=Path, nargs="*", default=[], help="more runs of design variants (any worlds)")
    args = ap.parse_args()
    design = pl.concat([read(d / "runs.csv") for d in (args.design, *args.extra)], how="diagonal_relaxed")
    heldout = read(args.heldout / "runs.csv")
    agg = mean_table(pl.concat([design, heldout], how="diagonal_relaxed"))
    print("## Against the baselines")
    against_baselines(agg)
    print("\n## Stranding")
    stranding(agg)
    print("\n## Design choices (effective ratio / Brier / ECE), design worlds")
    order = design["policy"].to_list()
    design_choices(agg, ["math", "countdown", "countdown closed loop", "lr1e-6"], order)
    print("\n## Design choices, held-out logs")
    design_choices(agg, ["lr3e-6 uniform", "lr3e-6 DPS"], order)
    print("\n## Families")
    families = read(args.families / "runs.csv")
    design_choices(mean_table(families), ["lr1e-6", "lr3e-6 uniform", "lr3e-6 DPS"], families["policy"].to_list())
    print("\n## One-step prediction of every logged group (feed)")
    feed_table(read(args.feed / "feed.csv"))


if __name__ == "__main__":
    main()
