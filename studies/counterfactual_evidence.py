"""Which closed-loop model do the logs support? Held-out likelihoods of the candidates on a matched pair.

The pair (../shared/data/smollm2-arith-lr3e6-pair/): a uniform run U and a live DPS run D of the same
setting, both with sweeps of every prompt every 4 steps. Each candidate is fitted on one run's log
(its sweeps and training rows, as `fit_training_effect` fits: selections scaled to trainings that
gave a gradient) and scored by

* cv: 5-fold held-out log-likelihood on the run's own rows (random rows held out), against the
  model without any training effect;
* U->D sweeps / U->D train rows: fitted on U, the log-likelihood of D's sweep rows (steps 4-108)
  and of D's own training groups, given what D trained (the counterfactual itself: U's prompt
  levels and drift, plus the effect of D's trainings instead of U's);
* D->U sweeps: the same the other way (D's selective log fitted, U's sweeps predicted).

Candidates: the per-prompt saturating effect (shape c; c = the log's own trainings per prompt is
the default), the same with the trainings of every prompt id of a question pooled (similar_by),
with the drift per difficulty level (drift_by), a spillover to the other prompts of a level, and
the "training clock" (the drift read at the step where the run had trained as many informative
groups, not at the same step). Numbers are log-likelihood differences in nats (higher is better).

    .venv/bin/python studies/counterfactual_evidence.py [--folds 5]
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from dps.replay.closedloop import Rows, drift_cells, effect_curve, fit_logistic, partial_trainings, trained_level
from dps.replay.closedloop.glm import clipped_sigmoid

PAIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "smollm2-arith-lr3e6-pair"
COLS = ["step", "prompt_id", "n_rollouts", "n_correct"]


@dataclass
class Run:
    name: str
    obs: pl.DataFrame  # every row: sweeps and training groups
    train: pl.DataFrame  # the training groups
    sweeps: pl.DataFrame  # the sweep rows after step 0, to step 108

    def arrays(self, df: pl.DataFrame) -> tuple[np.ndarray, ...]:
        return tuple(
            df[c].to_numpy().astype(np.float64 if c.startswith("n_") else np.int64)
            for c in ("step", "prompt_id", "n_correct", "n_rollouts")
        )


@dataclass
class Candidate:
    name: str
    saturation: float
    pooled: bool = False  # count the trainings of every prompt id of the question
    by_level: bool = False  # drift per level
    level_spill: bool = False  # + trainings of the other prompts of the level (per prompt)
    clock: bool = False  # drift read at the matching count of informative trainings


def load(name: str) -> Run:
    df = pl.read_parquet(PAIR / f"log_{name}.parquet")
    train = df.filter(pl.col("kind") == "train").select(COLS)
    sweeps = df.filter((pl.col("kind") == "sweep") & (pl.col("step") > 0) & (pl.col("step") <= 108)).select(COLS)
    return Run(name, df.select(COLS), train, sweeps)


def counts(
    run: Run, rows: pl.DataFrame, group: np.ndarray, level: np.ndarray, selections: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(M, level spillover) at each row: the group's trainings before the row's step, and the other
    prompts of the level's trainings per prompt. `selections`: counted as fit_training_effect does
    (every training row, scaled by the partial share); else the trainings that gave a gradient."""
    step, pid, _, _ = run.arrays(rows)
    ts, tp = partial_trainings(run.train)
    if selections:
        ts, tp = run.train["step"].to_numpy(), run.train["prompt_id"].to_numpy()
    M = trained_level(step, group[pid], ts, group[tp], math.inf, int(group.max()) + 1)
    own = trained_level(step, pid, ts, tp, math.inf, len(group))
    size = np.bincount(level)
    lev = (trained_level(step, level[pid], ts, level[tp], math.inf, len(size)) - own) / (size[level[pid]] - 1)
    if selections:
        share = len(partial_trainings(run.train)[0]) / run.train.height
        return share * M, share * lev
    return M, lev


def design(c: Candidate, M: np.ndarray, lev: np.ndarray) -> np.ndarray:
    cols = [np.zeros(len(M)) if math.isnan(c.saturation) else effect_curve(M, c.saturation)]  # NaN: no effect
    if c.level_spill:
        cols.append(lev)
    return np.stack(cols, axis=1)


def loglik(nc: np.ndarray, nr: np.ndarray, eta: np.ndarray) -> np.ndarray:
    p = clipped_sigmoid(eta)
    return nc * np.log(p) + (nr - nc) * np.log1p(-p)


class Fitted:
    def __init__(self, run: Run, c: Candidate, group: np.ndarray, level: np.ndarray, weights: np.ndarray | None = None):
        step, pid, nc, nr = run.arrays(run.obs)
        strata = level if c.by_level else np.zeros(len(level), np.int64)
        cells = drift_cells(step, strata[pid])
        self.sidx, S, steps, cell_step, cell_stratum = (
            cells.of_row,
            cells.count,
            cells.steps,
            cells.step_index,
            cells.stratum,
        )
        M, lev = counts(run, run.obs, group, level, selections=True)
        X = design(c, M, lev)
        w = np.ones(len(step)) if weights is None else weights
        fit = fit_logistic(Rows(pid, self.sidx, nc * w, nr * w, len(level), S), X, strata=cell_stratum)
        self.coef, self.a, d = fit.coef, fit.levels, fit.drift
        self.drift = {(int(cell_stratum[j]), int(steps[cell_step[j]])): d[j] for j in range(S)}
        self.eta_rows = self.a[pid] + d[self.sidx] + X @ self.coef
        self.strata, self.run, self.c = strata, run, c
        ts, _ = partial_trainings(run.train)
        self.clock_steps = np.arange(int(step.max()) + 1)
        self.clock = np.array([np.sum(ts < t) for t in self.clock_steps], np.float64)

    def drift_at(self, stratum: int, step: int) -> float:
        """The stratum's drift at `step`, linear between the fitted run's steps."""
        known = sorted(t for (s, t) in self.drift if s == stratum)
        return float(np.interp(step, known, [self.drift[(stratum, t)] for t in known]))

    def predict(self, target: Run, rows: pl.DataFrame, group: np.ndarray, level: np.ndarray) -> float:
        step, pid, nc, nr = target.arrays(rows)
        M, lev = counts(target, rows, group, level, selections=False)
        X = design(self.c, M, lev)
        if self.c.clock:  # the drift where the fitted run had trained as many informative groups
            ts, _ = partial_trainings(target.train)
            done = np.array([np.sum(ts < t) for t in step], np.float64)
            at = np.interp(done, self.clock, self.clock_steps)
        else:
            at = step.astype(np.float64)
        drift = np.array([self.drift_at(int(self.strata[i]), t) for i, t in zip(pid, at, strict=True)])
        return float(loglik(nc, nr, self.a[pid] + drift + X @ self.coef).sum())


def cv(run: Run, c: Candidate, group: np.ndarray, level: np.ndarray, folds: int) -> float:
    _, _, nc, nr = run.arrays(run.obs)
    fold = np.random.default_rng(0).integers(0, folds, len(nc))
    total = 0.0
    for k in range(folds):
        f = Fitted(run, c, group, level, weights=(fold != k).astype(np.float64))
        total += float(loglik(nc, nr, f.eta_rows)[fold == k].sum())
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folds", type=int, default=5)
    a = ap.parse_args()
    prompts = pl.read_parquet(PAIR / "prompts.parquet").sort("prompt_id")
    level = prompts["level"].to_numpy().astype(np.int64)
    question = np.unique(prompts["question"].to_numpy(), return_inverse=True)[1].astype(np.int64)
    alone = np.arange(len(level), dtype=np.int64)
    U, D = load("uniform"), load("dps")
    scale = len(partial_trainings(U.train)[0]) / len(level)  # the default saturation: U's trainings per prompt
    cands = [Candidate("no effect", math.nan)]
    for sat in (math.inf, 16.0, 8.0, round(scale, 2), 2.0):
        cands.append(Candidate(f"per prompt, c = {sat:g}", sat))
    for sat in (math.inf, 16.0, 8.0, 4.0):
        cands.append(Candidate(f"question pooled, c = {sat:g}", sat, pooled=True))
    for sat in (math.inf, 16.0, 12.0, 8.0, 4.0):
        cands.append(Candidate(f"question pooled, drift by level, c = {sat:g}", sat, pooled=True, by_level=True))
    cands.append(
        Candidate(
            "question pooled, drift by level, c = 16, + level spillover",
            16.0,
            pooled=True,
            by_level=True,
            level_spill=True,
        )
    )
    cands.append(
        Candidate(
            "question pooled, drift by level, c = 16, training clock", 16.0, pooled=True, by_level=True, clock=True
        )
    )
    cands.append(Candidate("per prompt, c = 8, training clock", 8.0, clock=True))
    print("| candidate | cv on U | U->D sweeps | U->D train rows | D->U sweeps |")
    print("|---|---:|---:|---:|---:|")
    base: dict[str, float] = {}
    for c in cands:
        group = question if c.pooled else alone
        fu, fd = Fitted(U, c, group, level), Fitted(D, c, group, level)
        scores = {
            "cv": cv(U, c, group, level, a.folds),
            "ud": fu.predict(D, D.sweeps, group, level),
            "udt": fu.predict(D, D.train, group, level),
            "du": fd.predict(U, U.sweeps, group, level),
        }
        base = base or scores
        print(
            f"| {c.name} | " + " | ".join(f"{scores[k] - base[k]:+,.0f}" for k in ("cv", "ud", "udt", "du")) + " |",
            flush=True,
        )


if __name__ == "__main__":
    main()
