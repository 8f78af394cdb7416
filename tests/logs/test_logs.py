"""Rollout logs from any trainer: formats, layouts, id kinds, column maps, repeated groups, and
the errors bad input gets (file, column, row)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from dps.logs import (
    LogError,
    LogSpec,
    aggregate_responses,
    explain,
    frame_to_groups,
    load_frame,
    load_log,
    prompt_keys,
    read_log,
    validate_frame,
    write_log,
)
from paths import shared_data


def good_groups() -> pl.DataFrame:
    return pl.DataFrame(
        {"step": [0, 0, 1, 1], "prompt_id": [0, 1, 0, 2], "n_rollouts": [8, 8, 8, 8], "n_correct": [0, 3, 8, 5]}
    )


def as_responses(groups: pl.DataFrame) -> pl.DataFrame:
    """Each group as n_rollouts response rows, the first n_correct of them correct (reward 1.0)."""
    rows = []
    for g in groups.iter_rows(named=True):
        for j in range(g["n_rollouts"]):
            rows.append(
                {
                    **{k: v for k, v in g.items() if k not in ("n_rollouts", "n_correct")},
                    "reward": float(j < g["n_correct"]),
                }
            )
    return pl.DataFrame(rows)


def write_any(df: pl.DataFrame, path: Path) -> None:
    """Write with polars directly (not write_log), as another trainer would."""
    if path.suffix == ".parquet":
        df.write_parquet(path)
    elif path.suffix == ".csv":
        df.write_csv(path)
    elif path.suffix == ".jsonl":
        df.write_ndjson(path)
    else:
        path.write_text(json.dumps(df.to_dicts()))


IDS = {
    "dense ints": [0, 1, 2],
    "sparse ints": [1000, 7, 123456789],
    "negative ints": [-5, 3, -1],
    "strings": ["What is 2 + 2?", "Solve x^2 = 9.", "Name a prime."],
    "hashes": ["9f86d081884c7d65", "2c26b46b68ffc68f", "fcde2b2edba56bf4"],
}


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl", ".json"])
@pytest.mark.parametrize("layout", ["group", "response"])
@pytest.mark.parametrize("ids", list(IDS))
def test_round_trip_every_format_layout_and_id_kind(tmp_path: Path, suffix: str, layout: str, ids: str) -> None:
    keys = IDS[ids]
    groups = pl.DataFrame(
        {
            "step": [0, 0, 1, 1, 2],
            "prompt_id": [keys[0], keys[1], keys[0], keys[2], keys[1]],
            "n_rollouts": [4] * 5,
            "n_correct": [0, 3, 4, 1, 2],
        }
    )
    df = groups if layout == "group" else as_responses(groups)
    path = tmp_path / f"log{suffix}"
    write_any(df, path)
    log = load_log(path)
    g = log.groups
    assert log.info.layout == layout and log.info.rows == df.height
    assert g.columns[:4] == ["step", "prompt_id", "n_rollouts", "n_correct"] and g["prompt_id"].dtype == pl.Int64
    # dense ids 0..N-1 in the sorted order of the user's ids, and back again
    order = sorted(keys)
    assert sorted(g["prompt_id"].unique().to_list()) == [0, 1, 2]
    assert log.keys.to_list() == order
    assert prompt_keys(g).tolist() == order
    assert [log.keys[i] for i in g["prompt_id"]] == g["prompt_key"].to_list()
    back = {(r["step"], r["prompt_key"]): (r["n_rollouts"], r["n_correct"]) for r in g.iter_rows(named=True)}
    assert back == {
        (r["step"], r["prompt_id"]): (r["n_rollouts"], r["n_correct"]) for r in groups.iter_rows(named=True)
    }
    assert log.info.id_mapping == ("identity" if ids == "dense ints" else "dense")
    assert log.info.id_type == ("integer" if "ints" in ids else "string")


def test_trl_like_per_completion_jsonl_with_prompt_text_and_global_step(tmp_path: Path) -> None:
    """TRL-style: one row per completion, the prompt text as its id, `global_step` from 500."""
    rng = np.random.default_rng(0)
    prompts = [f"<|user|>What is {a} + {b}?" for a in range(6) for b in range(5)]
    p = rng.uniform(size=len(prompts))
    rows = []
    for step in range(500, 510):
        for q in rng.choice(len(prompts), 6, replace=False):
            for _ in range(4):
                ok = rng.random() < p[q]
                rows.append(
                    {
                        "global_step": step,
                        "prompt": prompts[q],
                        "completion": "The answer is 7. " * 20,
                        "reward": 1.0 * ok + 0.1,
                    }
                )
    path = tmp_path / "completions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    with pytest.raises(LogError, match="perhaps --column step=global_step") as e:
        load_log(path)
    assert e.value.column == "step"
    spec = LogSpec(columns={"step": "global_step", "prompt_id": "prompt"})
    log = load_log(path, spec)
    g = log.groups
    assert g["step"].min() == 500 and g["step"].max() == 509  # the log's own steps, not shifted
    assert g.height == 60 and (g["n_rollouts"] == 4).all()
    assert log.info.threshold == 0.5  # the 0.1 format bonus does not make a wrong answer correct
    expect = pl.DataFrame(rows).group_by("global_step", "prompt").agg((pl.col("reward") > 1).sum().alias("c"))
    got = g.join(expect, left_on=["step", "prompt_key"], right_on=["global_step", "prompt"])
    assert got.height == 60 and (got["n_correct"] == got["c"]).all()
    assert set(log.keys.to_list()) <= set(prompts) and "completion" not in g.columns
    text = explain(log)
    assert "step <- global_step" in text and "prompt_id <- prompt" in text and "string" in text and "500..509" in text
    # a stricter threshold is a choice of the user
    strict = load_log(path, LogSpec(columns=spec.columns, threshold=1.05))
    assert strict.groups["n_correct"].sum() == g["n_correct"].sum()
    with pytest.raises(LogError, match=r"threshold 2 leaves no response correct: the scores lie in \[0.1, 1.1\]"):
        load_log(path, LogSpec(columns=spec.columns, threshold=2.0))  # every replayed number would be 0 or NaN


def test_verl_like_folder_of_step_files_and_a_correctness_column(tmp_path: Path) -> None:
    """verl dumps `{step}.jsonl` per step with `input`, `output`, `score`, `step`."""
    folder = tmp_path / "rollouts"
    folder.mkdir()
    for step in (1, 2, 10):  # 10 after 2: numbers compared as numbers
        lines = [
            {"input": f"q{i}", "output": "...", "score": float(i % 3 == 0), "acc": i % 2 == 0, "step": step}
            for i in range(6)
            for _ in range(2)
        ]
        (folder / f"{step}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    log = load_log(folder, LogSpec(columns={"prompt_id": "input", "reward": "score"}))
    assert log.info.files == 3 and log.info.rows == 36 and log.groups["step"].unique().to_list() == [1, 2, 10]
    assert log.groups.filter(pl.col("prompt_key") == "q3")["n_correct"].to_list() == [2, 2, 2]
    # a boolean correctness column wins over the reward
    log = load_log(folder, LogSpec(columns={"prompt_id": "input", "reward": "score", "correct": "acc"}))
    assert log.groups.filter(pl.col("prompt_key") == "q3")["n_correct"].to_list() == [0, 0, 0]
    assert log.info.threshold is None
    # a bad row is named by its own file and row
    (folder / "2.jsonl").write_text((folder / "2.jsonl").read_text().replace('"score": 1.0', '"score": null', 1))
    with pytest.raises(LogError) as e:
        load_log(folder, LogSpec(columns={"prompt_id": "input", "reward": "score"}))
    assert e.value.path.endswith("2.jsonl") and e.value.column == "score" and e.value.row == 0


def test_a_float_score_column_as_correctness_uses_the_threshold() -> None:
    df = pl.DataFrame({"step": [0] * 4, "prompt_id": ["a"] * 4, "reward": [0.0] * 4, "pass_rate": [0.2, 0.8, 0.6, 0.4]})
    g = load_log_frame(df, LogSpec(columns={"correct": "pass_rate"}, threshold=0.5))
    assert g["n_correct"].to_list() == [2]


def load_log_frame(df: pl.DataFrame, spec: LogSpec | None = None) -> pl.DataFrame:
    return frame_to_groups(df, "<frame>", spec)


def test_sparse_int_ids_and_index_mode() -> None:
    df = pl.DataFrame(
        {"step": [3, 3, 4], "prompt_id": [1000, 20, 1000], "n_rollouts": [8, 8, 8], "n_correct": [1, 2, 3]}
    )
    g = frame_to_groups(df)
    assert g["prompt_id"].to_list() == [0, 1, 1] and g["prompt_key"].to_list() == [20, 1000, 1000]
    assert g["step"].to_list() == [3, 3, 4]  # no padding to step 0
    idx = frame_to_groups(df, spec=LogSpec(prompt_ids="index"))
    assert idx["prompt_id"].to_list() == [20, 1000, 1000]
    with pytest.raises(LogError, match="index"):
        frame_to_groups(df.with_columns(pl.col("prompt_id").cast(pl.String)), spec=LogSpec(prompt_ids="index"))


@pytest.mark.parametrize("keys", [["zz", "aa", "mm"], [7000, 30, 512]])
def test_a_log_with_prompt_key_is_read_by_the_users_ids(
    tmp_path: Path, keys: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """A log as `dps replay --write-logs` writes it: dense prompt_id beside the user's prompt_key."""
    from dps.cli import main

    order = sorted(keys)
    df = pl.DataFrame(
        {
            "step": [0, 0, 1, 2],
            "prompt_id": [order.index(k) for k in (keys[0], keys[2], keys[0], keys[1])],
            "prompt_key": [keys[0], keys[2], keys[0], keys[1]],
            "n_rollouts": [4] * 4,
            "n_correct": [1, 2, 3, 0],
        }
    )
    path = tmp_path / "written.parquet"
    df.write_parquet(path)
    log = load_log(path)
    assert log.keys.to_list() == order  # the user's ids, not the dense ones beside them
    assert {(r["step"], r["prompt_key"]): r["n_correct"] for r in log.groups.iter_rows(named=True)} == {
        (r["step"], r["prompt_key"]): r["n_correct"] for r in df.iter_rows(named=True)
    }
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "prompt_id <- prompt_key" in out and f"3 distinct ({order[0]!r} .. {order[-1]!r})" in out.replace('"', "'")
    # the keys alone suffice
    assert load_frame(df.drop("prompt_id")).keys.to_list() == order


def test_prompt_key_must_pair_with_prompt_id_one_to_one() -> None:
    df = pl.DataFrame(
        {
            "step": [0, 0, 1],
            "prompt_id": [0, 1, 0],
            "prompt_key": ["a", "b", "a"],
            "n_rollouts": [4] * 3,
            "n_correct": [1, 2, 3],
        }
    )
    for bad, column, row in (
        (df.with_columns(prompt_id=pl.Series([0, 1, 2])), "prompt_key", 0),  # "a" is 0 and 2
        (df.with_columns(prompt_key=pl.Series(["a", "b", "c"])), "prompt_id", 0),  # 0 is "a" and "c"
        (df.with_columns(prompt_key=pl.Series(["a", None, "a"])), "prompt_key", 1),
    ):
        with pytest.raises(LogError) as e:
            load_frame(bad)
        assert (e.value.column, e.value.row) == (column, row)


def test_repeated_groups_are_kept_as_separate_rows() -> None:
    # a training group and an evaluation sweep of the same prompt at the same step, and a
    # dynamic-sampling extra round of prompt 1 at step 0
    df = pl.DataFrame(
        {
            "step": [0, 0, 0, 0],
            "prompt_id": [5, 5, 1, 1],
            "n_rollouts": [8, 8, 8, 8],
            "n_correct": [2, 3, 0, 4],
            "kind": ["train", "sweep", "train", "train"],
        }
    )
    log = load_log_frame(df)
    assert log.height == 4 and sorted(log["n_correct"].to_list()) == [0, 2, 3, 4]
    # per response: a kind column, or a group_by column, tells the groups apart
    resp = pl.DataFrame(
        {"step": [0] * 6, "prompt_id": ["p"] * 6, "reward": [1.0, 0, 1, 1, 0, 0], "round": [0, 0, 0, 1, 1, 1]}
    )
    assert frame_to_groups(resp)["n_rollouts"].to_list() == [6]
    two = frame_to_groups(resp, spec=LogSpec(group_by=("round",)))
    assert two["n_rollouts"].to_list() == [3, 3] and two["n_correct"].to_list() == [2, 1]
    by_kind = frame_to_groups(resp.with_columns(kind=pl.col("round").cast(pl.String)).drop("round"))
    assert by_kind["n_rollouts"].to_list() == [3, 3]


def test_validate_describes_the_real_smollm2_log(capsys: pytest.CaptureFixture[str]) -> None:
    from dps.cli import main

    real_log = shared_data("smollm2-arith-lr1e6", "log.parquet")
    assert main(["validate", str(real_log)]) == 0
    out = capsys.readouterr().out
    assert "48,384 rows" in out and "already 0..N-1" in out and "steps: 0..148, 149 distinct" in out
    assert "kind 'sweep': 38,912 groups, steps 0..148 (38 distinct)" in out
    assert "kind 'train': 9,472 groups, steps 1..148 (148 distinct)" in out
    assert "repeated groups: 2,368 (step, prompt) pairs" in out and "0 of them within one kind" in out
    assert main(["validate", str(real_log), "--kinds", "train"]) == 0
    out = capsys.readouterr().out
    assert "9,472 groups" in out and "repeated groups: none" in out
    log = load_log(real_log, LogSpec(kinds=("train",)))
    assert log.info.num_prompts == 1024 and log.groups.height == 9472


@pytest.mark.parametrize(
    "change, column, row, words",
    [
        (lambda d: d.drop("n_correct"), "n_correct", None, "missing"),
        (lambda d: d.with_columns(step=pl.Series([0.0, 0.5, 1.0, 1.0])), "step", 1, "whole number"),
        (lambda d: d.with_columns(step=pl.Series(["a", "b", "c", "d"])), "step", None, "integers"),
        (lambda d: d.with_columns(step=pl.Series([0, 0, -1, 1])), "step", 2, ">= 0"),
        (lambda d: d.with_columns(n_correct=pl.Series([0, 3, 9, 5])), "n_correct", 2, "exceeds"),
        (lambda d: d.with_columns(prompt_id=pl.Series([0, None, 1, 2], dtype=pl.Int64)), "prompt_id", 1, "null"),
        (lambda d: d.with_columns(prompt_id=pl.Series([0.5, 1.0, 0.5, 2.0])), "prompt_id", None, "integers or strings"),
        (lambda d: d.with_columns(n_rollouts=pl.Series([8, None, 8, 8], dtype=pl.Int64)), "n_rollouts", 1, "null"),
        (lambda d: d.with_columns(n_rollouts=pl.Series([8, 8, 0, 8])), "n_rollouts", 2, ">= 1"),
        (lambda d: d.with_columns(reward_mean=pl.Series(["a", "b", "c", "d"])), "reward_mean", None, "number"),
        (lambda d: d.with_columns(reward_mean=pl.Series([0.1, float("nan"), 0.2, 0.3])), "reward_mean", 1, "NaN"),
        (
            lambda d: d.with_columns(rewards=pl.Series([[1.0] * 8, [1.0] * 7, [1.0] * 8, [1.0] * 8])),
            "rewards",
            1,
            "length",
        ),
        (lambda d: d.with_columns(kind=pl.Series(["train", None, "train", "x"])), "kind", 1, "null"),
    ],
)
def test_validation_names_file_column_and_row(
    tmp_path: Path, change: Any, column: str, row: int | None, words: str
) -> None:
    path = tmp_path / "bad.parquet"
    change(good_groups()).write_parquet(path)
    with pytest.raises(LogError) as e:
        read_log(path)
    msg = str(e.value)
    assert str(path) in msg and repr(column) in msg and words in msg
    assert e.value.column == column and e.value.row == row
    if row is not None:
        assert f"row {row}" in msg


def test_errors_name_the_users_own_column(tmp_path: Path) -> None:
    df = (
        good_groups()
        .rename({"step": "global_step", "n_correct": "num_ok"})
        .with_columns(num_ok=pl.Series([0, 3, 9, 5]))
    )
    path = tmp_path / "theirs.csv"
    df.write_csv(path)
    spec = LogSpec(columns={"step": "global_step", "n_correct": "num_ok"})
    with pytest.raises(LogError, match=r"theirs.csv, column 'num_ok', row 2: n_correct = 9 exceeds") as e:
        load_log(path, spec)
    assert e.value.row == 2
    with pytest.raises(LogError, match="column 'nope': no such column"):
        load_log(path, LogSpec(columns={"step": "nope", "n_correct": "num_ok"}))


@pytest.mark.parametrize(
    "rows, column, row, words",
    [
        ({"reward": [1.0, None, 0.0]}, "reward", 1, "null"),
        ({"reward": [1.0, 0.0, float("nan")]}, "reward", 2, "NaN"),
        ({"reward": ["good", "bad", "good"]}, "reward", None, "number"),
        ({"reward": [1.0, 0.0, 0.0], "correct": [1, 2, 0]}, "correct", 1, "0 or 1"),
        ({"correct": [True, None, False]}, "correct", 1, "null"),
    ],
)
def test_per_response_errors(rows: dict[str, list[Any]], column: str, row: int | None, words: str) -> None:
    df = pl.DataFrame({"step": [0, 0, 0], "prompt_id": ["a", "a", "b"], **rows}, strict=False)
    with pytest.raises(LogError) as e:
        validate_frame(df, "resp.jsonl")
    assert e.value.column == column and e.value.row == row and words in str(e.value)


def test_unreadable_unknown_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "x.parquet"
    bad.write_text("not parquet")
    with pytest.raises(LogError, match="x.parquet.*not a readable parquet"):
        read_log(bad)
    with pytest.raises(FileNotFoundError):
        read_log(tmp_path / "nope.parquet")
    other = tmp_path / "log.txt"
    other.write_text("step,prompt_id\n")
    with pytest.raises(LogError, match="unknown log format '.txt'"):
        read_log(other)
    csv = tmp_path / "log.csv"
    csv.write_text("step,prompt_id,n_rollouts,n_correct\n")
    with pytest.raises(LogError, match="no rows"):
        read_log(csv)
    (tmp_path / "empty").mkdir()
    with pytest.raises(LogError, match="folder without log files"):
        read_log(tmp_path / "empty")
    write_log(good_groups(), tmp_path / "g.csv")
    with pytest.raises(LogError, match="kinds were asked for"):
        read_log(tmp_path / "g.csv", LogSpec(kinds=("train",)))


def test_format_override_and_spec_errors(tmp_path: Path) -> None:
    path = tmp_path / "log.txt"
    good_groups().write_csv(path)
    assert read_log(path, LogSpec(format="csv")).height == 4
    with pytest.raises(ValueError, match=r"sc\.toml: layout: must be 'group' or 'response', not 'rows'"):
        LogSpec.from_dict({"layout": "rows"}, "sc.toml")
    with pytest.raises(ValueError, match="threshold: expected a number, got 'high'"):
        LogSpec.from_dict({"threshold": "high"}, "sc.toml")
    with pytest.raises(ValueError, match="threshold: must be a finite number, not inf"):
        LogSpec.from_dict({"threshold": float("inf")}, "sc.toml")
    with pytest.raises(ValueError, match="columns: unknown schema name"):
        LogSpec.from_dict({"columns": {"stpe": "global_step"}}, "sc.toml")
    with pytest.raises(ValueError, match="group_by: expected a string or a list of them, got 3"):
        LogSpec.from_dict({"group_by": 3}, "sc.toml")
    assert LogSpec.from_dict({"group_by": "rank", "kinds": ["train"]}, "sc.toml").group_by == ("rank",)
    with pytest.raises(ValueError, match="prompt_ids: must be 'dense' or 'index'"):
        LogSpec(format="csv", prompt_ids="sorted")  # a spec built directly is checked too


def test_write_log_by_suffix(tmp_path: Path) -> None:
    for name in ("a.parquet", "a.csv", "a.jsonl"):
        write_log(good_groups(), tmp_path / name)
        assert read_log(tmp_path / name)["n_correct"].to_list() == [0, 3, 8, 5]
    with pytest.raises(ValueError, match="CSV cannot hold the list column"):
        write_log(good_groups().with_columns(rewards=pl.Series([[0.0] * 8] * 4)), tmp_path / "b.csv")
    with pytest.raises(LogError, match="exceeds"):
        write_log(good_groups().with_columns(n_correct=pl.Series([0, 9, 0, 0])), tmp_path / "c.parquet")
    assert not (tmp_path / "c.parquet").exists()


def test_per_response_log_is_aggregated_from_correctness_not_shaped_reward() -> None:
    # A 0.1 format bonus on wrong answers must not count as correct.
    df = pl.DataFrame(
        {
            "step": [0] * 4 + [0] * 4 + [1] * 2,
            "prompt_id": [7] * 4 + [3] * 4 + [7] * 2,
            "reward": [1.1, 0.1, 0.1, 1.1, 0.1, 0.1, 0.1, 0.1, 1.0, 1.0],
        }
    )
    g = frame_to_groups(df)
    rows = {(r["step"], r["prompt_key"]): r for r in g.iter_rows(named=True)}
    assert rows[(0, 7)]["n_rollouts"] == 4 and rows[(0, 7)]["n_correct"] == 2
    assert rows[(0, 3)]["n_correct"] == 0
    assert rows[(1, 7)]["n_correct"] == 2 and rows[(1, 7)]["n_rollouts"] == 2
    assert rows[(0, 7)]["reward_mean"] == pytest.approx(0.6)
    # An explicit `correct` column wins over the reward.
    g2 = aggregate_responses(df.with_columns(correct=pl.Series([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])))
    assert g2.filter((pl.col("step") == 0) & (pl.col("prompt_id") == 7))["n_correct"].item() == 4


def test_scenario_reads_a_foreign_log_through_its_columns_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dps.cli import main
    from dps.replay.scenario import load_scenario

    rng = np.random.default_rng(1)
    keys = [f"sha:{rng.integers(1 << 40):x}" for _ in range(40)]
    rows = [
        {"global_step": s, "uid": keys[q], "score": float(rng.random() < 0.5)}
        for s in range(100, 110)
        for q in rng.choice(40, 8, replace=False)
        for _ in range(4)
    ]
    pl.DataFrame(rows).write_csv(tmp_path / "theirs.csv")
    # a user's policy in a module beside the scenario, as dps replay finds it
    (tmp_path / "mine.py").write_text(
        "import numpy as np\nfrom dps.policies import Policy\n\n"
        "class Mine(Policy):\n"
        "    def __init__(self, num_prompts, seed=0):\n"
        "        self.num_prompts = num_prompts\n"
        "        self.rng = np.random.default_rng(seed)\n"
        "    def select(self, batch_size):\n"
        "        return self.rng.choice(self.num_prompts, batch_size, replace=False).astype(np.int64)\n"
        "    def observe(self, prompt_ids, n_correct, n_rollouts):\n"
        "        pass\n"
        "    def state_dict(self):\n"
        "        return {}\n"
        "    def load_state_dict(self, state):\n"
        "        pass\n"
    )
    sc = tmp_path / "sc.toml"
    body = (
        '[run]\nbatch_size = 4\nseeds = 1\nworkers = 1\nsteps = 3\n[[policies]]\nname = "mine"\ntype = '
        '"python"\nclass = "mine:Mine"\n'
    )
    sc.write_text(
        'name = "theirs"\n[world]\nlog = "theirs.csv"\nswitch_rate = 0.05\n[world.columns]\nstep = '
        '"global_step"\nprompt_id = "uid"\nreward = "score"\n' + body
    )
    world = load_scenario(sc).build_world()
    assert world.num_prompts == len(set(r["uid"] for r in rows))
    # the same from the command line, on a scenario without the table
    sc2 = tmp_path / "sc2.toml"
    sc2.write_text('name = "theirs2"\n[world]\nlog = "theirs.csv"\nswitch_rate = 0.05\n' + body)
    assert (
        main(
            [
                "replay",
                str(sc2),
                "--out",
                str(tmp_path / "o"),
                "--quiet",
                "--no-plots",
                "--column",
                "step=global_step",
                "--set",
                'world.columns.prompt_id="uid"',
                "--column",
                "reward=score",
            ]
        )
        == 0
    )
    assert "| mine | 1 |" in capsys.readouterr().out
    assert main(["replay", str(sc2), "--out", str(tmp_path / "o"), "--quiet", "--no-plots"]) == 2
    assert "perhaps --column step=global_step" in capsys.readouterr().err


def test_whole_floats_are_integers_and_index_ids_must_be_non_negative() -> None:
    df = good_groups().with_columns(pl.col("step").cast(pl.Float64), pl.col("n_correct").cast(pl.Float64))
    g = frame_to_groups(df)
    assert g["step"].dtype == pl.Int64 and g["n_correct"].to_list() == [0, 3, 8, 5]
    with pytest.raises(LogError, match=">= 0") as e:
        frame_to_groups(
            good_groups().with_columns(prompt_id=pl.Series([0, 1, -4, 2])), spec=LogSpec(prompt_ids="index")
        )
    assert e.value.row == 2
    # dense mode takes the same negative id as any other key
    assert frame_to_groups(good_groups().with_columns(prompt_id=pl.Series([0, 1, -4, 2])))["prompt_key"].to_list() == [
        0,
        1,
        -4,
        2,
    ]
