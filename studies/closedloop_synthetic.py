"""Closed-loop replay against a known truth: a synthetic world whose loop is closed (train_gain).

A uniform run in the true closed-loop world is logged (its trained groups, plus a sweep of every
prompt every --sweep-every steps); the training effect is fitted from that log; US, DS and DPS
are then replayed in the open-loop log world, in the closed-loop log world (the effect's shape
chosen from the log: the default), in the closed loop forced linear, and in the true world
itself. Each case is a true gain, linear, or GAIN:C for an effect that saturates after about C
trainings (train_saturation). Prints a markdown table (mean over replay seeds); the fitted closed
loop's row adds the 90% interval of DPS's effective ratio and of DS's rollouts (--draws replays,
each with an effect drawn from the fit, as `dps replay` does), to be set against the truth's row.

    .venv/bin/python studies/closedloop_synthetic.py --cases 0.05 0.1 0 0.2:4
"""

from __future__ import annotations

import argparse

import numpy as np
import polars as pl

from dps import DPS, DynamicSampling, Uniform
from dps.replay.closedloop import ClosedLoopWorld, fit_training_effect, training_log
from dps.replay.intervals import prediction_interval
from dps.replay.logworld import LogWorld
from dps.replay.runner import replay
from dps.replay.worlds import SyntheticWorld, World, preset_params

POLICIES = {
    "US": lambda n, s: Uniform(num_prompts=n, seed=s),
    "DS": lambda n, s: DynamicSampling(num_prompts=n, seed=s, max_rounds=4),
    "DPS": lambda n, s: DPS(num_prompts=n, decay=0.7, seed=s),
}


def log_world(log: pl.DataFrame) -> LogWorld:
    """Trained groups first; sweep rows where the run did not train that prompt at that step."""
    train = log.filter(pl.col("kind") == "train")
    sweep = log.filter(pl.col("kind") == "sweep").join(
        train.select("step", "prompt_id"), on=["step", "prompt_id"], how="anti"
    )
    return LogWorld(pl.concat([train, sweep]).drop("kind"))


def run(world: World, seeds: list[int], steps: int, batch: int) -> dict[str, dict[str, float]]:
    out = {}
    for name, make in POLICIES.items():
        rows = [replay(make(world.num_prompts, s), world, steps, batch, seed=s).summary for s in seeds]
        out[name] = {
            k: float(np.mean([r[k] for r in rows]))
            for k in ("effective_ratio", "rollouts", "mean_rounds", "distinct_prompts")
        }
    return out


def interval(world: ClosedLoopWorld, policy: str, key: str, draws: int, steps: int, batch: int) -> tuple[float, float]:
    """The 90% interval of `key` over replays with the effect drawn from the fit (seeds 100, 101, ...)."""
    values = []
    for r in range(draws):
        drawn = world.with_effect(world.effect.draw(np.random.default_rng([0x1A7E_5EED, r])))
        values.append(
            replay(POLICIES[policy](world.num_prompts, 100 + r), drawn, steps, batch, seed=100 + r).summary[key]
        )
    return prediction_interval(np.array(values, np.float64))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="math")
    ap.add_argument(
        "--cases", nargs="+", default=["0.05", "0.1", "0", "0.2:4"], help="GAIN (linear) or GAIN:C (saturating)"
    )
    ap.add_argument("--sweep-every", type=int, default=10)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--log-seed", type=int, default=100)
    ap.add_argument("--draws", type=int, default=20, help="interval replays of the fitted closed loop (0: none)")
    a = ap.parse_args()
    seeds = list(range(a.seeds))
    print(
        "| true gain, saturation | fitted gain (se), half-life, saturation | world | US eff. ratio | DPS eff. ratio "
        "| DS rollouts | DS rounds/step |"
    )
    print("|---|---|---|---:|---:|---:|---:|")
    for case in a.cases:
        gain, _, sat = case.partition(":")
        params = preset_params(a.preset, train_gain=float(gain), train_saturation=float(sat or "inf"))
        truth = SyntheticWorld(params, seed=0)
        batch = 256
        log = training_log(
            truth,
            Uniform(num_prompts=truth.num_prompts, seed=a.log_seed),
            params.steps,
            batch,
            a.log_seed,
            a.sweep_every,
        )
        train = log.filter(pl.col("kind") == "train")
        effect = fit_training_effect(log, train)
        linear = fit_training_effect(log, train, saturation="linear")
        base = log_world(log)
        worlds = {
            "open loop (log)": base,
            "closed loop (log, fitted)": ClosedLoopWorld(base, effect, train),
            "closed loop, forced linear": ClosedLoopWorld(base, linear, train),
            "truth": truth,
        }
        d = effect.describe()
        weights = ", ".join(f"{c}: {x:.2f}" for c, x in d["shape_weights"].items() if x >= 0.05)
        fitted = f"{effect.gain:.4f} ({effect.gain_se:.4f}), {d['half_life']}, {d['saturation']} ({d['shape']})"
        fitted += f"; weights {weights}"
        for wname, world in worlds.items():
            r = run(world, seeds, params.steps, batch)
            dps, ds = f"{r['DPS']['effective_ratio']:.3f}", f"{r['DS']['rollouts']:,.0f}"
            if wname == "closed loop (log, fitted)" and a.draws:
                lo, hi = interval(world, "DPS", "effective_ratio", a.draws, params.steps, batch)  # type: ignore[arg-type]
                dlo, dhi = interval(world, "DS", "rollouts", a.draws, params.steps, batch)  # type: ignore[arg-type]
                dps, ds = f"{dps} [{lo:.3f}, {hi:.3f}]", f"{ds} [{dlo:,.0f}, {dhi:,.0f}]"
            print(
                f"| {gain}, {sat or 'inf'} | {fitted} | {wname} | {r['US']['effective_ratio']:.3f} | {dps} "
                f"| {ds} | {r['DS']['mean_rounds']:.2f} |",
                flush=True,
            )
            fitted = ""


if __name__ == "__main__":
    main()
