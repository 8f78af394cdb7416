"""Replay with selections in flight (`[run] lag`, `dps leaderboard --lag`, issue 23): lag 0 is the
lockstep replay bit for bit, every built-in runs at a lag on the shared real logs, each step is
selected having observed exactly the steps up to t - 1 - lag, and the outputs carry the lag."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from dps import GroupOutcomes, Policy
from dps.cli import main
from dps.replay.runner import replay
from dps.replay.worlds import SyntheticWorld, preset_params
from paths import ROOT, shared_data

#: `dps replay replay/math.toml --set run.steps=60` as written by commit e9ac023, before
#: selections in flight existed (the timing columns dropped).
LOCKSTEP = Path(__file__).parent / "lockstep" / "math-60-steps-summary.csv"
SHARED_LOGS = [
    ("smollm2-arith-lr1e6", "log.parquet"),
    ("smollm2-arith-lr3e6-pair", "log_uniform.parquet"),
    ("smollm2-arith-lr3e6-pair", "log_dps.parquet"),
]


def test_lag_0_reproduces_the_lockstep_summary_of_every_policy_on_math(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    args = ["replay", str(ROOT / "replay" / "math.toml"), "--set", "run.steps=60", "--out", str(out)]
    assert main([*args, "--set", "run.lag=0", "--workers", "1", "--quiet", "--no-plots"]) == 0
    before = pl.read_csv(LOCKSTEP)
    now = pl.read_csv(out / "summary.csv")
    assert now["lag"].to_list() == [0] * now.height
    assert before["policy"].unique().len() == 7
    assert now.select(before.columns).equals(before), "lag 0 changed the lockstep replay"


class Recorder(Policy):
    """Takes prompts in order and records, at each select, how many steps' groups it had observed."""

    def __init__(self, num_prompts: int, seed: int = 0) -> None:
        self.num_prompts, self.next = num_prompts, 0
        self.flying: list[int] = []
        self.observed_steps = 0
        self.seen_at_select: list[int] = []

    def select(self, batch_size: int) -> np.ndarray:
        self.seen_at_select.append(self.observed_steps)
        ids = np.array([i for i in range(self.num_prompts) if i not in self.flying][:batch_size], np.int64)
        self.flying += ids.tolist()
        return ids

    def observe(self, prompt_ids, n_correct, n_rollouts) -> None:
        raise AssertionError("replay observes through observe_groups")

    def observe_groups(self, groups: GroupOutcomes, *, in_flight: bool = False) -> None:
        self.flying = [i for i in self.flying if i not in set(groups.prompt_ids.tolist())]
        self.observed_steps += 1

    def in_flight(self) -> np.ndarray:
        return np.array(self.flying, np.int64)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


@pytest.mark.parametrize("lag", [0, 1, 2, 4])
def test_each_step_is_selected_having_observed_the_steps_up_to_t_minus_1_minus_lag(lag: int) -> None:
    world = SyntheticWorld(preset_params("math", num_prompts=200, steps=12), seed=0)
    policy = Recorder(200)
    result = replay(policy, world, 12, 8, seed=0, lag=lag)
    assert policy.seen_at_select == [max(0, t - lag) for t in range(12)]
    assert result.summary["lag"] == lag


class CountsOnly(Policy):
    """A policy of counts in lockstep (it does not override observe_groups)."""

    def __init__(self, num_prompts: int, seed: int = 0) -> None:
        self.num_prompts, self.rng = num_prompts, np.random.default_rng(seed)

    def select(self, batch_size: int) -> np.ndarray:
        return self.rng.choice(self.num_prompts, batch_size, replace=False)

    def observe(self, prompt_ids, n_correct, n_rollouts) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def test_a_lag_below_0_or_a_policy_without_selections_in_flight_is_refused() -> None:
    world = SyntheticWorld(preset_params("math", num_prompts=200, steps=4), seed=0)
    with pytest.raises(ValueError, match="lag must be >= 0"):
        replay(Recorder(200), world, 4, 8, lag=-1)
    with pytest.raises(ValueError, match="CountsOnly does not"):
        replay(CountsOnly(200), world, 4, 8, lag=1)
    replay(CountsOnly(200), world, 4, 8, lag=0)  # lockstep needs nothing new


@pytest.mark.parametrize("log", SHARED_LOGS, ids=[f"{d}/{f}" for d, f in SHARED_LOGS])
@pytest.mark.parametrize("lag", [1, 8])
def test_every_builtin_runs_at_a_lag_on_each_shared_real_log(tmp_path, capsys, log, lag) -> None:
    path = shared_data(*log)
    out = tmp_path / "board"
    args = ["leaderboard", str(path), "--out", str(out), "--steps", "24", "--seeds", "1", "--workers", "1"]
    assert main([*args, "--lag", str(lag), "--quiet", "--no-plots"]) == 0, capsys.readouterr().err
    table = pl.read_csv(out / "leaderboard.csv")
    assert set(table["type"]) >= {"uniform", "hr", "ds", "greso", "mopps", "bots", "dps", "oracle"}
    assert table["lag"].to_list() == [lag] * table.height
    assert table["effective_ratio"].is_between(0, 1).all() and table["rollouts"].min() > 0
    assert (
        f"lag {lag} (each step t selected having observed the groups of steps up to t - {1 + lag})"
        in (out / "leaderboard.md").read_text()
    )


def test_the_report_carries_the_lag_and_a_lag_changes_what_dps_selects(tmp_path, capsys) -> None:
    scenario = ROOT / "replay" / "math.toml"
    results = {}
    for lag in (0, 2):
        out = tmp_path / f"lag-{lag}"
        args = ["replay", str(scenario), "--set", "run.steps=30", "--set", f"run.lag={lag}", "--seeds", "1"]
        assert main([*args, "--out", str(out), "--workers", "1", "--quiet", "--no-plots"]) == 0
        assert json.loads((out / "meta.json").read_text())["lag"] == lag
        header = "lag 2 (each step t selected" if lag else "lockstep (lag 0"
        assert header in (out / "report.md").read_text()
        results[lag] = pl.read_csv(out / "summary.csv").filter(pl.col("policy") == "DPS")
    assert results[0]["effective_ratio"].item() != results[2]["effective_ratio"].item()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "run.lag=-1"], "run.lag: expected an integer >= 0"),
        (["--set", "run.lag=1.5"], "run.lag"),
    ],
)
def test_a_bad_lag_in_a_scenario_is_one_line(tmp_path, capsys, args, message) -> None:
    code = main(["replay", str(ROOT / "replay" / "math.toml"), *args, "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_a_bad_lag_in_the_leaderboard_is_one_line(tmp_path, capsys) -> None:
    log = tmp_path / "l.csv"
    pl.DataFrame({"step": [0, 1], "prompt_id": [0, 1], "n_rollouts": [4, 4], "n_correct": [1, 2]}).write_csv(log)
    for bad in ("-1", "two"):
        assert main(["leaderboard", str(log), "--out", str(tmp_path / "o"), "--lag", bad]) == 2
        err = capsys.readouterr().err
        assert "--lag" in err and err.count("\n") == 1, err
