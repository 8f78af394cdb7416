"""Logs that guide a new user: a threshold that splits no scores, infinite scores, a missing column
that says which layout wants what, a cut-off JSONL line by its number, responses of one group
logged twice, and `dps validate`'s and `dps replay`'s own options."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from dps.cli import main
from dps.logs import LogError, LogSpec, explain, load_frame, load_log


def responses(k: int = 4, steps: int = 3, prompts: int = 5) -> pl.DataFrame:
    """A per-response log in another trainer's names: global_step, uid (strings), score (floats)."""
    rows = [
        {"global_step": s, "uid": f"q{p}", "score": float((s + p + j) % 3 == 0)}
        for s in range(steps)
        for p in range(prompts)
        for j in range(k)
    ]
    return pl.DataFrame(rows)


COLUMNS = {"step": "global_step", "prompt_id": "uid", "reward": "score"}


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], prefix: str) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith(prefix), err
    return err


# ---------------------------------------------------------------- thresholds and scores
@pytest.mark.parametrize("threshold", [2.0, -1.0, 1.5])
def test_a_threshold_that_makes_every_response_alike_is_refused(threshold: float) -> None:
    with pytest.raises(LogError) as info:
        load_frame(responses(), spec=LogSpec(columns=COLUMNS, threshold=threshold))
    message = str(info.value)
    assert f"threshold {threshold:g}" in message and "scores lie in [0, 1]" in message, message
    assert ("no response correct" in message) == (threshold > 1) and ("every response correct" in message) == (
        threshold <= 0
    )


@pytest.mark.parametrize("threshold", [float("inf"), float("-inf"), float("nan")])
def test_a_threshold_must_be_a_finite_number(threshold: float) -> None:
    with pytest.raises(ValueError, match="threshold: must be a finite number"):
        LogSpec(threshold=threshold).check("options")


def test_the_threshold_range_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "log.parquet"
    responses().write_parquet(path)
    mapping = ["--column", "step=global_step", "--column", "prompt_id=uid", "--column", "reward=score"]
    err = one_line_error(capsys, ["validate", str(path), *mapping, "--threshold", "2"], "dps validate: error:")
    assert "no response correct" in err
    assert main(["validate", str(path), *mapping, "--threshold", "1"]) == 0


@pytest.mark.parametrize("bad", [float("inf"), float("-inf")])
def test_an_infinite_score_is_refused_by_its_row(bad: float) -> None:
    df = (
        responses()
        .with_row_index()
        .with_columns(pl.when(pl.col("index") == 7).then(bad).otherwise(pl.col("score")).alias("score"))
    )
    with pytest.raises(LogError, match=r"column 'score', row 7: is (-)?inf"):
        load_frame(df.drop("index"), spec=LogSpec(columns=COLUMNS))


def test_a_log_whose_scores_never_vary_is_still_read() -> None:
    """Every response wrong (a model that solved nothing) is a log, not a bad threshold."""
    df = responses().with_columns(pl.lit(0.0).alias("score"))
    log = load_frame(df, spec=LogSpec(columns=COLUMNS))
    assert log.groups["n_correct"].sum() == 0


# ---------------------------------------------------------------- missing columns
def test_a_per_response_file_without_its_score_mapped_hints_reward(tmp_path: Path) -> None:
    """The issue's reproduction: step and prompt_id mapped, the score column not: the error spoke of a
    group log's n_rollouts."""
    with pytest.raises(LogError) as info:
        load_frame(responses(), spec=LogSpec(columns={"step": "global_step", "prompt_id": "uid"}))
    message = str(info.value)
    assert "--column reward=score" in message, message
    assert "one row per response" in message and "one row per group" in message


def test_a_typo_in_a_mapped_column_names_the_typo(tmp_path: Path) -> None:
    with pytest.raises(LogError) as info:
        load_frame(responses(), spec=LogSpec(columns={**COLUMNS, "reward": "scor"}))
    message = str(info.value)
    assert "column 'scor'" in message and "no such column" in message and "reward=score" in message, message


# ---------------------------------------------------------------- JSONL
def test_a_cut_off_jsonl_line_is_named_by_its_number(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    lines = [json.dumps(r) for r in responses().to_dicts()]
    lines[9] = lines[9][: len(lines[9]) // 2]  # a writer killed mid-line
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(LogError) as info:
        load_log(path, LogSpec(columns=COLUMNS))
    message = str(info.value)
    assert "line 10" in message and "cut off" in message and "Syntax at character" not in message, message


def test_a_cut_off_last_line_is_named_too(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    lines = [json.dumps(r) for r in responses().to_dicts()]
    path.write_text("\n".join(lines) + "\n" + lines[0][:7])
    with pytest.raises(LogError, match=f"line {len(lines) + 1}") as info:
        load_log(path, LogSpec(columns=COLUMNS))
    assert " at at " not in str(info.value), info.value  # json's "Unterminated string starting at"


# ---------------------------------------------------------------- responses logged twice
def test_responses_of_one_group_logged_twice_are_named_in_validate(tmp_path: Path) -> None:
    df = responses(k=8)
    twice = pl.concat([df, df.filter((pl.col("global_step") == 1) & (pl.col("uid") == "q2"))])
    log = load_frame(twice, spec=LogSpec(columns=COLUMNS))
    text = explain(log)
    assert "responses per group: 8 (14 groups), 16 (1 group)" in text, text
    assert "--group-by" in text and "logged twice" in text
    plain = explain(load_frame(df, spec=LogSpec(columns=COLUMNS)))
    assert "responses per group: 8\n" in plain + "\n" and "logged twice" not in plain


# ---------------------------------------------------------------- the commands' own options
def test_validate_calibration_before_the_log(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    """`dps validate --calibration LOG` took LOG as the option's folder, then said "logs required"."""
    from dps.replay.worlds import SyntheticWorld, preset_params

    monkeypatch.chdir(tmp_path)
    world = SyntheticWorld(preset_params("countdown", num_prompts=40, steps=30), seed=0)
    world.to_log(seed=0, every=1).write_parquet(tmp_path / "log.parquet")
    assert main(["validate", "--calibration", "log.parquet"]) == 0
    assert (tmp_path / "log-calibration.json").exists()
    err = one_line_error(capsys, ["validate"], "dps validate: error:")
    assert "log" in err


def test_replay_takes_kinds_and_an_unknown_option_names_the_subcommand(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = one_line_error(capsys, ["replay", "x.toml", "--kinsd", "train"], "dps replay: error:")
    assert "--kinsd" in err and "dps replay --help" in err
    err = one_line_error(capsys, ["validate", "--threshold", "half", "x"], "dps validate: error:")
    assert "half" in err


@pytest.mark.parametrize(
    "options, flags",
    [(["--kinds", "train"], "--kinds"), (["--column", "reward=score", "--threshold", "0.5"], "--column, --threshold")],
)
def test_log_options_on_a_synthetic_scenario_name_the_options_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str], flags: str
) -> None:
    """`dps replay sc.toml --kinds train` on a synthetic world spoke of a `--set world.kinds` the user never gave."""
    sc = tmp_path / "sc.toml"
    sc.write_text(
        '[world]\npreset = "countdown"\nnum_prompts = 50\nsteps = 2\n[[policies]]\nname = "US"\ntype = "uniform"\n'
    )
    err = one_line_error(capsys, ["replay", str(sc), *options, "--out", str(tmp_path / "o")], "dps replay: error:")
    assert f"{flags} read a log" in err and "synthetic" in err and "--set" not in err, err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["replay", "validate", "leaderboard"])
def test_every_command_that_reads_a_log_takes_the_reading_options(command: str) -> None:
    """docs/rollout-logs.md pairs each reading setting with an option of these three commands."""
    from dps.cli import build_parser

    text = build_parser().commands[command].format_help()
    for option in ("--column", "--threshold", "--format", "--layout", "--prompt-ids", "--group-by", "--kinds"):
        assert option in text, (command, option)


# ---------------------------------------------------------------- hostile inputs
def test_one_file_column_read_as_two_schema_columns_is_refused(tmp_path: Path) -> None:
    """--column prompt_id=step on a file with its own step column read the steps as prompt ids."""
    df = pl.DataFrame({"step": [0, 0, 1], "prompt_id": [3, 4, 3], "n_rollouts": [4] * 3, "n_correct": [1, 2, 3]})
    with pytest.raises(LogError) as info:
        load_frame(df, spec=LogSpec(columns={"prompt_id": "step"}))
    message = str(info.value)
    assert "column 'step'" in message and "both step and prompt_id" in message, message


def test_a_group_by_column_the_file_lacks_is_refused() -> None:
    with pytest.raises(LogError, match="column 'round': no such column.*--group-by round"):
        load_frame(responses(), spec=LogSpec(columns=COLUMNS, group_by=("round",)))


@pytest.mark.parametrize("separator", [";", "\t", "|"])
def test_a_csv_with_another_separator_is_read(tmp_path: Path, separator: str) -> None:
    path = tmp_path / "log.csv"
    responses().write_csv(path, separator=separator)
    log = load_log(path, LogSpec(columns=COLUMNS))
    assert log.groups.height == 15 and log.groups["n_rollouts"].to_list() == [4] * 15


def test_a_single_kind_or_group_by_string_is_one_name_not_its_letters() -> None:
    df = responses().with_columns(pl.lit("train").alias("kind"))
    log = load_frame(df, spec=LogSpec(columns=COLUMNS, kinds="train"))  # type: ignore[arg-type]
    assert log.groups.height == 15 and log.info.kinds == ("train",)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json"])
def test_a_parquet_file_read_as_text_says_so_not_its_bytes(tmp_path: Path, fmt: str) -> None:
    """`--format csv` on a Parquet file printed the file's binary header as its column names."""
    path = tmp_path / "log.parquet"
    responses().write_parquet(path)
    with pytest.raises(LogError) as info:
        load_log(path, LogSpec(columns=COLUMNS, format=fmt))  # type: ignore[arg-type]
    message = str(info.value)
    assert f"a Parquet file read as {fmt}" in message and "PAR1" in message and "\x00" not in message, message


def test_a_group_by_column_mapped_to_a_schema_column_names_the_option() -> None:
    """`--group-by score` with `--column reward=score` suggested `--column score=NAME`."""
    with pytest.raises(LogError) as info:
        load_frame(responses(), spec=LogSpec(columns=COLUMNS, group_by=("score",)))
    message = str(info.value)
    assert "--group-by score: the column is read as reward" in message and "--column score=" not in message, message
