"""dps: active prompt selection for RL finetuning. Replay selection policies on logged rollouts,
check logs, and train with GRPO (or inside TRL and verl) with a policy choosing the prompts."""

from __future__ import annotations

import argparse
import sys

from dps._core import __version__
from dps.integrations import cli as integrations_cli
from dps.replay import cli as replay_cli
from dps.tasks import cli as tasks_cli
from dps.train import cli as train_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dps", description=__doc__)
    parser.add_argument("--version", action="version", version=f"dps {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    replay_cli.register(sub)  # replay, synth, validate, leaderboard
    train_cli.register(sub)  # train, compare, model
    tasks_cli.register(sub)  # figures
    integrations_cli.register(sub)  # verl
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as e:
        print(f"dps {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
