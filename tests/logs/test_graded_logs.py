"""Graded rewards in rollout logs (issue 23): the optional reward columns (a `reward` per
response, or `reward_mean` / `reward_std` per group with `n_rollouts`, or a `rewards` list),
`dps validate`'s report of them and its refusal of NaN and infinite rewards naming the row, and a
replay whose policies observe them (`[world] rewards = "graded"`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from dps import DynamicSampling, run_step
from dps.cli import main
from dps.logs import LogError, load_log
from dps.replay.worldconfig import LogWorldConfig

EQUAL = 0.75  # the reward of every response of some groups: all equal, neither 0 nor 1


def graded_responses(path: Path, steps: int = 30, prompts: int = 40, k: int = 4) -> Path:
    """A per-response log of float rewards in [0, 1] on a grid of quarters; every group of a
    prompt divisible by 7 has all its rewards equal to EQUAL."""
    rng = np.random.default_rng(0)
    rows = []
    for step in range(steps):
        for pid in rng.choice(prompts, 10, replace=False):
            rewards = [EQUAL] * k if pid % 7 == 0 else rng.binomial(4, (pid % 10) / 9, size=k) / 4
            rows += [(step, int(pid), float(r)) for r in rewards]
    pl.DataFrame(rows, schema=["step", "prompt_id", "reward"], orient="row").write_parquet(path)
    return path


def per_group(responses: Path, path: Path) -> Path:
    """The same log per group, as mean and population standard deviation, without n_correct."""
    df = pl.read_parquet(responses).group_by("step", "prompt_id", maintain_order=True)
    moments = df.agg(
        pl.len().alias("n_rollouts"), pl.col("reward").mean().alias("reward_mean"), pl.col("reward").std(ddof=0)
    )
    moments.rename({"reward": "reward_std"}).write_csv(path)
    return path


def test_a_log_of_float_rewards_validates_and_says_what_its_rewards_hold(tmp_path, capsys) -> None:
    log = graded_responses(tmp_path / "graded.parquet")
    assert main(["validate", str(log)]) == 0
    out = capsys.readouterr().out
    groups = load_log(log).groups
    equal = groups.filter(pl.col("reward_std") == 0)
    not_0_1 = equal.filter(~pl.col("reward_mean").is_in([0.0, 1.0]))
    assert (not_0_1["reward_mean"] == EQUAL).any()
    assert f"{equal.height:,} of {groups.height:,} groups with every reward equal" in out
    assert f"({not_0_1.height:,} of them at a reward other than 0 or 1)" in out
    assert "rewards: reward per response" in out


def test_a_per_group_log_of_mean_and_spread_needs_no_counts(tmp_path, capsys) -> None:
    responses = graded_responses(tmp_path / "graded.parquet")
    log = per_group(responses, tmp_path / "moments.csv")
    loaded = load_log(log)
    assert loaded.info.rewards == "reward_mean and reward_std as logged"
    assert "no n_correct column" in loaded.info.correctness
    expected = (loaded.groups["reward_mean"] * loaded.groups["n_rollouts"]).round(0).cast(pl.Int64)
    assert loaded.groups["n_correct"].equals(expected.alias("n_correct"))
    assert main(["validate", str(log)]) == 0
    assert "rewards: reward_mean and reward_std as logged" in capsys.readouterr().out


def test_a_counts_log_reads_as_before(tmp_path, capsys) -> None:
    path = tmp_path / "counts.csv"
    pl.DataFrame({"step": [0, 0, 1], "prompt_id": [0, 1, 0], "n_rollouts": [4] * 3, "n_correct": [1, 4, 0]}).write_csv(
        path
    )
    loaded = load_log(path)
    assert loaded.info.rewards is None and loaded.groups.columns[:4] == ["step", "prompt_id", "n_rollouts", "n_correct"]
    assert main(["validate", str(path)]) == 0
    assert "rewards:" not in capsys.readouterr().out


def group_log(**columns) -> pl.DataFrame:
    base = {"step": [0, 0, 1, 1], "prompt_id": [0, 1, 0, 1], "n_rollouts": [4] * 4}
    return pl.DataFrame({**base, **columns})


@pytest.mark.parametrize(
    "frame, column, row, message",
    [
        (group_log(reward_mean=[0.5, np.nan, 0.2, 0.1], reward_std=[0.1] * 4), "reward_mean", 1, "NaN"),
        (group_log(reward_mean=[0.5, 0.1, np.inf, 0.1], reward_std=[0.1] * 4), "reward_mean", 2, "not a finite"),
        (group_log(reward_mean=[0.5] * 4, reward_std=[0.1, 0.1, 0.1, np.nan]), "reward_std", 3, "NaN"),
        (group_log(reward_mean=[0.5] * 4, reward_std=[0.1, -0.2, 0.1, 0.1]), "reward_std", 1, "a spread is >= 0"),
        (group_log(n_correct=[1] * 4, reward_std=[0.1] * 4), "reward_std", None, "needs reward_mean"),
        (group_log(reward_mean=[0.1] * 4), "n_correct", None, "(or graded rewards: rewards, or reward_mean and"),
        (
            group_log(rewards=[[0.0, 1.0, 1.0, 0.5]] * 2 + [[0.0, float("inf"), 1.0, 0.5]] + [[1.0] * 4]),
            "rewards",
            2,
            "holds inf",
        ),
        (group_log(rewards=[[0.0] * 4, [0.0, float("nan"), 1.0, 0.5]] * 2), "rewards", 1, "holds nan"),
    ],
)
def test_nan_and_infinite_rewards_are_refused_naming_the_row(tmp_path, capsys, frame, column, row, message) -> None:
    path = tmp_path / "bad.parquet"
    frame.write_parquet(path)
    with pytest.raises(LogError) as caught:
        load_log(path)
    assert (caught.value.column, caught.value.row) == (column, row)
    assert message in caught.value.message
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"column '{column}'" in err and (row is None or f"row {row}" in err), err


def test_a_nan_reward_per_response_is_refused_naming_the_row(tmp_path) -> None:
    path = tmp_path / "bad.csv"
    pl.DataFrame({"step": [0, 0, 0], "prompt_id": [0, 0, 0], "reward": [0.5, 0.25, float("nan")]}).write_csv(path)
    with pytest.raises(LogError, match="row 2: is null or NaN"):
        load_log(path)


def graded_world(path: Path, rewards: str = "graded"):
    return LogWorldConfig(str(path), rewards=rewards).build()  # type: ignore[arg-type]


def test_dynamic_sampling_by_spread_keeps_no_group_whose_rewards_are_all_equal(tmp_path) -> None:
    world = graded_world(graded_responses(tmp_path / "graded.parquet"))
    policy = DynamicSampling(num_prompts=world.num_prompts, seed=0, max_rounds=4)
    rejected_equal_not_0_1 = 0
    for step in range(world.steps):
        result = run_step(policy, 6, lambda ids, step=step: world.rollout_groups(step, ids, 0))
        groups = result.groups
        assert groups.graded and (groups.reward_std[result.trained] > 0).all()
        rejected = np.setdiff1d(np.arange(len(groups)), result.trained)
        equal = groups.reward_std[rejected] == 0
        rejected_equal_not_0_1 += int((equal & (groups.reward_mean[rejected] == EQUAL)).sum())
    assert rejected_equal_not_0_1 > 0  # the gate saw groups all at 0.75 (solved by a threshold) and kept none


def test_every_builtin_replays_a_graded_log(tmp_path, capsys) -> None:
    log = graded_responses(tmp_path / "graded.parquet")
    policies = "".join(
        f'[[policies]]\nname = "{t}"\ntype = "{t}"\n'
        for t in ("uniform", "hr", "ds", "greso", "mopps", "bots", "dps", "oracle")
    )
    scenario = tmp_path / "sc.toml"
    scenario.write_text(
        f'name = "graded"\n[world]\nlog = "{log.name}"\nrewards = "graded"\n'
        f"[run]\nbatch_size = 6\nseeds = 1\n{policies}"
    )
    for lag in (0, 2):
        out = tmp_path / f"out-{lag}"
        args = ["replay", str(scenario), "--set", f"run.lag={lag}", "--out", str(out), "--workers", "1"]
        assert main([*args, "--quiet", "--no-plots"]) == 0, capsys.readouterr().err
        summary = pl.read_csv(out / "summary.csv")
        assert summary.height == 8 and summary["effective_ratio"].is_between(0, 1).all()
        assert summary.filter(pl.col("type") == "ds")["effective_ratio"].item() == 1.0


def test_binary_rewards_replay_graded_as_their_counts(tmp_path) -> None:
    rng = np.random.default_rng(1)
    rows = [(s, p, float(rng.random() < p / 30)) for s in range(20) for p in range(30) for _ in range(4)]
    path = tmp_path / "binary.parquet"
    pl.DataFrame(rows, schema=["step", "prompt_id", "reward"], orient="row").write_parquet(path)
    counts, graded = graded_world(path, "counts"), graded_world(path)
    ids = np.arange(30)
    for step in range(20):
        a, b = counts.rollout_groups(step, ids, 3), graded.rollout_groups(step, ids, 3)
        assert not a.graded and b.graded
        assert np.array_equal(a.states, b.states)


def test_graded_needs_reward_columns_and_an_open_loop(tmp_path, capsys) -> None:
    path = tmp_path / "counts.csv"
    pl.DataFrame({"step": [0, 1], "prompt_id": [0, 1], "n_rollouts": [4, 4], "n_correct": [1, 2]}).write_csv(path)
    with pytest.raises(ValueError, match='world.rewards: "graded" needs graded rewards'):
        graded_world(path)
    scenario = tmp_path / "sc.toml"
    scenario.write_text(
        f'name = "x"\n[world]\nlog = "{path.name}"\nclosed_loop = "fit"\nrewards = "graded"\n[run]\nbatch_size = 1\n'
        '[[policies]]\ntype = "uniform"\n'
    )
    assert main(["replay", str(scenario), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a closed loop replays counts" in err, err
