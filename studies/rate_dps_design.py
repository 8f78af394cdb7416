"""The design study behind RateDPS (docs/method.md#rate-dps): candidate models replayed beside DPS
and MoPPS, on synthetic worlds and on the shared real logs, with the replay engine's own scoring.

Design choices are made on the "design" worlds (the math and countdown presets and the lr 1e-6
SmolLM2 log) and reported on the "held-out" ones (the lr 3e-6 pair: its uniform run and its live
DPS run), which no choice looked at. Per (world, policy, seed) it records what `replay` reports
(effective ratio, rollouts per effective prompt, Brier and ECE of the predicted P(partial) of the
selected groups, prompts used) and:

- `brier_logged` / `ece_logged`: the same scores over the selected groups whose (step, prompt)
  cell the log holds, i.e. real outcomes, not the log world's draws;
- `hard_tried_late`: on a log, the share of its hard prompts (no correct response in any sweep up
  to step 40) that the policy still selects in the second half of the replay, and `hard_found`,
  the share of them it finds partially solved at least once;
- `unsolved_end`: on a closed-loop world (train_gain > 0), the expected share of prompts whose
  group of k would be all wrong at the last step, mean (1 - p)^k: the replay's proxy for the
  stranding a live run shows;
- `switch_rate`: the candidate a fitted policy ended on.

Usage (from the project root; 3 seeds; about 20 minutes on one core for everything):

    OMP_NUM_THREADS=1 .venv/bin/python studies/rate_dps_design.py --part design --out runs/rate-dps-design
    OMP_NUM_THREADS=1 .venv/bin/python studies/rate_dps_design.py --part heldout --out runs/rate-dps-heldout
    OMP_NUM_THREADS=1 .venv/bin/python studies/rate_dps_design.py --part families --out runs/rate-dps-families
    OMP_NUM_THREADS=1 .venv/bin/python studies/rate_dps_design.py --part feed --out runs/rate-dps-feed
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from dps import DPS, MoPPS, Policy, Uniform  # noqa: E402
from dps.replay.runner import RELIABILITY_BINS, expected_calibration_error, reliability_bins, replay  # noqa: E402
from dps.replay.worldconfig import load_world  # noqa: E402
from reference_rate_dps import (  # noqa: E402
    RateFilter,
    ReferenceRateDPS,
    log_binomial,
    rate_grid,
    state_chances,
)

DATA = ROOT.parent / "shared" / "data"
LOGS = {
    "lr1e-6": DATA / "smollm2-arith-lr1e6" / "log.parquet",
    "lr3e-6 uniform": DATA / "smollm2-arith-lr3e6-pair" / "log_uniform.parquet",
    "lr3e-6 DPS": DATA / "smollm2-arith-lr3e6-pair" / "log_dps.parquet",
}
#: name -> (world config, batch size)
WORLDS: dict[str, tuple[dict[str, Any], int]] = {
    "math": ({"preset": "math"}, 256),
    "countdown": ({"preset": "countdown"}, 256),
    "countdown closed loop": ({"preset": "countdown", "train_gain": 0.05}, 256),
    **{name: ({"log": str(path)}, 64) for name, path in LOGS.items()},
}
PARTS = {
    "design": ["math", "countdown", "countdown closed loop", "lr1e-6"],
    "heldout": ["lr3e-6 uniform", "lr3e-6 DPS"],
    "families": ["lr1e-6", "lr3e-6 uniform", "lr3e-6 DPS"],
}
HARD_UNTIL = 40  # hard prompts: no correct response in any sweep up to this step


# ---------------------------------------------------------------------------------------------
# Candidate models: variants of RateDPS's parts, and DPS's three states read through noise

Factory = Callable[[int, int], Policy]


class ThreeStateBinomial(Policy):
    """DPS's three states read through binomial noise: state s in {unsolved, partial, solved}
    holds a band of grid rates (those whose group of 8 most likely shows that state, equal weight
    within it); a group's likelihood under a state is the band's mean binomial likelihood; the
    per-prompt Dirichlet transition counts and their decay are DPS's, with the soft transition
    posterior in place of a one-hot state. One filter per candidate decay; the best cumulative
    predictive likelihood selects, as in RateDPS."""

    def __init__(self, num_prompts: int, seed: int = 0, decays: tuple[float, ...] = (0.5, 0.7, 0.9, 1.0)):
        self.num_prompts, self.seed = num_prompts, seed
        self.rates = rate_grid(32, 7.0)
        self.band = np.argmax(state_chances(self.rates, 8), axis=1)  # state of each grid rate
        self.weights = np.stack([(self.band == s) / max(1, (self.band == s).sum()) for s in range(3)])  # (3, G)
        self.decays = decays
        self.alpha = np.ones((len(decays), num_prompts, 3, 3))  # [to][from]
        self.post = np.full((len(decays), num_prompts, 3), 1 / 3)
        self.prior = self.post.copy()
        self.loglik = np.zeros(len(decays))
        self.step = 0
        self.pending = np.zeros(num_prompts, bool)

    @property
    def chosen(self) -> int:
        return int(np.argmax(self.loglik))

    def state_probs(self, n: int) -> np.ndarray:
        return self.weights @ state_chances(self.rates, n)  # (3 hidden, 3 observed)

    def select(self, batch_size: int) -> np.ndarray:
        score = self.prior[self.chosen] @ self.state_probs(8)[:, 1]
        free = np.flatnonzero(~self.pending)
        tie = np.random.default_rng([self.seed, self.step]).permutation(self.num_prompts)
        ids = free[np.lexsort((tie[free], -score[free]))[:batch_size]]
        self.pending[ids] = True
        return ids.astype(np.int64)

    def predicted_states(self, ids: Any, n_rollouts: Any) -> np.ndarray:
        ids, sizes = np.asarray(ids), np.broadcast_to(np.asarray(n_rollouts), np.shape(ids))
        return np.stack(
            [self.prior[self.chosen, i] @ self.state_probs(int(n)) for i, n in zip(ids, sizes, strict=True)]
        )

    def observe(self, prompt_ids: Any, n_correct: Any, n_rollouts: Any) -> None:
        ids, c, n = (np.asarray(a, np.int64) for a in (prompt_ids, n_correct, n_rollouts))
        keep = n > 0
        ids, c, n = ids[keep], c[keep], n[keep]
        emission = np.exp(log_binomial(self.rates, c, n)) @ self.weights.T  # (m, 3)
        for j, lam in enumerate(self.decays):
            alpha, post, prior = self.alpha[j], self.post[j], self.prior[j]
            self.loglik[j] += float(np.log(np.sum(prior[ids] * emission, axis=1)).sum())
            transition = alpha / alpha.sum(axis=1, keepdims=True)
            xi = emission[:, :, None] * transition[ids] * post[ids][:, None, :]
            xi /= xi.sum(axis=(1, 2), keepdims=True)
            new_post = prior.copy()
            new_post[ids] = emission * prior[ids]
            new_post[ids] /= new_post[ids].sum(axis=1, keepdims=True)
            alpha *= lam
            alpha += 1 - lam
            alpha[ids] += xi
            transition = alpha / alpha.sum(axis=1, keepdims=True)
            self.prior[j] = np.einsum("nij,nj->ni", transition, new_post)
            self.post[j] = new_post
        self.step += 1
        self.pending[:] = False

    def abandon(self) -> None:
        self.pending[:] = False

    def metrics(self) -> dict[str, float]:
        return {"switch_rate": self.decays[self.chosen]}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError


class MeanPosteriorPopulation(RateFilter):
    """Population variant: the mean current posterior of the prompts observed so far (one EM step
    of the population mixture over every observed prompt)."""

    def update_population(self, post: np.ndarray, switched: np.ndarray, first_look_loglik: np.ndarray) -> None:
        if self.observed.any():
            self.population = post[self.observed].mean(axis=0)


class LastPopulation(RateFilter):
    """Population variant: the mean of each observed prompt's posterior at its last observation."""

    def update_population(self, post: np.ndarray, switched: np.ndarray, first_look_loglik: np.ndarray) -> None:
        if self.observed.any():
            self.population = self.last_post[self.observed].mean(axis=0)


class FixedPopulation(RateFilter):
    """Population variant: equal weight on every grid rate, forever."""

    def update_population(self, post: np.ndarray, switched: np.ndarray, first_look_loglik: np.ndarray) -> None:
        pass


class FirstLookPopulation(RateFilter):
    """Population variant: fitted (10 EM iterations a step) to the groups of prompts observed for
    the first time, which the policy picked without knowing their outcome; older first looks
    weigh less (half-life 20 steps)."""

    def update_population(self, post: np.ndarray, switched: np.ndarray, first_look_loglik: np.ndarray) -> None:
        looks = getattr(self, "looks", np.zeros((0, len(self.population))))
        weights = getattr(self, "look_weights", np.zeros(0)) * 0.5 ** (1 / 20)
        self.looks = np.concatenate([looks, np.exp(first_look_loglik)])
        self.look_weights = np.concatenate([weights, np.ones(len(first_look_loglik))])
        if not len(self.looks):
            return
        g = self.population
        for _ in range(10):
            resp = g * self.looks
            resp /= resp.sum(axis=1, keepdims=True)
            g = self.look_weights @ resp / self.look_weights.sum()
        self.population = g


class RandomWalk(MeanPosteriorPopulation):
    """Transition variant: the rate's logit takes a Gaussian step of sd sigma (on the grid,
    columns renormalised), in place of a switch to the population; `switch_rate` holds sigma."""

    def transition(self, post: np.ndarray) -> np.ndarray:
        z = np.log(self.rates / (1 - self.rates))
        kernel = np.exp(-0.5 * ((z[:, None] - z[None, :]) / self.switch_rate) ** 2)
        return post @ (kernel / kernel.sum(axis=0, keepdims=True)).T


def reference_top(num_prompts: int, seed: int, **options: Any) -> ReferenceRateDPS:
    """The reference as this study measured it: top-B selection and age revisits (the defaults
    when it ran; since a4109c3 the policy's default selection is Thompson, and its default
    revisits go by stranding)."""
    return ReferenceRateDPS(num_prompts, seed=seed, **{"selection": "top", "revisit_by": "age", **options})


def rate_dps(**options: Any) -> Factory:
    """RateDPS with these options."""
    return lambda n, seed: reference_top(n, seed=seed, **options)


def variant(cls: type[RateFilter], **options: Any) -> Factory:
    """RateDPS with every filter of class `cls`."""

    def make(n: int, seed: int) -> Policy:
        policy = reference_top(n, seed=seed, **options)
        for f in (policy.main, *policy.shadows):
            f.__class__ = cls
            f.rates = policy.rates  # type: ignore[attr-defined]
        return policy

    return make


# ---------------------------------------------------------------------------------------------
# The policies compared

RATE_DESIGNS: dict[str, Factory] = {
    "RateDPS": lambda n, s: reference_top(n, seed=s),
    "RateDPS G=8": lambda n, s: reference_top(n, seed=s, grid=8),
    "RateDPS G=32": lambda n, s: reference_top(n, seed=s, grid=32),
    "RateDPS revisit=0": lambda n, s: reference_top(n, seed=s, revisit=0.0),
    "RateDPS revisit=1/16": lambda n, s: reference_top(n, seed=s, revisit=0.0625),
    "RateDPS revisit=1/4": lambda n, s: reference_top(n, seed=s, revisit=0.25),
    "RateDPS rho=0.01": lambda n, s: reference_top(n, seed=s, switch_rate=0.01),
    "RateDPS rho=0.05": lambda n, s: reference_top(n, seed=s, switch_rate=0.05),
    "RateDPS rho=0.1": lambda n, s: reference_top(n, seed=s, switch_rate=0.1),
    "RateDPS population half-life=30": variant(type("SlowPopulation", (RateFilter,), {"population_half_life": 30.0})),
    "RateDPS population=mean posterior": variant(MeanPosteriorPopulation),
    "RateDPS population=last": variant(LastPopulation),
    "RateDPS population=first": variant(FirstLookPopulation),
    "RateDPS population=fixed": variant(FixedPopulation),
    "RateDPS revisit=0 population=mean posterior": variant(MeanPosteriorPopulation, revisit=0.0),
    "RateDPS revisit=0 population=fixed": variant(FixedPopulation, revisit=0.0),
    "random walk, revisit=0": variant(RandomWalk, grid=32, switch_rates=(0.2, 0.3, 0.5, 0.8), revisit=0.0),
    "3-state binomial": lambda n, s: ThreeStateBinomial(n, seed=s),
}
BASELINES: dict[str, Factory] = {
    "US": lambda n, s: Uniform(num_prompts=n, seed=s),
    "DPS decay=0.7 (default)": lambda n, s: DPS(num_prompts=n, seed=s),
    "DPS decay=0.5": lambda n, s: DPS(num_prompts=n, decay=0.5, seed=s),
    "DPS decay=0.9": lambda n, s: DPS(num_prompts=n, decay=0.9, seed=s),
    "MoPPS decay=1 (default)": lambda n, s: MoPPS(num_prompts=n, seed=s),
    "MoPPS decay=0.5": lambda n, s: MoPPS(num_prompts=n, decay=0.5, seed=s),
}


class Recorder(Policy):
    """Passes every call to `inner` and keeps, per observed group, the step, the prompt, the
    outcome and the prediction the inner policy made before seeing it."""

    def __init__(self, inner: Policy):
        self.inner = inner
        self.num_prompts = inner.num_prompts
        if callable(getattr(inner, "predicted_states", None)):
            self.predicted_states = inner.predicted_states  # replay scores what the inner policy predicts
        self.rows: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]] = []
        self.step = 0

    def select(self, batch_size: int) -> np.ndarray:
        return self.inner.select(batch_size)

    def observe(self, prompt_ids: np.ndarray, n_correct: np.ndarray, n_rollouts: np.ndarray) -> None:
        predicted = None
        if callable(getattr(self.inner, "predicted_states", None)):
            predicted = np.asarray(self.inner.predicted_states(prompt_ids, n_rollouts))[:, 1]
        self.rows.append((self.step, np.array(prompt_ids), np.array(n_correct), np.array(n_rollouts), predicted))
        self.inner.observe(prompt_ids, n_correct, n_rollouts)
        self.step += 1

    def abandon(self) -> None:
        self.inner.abandon()

    def metrics(self) -> dict[str, float]:
        return self.inner.metrics()

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)


def calibration(p: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    if len(p) == 0:
        return float("nan"), float("nan")
    return float(np.mean((p - y) ** 2)), expected_calibration_error(reliability_bins(p, y, RELIABILITY_BINS))


def log_facts(path: Path) -> tuple[set[tuple[int, int]], np.ndarray, int]:
    """(logged (replay step, prompt) cells, hard prompt ids, first step) of a log."""
    log = pl.read_parquet(path)
    first = int(log["step"].min())
    cells = set(zip((log["step"] - first).to_list(), log["prompt_id"].to_list(), strict=True))
    sweeps = log.filter((pl.col("kind") == "sweep") & (pl.col("step") <= HARD_UNTIL))
    hard = sweeps.group_by("prompt_id").agg(pl.col("n_correct").max().alias("best")).filter(pl.col("best") == 0)
    return cells, np.sort(hard["prompt_id"].to_numpy()), first


def run_one(
    world_name: str, world: Any, batch: int, label: str, make: Factory, seed: int, facts: Any
) -> dict[str, Any]:
    rec = Recorder(make(world.num_prompts, seed))
    t0 = time.perf_counter()
    res = replay(rec, world, world.steps, batch, seed=seed)
    s = res.summary
    row: dict[str, Any] = {
        "world": world_name,
        "policy": label,
        "seed": seed,
        "effective_ratio": s["effective_ratio"],
        "rollouts_per_effective": s["rollouts_per_effective"],
        "brier": s["brier"],
        "ece": s["ece"],
        "prompts_used": s["distinct_share"],
        "switch_rate": rec.metrics().get("switch_rate", float("nan")),
        "seconds": time.perf_counter() - t0,
    }
    steps = np.concatenate([np.full(len(r[1]), r[0]) for r in rec.rows])
    ids = np.concatenate([r[1] for r in rec.rows])
    c = np.concatenate([r[2] for r in rec.rows])
    n = np.concatenate([r[3] for r in rec.rows])
    partial = ((c > 0) & (c < n)).astype(np.float64)
    if facts is not None:
        cells, hard, _ = facts
        if rec.rows[0][4] is not None:
            p = np.concatenate([r[4] for r in rec.rows])
            logged = np.array([(int(t), int(i)) in cells for t, i in zip(steps, ids, strict=True)])
            row["brier_logged"], row["ece_logged"] = calibration(p[logged], partial[logged])
            row["logged_share"] = float(logged.mean())
        late = steps >= world.steps // 2
        is_hard = np.isin(ids, hard)
        row["hard_prompts"] = len(hard)
        row["hard_tried_late"] = len(np.unique(ids[late & is_hard])) / max(1, len(hard))
        row["hard_found"] = len(np.unique(ids[is_hard & (partial == 1)])) / max(1, len(hard))
    if getattr(getattr(world, "params", None), "train_gain", 0.0) > 0:
        p_end = world.p(world.steps - 1)
        row["unsolved_end"] = float(np.mean((1 - p_end) ** world.k))
    return row


def run_part(names: list[str], policies: dict[str, Factory], seeds: list[int], out: Path) -> pl.DataFrame:
    rows = []
    for name in names:
        cfg, batch = WORLDS[name]
        world = load_world(dict(cfg)).build()
        facts = log_facts(Path(cfg["log"])) if "log" in cfg else None
        for label, make in policies.items():
            for seed in seeds:
                row = run_one(name, world, batch, label, make, seed, facts)
                rows.append(row)
                print(
                    f"{name:24s} {label:30s} s{seed} eff {row['effective_ratio']:.3f} brier {row['brier']:.3f} "
                    f"ece {row['ece']:.3f} rho {row['switch_rate']:.3g} {row['seconds']:.1f}s",
                    flush=True,
                )
        pl.DataFrame(rows, infer_schema_length=None).write_csv(out / "runs.csv")
    return pl.DataFrame(rows, infer_schema_length=None)


def table(runs: pl.DataFrame) -> pl.DataFrame:
    metrics = [
        c
        for c in (
            "effective_ratio",
            "rollouts_per_effective",
            "brier",
            "ece",
            "brier_logged",
            "ece_logged",
            "prompts_used",
            "hard_tried_late",
            "hard_found",
            "unsolved_end",
            "switch_rate",
        )
        if c in runs.columns
    ]
    order = {p: i for i, p in enumerate(dict.fromkeys(runs["policy"].to_list()))}
    agg = runs.group_by("world", "policy").agg(
        *[pl.col(m).mean() for m in metrics], pl.col("effective_ratio").std().alias("effective_ratio_sd")
    )
    return agg.with_columns(pl.col("policy").replace_strict(order, return_dtype=pl.Int64).alias("_o")).sort(
        "world", "_o"
    )


def markdown(agg: pl.DataFrame) -> str:
    lines = []
    for (world,), part in agg.group_by("world", maintain_order=True):
        cols = [c for c in agg.columns if c not in ("world", "policy", "_o", "effective_ratio_sd")]
        cols = [c for c in cols if part[c].null_count() < part.height and not part[c].is_nan().all()]
        lines += [f"\n{world}\n", "| policy | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
        for r in part.iter_rows(named=True):
            cells = []
            for c in cols:
                v = r[c]
                if v is None or (isinstance(v, float) and np.isnan(v)):
                    cells.append("-")
                elif c == "effective_ratio":
                    sd = r["effective_ratio_sd"]
                    cells.append(f"{v:.3f}" + ("" if sd is None else f" ± {sd:.3f}"))
                elif c == "switch_rate":
                    cells.append(f"{v:.3g}")
                elif c == "rollouts_per_effective":
                    cells.append(f"{v:.2f}")
                else:
                    cells.append(f"{v:.3f}")
            lines.append(f"| {r['policy']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# World-free: each real log fed in its own order, every group predicted before it is observed


def feed(path: Path, make: Factory) -> dict[str, float]:
    """Every group of the log, in step order, predicted and then observed (groups of one step and
    prompt, a training group and a sweep, merged: their counts add up)."""
    log = pl.read_parquet(path)
    log = log.group_by("step", "prompt_id").agg(pl.col("n_correct").sum(), pl.col("n_rollouts").sum()).sort("step")
    policy = make(int(log["prompt_id"].max()) + 1, 0)
    p_all, y_all = [], []
    for (_,), part in log.group_by("step", maintain_order=True):
        ids, c, n = (part[k].to_numpy().astype(np.int64) for k in ("prompt_id", "n_correct", "n_rollouts"))
        p_all.append(np.asarray(policy.predicted_states(ids, n))[:, 1])
        y_all.append(((c > 0) & (c < n)).astype(float))
        policy.observe(ids, c, n)
    brier, ece = calibration(np.concatenate(p_all), np.concatenate(y_all))
    out = {"groups": float(len(np.concatenate(y_all))), "brier": brier, "ece": ece}
    if isinstance(policy, ReferenceRateDPS):
        out["loglik_per_group"] = policy.main.log_predictive_total / policy.main.groups_scored
    out["switch_rate"] = policy.metrics().get("switch_rate", float("nan"))
    return out


class SwitchAndDiffuse(MeanPosteriorPopulation):
    """Transition variant for the feed: a Gaussian step of sd `sigma` in logit, then the switch (the
    population: the mean posterior, since a diffused prediction has no unswitched part)."""

    sigma = 0.2

    def transition(self, post: np.ndarray) -> np.ndarray:
        z = np.log(self.rates / (1 - self.rates))
        kernel = np.exp(-0.5 * ((z[:, None] - z[None, :]) / self.sigma) ** 2)
        moved = post @ (kernel / kernel.sum(axis=0, keepdims=True)).T
        return (1 - self.switch_rate) * moved + self.switch_rate * self.population


def diffusing(sigma: float, rho: float) -> Factory:
    cls = type(f"SwitchAndDiffuse{sigma}", (SwitchAndDiffuse,), {"sigma": sigma})
    return variant(cls, grid=32, switch_rate=rho)


#: The feed's candidates: the grid, the switch rate (fixed against fitted), the population, and a
#: diffusion term beside the switch.
FEED_DESIGNS: dict[str, Factory] = {
    "DPS decay=0.7 (default)": BASELINES["DPS decay=0.7 (default)"],
    "DPS decay=0.5": BASELINES["DPS decay=0.5"],
    "MoPPS decay=0.5": BASELINES["MoPPS decay=0.5"],
    **{f"RateDPS G={g}": rate_dps(grid=g) for g in (8, 12, 16, 32, 64)},
    **{f"RateDPS G=32 rho={r}": rate_dps(grid=32, switch_rate=r) for r in (0.0, 0.01, 0.02, 0.05, 0.1)},
    "RateDPS population=mean posterior": variant(MeanPosteriorPopulation),
    "RateDPS population=last": variant(LastPopulation),
    "RateDPS population=first": variant(FirstLookPopulation),
    "RateDPS population=fixed": variant(FixedPopulation),
    **{f"G=32 rho={r} diffusion sd={d}": diffusing(d, r) for d in (0.2, 0.3) for r in (0.005, 0.01, 0.02, 0.05)},
}


def family_designs(world_name: str) -> dict[str, Factory]:
    """RateDPS without and with families read from the log's prompt table (question text: the same
    input under several ids; level: the difficulty grade)."""
    table = pl.read_parquet(Path(WORLDS[world_name][0]["log"]).parent / "prompts.parquet").sort("prompt_id")
    designs: dict[str, Factory] = {"RateDPS": RATE_DESIGNS["RateDPS"]}
    for column in ("question", "level"):
        ids = table[column].rank("dense").to_numpy().astype(np.int64) - 1
        designs[f"RateDPS families={column}"] = (lambda f: lambda n, s: reference_top(n, seed=s, families=f))(ids)
    return designs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=["design", "heldout", "families", "feed"], required=True)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--policies", nargs="*", help="labels to run (default: every candidate and baseline)")
    ap.add_argument("--worlds", nargs="*", help="world names (default: the part's)")
    ap.add_argument("--out", type=Path, default=Path("runs/rate-dps-study"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    policies = {**BASELINES, **RATE_DESIGNS}
    if args.policies:
        policies = {k: v for k, v in policies.items() if k in args.policies}
    if args.part == "feed":
        rows = []
        designs = {k: v for k, v in FEED_DESIGNS.items() if not args.policies or k in args.policies}
        for name, path in LOGS.items():
            families = {k: v for k, v in family_designs(name).items() if "families" in k}
            for label, make in {**designs, **families}.items():
                r = {"log": name, "policy": label, **feed(path, make)}
                rows.append(r)
                print(r, flush=True)
        pl.DataFrame(rows).write_csv(args.out / "feed.csv")
        return
    names = args.worlds or PARTS[args.part]
    if args.part == "families":
        runs = pl.concat(
            [run_part([w], family_designs(w), list(range(args.seeds)), args.out) for w in names], how="diagonal_relaxed"
        )
        runs.write_csv(args.out / "runs.csv")
    else:
        runs = run_part(names, policies, list(range(args.seeds)), args.out)
    agg = table(runs)
    text = markdown(agg)
    (args.out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
