"""`dps replay`, `dps synth`, `dps validate`. Heavy imports happen inside the handlers."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "replay",
        help="replay selection policies against a world (synthetic or a rollout log)",
        description="Replay every policy x seed of a scenario file and write a report folder.",
    )
    p.add_argument("scenario", help="scenario TOML file (see replay/*.toml)")
    p.add_argument("--out", default=None, help="report folder (default: runs/replay-<scenario name>)")
    p.add_argument("--workers", type=_count, default=None, help="processes (default: the scenario's, else all cores)")
    p.add_argument("--seeds", default=None, help="override the seeds: a count (3) or a list (0,1,2)")
    p.add_argument("--steps", type=int, default=None, help="override the number of steps")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="TABLE.KEY=VALUE",
        help="override a [world] or [run] setting, e.g. --set world.train_gain=0.1 (repeatable)",
    )
    p.add_argument(
        "--write-logs",
        action="store_true",
        help="also write each replay's own rollouts as a per-group log under DIR/logs/ (a sparse log, as a "
        "training run would write)",
    )
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_log_options(p, "a log world: ")  # each is --set world.KEY=...
    p.set_defaults(func=_replay)

    s = sub.add_parser(
        "synth",
        help="write a synthetic world out as a dense rollout log",
        description="Write a synthetic world's outcomes as a rollout log (every prompt, every `--every` steps).",
    )
    s.add_argument("--out", required=True, help="log file to write: .parquet, .csv or .jsonl")
    s.add_argument("--preset", default="math", help="synthetic preset: math or countdown (default math)")
    s.add_argument("--seed", type=int, default=0, help="the world's dynamics seed")
    s.add_argument("--noise-seed", type=int, default=0, help="seed of the outcome draws")
    s.add_argument("--every", type=int, default=1, help="roll every prompt out every N steps (default 1)")
    s.add_argument("--steps", type=int, default=None, help="override the preset's steps")
    s.add_argument("--num-prompts", type=int, default=None, help="override the preset's number of prompts")
    s.add_argument("--k", type=int, default=None, help="override the responses per group")
    s.add_argument(
        "--layout", choices=("group", "response"), default="group", help="per-group rows or per-response rows"
    )
    s.set_defaults(func=_synth)

    v = sub.add_parser(
        "validate",
        help="check rollout logs and say how they were understood",
        description="Read rollout logs (Parquet, CSV, JSONL or a folder of them; per group or per response), "
        "check them and say what was understood: layout, prompt ids, steps, kinds of rows, repeated groups.",
    )
    v.add_argument("logs", nargs="*", metavar="LOG", help="log file(s) or folder(s)")
    v.add_argument(
        "--calibration",
        nargs="?",
        const=".",
        default=None,
        metavar="DIR",
        help="also say how well a replay's log world predicts each log (held-out groups): table, ECE, Brier; "
        "writes LOGNAME-calibration.png/.csv/.json in DIR (default: the current folder)",
    )
    add_log_options(v)
    v.set_defaults(func=_validate)
    register_leaderboard(sub)


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _lag(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (steps between a selection and its observation), not {value}")
    return value


def register_leaderboard(sub: Any) -> None:
    p = sub.add_parser(
        "leaderboard",
        help="rank every built-in policy on your own rollout logs",
        description="Replay every built-in policy at its defaults (DPS, MoPPS and BOTS also over a small decay grid, "
        "RateDPS also with its other selections, the oracle as a bound) on each log's world with 3 seeds, B from the "
        "log; write DIR/leaderboard.md, .csv, .parquet and a plot ranking them by rollouts per effective prompt.",
    )
    p.add_argument("logs", nargs="+", metavar="LOG", help="log file(s) or folder(s), any format `dps validate` reads")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for leaderboard.md/.csv/.parquet/.png")
    p.add_argument("--batch", type=_count, default=None, help="prompts per step (default: the log's own batch)")
    p.add_argument("--seeds", type=_count, default=3, help="replay seeds 0..N-1 (default 3)")
    p.add_argument("--steps", type=_count, default=None, help="steps to replay (default: the log's horizon)")
    p.add_argument("--workers", type=_count, default=None, help="processes (default: all cores)")
    p.add_argument(
        "--lag",
        type=_lag,
        default=0,
        help="selections in flight: each step t is selected having observed the groups of steps up to t - 1 - LAG "
        "(default 0, lockstep)",
    )
    p.add_argument("--reports", action="store_true", help="also write each log's replay report into DIR/<log name>/")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_log_options(p)
    p.set_defaults(func=_leaderboard)


def _leaderboard(args: argparse.Namespace) -> int:
    from dps.replay.leaderboard import leaderboard_command

    return leaderboard_command(args, world_settings_from_args(args))


def add_log_options(p: argparse.ArgumentParser, scope: str = "") -> None:
    """The options of `dps.logs.LogSpec`, for commands that read a log (`scope` begins each help)."""
    p.add_argument(
        "--column",
        action="append",
        default=[],
        metavar="SCHEMA=NAME",
        help=f"{scope}the log's name for a schema column (step, prompt_id, n_rollouts, n_correct, reward, correct, "
        "kind, ...), e.g. --column step=global_step --column prompt_id=prompt (repeatable)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help=f"{scope}a response is correct when its score is >= this (default 0.5)",
    )
    p.add_argument(
        "--format",
        choices=("parquet", "csv", "jsonl", "json"),
        default=None,
        help=f"{scope}default: from the file name",
    )
    p.add_argument("--layout", choices=("group", "response"), default=None, help=f"{scope}default: from the columns")
    p.add_argument(
        "--prompt-ids",
        choices=("dense", "index"),
        default=None,
        help=f"{scope}dense (default): any ids -> 0..N-1; index: integer ids as they are",
    )
    p.add_argument(
        "--group-by",
        action="append",
        default=None,
        metavar="COLUMN",
        help=f"{scope}per-response logs: a column that tells groups of one (step, prompt) apart",
    )
    p.add_argument("--kinds", default=None, help=f"{scope}keep only rows of these kinds (comma-separated), e.g. train")


def parse_columns(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, eq, col = item.partition("=")
        if not eq or not name.strip() or not col.strip():
            raise ValueError(f"--column {item!r}: expected SCHEMA=NAME, e.g. step=global_step")
        out[name.strip()] = col.strip()
    return out


def world_settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The options of `add_log_options` as the keys of a scenario's [world] table."""
    settings: dict[str, Any] = {"columns": parse_columns(args.column)}
    for key in ("threshold", "format", "layout", "prompt_ids", "group_by"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    if args.kinds is not None:
        settings["kinds"] = [k.strip() for k in args.kinds.split(",") if k.strip()]
    return settings


def log_spec_from_args(args: argparse.Namespace) -> Any:
    from dps.logs import LogSpec

    return LogSpec.from_dict(world_settings_from_args(args), "options")


def world_sets(settings: dict[str, Any]) -> list[str]:
    """`world_settings_from_args` as `--set world.KEY=VALUE` items (the values as TOML)."""
    import json

    items = [f"world.columns.{name}={json.dumps(col)}" for name, col in settings.get("columns", {}).items()]
    for key, value in settings.items():
        if key != "columns":  # a JSON string, number or list of strings is valid TOML
            items.append(f"world.{key}={json.dumps(list(value) if isinstance(value, tuple) else value)}")
    return items


def _check_the_world_reads_a_log(path: str, sets: list[str], log_sets: list[str]) -> None:
    """The log-reading options of `dps replay` fit only a scenario whose [world] reads a log."""
    from dps.config import apply_sets, read_toml
    from dps.replay.scenario import SETTABLE

    data = read_toml(Path(path), "scenario file")
    apply_sets(data, sets, SETTABLE)
    world = data.get("world")
    if isinstance(world, dict) and "log" not in world:
        keys = dict.fromkeys(item.split("=", 1)[0].split(".")[1] for item in log_sets)
        flags = ", ".join("--" + ("column" if key == "columns" else key.replace("_", "-")) for key in keys)
        raise ValueError(
            f"{path}: {flags} read a log, and this scenario's [world] is synthetic (it has no log = FILE): "
            "drop them, or replay a log (log = FILE in [world], or dps leaderboard FILE)"
        )


def _parse_seeds(text: str) -> list[int]:
    """--seeds: a count >= 1 (3 -> 0, 1, 2) or a comma-separated list of integers >= 0, at most
    MAX_SEEDS of them."""
    from dps.replay.scenario import MAX_SEEDS

    bad = ValueError(f"--seeds must be a count >= 1 or a comma-separated list of integers >= 0, not {text!r}")
    try:
        seeds = [int(x) for x in text.split(",") if x.strip()] if "," in text else [int(text)]
    except ValueError:
        raise bad from None
    count = len(seeds) if "," in text else seeds[0]
    if count > MAX_SEEDS:
        raise ValueError(f"--seeds {text}: at most {MAX_SEEDS:,} seeds (a replay each)")
    if "," not in text:
        seeds = list(range(count))
    if not seeds or min(seeds) < 0:
        raise bad
    return seeds


def _replay(args: argparse.Namespace) -> int:
    from dps.replay.outputs import check_out_folder, claim
    from dps.replay.report import aggregate, console_summary, write_report
    from dps.replay.scenario import load_scenario
    from dps.replay.sweep import run_sweep

    log_sets = world_sets(world_settings_from_args(args))
    if log_sets:
        _check_the_world_reads_a_log(args.scenario, args.set, log_sets)
    sc = load_scenario(args.scenario, [*args.set, *log_sets])
    if args.seeds is not None:
        sc.seeds = _parse_seeds(args.seeds)
    if args.steps is not None:
        if args.steps < 1:
            raise ValueError("--steps must be positive")
        sc.steps = args.steps
    out = check_out_folder(args.out if args.out is not None else Path("runs") / f"replay-{sc.name}")
    res = run_sweep(sc, workers=args.workers, progress=not args.quiet, record=args.write_logs)
    folder = claim(out, getattr(args, "command_line", None))  # one run's files only, and a manifest
    paths = write_report(res, folder.path, plots=not args.no_plots)
    paths["manifest"] = folder.seal()
    print(console_summary(res, aggregate(res.summary)))
    files = sorted(p.name + ("/" if p.is_dir() else "") for p in paths.values() if p.parent == out)
    if res.calibration is not None:
        print(f"\nlog world {res.calibration.line()}")
        if res.calibration.population:
            print(res.calibration.population)
    print(f"\n{len(res.summary)} replays in {res.wall_s:.1f} s; report in {out}/ ({', '.join(files)})")
    return 0


#: The most rows `dps synth` writes (a dense log of every prompt at every step grows fast).
MAX_SYNTH_ROWS = 100_000_000


def _check_synth_rows(num_prompts: int, steps: int, k: int, every: int, layout: str) -> None:
    per_group = k if layout == "response" else 1
    rows = max(num_prompts, 0) * -(-max(steps, 0) // every) * max(per_group, 0)
    if rows > MAX_SYNTH_ROWS:
        per = f" x {k} responses" if layout == "response" else ""
        raise ValueError(
            f"{num_prompts:,} prompts x {steps:,} steps (every {every}){per} make {rows:,} rows; at most "
            f"{MAX_SYNTH_ROWS:,} (lower --num-prompts or --steps, or raise --every)"
        )


def _synth(args: argparse.Namespace) -> int:
    from dps.logs import describe, write_log
    from dps.replay.worlds import SyntheticWorld, preset_params

    over = {k: v for k, v in (("steps", args.steps), ("num_prompts", args.num_prompts), ("k", args.k)) if v is not None}
    params = preset_params(args.preset, **over)
    if args.every < 1:
        raise ValueError("--every must be positive")
    _check_synth_rows(params.num_prompts, params.steps, params.k, args.every, args.layout)
    world = SyntheticWorld(params, seed=args.seed)
    df = world.to_log(seed=args.noise_seed, every=args.every, layout=args.layout)
    write_log(df, args.out)
    from dps.logs import frame_to_groups

    d = describe(frame_to_groups(df, args.out))
    print(
        f"wrote {args.out}: {df.height:,} {args.layout} rows; {d['prompts']:,} prompts x {d['steps']} steps, "
        f"k = {world.k}, accuracy {d['accuracy']:.3f}, partially solved groups {d['partial_share']:.3f}"
    )
    return 0


def _calibration_swallowed_a_log(args: argparse.Namespace) -> None:
    """`dps validate --calibration LOG`: argparse reads LOG as the option's folder; a path that is a
    log file (or names one) is a log, and the folder the current one."""
    from dps.logs.schema import FORMATS

    given = args.calibration
    if given is None or given == ".":
        return
    path = Path(given)
    if path.is_file() or (not path.exists() and path.suffix.lower() in FORMATS):
        args.logs = [given, *args.logs]
        args.calibration = "."


def _validate(args: argparse.Namespace) -> int:
    from dps.logs import explain, load_log

    _calibration_swallowed_a_log(args)
    if not args.logs:
        raise ValueError("no log given: dps validate LOG... (a file or a folder of them)")
    spec = log_spec_from_args(args)
    for path in args.logs:
        log = load_log(path, spec)
        print(explain(log))
        if args.calibration is not None:
            from dps.replay.calibration import validate_calibration

            validate_calibration(log.groups, path, args.calibration, log.info.num_prompts)
    return 0
