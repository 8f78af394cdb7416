"""Logs whose values would size an array (a step far from the rest, a huge index id or group): refused, named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from dps.cli import main
from dps.logs import LogError, LogSpec, frame_to_groups, read_log
from dps.logs.check import MAX_GROUP_SIZE, MAX_INDEX_PROMPTS, MAX_STEP_SPAN


def steps_log(outlier_step: int, at_row: int = 300) -> pl.DataFrame:
    """Steps 1-40, 16 prompts each, and one row whose step is `outlier_step`."""
    rng = np.random.default_rng(0)
    step = np.repeat(np.arange(1, 41), 16)
    pid = np.concatenate([rng.choice(200, 16, replace=False) for _ in range(40)])
    step[at_row] = outlier_step
    return pl.DataFrame(
        {
            "step": step,
            "prompt_id": pid,
            "n_rollouts": np.full(len(step), 8),
            "n_correct": rng.integers(0, 9, len(step)),
        }
    )


@pytest.mark.parametrize("outlier, row", [(10**12, 300), (0, 300)])
def test_a_step_far_from_the_others_is_refused_naming_the_column_and_row(
    tmp_path: Path, outlier: int, row: int
) -> None:
    df = steps_log(outlier, row)
    if outlier == 0:  # the others far up: steps 10^12 + 1..40, one row at 0
        df = df.with_columns(pl.when(pl.col("step") > 0).then(pl.col("step") + 10**12).otherwise(0).alias("step"))
    path = tmp_path / "log.parquet"
    df.write_parquet(path)
    with pytest.raises(LogError) as e:
        read_log(path)
    assert e.value.column == "step" and e.value.row == row
    assert f"is {outlier}" in str(e.value) and "replay runs every step" in str(e.value)


def test_the_cli_refuses_it_with_exit_status_2_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    steps_log(10**12).write_parquet(tmp_path / "log.parquet")
    (tmp_path / "s.toml").write_text(
        '[world]\nlog = "log.parquet"\n[run]\nbatch_size = 8\nseeds = [0]\nworkers = 1\n'
        '[[policies]]\ntype = "uniform"\n'
    )
    assert main(["validate", str(tmp_path / "log.parquet")]) == 2
    assert main(["replay", str(tmp_path / "s.toml"), "--out", str(tmp_path / "out"), "--quiet", "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert err.count("column 'step', row 300: is 1000000000000") == 2 and "Traceback" not in err


def test_a_wide_but_regular_step_range_within_the_bound_still_reads() -> None:
    df = steps_log(40).with_columns(pl.col("step") * (MAX_STEP_SPAN // 50))  # steps every 20,000: a sparse log
    assert frame_to_groups(df).height == df.height


def test_a_huge_index_id_or_group_is_refused() -> None:
    df = steps_log(40)
    bad = df.with_columns(
        pl.when(pl.int_range(pl.len()) == 5).then(MAX_INDEX_PROMPTS).otherwise(pl.col("prompt_id")).alias("prompt_id")
    )
    with pytest.raises(LogError) as e:
        frame_to_groups(bad, spec=LogSpec(prompt_ids="index"))
    assert e.value.column == "prompt_id" and e.value.row == 5
    assert (
        frame_to_groups(bad)["prompt_id"].max() == bad["prompt_id"].n_unique() - 1
    )  # dense ids: any value is only a label
    big = df.with_columns(
        pl.when(pl.int_range(pl.len()) == 7)
        .then(MAX_GROUP_SIZE + 1)
        .otherwise(pl.col("n_rollouts"))
        .alias("n_rollouts")
    )
    with pytest.raises(LogError) as e:
        frame_to_groups(big)
    assert e.value.column == "n_rollouts" and e.value.row == 7
