"""Does a uniform run's log predict the live DPS and DS runs of the same setting? Open vs closed loop.

Expects, for each seed S, three `dps train` run folders RUNS/sS-uniform, RUNS/sS-dps and
RUNS/sS-ds made with `--set log.sweep_every=N` (see docs/replay.md#closed-loop). The uniform
run's dense sweeps are the world's log and its rollouts the trainings the closed loop is fitted
from (the task's prompts hold no repeated question, so there is no similar_by); US, DPS and DS
are replayed (replay seeds 0-2, DPS and DS with the live runs' options) in the open-loop world
and the fitted closed loop, each closed-loop number with its 90% interval, and compared with what
the live runs measured (their summary.json).

    .venv/bin/python studies/closedloop_train.py /work/runs-closedloop --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import polars as pl

from dps.policies.builtin import DEFAULT_MAX_ROUNDS
from dps.policies.registry import capped_rounds
from dps.replay.scenario import parse_scenario
from dps.replay.sweep import run_sweep


def config(run: Path) -> dict[str, Any]:
    return dict(json.loads((run / "config.json").read_text())["config"])


def live(run: Path) -> dict[str, float]:
    s = json.loads((run / "summary.json").read_text())
    return {"effective_ratio": float(s["effective_ratio"]), "rollouts": float(s["rollouts_total"])}


def scenario(
    us_run: Path, dps_cfg: dict[str, Any], ds_cfg: dict[str, Any], replay_seeds: list[int], draws: int
) -> dict[str, Any]:
    cfg = config(us_run)
    n, batch = int(cfg["task"]["options"]["n_train"]), int(cfg["policy"]["batch_size"])
    ds_opts = dict(ds_cfg["policy"]["options"])
    ds_opts["max_rounds"] = capped_rounds(n, batch, int(ds_opts.get("max_rounds", DEFAULT_MAX_ROUNDS)))
    return {
        "name": f"closed-loop-{us_run.name}",
        "world": {
            "log": str(us_run / "dense.parquet"),
            "prompt_ids": "index",
            "num_prompts": n,
            "closed_loop": "fit",
            "train_log": str(us_run / "rollouts.parquet"),
        },
        "run": {
            "batch_size": batch,
            "steps": int(cfg["steps"]),
            "seeds": replay_seeds,
            "workers": 1,
            "interval_draws": draws,
        },
        "policies": [
            {"name": "US", "type": "uniform"},
            {"name": "DS", "type": "dynamic_sampling", **ds_opts},
            {"name": "DPS", "type": "dps", **dict(dps_cfg["policy"]["options"])},
        ],
    }


def cell(rows: pl.DataFrame, policy: str, key: str, fmt: str) -> str:
    r = rows.filter(pl.col("policy") == policy)
    mean = format(float(r[key].mean()), fmt)
    if policy.endswith("(open loop)"):
        return mean
    return f"{mean} [{format(float(r[key + '_lo'][0]), fmt)}, {format(float(r[key + '_hi'][0]), fmt)}]"


def three(rows: pl.DataFrame, truth: dict[str, dict[str, float]], policy: str, key: str, fmt: str) -> str:
    """open loop / closed loop [interval] / live."""
    opened, closed = cell(rows, policy + " (open loop)", key, fmt), cell(rows, policy, key, fmt)
    return f"{opened} / {closed} / {format(truth[policy][key], fmt)}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--replay-seeds", type=int, default=3)
    ap.add_argument("--draws", type=int, default=40, help="interval replays per policy")
    a = ap.parse_args()
    print(
        "| seed | fitted gain (se), shapes (weight) | US eff. ratio: open / closed [90%] / live "
        "| DPS eff. ratio: open / closed [90%] / live | DS rollouts: open / closed [90%] / live |"
    )
    print("|---:|---|---|---|---|")
    for seed in a.seeds:
        us, dps, ds = (a.runs / f"s{seed}-{p}" for p in ("uniform", "dps", "ds"))
        sc = parse_scenario(scenario(us, config(dps), config(ds), list(range(a.replay_seeds)), a.draws))
        res = run_sweep(sc, workers=1, progress=False)
        e, s = res.world.effect, res.summary
        assert e is not None, "the scenario fits a closed loop"
        truth = {"US": live(us), "DPS": live(dps), "DS": live(ds)}
        weights = ", ".join(f"{c}: {x:.2f}" for c, x in e.shape_weights().items() if x >= 0.05)

        cells = [
            three(s, truth, p, k, f)
            for p, k, f in (
                ("US", "effective_ratio", ".3f"),
                ("DPS", "effective_ratio", ".3f"),
                ("DS", "rollouts", ",.0f"),
            )
        ]
        print(
            f"| {seed} | {e.gain:+.3f} ({e.gain_se:.3f}); {weights} | " + " | ".join(cells) + " |",
            flush=True,
        )


if __name__ == "__main__":
    main()
