"""Scenario files are read by the trainer's strict typed loader (dps.config): an unknown key or a
wrong-typed value in any table exits 2 with one line naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from dps.cli import main
from dps.replay.scenario import RunConfig, parse_scenario
from dps.replay.worldconfig import ClosedLoopWorldConfig, LogWorldConfig, SyntheticWorldConfig, world_kind

SCENARIO = """name = "tiny"
[world]
preset = "countdown"
num_prompts = 120
steps = 6
[run]
batch_size = 8
seeds = 1
workers = 1
[[policies]]
name = "US"
type = "uniform"
"""

LOG_SCENARIO = SCENARIO.replace('preset = "countdown"\nnum_prompts = 120\nsteps = 6', 'log = "l.csv"')


def replay(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, *args: str) -> tuple[int, str]:
    pl.DataFrame(
        {"step": [0] * 20 + [1] * 20, "prompt_id": list(range(20)) * 2, "n_rollouts": [4] * 40, "n_correct": [2] * 40}
    ).write_csv(tmp_path / "l.csv")
    sc = tmp_path / "sc.toml"
    sc.write_text(text)
    code = main(["replay", str(sc), "--out", str(tmp_path / "out"), "--quiet", "--no-plots", *args])
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize(
    "text, key",
    [
        (SCENARIO.replace('name = "tiny"', 'name = "tiny"\nseed = 3'), "seed"),
        (SCENARIO.replace("workers = 1", "workers = 1\nstpes = 4"), "run.stpes"),
        (SCENARIO.replace("steps = 6", "steps = 6\ndifficulty = 2"), "world.difficulty"),
        (LOG_SCENARIO.replace('log = "l.csv"', 'log = "l.csv"\nhalf_lfe = 3'), "world.half_lfe"),
        (LOG_SCENARIO.replace('log = "l.csv"', 'log = "l.csv"\n[world.columns]\nstpe = "x"'), "world.columns"),
    ],
)
def test_an_unknown_key_exits_2_naming_the_key_and_the_file(tmp_path, capsys, text, key) -> None:
    code, err = replay(tmp_path, capsys, text)
    assert code == 2, err
    assert err.startswith("dps replay: error: ") and err.count("\n") == 1, err  # one line, no traceback
    assert f"sc.toml: {key}: unknown" in err, err


@pytest.mark.parametrize(
    "text, words",
    [
        (SCENARIO.replace('name = "tiny"', "name = 3"), "name: expected a string, got 3"),
        (SCENARIO.replace("batch_size = 8", "batch_size = [8]"), "run.batch_size: expected an integer >= 1, got [8]"),
        (
            SCENARIO.replace("num_prompts = 120", "num_prompts = 0"),
            "world.num_prompts: expected an integer >= 1, got 0",
        ),
        (SCENARIO.replace('type = "uniform"', "type = 1"), "policies[0].type: expected a string, got 1"),
        (SCENARIO.replace('type = "uniform"', 'type = "uniform"\nsweep = { seed = [] }'), "policies[0].sweep"),
        (LOG_SCENARIO.replace('log = "l.csv"', 'log = "l.csv"\ndraw = "median"'), "world.draw: expected one of"),
        (LOG_SCENARIO.replace('log = "l.csv"', 'log = "l.csv"\nkinds = 3'), "world.kinds: expected a string"),
        (
            LOG_SCENARIO.replace('log = "l.csv"', 'log = "l.csv"\nextrapolate = "yes"'),
            "world.extrapolate: expected true",
        ),
        (
            LOG_SCENARIO.replace('log = "l.csv"', 'log = "l.csv"\nclosed_loop = "fit"\neffect_cap = -1'),
            'world.effect_cap: expected "none", "log" or a positive number of trainings, got -1',
        ),
    ],
)
def test_a_wrongly_typed_value_exits_2_naming_the_key_and_the_file(tmp_path, capsys, text, words) -> None:
    code, err = replay(tmp_path, capsys, text)
    assert code == 2 and err.count("\n") == 1, err
    assert f"sc.toml: {words}" in err, err


def test_a_bad_set_names_the_setting(tmp_path, capsys) -> None:
    code, err = replay(tmp_path, capsys, SCENARIO, "--set", "run.workers=many")
    assert (
        code == 2 and "sc.toml: run.workers: expected an integer >= 1, got 'many' (from --set run.workers=many)" in err
    )
    code, err = replay(tmp_path, capsys, SCENARIO, "--set", "policies.decay=1")
    assert code == 2 and "--set 'policies.decay=1': only name, description, world, run can be set" in err


def test_the_world_table_is_a_tagged_union() -> None:
    assert world_kind({"preset": "math"}) is SyntheticWorldConfig
    assert world_kind({"log": "x.parquet"}) is LogWorldConfig
    assert world_kind({"log": "x.parquet", "closed_loop": "off"}) is LogWorldConfig
    assert world_kind({"log": "x.parquet", "closed_loop": False}) is LogWorldConfig
    assert world_kind({"log": "x.parquet", "closed_loop": "fit"}) is ClosedLoopWorldConfig
    assert world_kind({"log": "x.parquet", "closed_loop": 0.0}) is ClosedLoopWorldConfig  # a gain of 0, not "off"

    def world(table: dict) -> object:
        return parse_scenario({"world": table, "run": {"batch_size": 4}, "policies": [{"type": "uniform"}]}).world

    synthetic = world({"preset": "Countdown", "k": 4})
    assert isinstance(synthetic, SyntheticWorldConfig)
    assert synthetic.params.k == 4 and synthetic.params.num_prompts == 2000  # the preset under the table's own
    closed = world({"log": "x.parquet", "closed_loop": 0.1, "effect_half_life": 8})
    assert isinstance(closed, ClosedLoopWorldConfig) and closed.loop.effect_half_life == 8.0
    assert closed.open_loop() == LogWorldConfig("x.parquet")
    with pytest.raises(ValueError, match="scenario: world.preset: unknown preset 'gsm9k'"):
        world({"preset": "gsm9k"})
    with pytest.raises(ValueError, match="world.closed_loop: the closed loop is fitted from a log"):
        world({"preset": "math", "closed_loop": "fit"})
    with pytest.raises(ValueError, match=r'world.effect_half_life: needs closed_loop = "fit" \(or a gain\)'):
        world({"log": "x.parquet", "effect_half_life": 8})
    with pytest.raises(ValueError, match=r'world.effect_half_life: "auto" needs closed_loop = "fit"'):
        world({"log": "x.parquet", "closed_loop": 0.1, "effect_half_life": "auto"})
    with pytest.raises(ValueError, match=r"scenario: world: missing \[world\]"):
        world({})


def test_run_defaults_and_seeds() -> None:
    assert RunConfig().seed_list() == [0]
    assert RunConfig(seeds=3).seed_list() == [0, 1, 2] and RunConfig(seeds=[4, 1]).seed_list() == [4, 1]
    data = {
        "world": {"log": "x.parquet", "closed_loop": "fit"},
        "run": {"batch_size": 4},
        "policies": [{"type": "dps"}],
    }
    assert parse_scenario(data).interval_draws == 40  # the closed loop's default
    data["run"]["interval_draws"] = 0
    assert parse_scenario(data).interval_draws == 0
    with pytest.raises(ValueError, match="scenario: run.batch_size: required for this world"):
        parse_scenario({"world": {"log": "x.parquet"}, "policies": [{"type": "dps"}]})


def test_paths_are_relative_to_the_scenario_file() -> None:
    world = {"log": "l.parquet", "closed_loop": "fit", "train_log": "t.parquet", "prompt_table": "/abs/p.parquet"}
    data = {"world": {**world, "similar_by": "question"}, "run": {"batch_size": 4}, "policies": [{"type": "dps"}]}
    parsed = parse_scenario(data, Path("some/folder/sc.toml")).world
    assert isinstance(parsed, ClosedLoopWorldConfig)
    assert parsed.log == "some/folder/l.parquet" and parsed.loop.train_log == "some/folder/t.parquet"
    assert parsed.loop.prompt_table == "/abs/p.parquet"


def test_policy_tables() -> None:
    def policies(*tables: dict) -> list:
        return parse_scenario({"world": {"preset": "math"}, "policies": list(tables)}).policies

    (gate,) = policies({"type": "DS", "max_rounds": 3, "selector": {"type": "dps", "decay": 0.5}})
    assert (gate.name, gate.type, gate.params) == (
        "DS",
        "ds",
        {"max_rounds": 3, "selector": {"type": "dps", "decay": 0.5}},
    )
    grid = policies({"name": "D", "type": "dps", "decay": 0.7, "sweep": {"prior_alpha": [1.0, "local"]}})
    assert [p.name for p in grid] == ["D prior_alpha=1", "D prior_alpha=local"]
    assert grid[1].params == {"decay": 0.7, "prior_alpha": "local"}
    with pytest.raises(ValueError, match=r"policies\[0\].type: unknown policy type 'thompson'; known: "):
        policies({"type": "thompson"})
    with pytest.raises(ValueError, match=r"policies\[0\].type: missing \(one of "):
        policies({"name": "x"})
    with pytest.raises(ValueError, match=r'policies\[0\].class: type "python" needs class'):
        policies({"type": "python"})
    with pytest.raises(ValueError, match=r"policies\[0\].sweep.decay\[1\]: expected a number, got 'x'"):
        policies({"type": "dps", "sweep": {"decay": [0.5, "x"]}})
    with pytest.raises(ValueError, match="policy names must be unique; repeated: dps"):
        policies({"type": "dps"}, {"type": "dps"})
    with pytest.raises(ValueError, match=r"the scenario lists no \[\[policies\]\]"):
        policies()


def test_a_world_table_alone() -> None:
    from dps.replay.worldconfig import load_world

    assert load_world({"preset": "countdown", "train_gain": 0.05}).params.train_gain == 0.05
    assert isinstance(load_world({"log": "x.parquet", "closed_loop": "fit"}), ClosedLoopWorldConfig)
    with pytest.raises(ValueError, match="scenario: world.x: unknown key"):
        load_world({"preset": "math", "x": 1})
