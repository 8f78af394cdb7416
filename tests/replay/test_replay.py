"""The replay engine: log schema, worlds, runner, sweeps, reports and the CLI."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from dps.logs import frame_to_groups, read_log
from dps.outcomes import group_states
from dps.policies.base import Policy
from dps.replay.logworld import LogEstimator, LogWorld
from dps.replay.oracle import Oracle
from dps.replay.runner import prediction_scores, replay
from dps.replay.scenario import load_scenario, parse_scenario
from dps.replay.sweep import run_sweep
from dps.replay.worlds import SyntheticParams, SyntheticWorld, World, draw_correct, preset_params

# ---------------------------------------------------------------------------------------------
# Small plain-Python policies: the "custom policy" a user would write.


class PyUniform(Policy):
    """Uniform without replacement within a step; knows nothing about Rust."""

    def __init__(self, num_prompts: int, seed: int = 0):
        self.num_prompts = num_prompts
        self.rng = np.random.default_rng(seed)
        self.taken: list[np.ndarray] = []
        self.observed_groups = 0

    def select(self, batch_size: int) -> np.ndarray:
        free = np.ones(self.num_prompts, bool)
        for t in self.taken:
            free[t] = False
        ids = self.rng.choice(np.flatnonzero(free), min(batch_size, int(free.sum())), replace=False)
        self.taken.append(ids)
        return ids.astype(np.int64)

    def observe(self, prompt_ids: np.ndarray, n_correct: np.ndarray, n_rollouts: np.ndarray) -> None:
        self.taken = []
        self.observed_groups += len(prompt_ids)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class PyGate(PyUniform):
    """Dynamic sampling in Python: keep groups with std > 0, up to `max_rounds` rounds."""

    def __init__(self, num_prompts: int, seed: int = 0, max_rounds: int = 4):
        super().__init__(num_prompts, seed)
        self.max_rounds = max_rounds

    def admit(self, prompt_ids: np.ndarray, n_correct: np.ndarray, n_rollouts: np.ndarray) -> np.ndarray:
        return (n_correct > 0) & (n_correct < n_rollouts)


class AlwaysPartial(PyUniform):
    """A 'predictive' policy that always predicts the partial state."""

    def predicted_state_probs(self, prompt_ids: np.ndarray | None = None) -> np.ndarray:
        n = self.num_prompts if prompt_ids is None else len(prompt_ids)
        return np.tile([0.1, 0.8, 0.1], (n, 1))


class FixedWorld(World):
    """Every prompt has the same p (handy for exact expectations)."""

    def __init__(self, num_prompts: int, p: float, k: int = 8, steps: int = 10):
        self.num_prompts, self.k, self.steps, self._p = num_prompts, k, steps, p

    def p(self, step: int, ids: np.ndarray | None = None) -> np.ndarray:
        n = self.num_prompts if ids is None else len(ids)
        return np.full(n, self._p)


def tiny_world(seed: int = 0, **kw: Any) -> SyntheticWorld:
    return SyntheticWorld(preset_params("math", num_prompts=300, steps=30, **kw), seed=seed)


def good_groups() -> pl.DataFrame:
    return pl.DataFrame(
        {"step": [0, 0, 1, 1], "prompt_id": [0, 1, 0, 2], "n_rollouts": [8, 8, 8, 8], "n_correct": [0, 3, 8, 5]}
    )


# The log schema and readers: tests/logs/test_logs.py


# ---------------------------------------------------------------------------------------------
# Worlds


def test_synthetic_world_is_deterministic_and_seeded() -> None:
    a, b, c = tiny_world(1), tiny_world(1), tiny_world(2)
    assert np.array_equal(a.p(5), b.p(5))
    assert not np.array_equal(a.p(5), c.p(5))
    ids = np.array([3, 17, 250])
    assert np.array_equal(a.rollout(4, ids, seed=9)[0], b.rollout(4, ids, seed=9)[0])
    p = a.p(4)
    assert np.all((p >= 0) & (p <= 1)) and a.never.any()


def test_outcomes_use_common_random_numbers() -> None:
    w = tiny_world()
    alone = w.rollout(3, np.array([42]), seed=5)[0]
    among = w.rollout(3, np.array([7, 42, 99]), seed=5)[0]
    assert alone[0] == among[1]
    # And draws follow Binomial(k, p) on average.
    c = draw_correct(0, 0, np.arange(20000), np.full(20000, 0.3), 8)
    assert abs(c.mean() / 8 - 0.3) < 0.01


def test_synthetic_dynamics_move() -> None:
    w = SyntheticWorld(preset_params("math"), seed=0)
    p0, p1 = w.p(0).copy(), w.p(w.steps - 1).copy()
    assert p1.mean() > p0.mean()  # the model learns
    assert (p1 < 0.01).mean() > 0.03  # some prompts are never solved
    assert np.mean(p1 < p0 - 0.1) > 0.005  # some are forgotten or wobble down


def test_unknown_synthetic_parameter_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="nonsense"):
        SyntheticParams.from_dict({"nonsense": 1})
    with pytest.raises(ValueError, match="unknown preset"):
        preset_params("gsm9k")


def test_log_world_uses_logged_outcomes_and_estimates_elsewhere() -> None:
    w = tiny_world()
    log = frame_to_groups(w.to_log(seed=3, every=2))  # every prompt, even steps only
    lw = LogWorld(log, k=8)
    ids = np.arange(0, 300, 7)
    c, n = lw.rollout(4, ids, seed=0)
    expect = log.filter(pl.col("step") == 4).sort("prompt_id")["n_correct"].to_numpy()[ids]
    assert np.array_equal(c, expect) and np.all(n == 8)
    # Different replay seeds do not change logged outcomes.
    assert np.array_equal(lw.rollout(4, ids, seed=11)[0], c)
    # Odd steps are not in the log: drawn from the estimate, which tracks the truth.
    est, truth = lw.p(5), w.p(5)
    assert np.corrcoef(est, truth)[0, 1] > 0.8
    c5, n5 = lw.rollout(5, ids, seed=0)
    assert np.all(n5 == 8) and np.all((c5 >= 0) & (c5 <= 8))


def test_log_world_replay_tracks_the_true_world_on_a_dense_log() -> None:
    w = SyntheticWorld(preset_params("math", num_prompts=1000, steps=60), seed=4)
    lw = LogWorld(frame_to_groups(w.to_log(seed=99, every=3)))
    assert lw.switch_rate in LogEstimator.SWITCH_RATES and lw.steps == 58  # the log's steps 0..57
    true = replay(PyUniform(1000), w, steps=57, batch_size=64, seed=1).summary["effective_ratio"]
    est = replay(PyUniform(1000), lw, steps=57, batch_size=64, seed=1).summary["effective_ratio"]
    print(f"US effective ratio: true world {true:.3f}, log world {est:.3f}")
    assert abs(true - est) < 0.03
    with pytest.raises(ValueError, match="switch_rate"):
        LogEstimator.from_dict({"switch_rate": "soon"})
    with pytest.raises(ValueError, match="prior_strength is gone|replaced"):
        LogEstimator.from_dict({"prior_strength": 2.0})


def test_log_world_sparse_prompt_falls_back_to_population() -> None:
    groups = pl.DataFrame({"step": [0, 1, 2], "prompt_id": [0, 0, 0], "n_rollouts": [8] * 3, "n_correct": [8] * 3})
    lw = LogWorld(groups, LogEstimator(draw="mean"), num_prompts=5)
    p = lw.p(1)
    assert p[0] > 0.85  # observed always solved
    assert np.allclose(p[1:], p[1])  # never observed: the population prior
    c, n = lw.rollout(1, np.array([0, 3]), seed=0)
    assert c[0] == 8 and n[1] == 8


def test_closed_loop_world_learns_from_trained_partial_groups_and_resets() -> None:
    w = tiny_world(train_gain=0.5)
    before = w.p(3).copy()
    ids = np.array([1, 2, 3])
    w.learn(3, ids, np.array([4, 0, 8]), np.array([8, 8, 8]))  # only prompt 1 was partial
    after = w.p(3)
    assert after[1] > before[1] and after[2] == before[2] and after[3] == before[3]
    w.reset()
    assert np.array_equal(w.p(3), before)
    # An open-loop world ignores training.
    o = tiny_world()
    p0 = o.p(3).copy()
    o.learn(3, ids, np.array([4, 4, 4]), np.array([8, 8, 8]))
    assert np.array_equal(o.p(3), p0)
    # A replay on a closed-loop world starts from the untouched world every time.
    a = replay(PyUniform(300), w, steps=10, batch_size=40, seed=0).summary
    b = replay(PyUniform(300), w, steps=10, batch_size=40, seed=0).summary
    assert a["effective_prompts"] == b["effective_prompts"]


# ---------------------------------------------------------------------------------------------
# Runner


def test_runner_counts_every_rollout_including_rejected_groups() -> None:
    w = tiny_world()
    res = replay(PyGate(300, seed=1, max_rounds=4), w, steps=20, batch_size=32, seed=0)
    s = res.steps
    assert np.array_equal(s["rollouts"], s["groups"] * 8)  # every rolled-out group is paid for
    assert np.any(s["groups"] > 32)  # rejected groups made it ask for more
    assert res.summary["rollouts"] == int(s["groups"].sum()) * 8
    assert res.summary["effective_ratio"] == 1.0  # the gate trains on partial groups only
    assert np.array_equal(s["cum_rollouts"], np.cumsum(s["rollouts"]))
    assert np.array_equal(s["cum_effective_prompts"], np.cumsum(s["effective"]))


def test_gate_at_its_cap_reports_the_shortfall_and_does_not_crash() -> None:
    w = FixedWorld(100, p=1.0)  # every group solved: the gate never admits anything
    res = replay(PyGate(100, max_rounds=3), w, steps=4, batch_size=10, seed=0)
    assert np.all(res.steps["rounds"] == 3)
    assert np.all(res.steps["shortfall"] == 10)
    assert res.summary["rollouts"] == 4 * 3 * 10 * 8
    assert res.summary["effective_ratio"] == 0.0


def test_custom_python_policy_runs_unchanged() -> None:
    w = tiny_world()
    pol = PyUniform(300, seed=0)
    res = replay(pol, w, steps=15, batch_size=20, seed=0)
    assert pol.observed_groups == 15 * 20
    assert res.summary["rollouts"] == 15 * 20 * 8
    assert 0 < res.summary["effective_ratio"] < 1
    assert np.isnan(res.summary["pred_f1"])  # not predictive


def test_prediction_metrics_for_a_predictive_policy() -> None:
    w = FixedWorld(50, p=0.5, k=2)  # partial with probability 1/2
    res = replay(AlwaysPartial(50), w, steps=40, batch_size=10, seed=0)
    conf = np.array([[res.steps[f"conf_{i}{j}"].sum() for j in range(3)] for i in range(3)])
    assert conf.sum() == 400 and conf[:, 0].sum() == 0 and conf[:, 2].sum() == 0
    partial_share = conf[1, 1] / 400
    assert res.summary["pred_precision"] == pytest.approx(partial_share)
    assert res.summary["pred_recall"] == pytest.approx(1.0)
    assert res.summary["pred_accuracy"] == pytest.approx(res.summary["effective_ratio"])
    assert 0.4 < partial_share < 0.6


def test_prediction_scores_and_states() -> None:
    assert group_states(np.array([0, 3, 8]), np.array([8, 8, 8])).tolist() == [0, 1, 2]
    s = prediction_scores(np.array([[5, 1, 0], [2, 6, 2], [0, 1, 3]]))
    assert s["pred_accuracy"] == pytest.approx(14 / 20)
    assert s["pred_precision"] == pytest.approx(6 / 8) and s["pred_recall"] == pytest.approx(6 / 10)


def test_oracle_beats_uniform() -> None:
    w = tiny_world()
    o = replay(Oracle(w), w, steps=20, batch_size=30, seed=0).summary
    u = replay(PyUniform(300), w, steps=20, batch_size=30, seed=0).summary
    assert o["effective_ratio"] > u["effective_ratio"] + 0.2


# ---------------------------------------------------------------------------------------------
# Scenarios, sweeps, reports, CLI


def scenario_dict(**world: Any) -> dict[str, Any]:
    return {
        "name": "tiny",
        "world": world or {"preset": "math", "num_prompts": 200, "steps": 12},
        "run": {"batch_size": 16, "seeds": [0, 1], "workers": 1},
        "policies": [
            {"name": "mine", "type": "python", "class": "test_replay:PyUniform"},
            {"name": "gate", "type": "python", "class": "test_replay:PyGate", "sweep": {"max_rounds": [2, 4]}},
            {"type": "oracle"},
        ],
    }


def test_scenario_errors_are_clear() -> None:
    bad = scenario_dict()
    bad["run"]["stpes"] = 3
    with pytest.raises(ValueError, match="stpes"):
        parse_scenario(bad)
    bad = scenario_dict()
    bad["policies"].append({"type": "thompson"})
    with pytest.raises(ValueError, match="unknown policy type 'thompson'"):
        parse_scenario(bad)
    bad = scenario_dict()
    bad["world"]["difficulty"] = 2
    with pytest.raises(ValueError, match="difficulty"):
        parse_scenario(bad)
    bad = scenario_dict()
    bad["policies"][0]["decay"] = 0.5  # PyUniform takes no decay
    with pytest.raises(ValueError, match="'mine'"):
        run_sweep(parse_scenario(bad), progress=False)


def test_overrides_from_the_command_line() -> None:
    from dps.config import apply_sets
    from dps.replay.scenario import SETTABLE

    data = scenario_dict()
    origins = apply_sets(data, ["world.train_gain=0.1", "run.seeds=[4, 5]", "name=x"], SETTABLE)
    sc = parse_scenario(data, None, origins)
    assert sc.world.params.train_gain == 0.1 and sc.seeds == [4, 5] and sc.name == "x"
    assert origins["run.seeds"] == "--set run.seeds=[4, 5]"
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        apply_sets(scenario_dict(), ["world.train_gain"], SETTABLE)
    with pytest.raises(ValueError, match="only name, description, world, run can be set"):
        apply_sets(scenario_dict(), ["policies.x=1"], SETTABLE)


def test_sweep_and_report(tmp_path: Path) -> None:
    from dps.replay.report import write_report

    sc = parse_scenario(scenario_dict())
    assert [p.name for p in sc.policies] == ["mine", "gate max_rounds=2", "gate max_rounds=4", "oracle"]
    res = run_sweep(sc, progress=False)
    paths = write_report(res, tmp_path / "rep")
    with open(paths["summary_csv"]) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 * 2
    assert list(rows[0])[:5] == ["policy", "seed", "effective_ratio", "rollouts", "effective_prompts"]
    for name in ("effective_ratio.png", "rollouts_vs_effective.png", "report.md", "steps.parquet"):
        assert (tmp_path / "rep" / name).stat().st_size > 0
    steps = pl.read_parquet(tmp_path / "rep" / "steps.parquet")
    assert steps.height == 8 * 12
    assert "| mine | 2 |" in (tmp_path / "rep" / "report.md").read_text()


def test_parallel_sweep_matches_serial_and_writes_logs(tmp_path: Path) -> None:
    from dps.replay.report import write_report

    data = scenario_dict()
    data["policies"].append({"name": "pred", "type": "python", "class": "test_replay:AlwaysPartial"})
    serial = run_sweep(parse_scenario(data), progress=False, record=True)
    parallel = run_sweep(parse_scenario(data), workers=2, progress=False)
    assert serial.summary["effective_prompts"].to_list() == parallel.summary["effective_prompts"].to_list()
    assert serial.summary["rollouts"].to_list() == parallel.summary["rollouts"].to_list()
    paths = write_report(serial, tmp_path / "rep")
    assert (tmp_path / "rep" / "dps_confusion.png").stat().st_size > 0  # a predictive policy is present
    log = read_log(paths["logs"] / "mine-seed0.parquet")  # a replay's own rollouts form a valid sparse log
    assert log.height == 12 * 16 and log["n_rollouts"].sum() == 12 * 16 * 8


def test_cli_round_trip_synth_validate_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dps.cli import main

    log = tmp_path / "log.parquet"
    args = ["synth", "--preset", "countdown", "--num-prompts", "120", "--steps", "10", "--every", "2"]
    assert main([*args, "--out", str(log)]) == 0
    assert main(["validate", str(log)]) == 0
    assert "ok" in capsys.readouterr().out
    resp = tmp_path / "resp.parquet"
    assert main([*args, "--layout", "response", "--out", str(resp)]) == 0
    assert main(["validate", str(resp)]) == 0
    graded = ("reward_mean", "reward_std", "rewards")
    assert read_log(resp).drop(*graded).equals(read_log(log))  # per-response rows aggregate back
    sc = tmp_path / "sc.toml"
    sc.write_text(
        'name = "rt"\n[world]\nlog = "log.parquet"\nswitch_rate = 0.05\n[run]\nbatch_size = 16\nseeds = 2\nworkers '
        '= 1\n[[policies]]\nname = "mine"\ntype = "python"\nclass = "test_replay:PyUniform"\n[[policies]]\ntype = '
        '"oracle"\n'
    )
    out = tmp_path / "out"
    assert main(["replay", str(sc), "--out", str(out), "--quiet", "--no-plots"]) == 0
    printed = capsys.readouterr().out
    assert "| mine | 2 |" in printed and "| oracle | 2 |" in printed
    summary = pl.read_csv(out / "summary.csv")
    assert summary.columns[:5] == ["policy", "seed", "effective_ratio", "rollouts", "effective_prompts"]
    assert summary.height == 4 and (summary["rollouts"] == 9 * 16 * 8).all()  # log steps 0..8
    # Errors come back as a clean message and exit code 2.
    bad = tmp_path / "bad.parquet"
    good_groups().with_columns(n_correct=pl.Series([0, 9, 8, 5])).write_parquet(bad)
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.parquet" in err and "'n_correct'" in err and "row 1" in err
    assert main(["replay", str(tmp_path / "missing.toml")]) == 2
    assert "no such scenario file" in capsys.readouterr().err
    sc.write_text(sc.read_text().replace('type = "oracle"', 'type = "nope"'))
    assert main(["replay", str(sc), "--out", str(out)]) == 2
    assert "unknown policy type 'nope'" in capsys.readouterr().err


def test_shipped_scenarios_parse() -> None:
    root = Path(__file__).resolve().parents[2] / "replay"
    files = sorted(root.glob("*.toml"))
    assert {"math.toml", "countdown.toml"} <= {f.name for f in files}
    for f in files:
        sc = load_scenario(f)
        assert sc.policies and sc.seeds


def _have_builtins() -> bool:
    try:
        from dps import DPS  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _have_builtins(), reason="the Rust extension is not built")
def test_builtin_policies_replay_on_a_small_world() -> None:
    data = {
        "world": {"preset": "math", "num_prompts": 400, "steps": 25},
        "run": {"batch_size": 32, "seeds": [0], "workers": 1},
        "policies": [
            {"name": "US", "type": "uniform"},
            {"name": "HR", "type": "history_resampling"},
            {"name": "DS", "type": "dynamic_sampling", "max_rounds": 4},
            {"name": "MoPPS", "type": "mopps"},
            {"name": "GRESO", "type": "greso"},
            {"name": "DPS", "type": "dps", "decay": 0.7},
            {"name": "DS+DPS", "type": "ds", "max_rounds": 3, "selector": {"type": "dps", "decay": 0.5}},
            {"name": "oracle", "type": "oracle"},
        ],
    }
    res = run_sweep(parse_scenario(data), progress=False)
    s = {r["policy"]: r for r in res.summary.iter_rows(named=True)}
    assert s["DS"]["rollouts"] > s["US"]["rollouts"] == 25 * 32 * 8
    assert s["DPS"]["predictive"] and 0 <= s["DPS"]["pred_f1"] <= 1
    assert s["oracle"]["effective_ratio"] > s["US"]["effective_ratio"]
    assert s["DS+DPS"]["predictive"] and s["DS+DPS"]["mean_rounds"] <= 3


def test_rollout_log_writer_round_trip_and_resume(tmp_path):
    from dps.logs import RolloutLogWriter, read_log

    path = tmp_path / "rollouts.parquet"
    log = RolloutLogWriter(path)
    log.add(0, [3, 1], np.array([2, 0]), np.array([4, 4]), [[1, 1, 0, 0], [0, 0, 0, 0]])
    log.add(1, [0], np.array([4]), np.array([4]), [[1, 1, 1, 1]])
    log.write()
    df = read_log(path)
    assert df["step"].to_list() == [0, 0, 1] and df["prompt_key"].to_list() == [
        1,
        3,
        0,
    ]  # ids {0, 1, 3}: dense 0, 1, 2 inside
    assert df["n_correct"].to_list() == [0, 2, 4] and df["reward_mean"].to_list() == [0.0, 0.5, 1.0]
    resumed = RolloutLogWriter(path)
    resumed.load(keep_below=1)
    assert len(resumed) == 2 and resumed.rows["rewards"][0] == [1.0, 1.0, 0.0, 0.0]
    with pytest.raises(TypeError, match="integer"):
        log.add(2, [0], np.array([0.5]), np.array([4]))
    assert len(log) == 3  # the refused call added nothing


# ---------------------------------------------------------------------------------------------
# The user's own prompt ids in what a replay writes


def dense_log_with_ids(kind: str, prompts: int = 30, steps: int = 10, k: int = 8) -> tuple[pl.DataFrame, list[Any]]:
    """Every prompt every step (each replayed cell is a logged one), ids of the given kind; and the ids."""
    import hashlib

    ids: list[Any] = {
        "hashes": [hashlib.sha256(str(i).encode()).hexdigest()[:16] for i in range(prompts)],
        "sparse ints": [7 + 1009 * i for i in range(prompts)][::-1],
        "dense ints": list(range(prompts)),
    }[kind]
    rng = np.random.default_rng(5)
    p = rng.beta(0.5, 0.5, prompts)
    step = np.repeat(np.arange(steps), prompts)
    who = np.tile(np.arange(prompts), steps)
    df = pl.DataFrame(
        {
            "step": step,
            "prompt_id": pl.Series([ids[i] for i in who]),
            "n_rollouts": np.full(len(step), k),
            "n_correct": rng.binomial(k, p[who]),
        }
    )
    return df, ids


ID_SCENARIO = (
    'name = "ids"\n[world]\nlog = "{log}"\n{extra}\n[run]\nbatch_size = 6\nseeds = 1\nworkers = 1\n'
    '[[policies]]\nname = "US"\ntype = "uniform"\n[[policies]]\nname = "DPS"\ntype = "dps"\ndecay = 0.7\n'
)


def replay_and_write_logs(tmp_path: Path, log: str, extra: str = "", name: str = "out") -> Path:
    from dps.cli import main

    sc = tmp_path / f"{name}.toml"
    sc.write_text(ID_SCENARIO.format(log=log, extra=extra))
    out = tmp_path / name
    assert main(["replay", str(sc), "--out", str(out), "--quiet", "--no-plots", "--write-logs"]) == 0
    return out


@pytest.mark.parametrize(
    "kind, closed", [("hashes", False), ("sparse ints", False), ("hashes", True), ("dense ints", False)]
)
def test_written_logs_name_prompts_by_the_users_ids(
    tmp_path: Path, kind: str, closed: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    df, ids = dense_log_with_ids(kind)
    df.write_parquet(tmp_path / "log.parquet")
    out = replay_and_write_logs(tmp_path, "log.parquet", "closed_loop = 0.05" if closed else "")
    written = sorted((out / "logs").glob("*.parquet"))
    assert [p.name for p in written] == (
        ["DPS-seed0.parquet", "DPS_open_loop_-seed0.parquet", "US-seed0.parquet", "US_open_loop_-seed0.parquet"]
        if closed
        else ["DPS-seed0.parquet", "US-seed0.parquet"]
    )
    logged = {(r["step"], r["prompt_id"]): (r["n_rollouts"], r["n_correct"]) for r in df.iter_rows(named=True)}
    order = sorted(ids)
    for path in written:
        w = pl.read_parquet(path)
        if kind == "dense ints":  # the dense ids are the user's own: nothing to add
            assert w.columns == ["step", "prompt_id", "n_rollouts", "n_correct"]
            continue
        assert w.columns == ["step", "prompt_id", "prompt_key", "n_rollouts", "n_correct"]
        assert w["prompt_key"].dtype == df["prompt_id"].dtype and w["prompt_key"].null_count() == 0
        # each dense id is the user's id at that place in sorted order (how the reader assigned them)
        assert w["prompt_key"].to_list() == [order[i] for i in w["prompt_id"]]
        if not closed or "open_loop" in path.name:  # every cell is logged: the world returned the logged group
            assert all(
                logged[(r["step"], r["prompt_key"])] == (r["n_rollouts"], r["n_correct"])
                for r in w.iter_rows(named=True)
            )


@pytest.mark.parametrize("kind", ["hashes", "sparse ints"])
def test_a_written_log_reads_back_and_replays_like_the_users_own(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from dps.cli import main

    df, ids = dense_log_with_ids(kind)
    df.write_parquet(tmp_path / "log.parquet")
    first = replay_and_write_logs(tmp_path, "log.parquet", name="first")
    written = first / "logs" / "DPS-seed0.parquet"
    w = pl.read_parquet(written)
    capsys.readouterr()
    assert main(["validate", str(written)]) == 0
    said = capsys.readouterr().out.replace('"', "'")
    picked = sorted(set(w["prompt_key"].to_list()))
    assert "prompt_id <- prompt_key" in said and f"{len(picked)} distinct ({picked[0]!r} .. {picked[-1]!r})" in said
    back = read_log(written)
    assert {(r["step"], r["prompt_key"]): r["n_correct"] for r in back.iter_rows(named=True)} == {
        (r["step"], r["prompt_key"]): r["n_correct"] for r in w.iter_rows(named=True)
    }
    # replaying the written log = replaying the same groups as the user's trainer would have logged them
    as_user = w.drop("prompt_id").rename({"prompt_key": "prompt_id"})
    as_user.write_parquet(tmp_path / "as_user.parquet")
    again = replay_and_write_logs(tmp_path, str(written), name="again")
    user = replay_and_write_logs(tmp_path, "as_user.parquet", name="user")
    a, u = pl.read_csv(again / "summary.csv"), pl.read_csv(user / "summary.csv")
    assert a.drop("wall_s", "policy_ms_per_step", "world_ms_per_step").equals(
        u.drop("wall_s", "policy_ms_per_step", "world_ms_per_step")
    )
    for name in ("US-seed0.parquet", "DPS-seed0.parquet"):
        la, lu = pl.read_parquet(again / "logs" / name), pl.read_parquet(user / "logs" / name)
        assert la.equals(lu) and set(la["prompt_key"].to_list()) <= set(picked)


def test_log_world_prompt_keys_are_null_past_the_logs_own_prompts() -> None:
    groups = frame_to_groups(
        pl.DataFrame({"step": [0, 1], "prompt_id": ["b", "a"], "n_rollouts": [4, 4], "n_correct": [1, 2]})
    )
    world = LogWorld(groups, LogEstimator(switch_rate=0.0), num_prompts=4, keys=pl.Series(["a", "b"]))
    assert world.prompt_keys(np.array([1, 3, 0])).to_list() == ["b", None, "a"]
    assert LogWorld(groups, LogEstimator(switch_rate=0.0)).prompt_keys(np.array([0])) is None
    assert SyntheticWorld(preset_params("countdown", num_prompts=10, steps=2)).prompt_keys(np.array([0])) is None


def test_the_timing_wrapper_hands_a_failed_step_back_to_the_policy() -> None:
    """Instrumented lacked abandon(): a failed step left a built-in's ids handed out and the note
    named the wrapper."""
    from dps import DPS, run_step
    from dps.replay.runner import Instrumented

    inner = DPS(num_prompts=20, seed=0)
    before = inner.state_dict()

    def fails(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise RuntimeError("the rollout failed")

    with pytest.raises(RuntimeError) as info:
        run_step(Instrumented(inner), 4, fails)
    assert not getattr(info.value, "__notes__", None)  # no "does not implement abandon()"
    after = inner.state_dict()
    assert before.keys() == after.keys()
    assert all(np.array_equal(np.asarray(before[k]), np.asarray(after[k])) for k in before)
