"""The live trainer end to end on a tiny model: logs that replay, kill -9 and resume, every policy."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("reasoning_gym")

from train_configs import TINY, run_dps, write_config  # noqa: E402

from dps.train.config import config_from_dict  # noqa: E402
from paths import ROOT  # noqa: E402


def _frame(path):
    import polars as pl

    return pl.read_parquet(path).sort("step", "prompt_id")


def test_tiny_run_uniform_and_ds_logs_replayable(tmp_path):
    from dps.logs import read_log
    from dps.train.trainer import train

    out = {}
    for pol in ("uniform", "ds"):
        cfg = config_from_dict(dict(TINY, policy={"name": pol, "batch_size": 4}))
        summary = train(cfg, tmp_path / pol)
        out[pol] = summary
        log = read_log(tmp_path / pol / "rollouts.parquet")
        assert set(log["step"].unique().to_list()) == set(range(4))
        metrics = [json.loads(x) for x in (tmp_path / pol / "metrics.jsonl").read_text().splitlines()]
        assert [m["step"] for m in metrics] == [0, 1, 2, 3]
        assert sum(m["rollouts"] for m in metrics) == int(log["n_rollouts"].sum())
        evals = [json.loads(x) for x in (tmp_path / pol / "eval.jsonl").read_text().splitlines()]
        assert [e["step"] for e in evals] == [0, 2, 4]
        for key in ("time_select", "time_generate", "time_update", "effective_ratio"):
            assert key in metrics[0]
        assert (tmp_path / pol / "model" / "config.json").exists()
    assert out["uniform"]["rollouts_per_trained_group"] == 4.0
    # DS pays for what it filters: at least k rollouts per trained group, usually more
    assert out["ds"]["rollouts_per_trained_group"] >= 4.0
    # the run's log replays with `dps replay`
    r = run_dps(
        "replay",
        str(tmp_path / "ds" / "replay.toml"),
        "--out",
        str(tmp_path / "rep"),
        "--quiet",
        "--no-plots",
        "--workers",
        "1",
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "rep" / "summary.csv").exists()


def test_kill_minus_9_and_resume_loses_and_duplicates_nothing(tmp_path):
    d = dict(TINY, steps=8, log={"eval_every": 2, "checkpoint_every": 2, "progress": False})
    cfg = write_config(tmp_path / "c.toml", d)
    ref = run_dps("train", str(cfg), "--out", str(tmp_path / "ref"))
    assert ref.returncode == 0, ref.stderr
    env = dict(os.environ, DPS_TRAIN_STEP_DELAY="0.4")  # widen the window between steps for the kill
    proc = subprocess.Popen(
        [sys.executable, "-m", "dps.cli", "train", str(cfg), "--out", str(tmp_path / "run")],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    time.sleep(0.2)  # somewhere inside a later step
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "run" / "summary.json").exists()
    res = run_dps("train", str(cfg), "--out", str(tmp_path / "run"))
    assert res.returncode == 0, res.stderr
    assert f"resuming the run in {tmp_path / 'run'} from its checkpoint at step " in res.stderr
    assert "..7 to go" in res.stderr
    a, b = _frame(tmp_path / "ref" / "rollouts.parquet"), _frame(tmp_path / "run" / "rollouts.parquet")
    assert b.select("step", "prompt_id").is_duplicated().sum() == 0
    assert a.equals(b), "the resumed run's log differs from the uninterrupted run's"
    ma = [json.loads(x)["step"] for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert ma == list(range(8))
    ea = [json.loads(x)["step"] for x in (tmp_path / "run" / "eval.jsonl").read_text().splitlines()]
    assert ea == [0, 2, 4, 6, 8]


def test_resume_refuses_a_different_config(tmp_path, capsys):
    from dps.train.trainer import train

    train(config_from_dict(dict(TINY, steps=2)), tmp_path / "r")
    with pytest.raises(ValueError, match="different configuration"):
        train(config_from_dict(dict(TINY, steps=3, grpo={"lr": 0.5})), tmp_path / "r")
    # more steps with the same config continues the run, and says from which step
    capsys.readouterr()
    s = train(config_from_dict(dict(TINY, steps=3)), tmp_path / "r")
    assert s["steps"] == 3
    assert (
        f"resuming the run in {tmp_path / 'r'} from its checkpoint at step 2; steps 2..2 to go"
        in capsys.readouterr().err
    )
    train(config_from_dict(dict(TINY, steps=3)), tmp_path / "r")
    assert "it has done its 3 steps already" in capsys.readouterr().err


def test_config_example_matches_the_preset():
    from train_configs import train_args

    from dps.train.config import build_config

    from_file = build_config(train_args(config=str(ROOT / "configs" / "tiny-cpu.toml")))
    from_preset = build_config(train_args(preset="tiny-cpu"))
    assert from_file.to_dict() == from_preset.to_dict()
    ds = build_config(train_args(preset="tiny-cpu", policy="ds"))
    assert ds.policy.name == "ds" and ds.policy.options == {}


def _user_policy_class():
    """A user's policy in plain Python: always the first batch_size prompts."""
    from dps.policies.base import Policy

    class FirstPrompts(Policy):
        def __init__(self, num_prompts: int, seed: int = 0) -> None:
            self.num_prompts = num_prompts
            self.seen: list[int] = []

        def select(self, batch_size: int) -> np.ndarray:
            return np.arange(batch_size, dtype=np.int64)

        def observe(self, prompt_ids, n_correct, n_rollouts) -> None:
            self.seen.extend(int(i) for i in prompt_ids)

        def state_dict(self):
            return {"seen": np.asarray(self.seen, dtype=np.int64)}

        def load_state_dict(self, state) -> None:
            self.seen = [int(i) for i in state["seen"]]

    return FirstPrompts


def test_user_policy_and_dense_sweep(tmp_path):
    import polars as pl

    from dps.train.trainer import train

    cls = _user_policy_class()
    pol = cls(num_prompts=24)
    d = dict(TINY, steps=2, log={"eval_every": 0, "checkpoint_every": 1, "sweep_every": 2, "progress": False})
    train(config_from_dict(d), tmp_path / "u", policy=pol)
    assert pol.seen == [0, 1, 2, 3, 0, 1, 2, 3]
    log = pl.read_parquet(tmp_path / "u" / "rollouts.parquet")
    assert sorted(set(log["prompt_id"].to_list())) == [0, 1, 2, 3]
    dense = pl.read_parquet(tmp_path / "u" / "dense.parquet")
    # every train prompt, k samples, at steps 0 and 2
    assert dense.group_by("step").len().sort("step")["len"].to_list() == [24, 24]
    assert set(dense["n_rollouts"].to_list()) == {4}
    assert 'log = "dense.parquet"' in (tmp_path / "u" / "replay.toml").read_text()


@pytest.mark.parametrize("name", ["dps", "hr", "mopps", "greso", "bots", "ratedps", "dps+ds"])
def test_every_builtin_policy_trains(tmp_path, name):
    from dps.train.trainer import train

    d = dict(
        TINY,
        steps=3,
        policy={"name": name, "batch_size": 4},
        log={"eval_every": 0, "checkpoint_every": 2, "progress": False},
    )
    s = train(config_from_dict(d), tmp_path / name)
    assert s["steps"] == 3 and s["rollouts_total"] >= 3 * 4 * 4


def test_a_checkpoint_holding_a_pickled_object_is_refused(tmp_path):
    import torch

    from dps.models.tiny import char_tokenizer, tiny_model
    from dps.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from dps.train.config import GRPOConfig
    from dps.train.grpo import GRPOLearner

    tok = char_tokenizer()
    model = tiny_model(tok, 32, 1, 2, 1, 64, 64, seed=0)
    learner = GRPOLearner(model, GRPOConfig(), 0, torch.device("cpu"))
    from dps import DPS

    policy = DPS(num_prompts=8, seed=0)
    save_checkpoint(tmp_path, 3, model, learner, policy, {"rollouts_total": 5}, keep=2)
    step, counters = load_checkpoint(tmp_path / "step-0000003", model, learner, policy, torch.device("cpu"))
    assert step == 3 and counters == {"rollouts_total": 5}
    torch.save({"opt": PickledThing()}, tmp_path / "step-0000003" / "learner.pt")
    with pytest.raises(CheckpointError, match="learner.pt: refused"):
        load_checkpoint(tmp_path / "step-0000003", model, learner, policy, torch.device("cpu"))
    assert not PickledThing.loaded


class PickledThing:
    loaded = False

    def __setstate__(self, state):
        PickledThing.loaded = True


# ---------------------------------------------------------------- the paper's presets
def test_paper_presets_follow_the_released_recipe(tmp_path):
    """paper-countdown / paper-math / paper-geo3k carry docs/method.md#recipe; the CPU-sized variant
    trains with the same algorithm settings (4 optimizer steps per step, sampled evaluation)."""
    from dps.train.presets import preset
    from dps.train.trainer import train

    for name, mini, decay, tokens in (("paper-countdown", 4, 0.5, 1024), ("paper-math", 2, 0.7, 8192)):
        c = config_from_dict(dict(preset(name), model={"path": "/m"}))
        g = c.grpo
        assert (
            g.lr,
            g.weight_decay,
            g.max_grad_norm,
            g.clip_low,
            g.clip_high,
            g.clip_ratio_c,
            g.entropy_coef,
            g.kl_coef,
            g.loss_agg,
            g.std_unbiased,
        ) == (1e-6, 0.1, 1.0, 0.2, 0.28, 10.0, 0.001, 0.0, "token-mean", True)
        assert (c.policy.batch_size, g.mini_batches, c.policy.options["decay"]) == (256, mini, decay)
        assert (c.rollout.k, c.rollout.temperature, c.rollout.top_p, c.rollout.max_new_tokens) == (8, 1.0, 1.0, tokens)
        assert (c.log.eval_mode, c.log.eval_samples, c.log.eval_temperature) == ("sampled", 16, 0.6)
        cpu = config_from_dict(preset(name + "-cpu"))
        assert cpu.grpo.mini_batches == mini and cpu.grpo.clip_ratio_c == 10.0 and cpu.log.eval_mode == "sampled"
    geo = config_from_dict(dict(preset("paper-geo3k"), model={"path": "/m", "chat_template": True}))
    assert (geo.policy.batch_size, geo.grpo.mini_batches, geo.policy.options["decay"]) == (512, 2, 0.5)
    assert (geo.rollout.max_prompt_tokens, geo.rollout.max_new_tokens, geo.grpo.kl_coef) == (1024, 1024, 0.01)
    assert (geo.rollout.format_bonus, geo.grpo.clip_ratio_c, geo.grpo.lr, geo.steps) == (0.1, 10.0, 1e-6, 120)
    assert preset("paper-geo3k")["model"]["chat_template"] and geo.task.name == "geometry3k"
    assert preset("paper-countdown")["rollout"]["max_prompt_tokens"] == 256
    d = preset("paper-countdown-cpu")
    d.update(steps=2, model=TINY["model"], warmup={"steps": 3, "batch_size": 8})
    d["task"]["options"].update(n_train=24, n_test=6, n_warmup=20)
    d["log"].update(eval_samples=4, progress=False)
    summary = train(config_from_dict(d), tmp_path / "cd")
    metrics = [json.loads(x) for x in (tmp_path / "cd" / "metrics.jsonl").read_text().splitlines()]
    assert summary["steps"] == 2 and all(m["update_optimizer_steps"] == 4 for m in metrics)
    evals = [json.loads(x) for x in (tmp_path / "cd" / "eval.jsonl").read_text().splitlines()]
    assert all("test_accuracy_sampled" in e and "test_accuracy_greedy" not in e for e in evals)


def test_a_run_a_step_ahead_selects_before_observing_and_resumes_exactly(tmp_path):
    """policy.lag = 1: step t + 1 is selected before step t's groups are observed; a run stopped
    at its step-2 checkpoint (one step in flight) resumes to the uninterrupted run's log."""
    from dps.policies.base import load_state
    from dps.train.checkpoint import load_in_flight
    from dps.train.trainer import train

    d = dict(TINY, policy={"name": "dps", "batch_size": 4, "lag": 1}, rollout=dict(TINY["rollout"], format_bonus=0.1))
    train(config_from_dict(d), tmp_path / "ref")
    train(config_from_dict(dict(d, steps=2)), tmp_path / "run")
    held = load_in_flight(tmp_path / "run" / "ckpt" / "step-0000002")
    assert len(held) == 1 and held[0].graded  # step 1's groups, rolled out and not observed
    state = load_state(tmp_path / "run" / "ckpt" / "step-0000002" / "policy.npz", "DPS")
    assert sorted(state["in_flight"].tolist()) == sorted(held[0].prompt_ids.tolist())  # the policy's own record
    train(config_from_dict(d), tmp_path / "run")
    a, b = _frame(tmp_path / "ref" / "rollouts.parquet"), _frame(tmp_path / "run" / "rollouts.parquet")
    assert a.equals(b), "the resumed run's log differs from the uninterrupted run's"
    assert set(a["step"].to_list()) == {0, 1, 2, 3}
    steps = [set(a.filter(a["step"] == s)["prompt_id"].to_list()) for s in range(4)]
    assert all(not steps[t] & steps[t + 1] for t in range(3))  # a prompt in flight is not selected again


def test_a_lag_for_a_policy_of_counts_alone_is_refused_before_any_model_work(tmp_path):
    from dps.train.trainer import Trainer

    d = dict(TINY, policy={"name": "uniform", "batch_size": 4, "lag": 1})
    trainer = Trainer(config_from_dict(d), tmp_path / "r", policy=_user_policy_class()(num_prompts=24))
    with pytest.raises(ValueError, match="policy.lag: lag = 1 needs a policy that takes selections in flight"):
        trainer.prepare()
    with pytest.raises(ValueError, match="policy.lag: must be >= 0"):
        config_from_dict(dict(TINY, policy={"name": "uniform", "batch_size": 4, "lag": -1}))
