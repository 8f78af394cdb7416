"""Does a uniform run's log predict the live DPS and DS runs of the same setting? Open vs closed loop.

Expects, for each seed S, three `dps train` run folders RUNS/sS-uniform, RUNS/sS-dps and
RUNS/sS-ds made with `--set log.sweep_every=N` (see docs/replay.md#closed-loop). The
uniform run's dense sweeps are the world's log and its rollouts the trainings the closed loop
is fitted from; DPS and DS are replayed (replay seeds 0-2, their options from the live runs'
configs) in the open-loop world, the fitted closed loop (its shape chosen from the log: the
default), the fitted closed loop forced linear (effect_saturation = "linear"), and compared
with what the live runs measured.

    .venv/bin/python studies/closedloop_train.py /work/runs-closedloop --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from dps.replay.scenario import parse_scenario
from dps.replay.sweep import run_sweep
from dps.train.policies import DEFAULT_MAX_ROUNDS, capped_rounds


def config(run: Path) -> dict[str, Any]:
    return dict(json.loads((run / "config.json").read_text())["config"])


def live(run: Path) -> dict[str, float]:
    s = json.loads((run / "summary.json").read_text())
    return {"effective_ratio": float(s["effective_ratio"]), "rollouts": float(s["rollouts_total"])}


def scenario(
    us_run: Path, dps_cfg: dict[str, Any], ds_cfg: dict[str, Any], replay_seeds: list[int], shape: str
) -> dict[str, Any]:
    cfg = config(us_run)
    n, batch = int(cfg["task"]["options"]["n_train"]), int(cfg["policy"]["batch_size"])
    ds_opts = dict(ds_cfg["policy"]["options"])
    ds_opts["max_rounds"] = capped_rounds(n, batch, int(ds_opts.get("max_rounds", DEFAULT_MAX_ROUNDS)))
    return {
        "name": f"closed-loop-{us_run.name}",
        "world": {
            "log": str(us_run / "dense.parquet"),
            "closed_loop": "fit",
            "train_log": str(us_run / "rollouts.parquet"),
            "effect_saturation": shape,
        },
        "run": {"batch_size": batch, "steps": int(cfg["steps"]), "seeds": replay_seeds, "workers": 1},
        "policies": [
            {"name": "US", "type": "uniform"},
            {"name": "DS", "type": "dynamic_sampling", **ds_opts},
            {"name": "DPS", "type": "dps", **dict(dps_cfg["policy"]["options"])},
        ],
    }


def shape_label(w: dict[str, Any]) -> str:
    """The chosen saturation, why, and the best candidate's log-likelihood over the default's."""
    scores = w["closed_loop_shape_loglik"]
    best = max(scores, key=lambda c: scores[c])
    lead = scores[best] - scores[w["closed_loop_shape_default"]]
    return (
        f"sat. {w['closed_loop_saturation']} ({w['closed_loop_shape']}; "
        f"best {best} by {lead:.1f}, margin {w['closed_loop_shape_margin']})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--replay-seeds", type=int, default=3)
    a = ap.parse_args()
    print(
        "| seed | fitted gain (se), half-life, shape | US eff. ratio open / closed / linear / live "
        "| DPS eff. ratio open / closed / linear / live | DS rollouts open / closed / linear / live |"
    )
    print("|---:|---|---|---|---|")
    for seed in a.seeds:
        us, dps, ds = (a.runs / f"s{seed}-{p}" for p in ("uniform", "dps", "ds"))
        got: dict[str, dict[str, Any]] = {}
        for shape in ("auto", "linear"):
            sc = parse_scenario(scenario(us, config(dps), config(ds), list(range(a.replay_seeds)), shape))
            res = run_sweep(sc, workers=1, progress=False)
            for r in (
                res.summary.select("policy", "effective_ratio", "rollouts")
                .group_by("policy")
                .mean()
                .iter_rows(named=True)
            ):
                name = (
                    r["policy"] if shape == "auto" or r["policy"].endswith("(open loop)") else r["policy"] + " linear"
                )
                got[name] = r
            if shape == "auto":
                w = res.world
        truth = {"US": live(us), "DPS": live(dps), "DS": live(ds)}

        def four(policy: str, key: str, fmt: str, got: dict = got, truth: dict = truth) -> str:
            vals = (
                got[f"{policy} (open loop)"][key],
                got[policy][key],
                got[f"{policy} linear"][key],
                truth[policy][key],
            )
            return " / ".join(format(v, fmt) for v in vals)

        print(
            f"| {seed} | {w['closed_loop_gain']:+.3f} ({w['closed_loop_gain_se']:.3f}), {w['closed_loop_half_life']}, "
            f"{shape_label(w)} "
            f"| {four('US', 'effective_ratio', '.3f')} | {four('DPS', 'effective_ratio', '.3f')} "
            f"| {four('DS', 'rollouts', ',.0f')} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
