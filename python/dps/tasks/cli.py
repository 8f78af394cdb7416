"""``dps figures``: the `figures` task written out as Parquet in Geometry3k's layout or verl's."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    from dps.tasks.figures import DEFAULT_LEVELS
    from dps.tasks.geometry3k import LAYOUTS

    p = sub.add_parser(
        "figures",
        help="write the figures task (visual geometry drawn locally) as Geometry3k-layout Parquet",
        description="Draw the figures task and write OUT/train.parquet and OUT/test.parquet in Geometry3k's "
        "layout (images, problem, answer) or verl's (prompt, images, reward_model): what task.name = "
        "'geometry3k' reads, and what verl's multimodal data path takes.",
    )
    p.add_argument("out", help="the folder to write train.parquet and test.parquet into")
    p.add_argument("--layout", choices=LAYOUTS, default="geometry3k", help="column layout (default geometry3k)")
    p.add_argument("--n-train", type=int, default=512, help="train prompts (default 512)")
    p.add_argument("--n-test", type=int, default=128, help="held-out prompts (default 128)")
    p.add_argument(
        "--levels",
        default=",".join(DEFAULT_LEVELS),
        help=f"comma-separated levels, KIND or KIND:LOW-HIGH (default {','.join(DEFAULT_LEVELS)})",
    )
    p.add_argument("--image-size", type=int, default=56, help="pixels a side (default 56)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=_figures)


def _figures(args: argparse.Namespace) -> int:
    from dps.tasks.figures import FiguresTask
    from dps.tasks.geometry3k import write_parquet

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file; give a folder to write train.parquet and test.parquet into")
    for option, count in (("--n-train", args.n_train), ("--n-test", args.n_test)):
        if count < 1:
            raise ValueError(f"{option} {count}: a split needs at least 1 prompt")
    for name in ("train.parquet", "test.parquet"):
        if (out / name).exists():
            raise ValueError(f"{out / name} exists; remove it or choose another folder")
    task = FiguresTask(
        n_train=args.n_train,
        n_test=args.n_test,
        n_warmup=0,
        levels=[x.strip() for x in args.levels.split(",") if x.strip()],
        image_size=args.image_size,
        seed=args.seed,
    )
    for path in write_parquet(task, out, args.layout):
        print(path)
    return 0
