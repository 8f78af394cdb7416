"""`dps leaderboard`: every built-in policy replayed on a user's own rollout logs, ranked.

For each log: every built-in selector at its defaults (uniform, history resampling, dynamic
sampling, GRESO, MoPPS, BOTS, DPS, RateDPS), DPS, MoPPS and BOTS also over a small grid of their
decay, RateDPS also with its other selections and its former default (age revisits), and the
oracle as an upper bound; each replayed with 3 seeds on the log's world (`dps replay`'s log
world), B = the log's own batch. The table ranks them by rollouts per effective prompt (what a
partially solved group costs, rejected groups included), and scores each predictive policy's
P(partial) against what the world returned (Brier, ECE).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dps.policies import RateDPS
from dps.replay.runner import lag_words
from dps.replay.scenario import PolicySpec, Scenario
from dps.replay.worldconfig import LogWorldConfig

if TYPE_CHECKING:
    import polars as pl

    from dps.replay.sweep import SweepResult

#: (label, policy type, parameters): the built-ins at their defaults, then the option grids (a
#: grid's value equal to the default is replayed once, as the default).
#: The first entry of each grid is the policy's default.
DEFAULTS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("US", "uniform", {}),
    ("HR", "hr", {}),
    ("DS", "ds", {}),
    ("GRESO", "greso", {}),
    ("MoPPS", "mopps", {}),
    ("BOTS", "bots", {}),
    ("DPS", "dps", {}),
    ("RateDPS", "ratedps", {}),
)
OPTION_GRID: dict[str, tuple[str, tuple[float | str, ...]]] = {
    "dps": ("decay", (0.5, 0.9)),
    "mopps": ("decay", (0.5, 0.9)),
    "bots": ("forgetting", (0.03, 0.01)),
    "ratedps": ("selection", RateDPS.SELECTIONS),
}
#: Rows beyond the grids: a former default beside the new one (RateDPS's revisits went by age).
FORMER_DEFAULTS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("RateDPS selection=thompson revisit_by=age", "ratedps", {"revisit_by": "age"}),
)
ORACLE: tuple[str, str, dict[str, Any]] = ("oracle", "oracle", {})
#: Rows that are bounds, not methods: never the best of a column.
BOUNDS = {"oracle"}
#: Policy types that predict each group's state (scored by Brier and ECE).
PREDICTIVE = {"dps", "mopps", "bots", "greso", "ratedps"}
SEEDS = (0, 1, 2)


def option_text(value: float | str) -> str:
    return value if isinstance(value, str) else f"{value:g}"


def default_of(ptype: str, key: str) -> Any:
    """A built-in policy's default for option `key`, read from its constructor."""
    import inspect

    from dps.policies.registry import SELECTORS

    return inspect.signature(SELECTORS[ptype]).parameters[key].default


def policy_specs(oracle: bool = True) -> list[PolicySpec]:
    """The leaderboard's policies, in table order before ranking."""
    specs = []
    for label, ptype, params in DEFAULTS:
        if ptype not in OPTION_GRID:
            specs.append(PolicySpec(label, ptype, dict(params)))
            continue
        key, values = OPTION_GRID[ptype]
        default = default_of(ptype, key)
        specs.append(PolicySpec(f"{label} {key}={option_text(default)} (default)", ptype, dict(params)))
        specs += [PolicySpec(f"{label} {key}={option_text(v)}", ptype, {key: v}) for v in values if v != default]
    specs += [PolicySpec(label, ptype, dict(params)) for label, ptype, params in FORMER_DEFAULTS]
    if oracle:
        specs.append(PolicySpec(*ORACLE))
    return specs


def log_batch_size(groups: pl.DataFrame, num_prompts: int) -> int:
    """The batch the logged run trained on: the median number of groups per logged step, over
    the rows of kind "train" when the log has them. A step that holds every prompt (a dense
    sweep) tells nothing about the run's batch: refused."""
    return read_batch(groups, num_prompts)[0]


def read_batch(groups: pl.DataFrame, num_prompts: int) -> tuple[int, str]:
    """`log_batch_size` and how it was read, in words: the rows and steps it counted, their range,
    and, when the steps vary (a gate's rounds roll out more groups than the run trained on), the
    advice to give --batch."""
    import polars as pl

    rows, which = groups, ""
    if "kind" in groups.columns and groups.filter(pl.col("kind") == "train").height:
        rows, which = groups.filter(pl.col("kind") == "train"), " of kind 'train'"
    per_step = rows.group_by("step").len()["len"].to_numpy()
    batch = int(np.median(per_step))
    if batch >= num_prompts:
        raise ValueError(
            f"the log's steps hold {batch} groups for its {num_prompts} prompts (a dense log: every prompt every "
            "step), so its batch size cannot be read from it; give --batch"
        )
    lo, hi = int(per_step.min()), int(per_step.max())
    how = f"read from the log: the median of the groups per step over {len(per_step)} steps{which}"
    if lo == hi:
        return batch, f"{how} (every step holds {lo})"
    how += f" ({lo} to {hi})"
    unit = int(np.gcd.reduce(per_step))
    rounds = f"; every step holds a multiple of {unit}, as rounds of {unit} would" if 1 < unit < batch else ""
    return batch, (
        f"{how}. Steps that vary are what a gate (dynamic sampling, GRESO) logs when it rolls out more groups than "
        f"the run trained on{rounds}: if the run trained on fewer groups per step than it rolled out, give --batch"
    )


@dataclass
class Board:
    """One log's leaderboard."""

    log: str
    batch_size: int
    sweep: SweepResult
    table: pl.DataFrame  # one row per policy, ranked
    batch_from: str = "--batch"  # how batch_size was had: given, or read from the log (in words)


def rank_table(summary: pl.DataFrame, log: str) -> pl.DataFrame:
    """Per policy, mean and spread over seeds; ranked by rollouts per effective prompt (lowest first)."""
    import polars as pl

    order = {p: i for i, p in enumerate(dict.fromkeys(summary["policy"].to_list()))}
    table = summary.group_by("policy").agg(
        pl.col("type").first(),
        pl.len().alias("seeds"),
        pl.col("effective_ratio").mean(),
        pl.col("effective_ratio").std().alias("effective_ratio_std"),
        pl.col("rollouts_per_effective").mean(),
        pl.col("rollouts_per_effective").std().alias("rollouts_per_effective_std"),
        pl.col("distinct_share").mean().alias("prompts_used"),
        pl.col("brier").cast(pl.Float64).mean().fill_nan(None),  # null: the policy predicts nothing
        pl.col("ece").cast(pl.Float64).mean().fill_nan(None),
        pl.col("rollouts").mean(),
        pl.col("lag").first(),
    )
    table = table.with_columns(pl.col("policy").replace_strict(order, return_dtype=pl.Int64).alias("_o"))
    table = table.sort("rollouts_per_effective", "_o").drop("_o")
    return table.with_columns(pl.int_range(1, table.height + 1).alias("rank"), pl.lit(log).alias("log")).select(
        "log",
        "rank",
        "policy",
        "type",
        "seeds",
        "effective_ratio",
        "effective_ratio_std",
        "rollouts_per_effective",
        "rollouts_per_effective_std",
        "prompts_used",
        "brier",
        "ece",
        "rollouts",
        "lag",
    )


def run_leaderboard(
    logs: list[str],
    world_settings: dict[str, Any],
    batch_size: int | None = None,
    seeds: tuple[int, ...] = SEEDS,
    steps: int | None = None,
    workers: int = 1,
    progress: bool = True,
    oracle: bool = True,
    lag: int = 0,
) -> list[Board]:
    """Replay every leaderboard policy on each log (`world_settings`: the log-reading keys of
    a scenario's [world] table, as `dps validate`'s options give them); with `lag` L, each step
    t selected having observed the groups of steps up to t - 1 - L."""
    from dps.logs import LogSpec, load_log
    from dps.replay.sweep import run_sweep

    seen: dict[Path, str] = {}
    for path in logs:
        if not Path(path).exists():
            raise FileNotFoundError(f"{path}: no such log")
        if Path(path).resolve() in seen:
            raise ValueError(f"{path} is given twice (as {seen[Path(path).resolve()]} before); give each log once")
        seen[Path(path).resolve()] = path
    spec = LogSpec.from_dict(world_settings, "options")
    boards = []
    for path in logs:
        loaded = load_log(path, spec)
        lo, hi = int(loaded.groups["step"].min()), int(loaded.groups["step"].max())  # type: ignore[arg-type]
        if steps is not None and steps > hi - lo + 1:
            raise ValueError(
                f"--steps {steps} runs past the log's {hi - lo + 1} steps ({lo}..{hi}) in {path}; the leaderboard "
                "replays within the log: leave --steps out, or give at most that many"
            )
        batch, batch_from = (
            (batch_size, "--batch") if batch_size else read_batch(loaded.groups, loaded.info.num_prompts)
        )
        if not 1 <= batch <= loaded.info.num_prompts:
            raise ValueError(f"--batch {batch} must be in [1, {loaded.info.num_prompts}] (the prompts of {path})")
        name = Path(path).name.split(".")[0]
        scenario = Scenario(
            name=name,
            world=LogWorldConfig(str(path), spec=spec),
            policies=policy_specs(oracle),
            steps=steps or 0,
            batch_size=batch,
            seeds=list(seeds),
            workers=workers,
            source=None,
            description=f"dps leaderboard of {path}",
            lag=lag,
        )
        sweep = run_sweep(scenario, workers=workers, progress=progress)
        boards.append(Board(str(path), batch, sweep, rank_table(sweep.summary, str(path)), batch_from))
    return boards


# --------------------------------------------------------------------------------------------
# Output

#: The table's columns: (column, header, format, which way is better: +1 higher, -1 lower, 0 none).
COLUMNS = (
    ("effective_ratio", "effective ratio", "{:.3f}", +1),
    ("rollouts_per_effective", "rollouts / effective prompt", "{:.1f}", -1),
    ("prompts_used", "prompts used", "{:.1%}", 0),
    ("brier", "Brier (partial)", "{:.3f}", -1),
    ("ece", "ECE (partial)", "{:.3f}", -1),
)
SPREAD = {"effective_ratio": "effective_ratio_std", "rollouts_per_effective": "rollouts_per_effective_std"}


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _best(table: pl.DataFrame, column: str, direction: int) -> float | None:
    values = [
        v
        for p, t, v in zip(table["policy"], table["type"], table[column], strict=True)
        if t not in BOUNDS and not _missing(v)
    ]
    if not values or direction == 0:
        return None
    return max(values) if direction > 0 else min(values)


def markdown(board: Board) -> str:
    t = board.table
    head = "| rank | policy | " + " | ".join(h for _, h, _, _ in COLUMNS) + " |"
    lines = [head, "|---:|---|" + "---:|" * len(COLUMNS)]
    bests = {c: _best(t, c, d) for c, _, _, d in COLUMNS}
    for row in t.iter_rows(named=True):
        cells = []
        for column, _, fmt, _ in COLUMNS:
            v = row[column]
            if _missing(v):
                cells.append("-")
                continue
            text = fmt.format(v)
            spread = row.get(SPREAD.get(column, ""), None)
            if spread is not None and not _missing(spread):
                text += f" ± {fmt.format(spread)}"
            best = bests[column]
            if best is not None and row["type"] not in BOUNDS and fmt.format(v) == fmt.format(best):
                text = f"**{text}**"
            cells.append(text)
        name = row["policy"] + (" (bound)" if row["type"] in BOUNDS else "")
        lines.append(f"| {row['rank']} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def describe(board: Board) -> list[str]:
    w, sc = board.sweep.world, board.sweep.scenario
    steps = int(board.sweep.steps["step"].max()) + 1  # type: ignore[arg-type]
    lines = [
        f"## {board.log}",
        "",
        f"{w.num_prompts:,} prompts, k = {w.k}, {steps} steps of B = {board.batch_size}, seeds "
        f"{', '.join(map(str, sc.seeds))}; {lag_words(sc.lag)}; {len(board.sweep.summary)} replays in "
        f"{board.sweep.wall_s:.1f} s.",
        "",
        f"B = {board.batch_size} ({board.batch_from})."
        if board.batch_from == "--batch"
        else f"B = {board.batch_size}, {board.batch_from}.",
    ]
    cal = board.sweep.calibration
    if cal is not None:
        lines += ["", f"The log world's {cal.line()}."]
    return lines


INTRO = """# Leaderboard

Each policy replayed on each log's world (`dps replay`'s log world: the log's groups, and the
estimator's draws where the log has none), mean over seeds (± standard deviation). Ranked by
rollouts per effective prompt: every generated response, rejected groups included, per trained
group that was partially solved (lower is better; a gate that filters to an effective ratio of 1
pays for it here). `prompts used`: the share of the log's prompts a policy rolled out at least
once. `Brier`, `ECE`: the policy's predicted probability that a group it rolled out is partially
solved, against whether it was (DPS: its HMM's P(partial); MoPPS and BOTS: the Beta-binomial
predictive of their Beta belief; RateDPS: the binomial predictive of its rate distribution;
GRESO: its keep probability; '-': the policy predicts
nothing). The best of each column in bold (the oracle, a bound that knows the world's rates,
excluded).
"""


def write_leaderboard(
    boards: list[Board], out: str | Path, plots: bool = True, command: str = "", reports: bool = False
) -> dict[str, Path]:
    """Write leaderboard.md, .csv and .parquet (and leaderboard.png unless `plots` is False) to
    `out`, and with `reports` each log's replay report into `out/<name>/` (`report_folder_names`);
    `command`, when given, is the command line quoted in the markdown and the manifest. The folder
    then holds this run's files only, listed in its manifest.json (dps.replay.outputs)."""
    from dps.replay.outputs import claim
    from dps.replay.report import write_report

    folder = claim(out, command or None)
    paths = _write_tables(boards, folder.path, plots, command)
    if reports:
        for board, name in zip(boards, report_folder_names([b.log for b in boards]), strict=True):
            write_report(board.sweep, folder.path / name, plots=plots)
            paths[f"report {name}"] = folder.path / name
    paths["manifest"] = folder.seal()
    return paths


def _write_tables(boards: list[Board], out: Path, plots: bool, command: str) -> dict[str, Path]:
    import polars as pl

    table = pl.concat([b.table for b in boards], how="vertical_relaxed")
    paths = {"csv": out / "leaderboard.csv", "parquet": out / "leaderboard.parquet", "markdown": out / "leaderboard.md"}
    table.write_csv(paths["csv"])
    table.write_parquet(paths["parquet"])
    md = [INTRO]
    if command:
        md += ["```", command, "```", ""]
    if plots:
        paths["plot"] = plot_ranking(boards, out / "leaderboard.png")
        md += ["![ranking](leaderboard.png)", ""]
    for board in boards:
        md += [*describe(board), "", markdown(board), ""]
    paths["markdown"].write_text("\n".join(md))
    return paths


def short_name(path: str) -> str:
    """A log's folder and file name."""
    p = Path(path)
    return f"{p.parent.name}/{p.name}" if p.parent.name else p.name


def plot_ranking(boards: list[Board], path: Path) -> Path:
    """One panel per log: rollouts per effective prompt of each policy, best at the top, with
    the seeds' spread."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(b.table.height for b in boards)
    fig, axes = plt.subplots(1, len(boards), figsize=(6.5 * len(boards), 0.38 * rows + 1.6), squeeze=False)
    for ax, board in zip(axes[0], boards, strict=True):
        t = board.table
        y = np.arange(t.height)[::-1]
        value = t["rollouts_per_effective"].to_numpy()
        spread = np.nan_to_num(t["rollouts_per_effective_std"].to_numpy())
        colors = ["#bbbbbb" if ty in BOUNDS else ("#1f77b4" if ty in PREDICTIVE else "#ff7f0e") for ty in t["type"]]
        ax.barh(y, value, xerr=spread, color=colors, alpha=0.85)
        labels = [f"{p}  ({e:.2f})" for p, e in zip(t["policy"], t["effective_ratio"], strict=True)]
        ax.set_yticks(y, labels, fontsize=8)
        ax.set_xlabel("rollouts per effective prompt (lower is better)")
        ax.set_title(
            f"{short_name(board.log)}, B = {board.batch_size}"
            + (f", lag {board.sweep.scenario.lag}" if board.sweep.scenario.lag else "")
            + "\n"
            "(effective ratio in brackets; blue: predictive, grey: bound)",
            fontsize=9,
        )
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def leaderboard_command(args: Any, settings: dict[str, Any]) -> int:
    """`dps leaderboard LOG... --out DIR` (registered in dps.replay.cli); `settings`: how to read the logs."""
    from dps.replay.outputs import check_out_folder

    t0 = time.perf_counter()
    out = check_out_folder(args.out)
    seeds = tuple(range(args.seeds))
    workers = args.workers or os.cpu_count() or 1
    boards = run_leaderboard(args.logs, settings, args.batch, seeds, args.steps, workers, not args.quiet, lag=args.lag)
    command = getattr(args, "command_line", "")
    paths = write_leaderboard(boards, out, plots=not args.no_plots, command=command, reports=args.reports)
    files = sorted(p.name for name, p in paths.items() if not name.startswith("report "))
    reports = [f"{p}/" for name, p in paths.items() if name.startswith("report ")]
    for board in boards:
        print("\n".join(describe(board)) + "\n\n" + markdown(board) + "\n")
    print(
        f"{sum(len(b.sweep.summary) for b in boards)} replays in {time.perf_counter() - t0:.1f} s; "
        f"leaderboard in {out}/ ({', '.join(files)})" + (f"; reports in {', '.join(reports)}" if reports else "")
    )
    return 0


def report_folder_names(logs: list[str]) -> list[str]:
    """One folder name per log for `--reports`, distinct: the file's name without its suffixes,
    with as many of its parent folders' names as it takes to tell logs of one name apart (two
    runs' rollouts.parquet: A-rollouts, B-rollouts), numbered when even the paths agree."""
    paths = [Path(log).resolve() for log in logs]
    names = [p.name.split(".")[0] for p in paths]
    depth = 0
    while len(set(names)) < len(names) and depth < max(len(p.parts) for p in paths):
        depth += 1
        names = [
            "-".join([*p.parent.parts[len(p.parent.parts) - depth :], p.name.split(".")[0]]).lstrip("/-") for p in paths
        ]
    if len(set(names)) < len(names):
        names = [f"{i + 1}-{name}" for i, name in enumerate(names)]
    return names
