"""What a uniform run's log says about the closed loop's shape: the effect of each n-th selection.

Fits logit p = a_i + d(t) + sum_n b_n [prompt i selected at least n times before t] (selection
counts: what a uniform run randomises), so b_n is what a prompt's n-th selection added, free of
any shape; then the shape choice of dps.replay.closedloop (each saturation's log-likelihood
against the default). With --groups, also the spillover: how much training the other prompts of
a prompt's group (a column of a prompts file, e.g. the difficulty level) moves it, per training
of every prompt of the group.

    .venv/bin/python studies/closedloop_evidence.py /work/runs-closedloop/s0-uniform/dense.parquet \\
        --train-log /work/runs-closedloop/s0-uniform/rollouts.parquet
    .venv/bin/python studies/closedloop_evidence.py ../shared/data/smollm2-arith-lr1e6/log.parquet --max-n 10 \\
        --groups ../shared/data/smollm2-arith-lr1e6/prompts.parquet --group-col level
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import polars as pl

from dps.replay.closedloop import Rows, fit_logistic, fit_training_effect, trained_level, training_rows

COLS = ["step", "prompt_id", "n_rollouts", "n_correct"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("log", help="the world's log (every row is an observation)")
    ap.add_argument("--train-log", help="the trained groups, when not the log's rows of kind 'train'")
    ap.add_argument("--max-n", type=int, default=4, help="selections counted one by one (the last: that many or more)")
    ap.add_argument("--groups", help="a prompts file with prompt_id and --group-col")
    ap.add_argument("--group-col", default="level")
    a = ap.parse_args()
    log = pl.read_parquet(a.log)
    if a.train_log:
        train = training_rows(pl.read_parquet(a.train_log)).select(COLS)
        obs = pl.concat([log.select(COLS), train])
    else:
        train, obs = training_rows(log).select(COLS), log.select(COLS)
    step, pid = obs["step"].to_numpy(), obs["prompt_id"].to_numpy()
    nc, nr = obs["n_correct"].to_numpy().astype(float), obs["n_rollouts"].to_numpy().astype(float)
    N = int(max(pid.max(), train["prompt_id"].max())) + 1
    steps, sidx = np.unique(step, return_inverse=True)
    ts, tp = train["step"].to_numpy(), train["prompt_id"].to_numpy()
    M = trained_level(step, pid, ts, tp, math.inf, N)
    X = np.stack([(M >= n).astype(float) for n in range(1, a.max_n + 1)], 1)
    rows = Rows(pid, sidx, nc, nr, N, len(steps))
    fit = fit_logistic(rows, X)
    coef, cov = fit.coef, fit.covariance
    se = np.sqrt(np.diag(cov))
    print(f"{len(step):,} observations, {len(ts):,} trainings, {N:,} prompts")
    print("what the n-th selection added (logits, standard error):")
    for n, (c, s) in enumerate(zip(coef, se, strict=True), start=1):
        print(f"  n = {n}{'+' if n == a.max_n else ' '}: {c:+.3f} ({s:.3f})")
    eff = fit_training_effect(obs, train, num_prompts=N).describe()
    ref = eff["shape_loglik"][eff["shape_default"]]
    print(
        f"shape: saturation {eff['saturation']} ({eff['shape']}), half-life {eff['half_life']}, first-training gain "
        f"{eff['gain']:+.4f} ({eff['gain_se']:.4f}); log-likelihood against the default {eff['shape_default']} "
        f"(BIC margin {eff['shape_margin']}): "
        + ", ".join(f"{c}: {v - ref:+.1f}" for c, v in eff["shape_loglik"].items())
    )
    if a.groups:
        g = pl.read_parquet(a.groups).sort("prompt_id")
        group = np.zeros(N, np.int64)
        group[g["prompt_id"].to_numpy()] = np.unique(g[a.group_col].to_numpy(), return_inverse=True)[1]
        size = np.bincount(group)
        same = trained_level(step, group[pid], ts, group[tp], math.inf, len(size))  # trainings of the group before t
        spill = (same - M) / np.maximum(size[group[pid]] - 1, 1)  # of the others, per prompt of the group
        fit = fit_logistic(rows, np.stack([M, spill], 1))
        coef, cov = fit.coef, fit.covariance
        print(
            f"spillover within {a.group_col}: {coef[1]:+.3f} ({math.sqrt(cov[1, 1]):.3f}) logits per training of every "
            f"other prompt of the group (own selection {coef[0]:+.4f} ({math.sqrt(cov[0, 0]):.4f}))"
        )


if __name__ == "__main__":
    main()
