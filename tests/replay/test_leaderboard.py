"""`dps leaderboard` and the prediction scores behind its calibration columns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from dps.cli import main
from dps.policies.base import Policy
from dps.replay.leaderboard import log_batch_size, policy_specs
from dps.replay.runner import expected_calibration_error, reliability_bins, replay
from dps.replay.worlds import SyntheticWorld, preset_params
from paths import shared_data

SHARED_LOG = ("smollm2-arith-lr1e6", "log.parquet")


class ConstantGuess(Policy):
    """Takes prompts in order and predicts every group partial with probability 0.3."""

    def __init__(self, num_prompts: int, seed: int = 0) -> None:
        self.num_prompts, self.next = num_prompts, 0

    def select(self, batch_size: int) -> np.ndarray:
        ids = (self.next + np.arange(batch_size)) % self.num_prompts
        self.next += batch_size
        return ids.astype(np.int64)

    def observe(self, prompt_ids, n_correct, n_rollouts) -> None:
        pass

    def predicted_states(self, prompt_ids, n_rollouts) -> np.ndarray:
        return np.tile([0.2, 0.3, 0.5], (len(prompt_ids), 1))

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def small_world() -> SyntheticWorld:
    return SyntheticWorld(preset_params("math", num_prompts=300, steps=20), seed=0)


def test_brier_and_ece_are_scored_against_what_the_world_returned():
    res = replay(ConstantGuess(300), small_world(), steps=20, batch_size=16, seed=1, record=True)
    g = res.groups
    partial = (g["n_correct"] > 0) & (g["n_correct"] < g["n_rollouts"])
    assert res.summary["pred_groups"] == len(partial) == 320
    assert res.summary["brier"] == pytest.approx(np.mean((0.3 - partial) ** 2))
    assert res.summary["ece"] == pytest.approx(abs(0.3 - partial.mean()))
    assert res.reliability[3, 0] == 320 and res.reliability[:, 0].sum() == 320


@pytest.mark.parametrize("name", ["dps", "mopps", "bots", "greso", "ratedps"])
def test_every_predictive_builtin_is_scored(name):
    from dps.policies.registry import make_policy

    res = replay(make_policy(name, num_prompts=300, seed=0), small_world(), steps=20, batch_size=16, seed=0)
    s = res.summary
    assert s["predictive"] and 0 <= s["brier"] <= 1 and 0 <= s["ece"] <= 1
    assert s["pred_groups"] == res.steps["groups"].sum() == res.reliability[:, 0].sum()


def test_a_policy_without_predictions_gets_none():
    from dps.policies.registry import make_policy

    res = replay(make_policy("uniform", num_prompts=300), small_world(), steps=5, batch_size=16)
    assert res.reliability is None and np.isnan(res.summary["brier"]) and np.isnan(res.summary["ece"])


def test_ece_of_bins():
    p = np.array([0.05, 0.05, 0.95, 0.95, 0.55])
    y = np.array([0, 1, 1, 1, 0])
    bins = reliability_bins(p, y)
    # |0.05 - 0.5| x 2 + |0.95 - 1| x 2 + |0.55 - 0| x 1, over 5
    assert expected_calibration_error(bins) == pytest.approx((0.9 + 0.1 + 0.55) / 5)
    assert np.isnan(expected_calibration_error(np.zeros((10, 3))))


def test_the_leaderboard_holds_every_builtin_and_the_decay_grids():
    specs = policy_specs()
    types = {s.type for s in specs}
    assert {"uniform", "hr", "ds", "greso", "mopps", "bots", "dps", "ratedps", "oracle"} <= types
    assert len(specs) >= 8 and len({s.name for s in specs}) == len(specs)
    for ptype in ("dps", "mopps", "bots"):
        assert sum(s.type == ptype for s in specs) == 3
    assert "DPS decay=0.7 (default)" in [s.name for s in specs]
    rate = {s.name: s.params for s in specs if s.type == "ratedps"}
    assert rate == {
        "RateDPS selection=thompson (default)": {},
        "RateDPS selection=top": {"selection": "top"},
        "RateDPS selection=sample": {"selection": "sample"},
        "RateDPS selection=thompson revisit_by=age": {"revisit_by": "age"},  # the former default
    }


def test_batch_is_read_from_the_training_rows():
    groups = pl.DataFrame(
        {
            "step": [0] * 10 + [1, 1, 1, 2, 2, 2],
            "prompt_id": list(range(10)) + [0, 1, 2, 3, 4, 5],
            "kind": ["sweep"] * 10 + ["train"] * 6,
        }
    )
    assert log_batch_size(groups, 10) == 3
    with pytest.raises(ValueError, match="give --batch"):
        log_batch_size(groups.filter(pl.col("kind") == "sweep"), 10)


def string_id_copy(tmp_path: Path) -> Path:
    """The shared SmolLM2 log with its prompts named by strings, as a DS-style log names them."""
    log = pl.read_parquet(shared_data(*SHARED_LOG))
    named = log.with_columns(pl.format("arith-q{}", pl.col("prompt_id").cast(pl.Utf8).str.zfill(4)).alias("uid")).drop(
        "prompt_id"
    )
    path = tmp_path / "strings.parquet"
    named.write_parquet(path)
    return path


def test_leaderboard_on_a_real_log_with_string_ids(tmp_path, capsys):
    log = string_id_copy(tmp_path)
    out = tmp_path / "board"
    code = main(
        [
            "leaderboard",
            str(log),
            "--out",
            str(out),
            "--column",
            "prompt_id=uid",
            "--steps",
            "30",
            "--seeds",
            "2",
            "--quiet",
        ]
    )
    assert code == 0
    table = pl.read_csv(out / "leaderboard.csv")
    assert table.height >= 8 and table["seeds"].to_list() == [2] * table.height
    assert set(table["rank"].to_list()) == set(range(1, table.height + 1))
    scored = table.filter(pl.col("type").is_in(["dps", "mopps", "bots", "greso"]))
    assert scored["brier"].is_not_null().all() and scored["ece"].is_not_null().all()
    assert table.filter(pl.col("type") == "uniform")["brier"].is_null().all()
    md = (out / "leaderboard.md").read_text()
    assert "B = 64" in md and "| rank | policy | effective ratio" in md and "**" in md
    assert (out / "leaderboard.parquet").exists() and (out / "leaderboard.png").exists()
    printed = capsys.readouterr().out
    assert "oracle (bound)" in printed


def test_leaderboard_errors_are_one_line(tmp_path, capsys):
    assert main(["leaderboard", str(tmp_path / "missing.parquet"), "--out", str(tmp_path / "o")]) == 2
    assert "no such log" in capsys.readouterr().err
    dense = tmp_path / "dense.parquet"
    pl.DataFrame(
        {"step": [0, 0, 1, 1], "prompt_id": [0, 1, 0, 1], "n_rollouts": [8] * 4, "n_correct": [1, 8, 3, 0]}
    ).write_parquet(dense)
    assert main(["leaderboard", str(dense), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "give --batch" in err and err.count("\n") == 1


# ---------------------------------------------------------------- what a new user hit (issue 26)
def gated_log(path: Path, rounds: list[int], per_round: int = 16, prompts: int = 300) -> Path:
    """A dynamic-sampling-like log: step s rolls out rounds[s] rounds of `per_round` groups."""
    rng = np.random.default_rng(0)
    rows = []
    for step, n in enumerate(rounds):
        ids = rng.choice(prompts, size=n * per_round, replace=False)
        rows += [(step, int(i), 8, int(rng.integers(0, 9))) for i in ids]
    pl.DataFrame(rows, schema=["step", "prompt_id", "n_rollouts", "n_correct"], orient="row").write_parquet(path)
    return path


def test_the_leaderboard_says_how_it_read_B(tmp_path, capsys):
    log = gated_log(tmp_path / "ds.parquet", [1, 3, 3, 2, 3, 1, 3, 3])
    assert main(["leaderboard", str(log), "--out", str(tmp_path / "o"), "--seeds", "1", "--quiet", "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "B = 48" in out and "median of the groups per step over 8 steps (16 to 48)" in out, out
    assert "a multiple of 16" in out and "give --batch" in out
    assert "median of the groups per step" in (tmp_path / "o" / "leaderboard.md").read_text()
    assert (
        main(
            [
                "leaderboard",
                str(log),
                "--out",
                str(tmp_path / "o2"),
                "--batch",
                "16",
                "--seeds",
                "1",
                "--quiet",
                "--no-plots",
            ]
        )
        == 0
    )
    assert "B = 16 (--batch)" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["leaderboard", "replay"])
def test_out_naming_a_file_is_one_line_before_any_work(tmp_path, capsys, command):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    if command == "leaderboard":
        source = gated_log(tmp_path / "log.parquet", [1, 1])
    else:
        source = tmp_path / "sc.toml"
        source.write_text(
            '[world]\npreset = "countdown"\nnum_prompts = 60\nsteps = 3\n[[policies]]\nname = "US"\ntype = "uniform"\n'
        )
    code = main([command, str(source), "--out", str(afile), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"dps {command}: error: --out {afile}") and err.count("\n") == 1, err
    assert "is a file" in err and afile.read_text() == "mine"


def test_two_logs_of_one_name_get_a_report_folder_each(tmp_path, capsys):
    a, b = tmp_path / "A", tmp_path / "B"
    a.mkdir(), b.mkdir()
    gated_log(a / "rollouts.parquet", [1] * 6, prompts=200)
    gated_log(b / "rollouts.parquet", [2] * 6, prompts=200)
    out = tmp_path / "o"
    args = ["leaderboard", str(a / "rollouts.parquet"), str(b / "rollouts.parquet"), "--out", str(out), "--reports"]
    assert main([*args, "--seeds", "1", "--quiet", "--no-plots"]) == 0
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders == ["A-rollouts", "B-rollouts"], folders
    summaries = [pl.read_csv(out / f / "summary.csv") for f in folders]
    assert summaries[0]["rollouts"].to_list() != summaries[1]["rollouts"].to_list()  # each its own log's replays
    assert f"reports in {out}/A-rollouts/, {out}/B-rollouts/" in capsys.readouterr().out


def test_workers_default_to_all_cores_in_replay_and_the_leaderboard():
    from dps.cli import build_parser

    parser = build_parser()
    for command in ("replay", "leaderboard"):
        sub = parser.commands[command]
        assert sub.get_default("workers") is None, command
        assert "all cores" in sub.format_help(), command


def test_the_docs_synopsis_lists_every_leaderboard_option():
    from dps.cli import build_parser
    from paths import ROOT

    text = (ROOT / "docs" / "replay.md").read_text()
    synopsis = text.split("## Leaderboard", 1)[1].split("```", 2)[1]
    options = [o for a in build_parser().commands["leaderboard"]._actions for o in a.option_strings]
    missing = [o for o in options if o.startswith("--") and o != "--help" and o not in synopsis]
    assert not missing, missing


def test_one_log_given_twice_and_steps_past_the_log_are_one_line(tmp_path, capsys):
    log = gated_log(tmp_path / "log.parquet", [1] * 5)
    args = ["--out", str(tmp_path / "o"), "--seeds", "1", "--quiet", "--no-plots"]
    assert main(["leaderboard", str(log), str(tmp_path / "." / "log.parquet"), *args]) == 2
    err = capsys.readouterr().err
    assert "given twice" in err and err.count("\n") == 1
    assert main(["leaderboard", str(log), "--steps", "100", *args]) == 2
    err = capsys.readouterr().err
    assert "--steps 100 runs past the log's 5 steps (0..4)" in err and "[world]" not in err, err


def test_a_rerun_leaves_only_its_own_files_and_names_them_in_a_manifest(tmp_path, capsys):
    import json

    log = gated_log(tmp_path / "log.parquet", [1] * 5)
    out = tmp_path / "o"
    assert main(["leaderboard", str(log), "--out", str(out), "--seeds", "1", "--quiet", "--reports"]) == 0
    assert (out / "leaderboard.png").exists() and (out / "log" / "report.md").exists()
    assert main(["leaderboard", str(log), "--out", str(out), "--seeds", "1", "--quiet", "--no-plots"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["files"] == ["leaderboard.csv", "leaderboard.md", "leaderboard.parquet"]
    assert "--no-plots" in manifest["command"] and manifest["written_by"].startswith("dps ")
    assert sorted(p.name for p in out.iterdir()) == [*manifest["files"], "manifest.json"]  # no old PNG, no report
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("mine")
    capsys.readouterr()
    assert main(["leaderboard", str(log), "--out", str(foreign), "--seeds", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "holds files no dps manifest names (thesis.tex)" in err and err.count("\n") == 1
