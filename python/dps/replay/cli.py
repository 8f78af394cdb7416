"""`dps replay`, `dps synth`, `dps validate`. Heavy imports happen inside the handlers."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "replay",
        help="replay selection policies against a world (synthetic or a rollout log)",
        description="Replay every policy x seed of a scenario file and write a report folder.",
    )
    p.add_argument("scenario", help="scenario TOML file (see replay/*.toml)")
    p.add_argument("--out", default=None, help="report folder (default: runs/replay-<scenario name>)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: the scenario's, else all cores)")
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
        help="also write each replay's own rollouts as a per-group log under DIR/logs/ (a sparse log, as a training run would write)",
    )
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_replay)

    s = sub.add_parser(
        "synth",
        help="write a synthetic world out as a dense rollout log",
        description="Write a synthetic world's outcomes as a Parquet rollout log (every prompt, every `--every` steps).",
    )
    s.add_argument("--out", required=True, help="Parquet file to write")
    s.add_argument("--preset", default="math", help="synthetic preset: math or countdown (default math)")
    s.add_argument("--seed", type=int, default=0, help="the world's dynamics seed")
    s.add_argument("--noise-seed", type=int, default=0, help="seed of the outcome draws")
    s.add_argument("--every", type=int, default=1, help="roll every prompt out every N steps (default 1)")
    s.add_argument("--steps", type=int, default=None, help="override the preset's steps")
    s.add_argument("--num-prompts", type=int, default=None, help="override the preset's number of prompts")
    s.add_argument("--k", type=int, default=None, help="override the responses per group")
    s.add_argument("--layout", choices=("group", "response"), default="group", help="per-group rows or per-response rows")
    s.set_defaults(func=_synth)

    v = sub.add_parser(
        "validate",
        help="check rollout log files against the schema",
        description="Check Parquet rollout logs (per-group or per-response) and describe them.",
    )
    v.add_argument("logs", nargs="+", help="Parquet log file(s)")
    v.add_argument("--threshold", type=float, default=None, help="per-response logs: reward >= threshold counts as correct (default 0.5)")
    v.set_defaults(func=_validate)


def _parse_seeds(text: str) -> list[int]:
    try:
        if "," in text:
            return [int(x) for x in text.split(",") if x.strip()]
        return list(range(int(text)))
    except ValueError:
        raise ValueError(f"--seeds must be a count or a comma-separated list, not {text!r}") from None


def _replay(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dps.replay.report import aggregate, markdown_table, write_report
    from dps.replay.scenario import load_scenario
    from dps.replay.sweep import run_sweep

    sc = load_scenario(args.scenario, args.set)
    if args.seeds is not None:
        sc.seeds = _parse_seeds(args.seeds)
    if args.steps is not None:
        if args.steps < 1:
            raise ValueError("--steps must be positive")
        sc.steps = args.steps
    out = Path(args.out) if args.out else Path("runs") / f"replay-{sc.name}"
    res = run_sweep(sc, workers=args.workers, progress=not args.quiet, record=args.write_logs)
    write_report(res, out, plots=not args.no_plots)
    print(markdown_table(aggregate(res.summary)))
    print(f"\n{len(res.summary)} replays in {res.wall_s:.1f} s; report in {out}/ (summary.csv, report.md, steps.parquet, PNGs)")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from dps.logs import describe, write_log
    from dps.replay.worlds import SyntheticWorld, preset_params

    over = {k: v for k, v in (("steps", args.steps), ("num_prompts", args.num_prompts), ("k", args.k)) if v is not None}
    world = SyntheticWorld(preset_params(args.preset, **over), seed=args.seed)
    if args.every < 1:
        raise ValueError("--every must be positive")
    df = world.to_log(seed=args.noise_seed, every=args.every, layout=args.layout)
    write_log(df, args.out)
    from dps.logs import frame_to_groups

    d = describe(frame_to_groups(df, args.out))
    print(
        f"wrote {args.out}: {df.height:,} {args.layout} rows; {d['prompts']:,} prompts x {d['steps']} steps, "
        f"k = {world.k}, accuracy {d['accuracy']:.3f}, partially solved groups {d['partial_share']:.3f}"
    )
    return 0


def _validate(args: argparse.Namespace) -> int:
    from dps.logs import DEFAULT_THRESHOLD, describe, read_log

    for path in args.logs:
        df = read_log(path, args.threshold if args.threshold is not None else DEFAULT_THRESHOLD)
        d = describe(df)
        print(
            f"{path}: ok. {d['groups']:,} groups, {d['prompts']:,} prompts (max id {d['max_prompt_id']}), "
            f"steps {d['step_range'][0]}..{d['step_range'][1]} ({d['steps']} distinct), {d['rollouts']:,} rollouts, "
            f"accuracy {d['accuracy']:.3f}, partially solved {d['partial_share']:.3f}, coverage {d['coverage']:.3f}"
        )
    return 0
