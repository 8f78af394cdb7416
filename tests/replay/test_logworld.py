"""The log world's estimator: calibrated on logs with a known answer, and sized by the log's rows."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from dps.policies.registry import make_policy
from dps.replay.logworld import _DRAW_SALT, LogEstimator, LogWorld
from dps.replay.runner import replay
from paths import shared_data

SHARED_LOG = ("smollm2-arith-lr1e6", "log.parquet")


def distinct_per_row(rng: np.random.Generator, rows: int, n: int, size: int) -> np.ndarray:
    """(rows, size) ids, distinct within each row, uniform over range(n) (n >> size)."""
    draws = rng.integers(0, n, (rows, 2 * size))
    order = np.argsort(draws, axis=1, kind="stable")
    ranked = np.take_along_axis(draws, order, axis=1)
    dup = np.zeros_like(draws, dtype=bool)
    repeat_sorted = np.zeros_like(dup)
    repeat_sorted[:, 1:] = ranked[:, 1:] == ranked[:, :-1]  # a later copy (stable sort keeps draw order)
    np.put_along_axis(dup, order, repeat_sorted, axis=1)
    keep = ~dup & (np.cumsum(~dup, axis=1) <= size)
    assert np.all(keep.sum(axis=1) == size)
    return draws[keep].reshape(rows, size)


def stationary_log(
    seed: int = 0, prompts: int = 40_000, steps: int = 1000, batch: int = 512, k: int = 8
) -> tuple[pl.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.beta(0.5, 0.5, prompts)
    ids = distinct_per_row(rng, steps, prompts, batch).ravel()
    log = pl.DataFrame(
        {
            "step": np.repeat(np.arange(steps), batch),
            "prompt_id": ids,
            "n_rollouts": np.full(len(ids), k),
            "n_correct": rng.binomial(k, p[ids]),
        }
    )
    return log, p


def uniform_ratio(world: LogWorld, batch: int, seeds: range) -> float:
    runs = [
        replay(make_policy("uniform", world.num_prompts, s), world, steps=world.steps, batch_size=batch, seed=s)
        for s in seeds
    ]
    return float(np.mean([r.summary["effective_ratio"] for r in runs]))


def test_stationary_log_replays_to_the_exact_effective_ratio() -> None:
    """40,000 prompts with p ~ Beta(0.5, 0.5) drawn once, 512 x 8 logged per step for 1,000 steps.

    Uniform's exact effective ratio is 1 - 2 E[p^8] = 1 - 2 C(16, 8) / 4^8 = 0.607.
    """
    exact = 1 - 2 * 12870 / 4**8
    log, _ = stationary_log()
    world = LogWorld(log)
    assert world.switch_rate == 0.0  # held-out likelihood finds the log stationary
    ratio = uniform_ratio(world, 512, range(1))
    print(f"stationary: uniform replay {ratio:.4f}, exact {exact:.4f}")
    assert abs(ratio - exact) < 0.02


def test_real_log_replays_to_what_its_dense_sweeps_measured() -> None:
    """The shared SmolLM2 GRPO log: uniform replayed on the sweep rows alone, and on the training rows alone."""
    log = pl.read_parquet(shared_data(*SHARED_LOG))
    partial = (pl.col("n_correct") > 0) & (pl.col("n_correct") < pl.col("n_rollouts"))
    sweeps = log.filter(pl.col("kind") == "sweep")
    truth = sweeps.group_by("step").agg(partial.mean())["n_correct"].mean()
    for kind in ("sweep", "train"):
        world = LogWorld(log.filter(pl.col("kind") == kind).drop("kind"), num_prompts=1024)
        ratio = uniform_ratio(world, 64, range(3))
        print(
            f"{kind} rows: uniform replay {ratio:.4f}, dense-sweep truth {truth:.4f} (switch rate {world.switch_rate})"
        )
        assert abs(ratio - truth) < 0.03


def small_log() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "step": [5, 5, 5, 6, 7, 7],
            "prompt_id": [0, 1, 1, 0, 0, 1],
            "n_rollouts": [8, 8, 8, 8, 8, 8],
            "n_correct": [3, 0, 8, 4, 8, 2],
        }
    )


def test_the_log_s_own_step_range_and_extrapolation() -> None:
    world = LogWorld(small_log(), num_prompts=3)
    assert (world.first_step, world.last_step, world.steps) == (5, 7, 3)  # no invented steps before step 5
    c, n = world.rollout(0, np.array([0]), seed=0)  # replay step 0 is log step 5
    assert c[0] == 3 and n[0] == 8
    assert world.rollout(1, np.array([0]), seed=0)[0][0] == 4
    with pytest.raises(ValueError, match="past the log's last step 7.*extrapolate"):
        world.rollout(3, np.array([0]), seed=0)
    with pytest.raises(ValueError, match="extrapolate"):
        LogWorld(small_log(), steps=10)
    far = LogWorld(small_log(), LogEstimator(extrapolate=True, switch_rate=0.1), steps=10)
    assert far.steps == 10
    c, n = far.rollout(9, np.array([0, 2]), seed=0)
    assert np.all(n == 8) and np.all((c >= 0) & (c <= 8))


def test_a_repeated_cell_returns_one_logged_group_chosen_by_the_seed() -> None:
    world = LogWorld(small_log(), num_prompts=3)
    # Prompt 1 at step 5 was logged twice (0 of 8, then 8 of 8): seed 0 gets the first, seed 1 the second.
    assert world.rollout(0, np.array([1]), seed=0)[0][0] == 0
    assert world.rollout(0, np.array([1]), seed=1)[0][0] == 8
    assert world.rollout(0, np.array([1]), seed=2)[0][0] == 0
    # Both count as evidence: the posterior mean of prompt 1 at step 6 (not logged) sits between them.
    mean = LogWorld(small_log(), LogEstimator(draw="mean"), num_prompts=3).p(1, np.array([1]))[0]
    assert 0.15 < mean < 0.85


def test_memory_follows_the_rows_not_steps_times_prompts() -> None:
    """2,000 rows spread over 10^5 prompt ids and 10^6 steps: a dense array would need 10^11 cells."""
    rng = np.random.default_rng(1)
    rows = 2000
    log = pl.DataFrame(
        {
            "step": rng.integers(0, 1_000_000, rows),
            "prompt_id": rng.integers(0, 100_000, rows),
            "n_rollouts": np.full(rows, 8),
            "n_correct": rng.integers(0, 9, rows),
        }
    )
    tracemalloc.start()
    world = LogWorld(log, LogEstimator(switch_rate=0.01))
    c, n = world.rollout(500_000, np.arange(0, 100_000, 100), seed=0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(c) == 1000 and np.all(n == 8)
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.0f} MiB"


def test_estimator_settings_are_checked() -> None:
    for bad in (
        {"switch_rate": 1.5},
        {"switch_rate": "often"},
        {"prior_half_life": -1},
        {"draw": "median"},
        {"extrapolate": "yes"},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            LogEstimator.from_dict(bad)
    assert LogEstimator.from_dict({"prior_half_life": "inf"}).prior_half_life == float("inf")


def test_calibration_of_a_synthetic_log_and_its_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Held-out groups of a dense synthetic log: the table, the PNG, and the numbers, from the CLI."""
    from dps.cli import main
    from dps.replay.calibration import calibrate, reliability

    log = tmp_path / "log.parquet"
    synth = "synth --preset countdown --num-prompts 300 --steps 40 --every 2".split()
    assert main([*synth, "--out", str(log)]) == 0
    assert main(["validate", str(log), "--calibration", str(tmp_path / "cal")]) == 0
    out = capsys.readouterr().out
    assert "ECE" in out and "| predicted P(partial) |" in out
    assert "unlogged prompts are drawn from a population prior fitted on all 6,000 logged groups" in out
    png = tmp_path / "cal" / "log-calibration.png"
    assert png.stat().st_size > 10_000
    table = pl.read_csv(tmp_path / "cal" / "log-calibration.csv")
    assert table["groups"].sum() == 300 * 20
    world = LogWorld(pl.read_parquet(log))
    cal = calibrate(world)
    assert cal.ece < 0.05 and cal.skill > 0.2  # a dense log of a smooth world predicts itself well
    # A constant, wrong prediction is caught: ECE equals the gap and the skill is negative.
    bad = reliability(np.full(1000, 0.9), np.r_[np.ones(300), np.zeros(700)])
    assert abs(bad.ece - 0.6) < 1e-9 and bad.skill < 0
    # Every replay of a log writes the same report.
    sc = tmp_path / "sc.toml"
    sc.write_text(
        '[world]\nlog = "log.parquet"\n[run]\nbatch_size = 16\nseeds = 1\nworkers = 1\n[[policies]]\ntype = "uniform"\n'
    )
    assert main(["replay", str(sc), "--out", str(tmp_path / "rep"), "--quiet"]) == 0
    assert "log world calibration on" in capsys.readouterr().out
    report = (tmp_path / "rep" / "report.md").read_text()
    assert (tmp_path / "rep" / "calibration.png").exists() and "How well the log world predicts" in report
    assert "Unlogged prompts are drawn from a population prior fitted on all" in report


def test_calibration_warns_about_what_held_out_groups_cannot_show() -> None:
    """A log that re-picks its partly solved prompts, and holds only 20 of 200 prompts."""
    from dps.replay.calibration import calibrate

    rng = np.random.default_rng(3)
    first = pl.DataFrame(
        {
            "step": np.zeros(20, np.int64),
            "prompt_id": np.arange(20),
            "n_rollouts": np.full(20, 8),
            "n_correct": rng.choice([0, 8], 20),
        }
    )
    again = pl.DataFrame(
        {
            "step": np.repeat(np.arange(1, 31), 10),
            "prompt_id": np.tile(np.arange(10), 30),
            "n_rollouts": np.full(300, 8),
            "n_correct": rng.integers(1, 8, 300),
        }
    )
    cal = calibrate(LogWorld(pl.concat([first, again]), num_prompts=200))
    warnings = " ".join(cal.warnings())
    assert "180 of 200 prompts were never logged" in warnings and "first logged group" in warnings
    assert "WARNING" in cal.line()
    dense = stationary_log(prompts=200, steps=40, batch=50)[0]
    assert calibrate(LogWorld(dense)).warnings() == []
    kept = dense.filter(
        (pl.col("n_correct") > 0) & (pl.col("n_correct") < 8)
    )  # only what a dynamic-sampling filter keeps
    assert any("only the groups a filter kept" in w for w in calibrate(LogWorld(kept)).warnings())


def uneven_log(seed: int = 7, prompts: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(step, prompt_id, n_correct, n_rollouts): prompts of 0 to 40 rows, gaps of 0 to 300 steps,
    repeated cells, two rollout counts, ids with no rows, rows in no particular order."""
    rng = np.random.default_rng(seed)
    rows_per_prompt = rng.integers(1, 41, prompts) * (rng.random(prompts) > 0.1)
    pid = np.repeat(np.arange(prompts), rows_per_prompt)
    step = rng.integers(0, 3000, len(pid))
    nr = rng.choice([4, 8], len(pid))
    nc = rng.binomial(nr, rng.beta(0.5, 0.5, prompts)[pid])
    order = rng.permutation(len(pid))
    return step[order], pid[order], nc[order], nr[order]


@pytest.mark.parametrize("rate", [0.0, 0.003, 0.2])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_rust_message_passes_match_the_numpy_reference(rate: float, dtype: type) -> None:
    """Both passes agree with the numpy implementation to its storage precision, and what queries
    recompute from the kept checkpoints is bit for bit what keeping every row gives."""
    from dps.replay.logworld import PopulationPrior, RowLog, Switching
    from reference_logworld import reference_pass

    step, pid, nc, nr = uneven_log()
    log = RowLog(step, pid, nc, nr)
    assert np.all(np.diff(log.pid) >= 0) and np.all((np.diff(log.step) >= 0) | (np.diff(log.pid) > 0))
    log.dtype = dtype
    dyn = Switching(PopulationPrior(log.step, log.nc, log.nr), rate)
    kept = {}
    for every in (1, 2, 3, 5):
        log.every = every
        log.build(dyn)
        kept[every] = (log.messages(True), log.messages(False))
        assert log.core.message_bytes == np.dtype(dtype).itemsize * 32 * (log.rows // every + -(-log.rows // every))
    for forward in (True, False):
        want = reference_pass(log, dyn, forward).astype(np.float64)
        got = kept[1][0 if forward else 1].astype(np.float64)
        assert got.shape == want.shape == (len(pid), 32)
        tol = 4e-3 if dtype == np.float16 else 2e-5
        assert np.max(np.abs(got - want)) < tol, (forward, np.max(np.abs(got - want)))
        assert np.all(got.max(axis=1) == 1.0)
    for every in (2, 3, 5):
        assert np.array_equal(kept[every][0], kept[1][0]) and np.array_equal(kept[every][1], kept[1][1]), every


@pytest.mark.parametrize("rate", [0.0, 0.01])
def test_rust_queries_match_the_numpy_reference(rate: float) -> None:
    """Posteriors (held out or not), draws and rollouts of the core against the numpy code they
    replaced, run on the same stored messages: posteriors to 1e-15, outcomes identical."""
    from dps.replay.logworld import PopulationPrior, RowLog, Switching
    from reference_logworld import ReferenceQueries

    step, pid, nc, nr = uneven_log(seed=3)
    log = RowLog(step, pid, nc, nr)
    dyn = Switching(PopulationPrior(log.step, log.nc, log.nr), rate)
    log.every = 3
    log.build(dyn)
    ref = ReferenceQueries(log, dyn)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 320, 4000)  # ids 300.. own no rows
    t = rng.integers(0, 3100, 4000)  # past the last step too
    for include_cell in (True, False):
        assert np.allclose(log.posterior(t, ids, include_cell), ref.posterior(t, ids, include_cell), rtol=0, atol=1e-15)
    rows = rng.integers(0, log.rows, 500)
    s, p, n, c = log.row_info(rows)
    assert (
        np.array_equal(s, log.step[rows])
        and np.array_equal(p, log.pid[rows])
        and np.array_equal(n, log.nr[rows])
        and np.array_equal(c, log.nc[rows])
    )
    assert np.allclose(log.held_out_posterior(rows), ref.posterior(s, p, include_cell=False), rtol=0, atol=1e-15)
    for seed in (0, 5):
        for when in (0, 17, 1500, 2999, 3050):
            got = log.core.rollout(when, ids, seed, 8, (seed ^ _DRAW_SALT) & (2**64 - 1), False)
            want = ref.rollout(when, ids, seed, 8)
            assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]), (seed, when)
            assert np.array_equal(log.core.draw(when, ids, seed ^ _DRAW_SALT, False), ref.draw(when, ids, seed))
    found, c, n = log.lookup(int(log.step[0]), ids, 1)
    assert found.any() and np.all(n[found] > 0) and np.all(n[~found] == 0)


def test_hashed_uniforms_are_the_numpy_ones_bit_for_bit() -> None:
    from dps.replay.worlds import draw_correct, hashed_uniforms
    from reference_logworld import draw_correct as ref_draw
    from reference_logworld import hashed_uniforms as ref_uniforms

    ids = np.array([0, 1, 7, 2**40, -3, 999_999])
    for seed, step in ((0, 0), (12345, 77), (2**63 + 5, 2**33)):
        assert np.array_equal(hashed_uniforms(seed, step, ids, 8), ref_uniforms(seed, step, ids, 8))
    p = np.linspace(0.0, 1.0, len(ids))
    assert np.array_equal(draw_correct(3, 4, ids, p, 16), ref_draw(3, 4, ids, p, 16))
    assert draw_correct(3, 4, np.zeros(0, np.int64), np.zeros(0), 8).shape == (0,)


def test_a_built_world_saves_and_loads_back(tmp_path: Path) -> None:
    log, _ = stationary_log(prompts=3000, steps=60, batch=200)
    world = LogWorld(log, LogEstimator(switch_rate=0.01), num_prompts=3100)
    loaded = LogWorld.load(world.save(tmp_path / "w"))
    ids = np.arange(3100)
    for step in (0, 31, 59):
        assert all(
            np.array_equal(a, b) for a, b in zip(world.rollout(step, ids, 4), loaded.rollout(step, ids, 4), strict=True)
        )
    assert loaded.describe() == world.describe() and loaded.switch_rate == 0.01
    (tmp_path / "w" / "rows.bin").write_bytes(b"DPSLOGW1" + b"\x00" * 5)
    with pytest.raises(ValueError, match="rows.bin"):
        LogWorld.load(tmp_path / "w")


def test_bad_groups_are_refused_with_a_clear_error() -> None:
    good = small_log()
    for column, value, match in (
        ("prompt_id", -1, "prompt ids must be >= 0"),
        ("n_correct", 9, "n_correct <= n_rollouts"),
        ("n_rollouts", 0, "n_rollouts >= 1"),
    ):
        bad = good.with_columns(
            pl.when(pl.int_range(pl.len()) == 2).then(value).otherwise(pl.col(column)).alias(column)
        )
        with pytest.raises(ValueError, match=match):
            LogWorld(bad, num_prompts=3)
    world = LogWorld(good, num_prompts=3)
    with pytest.raises(ValueError, match="seeds must be >= 0"):
        world.rollout(0, np.array([0]), seed=-1)


def selective_log(world_seed: int, n: int = 2000, steps: int = 150, batch: int = 32) -> tuple[pl.DataFrame, float]:
    """DPS's training log on a synthetic world (it re-picks the prompts it predicts partly solved),
    and the truth: uniform's effective ratio on the world itself (mean of 3 seeds)."""
    from dps.replay.worlds import SyntheticWorld, preset_params

    world = SyntheticWorld(preset_params("countdown", num_prompts=n, steps=steps), seed=world_seed)
    truth = float(
        np.mean(
            [
                replay(make_policy("uniform", n, s), world, steps, batch, seed=s).summary["effective_ratio"]
                for s in range(3)
            ]
        )
    )
    rec = replay(make_policy("dps", n, 0), world, steps, batch, seed=0, record=True)
    assert rec.groups is not None
    return pl.DataFrame(rec.groups).select("step", "prompt_id", "n_rollouts", "n_correct"), truth


def test_a_selective_log_draws_unlogged_prompts_from_first_looks() -> None:
    """Uniform replayed on a DPS training log (under 10% of the prompts ever logged, nearly all later
    groups partly solved) reproduces uniform on the world that wrote it: the prompts the log never
    holds come from a prior fitted on each prompt's first logged group, chosen before DPS had seen
    that prompt. Fitted on every group (as for an unselective log), the replay is off by about +0.3."""
    errors = []
    for world_seed in range(3):
        log, truth = selective_log(world_seed)
        world = LogWorld(log, num_prompts=2000)
        assert world.logged_prompts < 200
        errors.append(uniform_ratio(world, 32, range(3)) - truth)
    assert abs(np.mean(errors)) < 0.03 and max(map(abs, errors)) < 0.05, errors
    biased = LogWorld(log, LogEstimator(population="all"), num_prompts=2000)
    assert uniform_ratio(biased, 32, range(3)) - truth > 0.2  # what the fix is for
    assert world.selection.selective and world.population == "first_looks"
    line = world.population_line()
    assert "first logged groups" in line and "chose its groups by their outcomes" in line
    from dps.replay.calibration import calibrate

    cal = calibrate(world)
    assert cal.population == line and cal.first_look_prior and "rests on the" in " ".join(cal.warnings())


def test_an_unselective_log_keeps_its_prior_on_every_group() -> None:
    """Random prompts each step (first looks and later groups share steps): no selection found, so
    the prior rests on every group; a forced setting is obeyed and named."""
    log, _ = stationary_log(prompts=2000, steps=60, batch=100)
    world = LogWorld(log)
    assert world.selection.compared_steps > 50 and abs(world.selection.z) < 3 and not world.selection.selective
    assert world.population == "all" and "no sign" in world.population_line()
    from dps.replay.logworld import selection_test

    spread = LogWorld(
        log.with_columns(pl.col("step") * 100_000)
    )  # more steps than rows: counted over logged steps only
    assert (
        spread.selection.z == pytest.approx(world.selection.z)
        and spread.selection.compared_steps == world.selection.compared_steps
    )
    firsts = world.log.first_rows()
    assert len(firsts) == world.logged_prompts == world.selection.first_looks
    picked = world.log.nc.copy()
    later = np.ones(len(picked), bool)
    later[firsts] = False
    picked[later] = 4  # every later group partly solved, as if chosen for it
    assert selection_test(world.log.step, picked, world.log.nr, firsts).selective
    forced = LogWorld(log, LogEstimator(population="first_looks"))
    assert forced.population == "first_looks" and "set by population = 'first_looks'" in forced.population_line()
    with pytest.raises(ValueError, match="population"):
        LogEstimator.from_dict({"population": "firsts"})


def test_a_parallel_sweep_hands_its_built_log_world_to_the_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worker processes load the main process's world (LogWorld.save) instead of building it
    again, and replay exactly what a serial sweep replays; a closed loop's base world too."""
    from dps.replay import sweep
    from dps.replay.scenario import parse_scenario

    log, _ = stationary_log(prompts=600, steps=30, batch=60)
    log.write_parquet(tmp_path / "log.parquet")
    for extra in ({}, {"closed_loop": 0.2}):
        data = {
            "world": {"log": str(tmp_path / "log.parquet"), **extra},
            "run": {"batch_size": 16, "seeds": [0, 1]},
            "policies": [{"type": "uniform"}, {"type": "dps"}],
        }
        serial = sweep.run_sweep(parse_scenario(data), workers=1, progress=False)
        parallel = sweep.run_sweep(parse_scenario(data), workers=2, progress=False)
        for column in ("effective_prompts", "rollouts", "distinct_prompts"):
            assert serial.summary[column].to_list() == parallel.summary[column].to_list(), (extra, column)
        cfg = parse_scenario(data).world
        saved = sweep.save_log_worlds(cfg, cfg.build(), tmp_path / f"saved{len(extra)}")
        assert len(saved) == 1  # the log world (a closed loop's base), not the closed loop itself
        monkeypatch.setattr(sweep, "_SAVED", saved)
        monkeypatch.setattr(sweep, "_WORLDS", {})

        def no_build(*args: object, **kwargs: object) -> None:
            raise AssertionError("a worker built the log world again")

        with monkeypatch.context() as m:
            m.setattr(LogWorld, "__init__", no_build)
            world = sweep._world(cfg)
        assert repr(world.describe()) == repr(serial.world.description)  # (NaN entries too)


def test_a_replay_reads_its_own_seeds_world_before_its_first_rollout() -> None:
    """The oracle reads p before any rollout: it must see the draws of its own replay seed, not of
    whichever replay ran before it in the process (a sweep's worker runs several)."""
    from dps.replay.oracle import Oracle

    log, _ = stationary_log(seed=3, prompts=600, steps=6, batch=20)
    world = LogWorld(log, LogEstimator(switch_rate=0.05))

    def oracle_run(seed: int) -> list[int]:
        policy = Oracle(world, seed=seed)
        res = replay(policy, world, steps=3, batch_size=20, seed=seed, record=True)
        assert res.groups is not None
        return res.groups["prompt_id"].tolist()

    fresh = oracle_run(2)
    replay(make_policy("uniform", world.num_prompts, 7), world, steps=2, batch_size=20, seed=7)
    assert oracle_run(2) == fresh
