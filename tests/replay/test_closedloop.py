"""The closed loop fitted from a log: the fitter, the closed-loop world, scenarios."""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from dps import DPS, DynamicSampling, Uniform
from dps.replay.closedloop import (
    EFFECT_SATURATIONS,
    ClosedLoopWorld,
    TrainingEffect,
    count_label,
    fit_training_effect,
    trained_level,
    training_log,
)
from dps.replay.logworld import LogWorld
from dps.replay.runner import replay
from dps.replay.scenario import load_scenario, parse_scenario
from dps.replay.sweep import run_sweep
from dps.replay.worlds import SyntheticWorld, preset_params
from paths import ROOT, shared_data

N, T, B = 2000, 200, 128


@functools.lru_cache(maxsize=4)
def synthetic_log(
    gain: float, seed: int = 1, sweep_every: int = 10, saturation: float = math.inf
) -> tuple[SyntheticWorld, pl.DataFrame]:
    world = SyntheticWorld(
        preset_params("math", num_prompts=N, steps=T, train_gain=gain, train_saturation=saturation), seed=0
    )
    log = training_log(world, Uniform(num_prompts=N, seed=seed), T, B, seed, sweep_every)
    return world, log


def trained(log: pl.DataFrame) -> pl.DataFrame:
    return log.filter(pl.col("kind") == "train")


def test_trained_level_counts_earlier_trainings_with_decay() -> None:
    # prompt 0 trained at steps 2 and 5; observed at 2 (sees nothing), 3, 6 and 10
    obs_step, obs_pid = np.array([2, 3, 6, 10, 6]), np.array([0, 0, 0, 0, 1])
    tr_step, tr_pid = np.array([5, 2]), np.array([0, 0])
    assert trained_level(obs_step, obs_pid, tr_step, tr_pid, math.inf, 2).tolist() == [0, 1, 2, 2, 0]
    rho = 0.5 ** (1 / 4)
    got = trained_level(obs_step, obs_pid, tr_step, tr_pid, 4.0, 2)
    want = [0, 1, rho**3 + 1, rho**7 + rho**4, 0]
    np.testing.assert_allclose(got, want)


@pytest.mark.parametrize("gain", [0.2, 0.0])
def test_fit_recovers_a_known_training_effect(gain: float) -> None:
    _, log = synthetic_log(gain)
    eff = fit_training_effect(log, trained(log), half_life="inf", saturation="linear")
    assert 0 < eff.gain_se < 0.03
    assert abs(eff.gain - gain) < 3 * eff.gain_se, (eff.gain, eff.gain_se)
    if gain:
        assert eff.gain > 3 * eff.gain_se  # the effect is detected, not just tolerated
    assert eff.drift_steps[0] == 0 and eff.drift[0] == 0 and len(eff.drift) == T
    assert eff.drift[-1] > 0.3  # the open-loop curves rise: the whole model moves up


def test_fit_auto_half_life_keeps_a_permanent_effect() -> None:
    _, log = synthetic_log(0.2)
    eff = fit_training_effect(log, trained(log), saturation="linear")
    assert set(eff.scores) == {math.inf, 64.0, 16.0, 4.0}
    assert eff.half_life >= 64  # the synthetic effect never fades; a short half-life fits worse
    assert abs(eff.gain - 0.2) < 0.06


@pytest.mark.parametrize("saturation, lo, hi", [(math.inf, 16.0, math.inf), (2.0, 1.0, 4.0)])
def test_the_shape_is_chosen_from_the_log(saturation: float, lo: float, hi: float) -> None:
    # a log with a sweep every 4 steps tells a linear effect from one that saturates after 2 trainings
    _, log = synthetic_log(0.2 if math.isinf(saturation) else 0.4, sweep_every=4, saturation=saturation)
    eff = fit_training_effect(log, trained(log), half_life="inf")
    assert eff.shape_reason == "fitted" and lo <= eff.saturation <= hi, eff.describe()
    assert set(eff.shape_scores) == {*EFFECT_SATURATIONS, eff.shape_default}
    assert 4 < eff.shape_default < 8  # the log's own partial trainings per prompt
    true_gain = 0.2 if math.isinf(saturation) else 0.4
    assert abs(eff.gain - true_gain) < 3 * eff.gain_se, eff.describe()


def test_a_log_that_cannot_tell_the_shape_gets_the_default_saturation() -> None:
    # a weak effect seen through sparse sweeps: every shape fits about as well
    _, log = synthetic_log(0.1)
    eff = fit_training_effect(log, trained(log), half_life="inf")
    assert eff.shape_reason == "default" and eff.saturation == eff.shape_default
    assert max(eff.shape_scores.values()) - eff.shape_scores[eff.shape_default] < 0.5 * math.log(eff.observations)
    M = np.array([0.0, 1.0, 100.0])
    level = eff.level(M)
    assert level[0] == 0 and level[1] == pytest.approx(eff.gain * eff.saturation * (1 - math.exp(-1 / eff.saturation)))
    assert (
        level[2] < eff.gain * eff.shape_default
    )  # never more than the log's own trainings per prompt at the first one's rate


def test_a_log_that_cannot_identify_the_effect_is_refused() -> None:
    # one training row per prompt and no untrained measurement: M is a function of the step
    log = pl.DataFrame(
        {
            "step": np.arange(40) // 4,
            "prompt_id": np.arange(40) % 4,
            "n_rollouts": np.full(40, 8),
            "n_correct": np.full(40, 4),
        }
    )
    with pytest.raises(ValueError, match="does not identify the training effect"):
        fit_training_effect(log, log, half_life="inf")


@pytest.mark.parametrize("saturation", [math.inf, 3.0])
def test_closed_loop_over_an_open_truth_is_the_closed_truth(saturation: float) -> None:
    open_world = SyntheticWorld(preset_params("math", num_prompts=N, steps=T), seed=0)
    closed_truth = SyntheticWorld(
        preset_params("math", num_prompts=N, steps=T, train_gain=0.1, train_saturation=saturation), seed=0
    )
    wrapped = ClosedLoopWorld(open_world, TrainingEffect(gain=0.1, saturation=saturation))
    for make in (lambda: DPS(num_prompts=N, seed=3), lambda: DynamicSampling(num_prompts=N, seed=3)):
        a = replay(make(), wrapped, 60, B, seed=3, record=True)
        b = replay(make(), closed_truth, 60, B, seed=3, record=True)
        assert a.groups is not None and b.groups is not None
        for col in ("step", "prompt_id", "n_correct"):
            np.testing.assert_array_equal(a.groups[col], b.groups[col])
        np.testing.assert_allclose(wrapped.p(60), closed_truth.p(60), rtol=1e-9)  # both after step 59's training


def test_effect_cap_stops_the_shift_at_the_log_s_most_trained_prompt() -> None:
    open_world = SyntheticWorld(preset_params("math", num_prompts=10, steps=20), seed=0)
    log = pl.DataFrame({"step": [0, 1, 2], "prompt_id": [3, 3, 4], "n_rollouts": [8, 8, 8], "n_correct": [4, 8, 4]})
    world = ClosedLoopWorld(open_world, TrainingEffect(gain=0.5), log, cap="log")
    assert world.cap == 1.0  # prompt 3's second group was all correct: no gradient, no training
    for t in range(5):
        world.learn(t, np.array([0, 3]), np.array([4, 4]), np.array([8, 8]))
    np.testing.assert_allclose(world.shift(5, np.array([0, 3, 4, 5])), [0.5, 0.0, -0.5, 0.0])


def test_replaying_the_logging_policy_gives_back_the_log() -> None:
    _, log = synthetic_log(0.1, seed=7)
    train = trained(log)
    base = LogWorld(train.drop("kind"))  # the sparse log; its sweeps only inform the fit
    world = ClosedLoopWorld(base, fit_training_effect(log, train, half_life="inf"), train)
    assert world.effect.gain > 0
    res = replay(Uniform(num_prompts=N, seed=7), world, T, B, seed=7, record=True)
    assert res.groups is not None
    got = pl.DataFrame(res.groups).sort("step", "prompt_id")
    want = train.select("step", "prompt_id", "n_rollouts", "n_correct").sort("step", "prompt_id")
    assert got.select(want.columns).equals(want)
    # other uniform seeds train like the log on average: the closed loop barely moves them
    opened = replay(Uniform(num_prompts=N, seed=8), base, T, B, seed=8).summary["effective_ratio"]
    closed = replay(Uniform(num_prompts=N, seed=8), world, T, B, seed=8).summary["effective_ratio"]
    assert abs(closed - opened) < 0.02


def test_closed_loop_moves_a_repeating_policy_towards_the_truth() -> None:
    truth, log = synthetic_log(0.2, sweep_every=4)
    train = trained(log)
    sweep = log.filter(pl.col("kind") == "sweep").join(
        train.select("step", "prompt_id"), on=["step", "prompt_id"], how="anti"
    )
    base = LogWorld(pl.concat([train, sweep]).drop("kind"))
    closed = ClosedLoopWorld(base, fit_training_effect(log, train), train)
    ratio = {
        name: replay(DPS(num_prompts=N, seed=0), w, T, B, seed=0).summary["effective_ratio"]
        for name, w in (("open", base), ("closed", closed), ("truth", truth))
    }
    assert abs(ratio["closed"] - ratio["truth"]) < abs(ratio["open"] - ratio["truth"]) / 2, ratio


# ---------------------------------------------------------------------------------------------
# Scenarios


def write_logs(tmp_path: Path) -> None:
    _, log = synthetic_log(0.2, sweep_every=10)
    train = trained(log)
    train.drop("kind").write_parquet(tmp_path / "rollouts.parquet")
    log.filter(pl.col("kind") == "sweep").drop("kind").write_parquet(tmp_path / "dense.parquet")


def test_scenario_reports_open_and_closed_loop_side_by_side(tmp_path: Path) -> None:
    write_logs(tmp_path)
    (tmp_path / "s.toml").write_text(
        '[world]\nlog = "dense.parquet"\nclosed_loop = "fit"\ntrain_log = "rollouts.parquet"\n'
        '[run]\nbatch_size = 128\nsteps = 100\nseeds = [0]\n[[policies]]\nname = "DPS"\ntype = "dps"\n'
    )
    sc = load_scenario(tmp_path / "s.toml")
    res = run_sweep(sc, workers=1, progress=False)
    rows = dict(zip(res.summary["policy"], res.summary["effective_ratio"], strict=False))
    assert set(rows) == {"DPS", "DPS (open loop)"}
    assert rows["DPS"] < rows["DPS (open loop)"] - 0.02
    effect = res.world.effect
    assert res.world.kind == "ClosedLoop(LogWorld)" and effect is not None and effect.gain > 0.05
    assert res.world.description["closed_loop_gain"] == round(effect.gain, 5)  # meta.json's record of it
    from dps.replay.report import write_report

    write_report(res, tmp_path / "out", plots=False)
    report = (tmp_path / "out" / "report.md").read_text()
    assert "Closed loop fitted from the log" in report
    assert f"saturation at the log's own {count_label(effect.shape_default)} trainings per prompt" in report
    assert "log-likelihood by saturation count, relative to the default: inf: " in report
    # a fixed gain instead of a fit
    fixed = load_scenario(tmp_path / "s.toml", ["world.closed_loop=0.0"])
    res0 = run_sweep(fixed, workers=1, progress=False)
    rows0 = dict(zip(res0.summary["policy"], res0.summary["effective_ratio"], strict=False))
    assert rows0["DPS"] == rows0["DPS (open loop)"]


@pytest.mark.parametrize(
    "world, key",
    [
        ({"log": "x.parquet", "closed_loop": "fitt"}, "closed_loop"),
        ({"log": "x.parquet", "closed_loop": True}, "closed_loop"),
        ({"log": "x.parquet", "closed_loop": "fit", "effect_half_life": -2}, "effect_half_life"),
        ({"log": "x.parquet", "closed_loop": "fit", "effect_half_life": "long"}, "effect_half_life"),
        ({"log": "x.parquet", "closed_loop": "fit", "train_log": 3}, "train_log"),
        ({"log": "x.parquet", "train_log": "y.parquet"}, "train_log"),
        ({"preset": "math", "closed_loop": "fit"}, "closed_loop"),
        ({"log": "x.parquet", "closed_loop": "fit", "effect_cap": "big"}, "effect_cap"),
        ({"log": "x.parquet", "closed_loop": "fit", "effect_cap": 0}, "effect_cap"),
        ({"log": "x.parquet", "effect_cap": "log"}, "effect_cap"),
        ({"log": "x.parquet", "closed_loop": "fit", "effect_saturation": "flat"}, "effect_saturation"),
        ({"log": "x.parquet", "closed_loop": "fit", "effect_saturation": -1}, "effect_saturation"),
        ({"log": "x.parquet", "closed_loop": "fit", "effect_saturation": True}, "effect_saturation"),
        ({"log": "x.parquet", "closed_loop": 0.1, "effect_saturation": "auto"}, "effect_saturation"),
        ({"log": "x.parquet", "effect_saturation": 4}, "effect_saturation"),
    ],
)
def test_bad_closed_loop_config_names_the_key(world: dict, key: str) -> None:
    data = {"world": world, "run": {"batch_size": 8}, "policies": [{"type": "uniform"}]}
    with pytest.raises(ValueError, match=rf"sc\.toml: world\.{key}: "):
        parse_scenario(data, Path("sc.toml"))


SHARED_LOG = ROOT / "replay" / "smollm2-closed-loop.toml"


def test_the_shared_real_log_fits_a_positive_effect_and_slows_dps() -> None:
    shared_data("smollm2-arith-lr1e6", "log.parquet")
    sc = load_scenario(SHARED_LOG, ["run.seeds=[0]", "run.steps=60"])
    sc.policies = [p for p in sc.policies if p.name == "DPS"]
    res = run_sweep(sc, workers=1, progress=False)
    assert res.world.effect is not None
    gain, se = res.world.effect.gain, res.world.effect.gain_se
    assert 0 < se < 0.05 and gain > 2 * se  # trained prompts rise more than untrained ones
    rows = dict(zip(res.summary["policy"], res.summary["effective_ratio"], strict=False))
    assert rows["DPS"] < rows["DPS (open loop)"]


def test_the_report_says_which_shape_and_why() -> None:
    from dps.replay.report.markdown import shape_sentence

    effect = TrainingEffect(
        gain=0.1,
        shape_reason="fitted",
        shape_default=5.6,
        shape_scores={math.inf: -100.0, 2.0: -130.0, 5.6: -120.0},
        observations=59874,  # BIC's margin 5.5
    )
    line = shape_sentence(effect)
    assert line.startswith("shape linear") and "the log prefers it over the default" in line
    assert "inf: +20.0, 2: -10.0, 5.6: +0.0" in line
    assert "BIC's margin of 5.5" in line
    effect = dataclasses.replace(
        effect, saturation=5.6, shape_reason="default", shape_scores={math.inf: -118.0, 5.6: -120.0}
    )
    line = shape_sentence(effect)
    assert (
        "saturating after about 5.6 trainings" in line
        and "cannot tell" in line
        and 'effect_saturation = "linear"' in line
    )


# ---------------------------------------------------------------------------------------------
# Similar prompts, strata, and the interval


def grouped_truth(
    n: int = 600, steps: int = 80, gain: float = 0.3, saturation: float = 6.0
) -> tuple[ClosedLoopWorld, np.ndarray]:
    """A synthetic closed loop whose prompts come in groups of 6 ids of one question (a third alone)."""
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(n // 6), 6)[rng.permutation(n)]
    groups[: n // 3] = np.arange(n // 6, n // 6 + n // 3)
    open_world = SyntheticWorld(preset_params("math", num_prompts=n, steps=steps), seed=0)
    return ClosedLoopWorld(open_world, TrainingEffect(gain=gain, saturation=saturation, groups=groups)), groups


def test_a_training_counts_for_every_prompt_of_its_group() -> None:
    groups = np.array([0, 0, 1, 2])
    world = ClosedLoopWorld(
        SyntheticWorld(preset_params("math", num_prompts=4, steps=10), seed=0), TrainingEffect(gain=0.5, groups=groups)
    )
    world.learn(
        0, np.array([0, 2]), np.array([4, 8]), np.array([8, 8])
    )  # prompt 2's group was all correct: no gradient
    np.testing.assert_allclose(world.shift(1), [0.5, 0.5, 0.0, 0.0])
    drawn = world.with_effect(TrainingEffect(gain=1.0, groups=groups))
    drawn.learn(0, np.array([1]), np.array([4]), np.array([8]))
    np.testing.assert_allclose(drawn.shift(1), [1.0, 1.0, 0.0, 0.0])


def test_groups_of_one_question_show_how_the_effect_levels_off() -> None:
    truth, groups = grouped_truth()
    log = training_log(truth, Uniform(num_prompts=len(groups), seed=1), 80, 64, 1, sweep_every=4)
    with_groups = fit_training_effect(log, trained(log), groups=groups)
    alone = fit_training_effect(log, trained(log))
    # many trainings of one question (summed over its ids) pin the shape down; each prompt alone does not
    assert with_groups.shape_weights()[max(with_groups.shape_weights(), key=with_groups.shape_weights().get)] > 0.5
    assert max(alone.shape_weights().values()) < max(with_groups.shape_weights().values())
    sats = {float(k): v for k, v in with_groups.shape_weights().items()}
    assert sum(v for c, v in sats.items() if 2 <= c <= 12) > 0.9, sats  # the truth saturates at 6
    assert abs(with_groups.gain - 0.3) < 0.1 and with_groups.groups is not None
    draws = [with_groups.draw(np.random.default_rng(r)) for r in range(50)]
    assert len({(d.saturation, d.gain) for d in draws}) > 10 and all(d.gain >= 0 for d in draws)


def test_strata_give_each_stratum_its_own_drift() -> None:
    _, log = synthetic_log(0.2, sweep_every=10)
    strata = np.arange(N) % 4
    eff = fit_training_effect(log, trained(log), strata=strata, drift_by="parity", saturation="linear", half_life="inf")
    plain = fit_training_effect(log, trained(log), saturation="linear", half_life="inf")
    assert eff.drift_by == "parity" and len(eff.drift) == len(plain.drift)
    assert abs(eff.gain - plain.gain) < 3 * plain.gain_se  # strata unrelated to the effect leave it as it was


def test_prediction_and_seed_intervals() -> None:
    from dps.replay.intervals import prediction_interval, seed_interval

    x = np.arange(20.0)
    assert prediction_interval(x) == (0.0, 19.0)  # 19/21 of new draws fall in the range of 20
    assert prediction_interval(np.arange(40.0)) == (1.0, 38.0)
    lo, hi = seed_interval(np.array([0.60, 0.62, 0.64]))
    assert lo < 0.56 and hi > 0.68  # t(2) = 2.92: three seeds say little
    assert np.isnan(seed_interval(np.array([0.6]))[0])


def test_closed_loop_rows_get_an_interval_from_drawn_effects(tmp_path: Path) -> None:
    write_logs(tmp_path)
    (tmp_path / "s.toml").write_text(
        '[world]\nlog = "dense.parquet"\nclosed_loop = "fit"\ntrain_log = "rollouts.parquet"\n'
        "[run]\nbatch_size = 128\nsteps = 60\nseeds = [0, 1]\ninterval_draws = 6\n"
        '[[policies]]\nname = "DPS"\ntype = "dps"\n'
    )
    res = run_sweep(load_scenario(tmp_path / "s.toml"), workers=1, progress=False)
    s = res.summary
    closed = s.filter(pl.col("policy") == "DPS")
    assert closed["interval_from"][0] == "closed loop, 6 draws" and res.draws is not None and res.draws.height == 6
    assert set(res.draws["seed"].to_list()) == set(range(2, 8))  # seeds of their own
    lo, hi = closed["effective_ratio_lo"][0], closed["effective_ratio_hi"][0]
    assert lo == res.draws["effective_ratio"].min() and hi == res.draws["effective_ratio"].max()
    assert (s.filter(pl.col("policy") == "DPS (open loop)")["interval_from"] == "seeds").all()
    from dps.replay.report import write_report

    write_report(res, tmp_path / "out", plots=False)
    report = (tmp_path / "out" / "report.md").read_text()
    assert (
        "90% intervals" in report
        and "effective ratio 90% interval" in report
        and "shapes it allows" in report
        or "identifies" in report
    )
    assert (tmp_path / "out" / "interval_draws.parquet").exists()
    csv = pl.read_csv(tmp_path / "out" / "summary.csv")
    assert {"effective_ratio_lo", "effective_ratio_hi", "rollouts_lo", "rollouts_hi"} <= set(csv.columns)
    none = run_sweep(load_scenario(tmp_path / "s.toml", ["run.interval_draws=0"]), workers=1, progress=False)
    assert none.draws is None and (none.summary["interval_from"] == "seeds").all()


def test_a_prompt_table_maps_the_logs_own_ids(tmp_path: Path) -> None:
    from dps.logs import load_log
    from dps.replay.closedloop import ClosedLoopSettings
    from dps.replay.closedloop.world import prompt_labels

    log = pl.DataFrame({"step": [0, 0, 1], "prompt_id": ["b", "a", "c"], "n_rollouts": [8] * 3, "n_correct": [3, 4, 5]})
    log.write_parquet(tmp_path / "log.parquet")
    pl.DataFrame({"prompt_id": ["a", "b", "c"], "question": ["q1", "q1", "q2"], "level": [0, 1, 1]}).write_parquet(
        tmp_path / "p.parquet"
    )
    loaded = load_log(tmp_path / "log.parquet")
    table = str(tmp_path / "p.parquet")
    groups, strata = prompt_labels(
        ClosedLoopSettings(prompt_table=table, similar_by="question", drift_by="level"), loaded, 3
    )
    assert groups is not None and strata is not None
    key = {k: i for i, k in enumerate(loaded.keys.to_list())}  # dense id of each of the user's ids
    assert groups[key["a"]] == groups[key["b"]] != groups[key["c"]]
    assert strata[key["b"]] == strata[key["c"]] != strata[key["a"]]
    with pytest.raises(ValueError, match="similar_by: .* has no column 'topic'"):
        prompt_labels(ClosedLoopSettings(prompt_table=table, similar_by="topic"), loaded, 3)


@pytest.mark.parametrize(
    "world, key",
    [
        ({"log": "x.parquet", "closed_loop": "fit", "similar_by": "question"}, "similar_by"),
        ({"log": "x.parquet", "closed_loop": "fit", "prompt_table": "p.parquet"}, "prompt_table"),
        ({"log": "x.parquet", "closed_loop": "fit", "prompt_table": 3, "similar_by": "q"}, "prompt_table"),
        ({"log": "x.parquet", "closed_loop": 0.1, "prompt_table": "p.parquet", "drift_by": "level"}, "drift_by"),
        ({"log": "x.parquet", "prompt_table": "p.parquet", "similar_by": "q"}, "prompt_table"),
    ],
)
def test_bad_similarity_config_names_the_key(world: dict, key: str) -> None:
    data = {"world": world, "run": {"batch_size": 8}, "policies": [{"type": "uniform"}]}
    with pytest.raises(ValueError, match=rf"sc\.toml: world\.{key}: "):
        parse_scenario(data, Path("sc.toml"))


def test_interval_draws_must_be_a_count() -> None:
    data = {
        "world": {"preset": "math"},
        "run": {"batch_size": 8, "interval_draws": -1},
        "policies": [{"type": "uniform"}],
    }
    with pytest.raises(ValueError, match=r"sc\.toml: run\.interval_draws: expected an integer >= 0, got -1"):
        parse_scenario(data, Path("sc.toml"))


def test_the_uniform_run_predicts_the_live_dps_run_of_the_pair() -> None:
    shared_data("smollm2-arith-lr3e6-pair", "log_uniform.parquet")
    sc = load_scenario(ROOT / "replay" / "smollm2-pair.toml", ["run.workers=1"])
    sc.policies = [p for p in sc.policies if p.name == "DPS"]
    res = run_sweep(sc, workers=1, progress=False)
    rows = {name: res.summary.filter(pl.col("policy") == name) for name in ("DPS", "DPS (open loop)")}
    live = 0.607  # steps_dps.parquet: the live DPS run's mean effective ratio over its 108 steps
    closed, opened = rows["DPS"]["effective_ratio"].mean(), rows["DPS (open loop)"]["effective_ratio"].mean()
    assert abs(closed - live) < abs(opened - live) / 2  # the closed loop takes most of the open loop's error away
    lo, hi = rows["DPS"]["effective_ratio_lo"][0], rows["DPS"]["effective_ratio_hi"][0]
    assert lo <= live <= hi and hi - lo <= 0.15
    assert res.world.effect is not None and res.world.effect.spillover == "question"
