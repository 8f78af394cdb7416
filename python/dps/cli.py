"""dps: active prompt selection for RL finetuning. Replay selection policies on logged rollouts,
check logs, and train with GRPO (or inside TRL and verl) with a policy choosing the prompts."""

from __future__ import annotations

import argparse
import shlex
import sys
import textwrap
from collections.abc import Mapping
from typing import Any, NoReturn

from dps._core import __version__
from dps.integrations import cli as integrations_cli
from dps.replay import cli as replay_cli
from dps.tasks import cli as tasks_cli
from dps.train import cli as train_cli


class HelpFormatter(argparse.HelpFormatter):
    """argparse's help, wrapped between words only: a preset or option name such as
    paper-math-cpu is never split at its hyphens."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


class CommandParser(argparse.ArgumentParser):
    """argparse with a usage error on one line that names the subcommand: `dps replay: error:
    what (see dps replay --help)`, exit status 2. Every subcommand's help wraps with
    `HelpFormatter`."""

    commands: Mapping[str, argparse.ArgumentParser]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> CommandParser:
    parser = CommandParser(prog="dps", description=__doc__)
    parser.add_argument("--version", action="version", version=f"dps {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    replay_cli.register(sub)  # replay, synth, validate, leaderboard
    train_cli.register(sub)  # train, compare, model
    tasks_cli.register(sub)  # figures
    integrations_cli.register(sub)  # verl
    parser.commands = sub.choices
    return parser


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line; an option no subcommand knows is that subcommand's error, not `dps`'s."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    args.command_line = "dps " + shlex.join(sys.argv[1:] if argv is None else argv)  # what an output says made it
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse(argv)
    except SystemExit as e:  # --help, --version, or a usage error already printed
        return e.code if isinstance(e.code, int) else 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError) as e:  # bad input, or a file that cannot be read or written
        print(f"dps {args.command}: error: {error_text(e)}", file=sys.stderr)
        return 2


def error_text(error: ValueError | OSError) -> str:
    """The one line a bad input gets: an OS error on a path (a folder where a file belongs, a file
    where a folder belongs) as `PATH: what`, any other error as its message."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        hint = {IsADirectoryError: "; give a file", NotADirectoryError: "; give a folder"}.get(type(error), "")
        return f"{error.filename}: {error.strerror.lower()}{hint}"
    return str(error)


if __name__ == "__main__":
    sys.exit(main())
