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
    assert r.returncode == 2 and "Traceback" not in r.stderr
    # --gguf was given: "pass --gguf" would be no help
    assert f"--gguf {tmp_path / 'x.gguf'}: no such file" in r.stderr and "pass --gguf" not in r.stderr, r.stderr


@pytest.mark.parametrize("error", [PermissionError, FileNotFoundError, IsADirectoryError, ValueError])
def test_a_file_error_or_bad_value_is_one_line_and_exit_status_2(monkeypatch, capsys, error):
    """The core raises a file it cannot open or write as the matching OSError (rust/error.rs)."""

    def fails(args: argparse.Namespace) -> int:
        raise error("runs/x/rows.bin: cannot write")

    monkeypatch.setattr(cli, "parse", lambda argv: argparse.Namespace(command="replay", func=fails))
    assert cli.main(["replay"]) == 2
    assert capsys.readouterr().err == "dps replay: error: runs/x/rows.bin: cannot write\n"


# ---------------------------------------------------------------- hostile inputs (issue 26)
def one_line(capsys, argv: list[str], prefix: str) -> str:
    from dps.cli import main

    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith(prefix), err
    assert "Traceback" not in err
    return err


SCENARIO = (
    '[world]\npreset = "countdown"\nnum_prompts = 60\nsteps = 3\n[run]\nbatch_size = 8\n[[policies]]\nname = "US"\n'
    'type = "uniform"\n'
)


def test_a_folder_where_a_file_belongs_is_one_line(tmp_path, capsys):
    err = one_line(capsys, ["replay", str(tmp_path), "--quiet"], "dps replay: error:")
    assert str(tmp_path) in err and "is a directory" in err.lower()
    err = one_line(capsys, ["train", str(tmp_path), "--out", str(tmp_path / "o"), "--check"], "dps train: error:")
    assert "is a directory" in err.lower()


def test_a_file_where_a_folder_belongs_is_one_line(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    err = one_line(capsys, ["train", "--preset", "tiny-cpu", "--out", str(afile), "--check"], "dps train: error:")
    assert "is a file" in err  # --check says so: the run itself would fail
    err = one_line(capsys, ["model", str(afile), "--gguf", str(afile)], "dps model: error:")
    assert "is a file" in err
    err = one_line(capsys, ["figures", str(afile), "--n-train", "2", "--n-test", "2"], "dps figures: error:")
    assert "is a file" in err
    assert afile.read_text() == "mine"


@pytest.mark.parametrize("workers", ["0", "-2"])
def test_replay_refuses_a_worker_count_below_one(tmp_path, capsys, workers):
    sc = tmp_path / "sc.toml"
    sc.write_text(SCENARIO)
    err = one_line(capsys, ["replay", str(sc), "--workers", workers, "--out", str(tmp_path / "o")], "dps replay:")
    assert "--workers" in err and "at least 1" in err


def test_replay_refuses_an_empty_out_and_a_seed_count_that_cannot_run(tmp_path, capsys):
    sc = tmp_path / "sc.toml"
    sc.write_text(SCENARIO)
    err = one_line(capsys, ["replay", str(sc), "--out", "", "--quiet"], "dps replay: error:")
    assert "--out is empty" in err
    err = one_line(capsys, ["replay", str(sc), "--seeds", "100000000", "--out", str(tmp_path / "o")], "dps replay:")
    assert "at most 10,000 seeds" in err


def test_synth_refuses_a_log_too_large_to_write(tmp_path, capsys):
    argv = ["synth", "--out", str(tmp_path / "x.parquet"), "--num-prompts", "1000000000", "--steps", "1000"]
    err = one_line(capsys, argv, "dps synth: error:")
    assert "1,000,000,000,000 rows" in err and "--every" in err


def test_a_world_too_large_to_hold_is_refused_before_it_is_built(tmp_path, capsys):
    sc = tmp_path / "big.toml"
    sc.write_text(SCENARIO.replace("num_prompts = 60", "num_prompts = 2000000000"))
    err = one_line(capsys, ["replay", str(sc), "--quiet", "--out", str(tmp_path / "o")], "dps replay: error:")
    assert "num_prompts" in err and "at most 100,000,000" in err


@pytest.mark.parametrize("option", ["--n-train", "--n-test"])
def test_figures_refuses_an_empty_split(tmp_path, capsys, option):
    err = one_line(
        capsys, ["figures", str(tmp_path / "f"), "--n-train", "2", "--n-test", "2", option, "0"], "dps figures:"
    )
    assert option in err and "at least 1" in err
    assert not (tmp_path / "f").exists()
