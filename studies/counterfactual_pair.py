"""Counterfactual replay checked both ways on the real SmolLM2 pair: predicted, 90% interval, live.

* DPS (decay 0.5, B = 64, 108 steps) from the uniform run's log (replay/smollm2-pair.toml), against
  the live DPS run's 0.607 and its per-step curve (steps_dps.parquet, in 12-step windows);
* DS (up to 4 rounds) from the same log: the rollouts it would spend (no live run here);
* uniform from the live DPS run's log (replay/smollm2-pair-reverse.toml), against the uniform
  run's 0.369 on its training groups over the same 108 steps;
* DPS on the DPS run's own log (its sweeps and training groups; the closed loop fitted from it).

    .venv/bin/python studies/counterfactual_pair.py [--draws 20] [--workers 2]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import polars as pl

from dps.outcomes import partially_solved
from dps.replay.closedloop import count_label
from dps.replay.scenario import load_scenario
from dps.replay.sweep import SweepResult, run_sweep

ROOT = Path(__file__).resolve().parents[1]
PAIR = ROOT.parent / "shared" / "data" / "smollm2-arith-lr3e6-pair"
WINDOW = 12


def sweep(scenario: str, workers: int, draws: int, *sets: str) -> SweepResult:
    sc = load_scenario(ROOT / "replay" / scenario, [f"run.interval_draws={draws}", *sets])
    return run_sweep(sc, workers=workers, progress=False)


def row(res: SweepResult, policy: str, key: str) -> tuple[float, float, float]:
    interval = getattr(res.intervals[policy], key)
    return float(res.summary.filter(pl.col("policy") == policy)[key].mean()), interval.lo, interval.hi


def uniform_truth(steps: int) -> float:
    """The uniform run's partially solved share of its training groups over its first `steps` steps."""
    log = pl.read_parquet(PAIR / "log_uniform.parquet").filter((pl.col("kind") == "train") & (pl.col("step") <= steps))
    c, n = log["n_correct"].to_numpy(), log["n_rollouts"].to_numpy()
    return float(np.mean(partially_solved(c, n)))


def windows(x: np.ndarray) -> list[float]:
    return [float(np.mean(x[i : i + WINDOW])) for i in range(0, len(x), WINDOW)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--draws", type=int, default=40)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    live = pl.read_parquet(PAIR / "steps_dps.parquet").sort("step")["effective"].to_numpy()
    forward = sweep("smollm2-pair.toml", a.workers, a.draws)
    reverse = sweep("smollm2-pair-reverse.toml", a.workers, a.draws)
    print("| direction | predicted | 90% interval | live |")
    print("|---|---:|---:|---:|")
    lines = [
        (
            "DPS effective ratio from the uniform run's log",
            row(forward, "DPS", "effective_ratio"),
            f"{live.mean():.3f}",
        ),
        ("(open loop)", row(forward, "DPS (open loop)", "effective_ratio"), ""),
        ("DS rollouts (up to 4 rounds) from the uniform run's log", row(forward, "DS", "rollouts"), "kept aside"),
        (
            "uniform effective ratio from the DPS run's log",
            row(reverse, "US", "effective_ratio"),
            f"{uniform_truth(108):.3f}",
        ),
        ("(open loop)", row(reverse, "US (open loop)", "effective_ratio"), ""),
        ("DPS effective ratio on the DPS run's own log", row(reverse, "DPS", "effective_ratio"), f"{live.mean():.3f}"),
        (
            "uniform effective ratio on the uniform run's own log",
            row(forward, "US", "effective_ratio"),
            f"{uniform_truth(108):.3f}",
        ),
    ]
    for name, (mean, lo, hi), truth in lines:
        fmt = ",.0f" if mean > 10 else ".3f"
        print(f"| {name} | {mean:{fmt}} | {lo:{fmt}} - {hi:{fmt}} | {truth} |")
    e = forward.world.effect
    assert e is not None, "the pair's scenarios fit a closed loop"
    weights = {c: round(x, 4) for c, x in e.shape_weights().items()}
    print(
        f"\nfit: gain {e.gain:+.4f} (se {e.gain_se:.4f}), saturation {count_label(e.saturation)}, "
        f"half-life {e.half_life}, shape weights {weights}, dispersion {e.dispersion:.3f}"
    )
    steps = forward.steps
    curves = {
        name: steps.filter(pl.col("policy") == name)
        .group_by("step")
        .agg(pl.col("effective_ratio").mean())
        .sort("step")["effective_ratio"]
        .to_numpy()
        for name in ("DPS", "DPS (open loop)")
    }
    print("\n| steps | live | closed loop | open loop |\n|---|---:|---:|---:|")
    for i, (lv, cl, op) in enumerate(
        zip(windows(live), windows(curves["DPS"]), windows(curves["DPS (open loop)"]), strict=True)
    ):
        print(f"| {i * WINDOW + 1}-{min(len(live), (i + 1) * WINDOW)} | {lv:.3f} | {cl:.3f} | {op:.3f} |")


if __name__ == "__main__":
    main()
