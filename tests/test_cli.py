"""The `dps` command: every entry point is a subcommand, registered statically, described in --help."""

import argparse
import subprocess
import sys

import pytest

from dps import cli
from dps.cli import build_parser
from dps.train.presets import PRESETS

COMMANDS = ("replay", "synth", "validate", "leaderboard", "train", "compare", "model", "verl")


def _help(*args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "dps.cli", *args, "--help"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_help_lists_every_subcommand_with_a_description():
    lines = _help().splitlines()
    for name in COMMANDS:
        # argparse puts a long name's description on the next line
        at = next((i for i, x in enumerate(lines) if x.split()[:1] == [name]), None)
        assert at is not None, f"{name} is not in dps --help:\n{lines}"
        described = lines[at].split()[1:] or lines[at + 1].split()
        assert len(described) > 1, f"{name} has no description in dps --help:\n{lines}"


@pytest.mark.parametrize("command", ["train", "compare"])
def test_preset_choices_come_from_the_preset_table(command):
    text = " ".join(_help(command).split())
    for name in PRESETS:
        assert name in text


def test_an_unknown_preset_is_refused_naming_the_choices(capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["train", "--preset", "no-such"])
    assert e.value.code == 2
    assert "smollm2-cpu" in capsys.readouterr().err


def test_model_without_a_gguf_file_is_a_clear_error(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "dps.cli", "model", str(tmp_path / "m"), "--gguf", str(tmp_path / "x.gguf")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "no GGUF file" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("error", [PermissionError, FileNotFoundError, IsADirectoryError, ValueError])
def test_a_file_error_or_bad_value_is_one_line_and_exit_status_2(monkeypatch, capsys, error):
    """The core raises a file it cannot open or write as the matching OSError (rust/error.rs)."""

    def fails(args: argparse.Namespace) -> int:
        raise error("runs/x/rows.bin: cannot write")

    monkeypatch.setattr(cli, "parse", lambda argv: argparse.Namespace(command="replay", func=fails))
    assert cli.main(["replay"]) == 2
    assert capsys.readouterr().err == "dps replay: error: runs/x/rows.bin: cannot write\n"
