"""How well a log world predicts its own log, so a user knows whether to trust a replay of it.

Each logged group (a random sample of up to `max_groups`) is predicted with its (step, prompt)
cell left out: the world's posterior for that prompt at that step from the prompt's other groups
gives a probability that a group of its size is partly solved (0 < n_correct < n_rollouts, the
state that decides the effective ratio). Held-out groups are binned by that probability; in a
calibrated world each bin's observed partial share matches its mean prediction.

Numbers: ECE (expected calibration error: the groups-weighted mean |observed - predicted| over
the bins), the Brier score of the predictions, the Brier score of a constant prediction (the
log's overall partial share), their skill 1 - Brier / Brier_constant, the mean predicted and
observed partial shares (their gap is what a uniform replay's effective ratio would be off by on
cells like the logged ones), and the mean held-out log-likelihood of n_correct per group.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import polars as pl

    from dps.replay.logworld import LogWorld

CALIBRATION_BINS = 10
#: A log whose groups, first looks included, are nearly all partly solved looks filtered (a warning).
FILTERED_SHARE = 0.99
FILTERED_MIN_GROUPS = 50


@dataclass
class Calibration:
    table: pl.DataFrame  # one row per bin: lo, hi, groups, predicted, observed
    groups: int
    ece: float
    brier: float
    brier_constant: float
    predicted_share: float
    observed_share: float
    loglik: float
    #: prompts of the world with no logged group at all (their outcomes come from the population prior alone)
    unlogged_prompts: int = 0
    num_prompts: int = 0
    #: partial share of each prompt's first logged group (chosen before the policy saw that prompt)
    first_look_share: float = float("nan")
    #: which groups the population prior was fitted on, and why (LogWorld.population_line)
    population: str = ""
    #: the prior rests on first looks alone (a selective log), their number and their share's standard error
    first_look_prior: bool = False
    first_looks: int = 0
    first_look_spread: float = float("nan")

    @property
    def skill(self) -> float:
        return 1.0 - self.brier / self.brier_constant if self.brier_constant > 0 else float("nan")

    def summary(self) -> dict[str, Any]:
        return {
            "groups": self.groups,
            "ece": self.ece,
            "brier": self.brier,
            "brier_constant": self.brier_constant,
            "skill": self.skill,
            "predicted_partial_share": self.predicted_share,
            "observed_partial_share": self.observed_share,
            "loglik_per_group": self.loglik,
            "unlogged_prompts": self.unlogged_prompts,
            "num_prompts": self.num_prompts,
            "first_look_partial_share": self.first_look_share,
            "population": self.population,
            "first_look_prior": self.first_look_prior,
            "first_looks": self.first_looks,
            "first_look_partial_share_spread": self.first_look_spread,
        }

    def line(self) -> str:
        text = (
            f"calibration on {self.groups:,} held-out logged groups: ECE {self.ece:.3f}, Brier {self.brier:.3f} "
            f"(constant {self.brier_constant:.3f}, skill {self.skill:.2f}), predicted partial share "
            f"{self.predicted_share:.3f} vs observed {self.observed_share:.3f}"
        )
        return text + "".join(f"; WARNING: {w}" for w in self.warnings())

    def warnings(self) -> list[str]:
        """What the held-out check cannot see: prompts the log never holds, and a selective log."""
        out = []
        if self.num_prompts and self.unlogged_prompts / self.num_prompts > 0.05:
            out.append(
                f"{self.unlogged_prompts:,} of {self.num_prompts:,} prompts were never logged: their outcomes come "
                "from the population prior alone"
            )
        if self.first_look_prior:
            out.append(
                f"the population prior rests on the {self.first_looks:,} prompts' first logged groups alone (partly "
                f"solved {self.first_look_share:.3f} of the time, against {self.observed_share:.3f} over all "
                "groups): a replay's prompts the log never holds are uncertain by about "
                f"+-{self.first_look_spread:.3f} in their partial share"
            )
        elif abs(self.first_look_share - self.observed_share) > 0.1:
            out.append(
                f"each prompt's first logged group is partly solved {self.first_look_share:.3f} of the time against "
                f"{self.observed_share:.3f} over all groups: if the logging policy chose prompts by their outcomes "
                "(drift can do this too; the within-step test did not show it), the population prior leans toward "
                "what it chose, and population = 'first_looks' fits it on first looks alone"
            )
        if self.groups >= FILTERED_MIN_GROUPS and min(self.first_look_share, self.observed_share) >= FILTERED_SHARE:
            out.append(
                "every logged group, first looks included, is partly solved: if the log holds only the groups a "
                "filter kept (dynamic sampling's training batches), it holds no fair sample of the population and a "
                "replay of it overstates the partial share; log every rolled-out group"
            )
        return out


def reliability(chance: np.ndarray, partial: np.ndarray, bins: int = CALIBRATION_BINS) -> Calibration:
    import polars as pl

    chance = np.asarray(chance, np.float64)
    partial = np.asarray(partial, np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(chance, edges) - 1, 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    pred = np.bincount(idx, weights=chance, minlength=bins) / np.maximum(count, 1)
    obs = np.bincount(idx, weights=partial, minlength=bins) / np.maximum(count, 1)
    table = pl.DataFrame({"lo": edges[:-1], "hi": edges[1:], "groups": count, "predicted": pred, "observed": obs})
    n = len(chance)
    share = float(partial.mean())
    return Calibration(
        table=table,
        groups=n,
        ece=float(np.sum(count * np.abs(obs - pred)) / n),
        brier=float(np.mean((chance - partial) ** 2)),
        brier_constant=float(np.mean((share - partial) ** 2)),
        predicted_share=float(chance.mean()),
        observed_share=share,
        loglik=float("nan"),
    )


def calibrate(
    world: LogWorld, max_groups: int | None = 50_000, bins: int = CALIBRATION_BINS, seed: int = 0
) -> Calibration:
    """Held-out calibration of `world` on its own log (see the module docstring)."""
    held = world.held_out_predictions(max_groups=max_groups, seed=seed)
    cal = reliability(held["partial_chance"], held["partial"], bins)
    cal.loglik = float(np.mean(held["loglik"]))
    cal.num_prompts = world.num_prompts
    cal.unlogged_prompts = world.num_prompts - world.logged_prompts
    cal.first_look_share = world.first_look_partial_share()
    cal.population = world.population_line()
    cal.first_look_prior = world.population == "first_looks"
    cal.first_looks = world.selection.first_looks
    cal.first_look_spread = world.first_look_spread()
    return cal


def world_calibration(world: Any) -> Calibration | None:
    """The calibration of a log world (or of the log world under a closed-loop one); None for other worlds."""
    from dps.replay.logworld import LogWorld

    for w in (world, getattr(world, "base", None)):
        if isinstance(w, LogWorld):
            return calibrate(w)
    return None


def markdown(cal: Calibration) -> str:
    lines = [
        "| predicted P(partial) | groups | mean predicted | observed partial share |",
        "|---|---:|---:|---:|",
    ]
    for r in cal.table.iter_rows(named=True):
        if r["groups"]:
            lines.append(
                f"| {r['lo']:.1f}-{r['hi']:.1f} | {r['groups']:,} | {r['predicted']:.3f} | {r['observed']:.3f} |"
            )
    return "\n".join(lines)


def plot(cal: Calibration, path: Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = cal.table.filter(cal.table["groups"] > 0)
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5.5, 6.2), height_ratios=[3, 1], sharex=True)
    ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1, label="perfectly calibrated")
    ax.plot(
        t["predicted"].to_numpy(), t["observed"].to_numpy(), "o-", color="C0", lw=1.8, label="held-out logged groups"
    )
    ax.set_ylabel("observed partially-solved share")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    ax.set_title(
        (title + "\n" if title else "") + f"ECE {cal.ece:.3f}, Brier {cal.brier:.3f} (skill {cal.skill:.2f}), "
        f"{cal.groups:,} groups",
        fontsize=9,
    )
    width = (t["hi"] - t["lo"]).to_numpy()
    hist.bar(
        t["lo"].to_numpy(), t["groups"].to_numpy(), width=width, align="edge", color="C0", alpha=0.5, edgecolor="white"
    )
    hist.set_xlabel("predicted probability that the group is partly solved (its cell held out)")
    hist.set_ylabel("groups")
    hist.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write(
    cal: Calibration, out: Path, stem: str = "calibration", plots: bool = True, title: str = ""
) -> dict[str, Path]:
    """<stem>.csv (the table), <stem>.json (the numbers), and <stem>.png unless plots is off."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    paths = {"calibration_csv": out / f"{stem}.csv", "calibration_json": out / f"{stem}.json"}
    cal.table.write_csv(paths["calibration_csv"])
    paths["calibration_json"].write_text(json.dumps(cal.summary(), indent=2))
    if plots:
        paths["calibration_png"] = plot(cal, out / f"{stem}.png", title)
    return paths


def validate_calibration(
    groups: pl.DataFrame, path: str | Path, out: str | Path | None, num_prompts: int | None = None
) -> Calibration:
    """`dps validate --calibration`: build the log world of one log, print and write its calibration."""
    from dps.replay.logworld import LogWorld

    world = LogWorld(groups, num_prompts=num_prompts)
    cal = calibrate(world)
    stem = Path(path).name.split(".")[0] + "-calibration"
    folder = Path(out) if out else Path(".")
    paths = write(cal, folder, stem, title=str(path))
    print(f"{path}: {cal.line()}")
    print(f"  log world: switch rate {world.switch_rate:g}, prior window half-life {world.prior.half_life:g} steps")
    print(f"  {cal.population}")
    print(markdown(cal))
    print(f"  wrote {', '.join(str(p) for p in paths.values())}")
    return cal
