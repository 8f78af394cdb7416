"""DPSTrainer and DPSReplayBuffer against a real TransferQueue on CPU (run by `make test-verl`).

The rollout is `SeededRollout` (verl's agent loop replaced by seeded Bernoulli rewards written
into TransferQueue); everything above it is verl 0.9.1's own code: the sync ReplayBuffer's
polling, eviction and refill loop, `prepare_step`, `_submit_batch_to_rollout`, the checkpoint
save and load, with our overrides.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

pytest.importorskip("verl.trainer.ppo.v1", reason="verl is tested in its own venv: make test-verl")

import ray  # noqa: E402
import transfer_queue as tq  # noqa: E402

from dps.integrations.verl.testing import (  # noqa: E402
    SeededRollout,
    clear_partition,
    cpu_config,
    cpu_trainer,
    run_steps,
)
from dps.logs import read_log  # noqa: E402
from dps.policies.base import Policy  # noqa: E402

N, B, K = 40, 8, 4


@pytest.fixture(scope="module", autouse=True)
def transfer_queue():
    # TransferQueue's controller and two storage units ask Ray for one CPU each; a 2-core machine
    # has too few unless Ray is told of more (they are mostly idle).
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    tq.init()
    yield
    tq.close()
    ray.shutdown()


@pytest.fixture(autouse=True)
def clean_partition():
    yield
    clear_partition()


class Recording(Policy):
    """Wraps a policy and records every call the trainer makes to it."""

    def __init__(self, inner: Policy):
        self.inner, self.num_prompts, self.max_rounds = inner, inner.num_prompts, inner.max_rounds
        self.selected: list[list[int]] = [[]]
        self.admitted: list[int] = []
        self.observed: list[np.ndarray] = []

    def select(self, batch_size):
        ids = self.inner.select(batch_size)
        self.selected[-1].extend(ids.tolist())
        return ids

    def admit(self, prompt_ids, n_correct, n_rollouts):
        self.admitted.extend(np.asarray(prompt_ids).tolist())
        return self.inner.admit(prompt_ids, n_correct, n_rollouts)

    def observe(self, prompt_ids, n_correct, n_rollouts):
        self.observed.append(np.asarray(prompt_ids).copy())
        self.selected.append([])
        self.inner.observe(prompt_ids, n_correct, n_rollouts)

    def metrics(self):
        return self.inner.metrics()

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, state):
        self.inner.load_state_dict(state)

    def save(self, path):
        self.inner.save(path)

    def load(self, path):
        self.inner.load(path)


def mixed_success(seed: int = 0) -> np.ndarray:
    """A third of the prompts always solved, a third never, a third at one half."""
    return np.random.default_rng(seed).permutation(np.repeat([1.0, 0.0, 0.5], [14, 13, 13]))


def build(tmp_path, policy="dps", options=None, success=None, resume=False):
    rollout = SeededRollout(mixed_success() if success is None else success, k=K, seed=1)
    config = cpu_config(tmp_path, B, {"policy": policy, "seed": 3, "options": options or {}}, resume=resume)
    trainer = cpu_trainer(config, rollout, N)
    recording = Recording(trainer.driver.policy)
    trainer.driver.policy = recording
    return trainer, rollout, recording


def trained_prompts(trainer, metrics) -> list[int]:
    prompt_of = trainer.driver.last_step.prompt_of
    return sorted(prompt_of[uid] for uid in metrics["trained_uids"])


def test_rollout_gets_exactly_the_policys_prompts_and_each_group_is_observed_once(tmp_path):
    trainer, rollout, recording = build(tmp_path, "dps", {"decay": 0.7})
    for step in range(4):
        metrics = run_steps(trainer, 1)[0]
        selected = recording.selected[step]
        assert len(selected) == B
        assert rollout.batches[step] == selected  # the rows verl rolled out, in the policy's order
        assert len(recording.observed) == step + 1  # one observe per step
        assert sorted(recording.observed[step].tolist()) == sorted(selected)  # every group once
        assert trained_prompts(trainer, metrics) == sorted(selected)
        assert metrics["dps/groups_rolled_out"] == B and metrics["dps/groups_evicted"] == 0
    assert "dps/pred_accuracy" in metrics  # the policy's own metrics reach verl's logger


def test_ratedps_is_taken_by_name_like_any_builtin(tmp_path):
    from dps import RateDPS

    trainer, rollout, recording = build(tmp_path, "ratedps", {"revisit": 0.25})
    assert isinstance(recording.inner, RateDPS) and recording.inner.config()["revisit"] == 0.25
    for step in range(3):
        metrics = run_steps(trainer, 1)[0]
        assert rollout.batches[step] == recording.selected[step]
        assert sorted(recording.observed[step].tolist()) == sorted(recording.selected[step])
    assert "dps/switch_rate" in metrics


def test_gate_evicts_rejected_groups_and_verl_refills_them(tmp_path):
    trainer, rollout, recording = build(tmp_path, "ds", {"max_rounds": 4})
    success = mixed_success()
    for step in range(3):
        metrics = run_steps(trainer, 1)[0]
        selected = recording.selected[step]
        dispatched = sum(len(b) for b in rollout.batches) - sum(len(s) for s in recording.selected[:step])
        assert dispatched == len(selected) > B  # verl asked for refills; the policy chose them
        assert Counter(recording.observed[step].tolist()) == Counter(selected)  # each group once
        assert sorted(recording.admitted[-len(selected) :]) == sorted(selected)  # admit once per group
        trained = trained_prompts(trainer, metrics)
        assert len(trained) == B
        record = trainer.driver.last_step
        correct = dict(zip(record.ids, record.n_correct, strict=True))
        assert all(0 < correct[p] < K for p in trained)  # only groups the gate kept
        assert all(success[p] == 0.5 for p in trained)
        rolled_constant = sum(correct[p] in (0, K) for p in selected)
        assert metrics["dps/groups_evicted"] == rolled_constant  # every rejected group evicted
        assert metrics["dps/gate_kept_at_cap"] == 0
    left = (tq.kv_list("train") or {}).get("train", {})
    assert left == {}  # evicted, surplus and trained groups are all gone from TransferQueue


def test_gate_at_its_cap_trains_on_rejected_groups_instead_of_waiting_forever(tmp_path):
    trainer, rollout, recording = build(tmp_path, "ds", {"max_rounds": 2}, success=np.ones(N))
    metrics = run_steps(trainer, 1)[0]
    assert len(recording.selected[0]) == 2 * B  # the prompt budget: max_rounds batches
    assert len(trained_prompts(trainer, metrics)) == B
    assert metrics["dps/groups_evicted"] + metrics["dps/gate_kept_at_cap"] == 2 * B
    assert metrics["dps/gate_kept_at_cap"] >= B


def test_checkpoint_resume_continues_the_selection_exactly(tmp_path):
    straight, _, straight_calls = build(tmp_path / "straight", "dps+ds", {"decay": 0.7, "max_rounds": 3})
    run_steps(straight, 6)
    first, _, _ = build(tmp_path / "resumed", "dps+ds", {"decay": 0.7, "max_rounds": 3})
    run_steps(first, 3, save_every=3)
    run_steps(first, 1)  # a step after the checkpoint, lost when the run stops
    resumed, _, resumed_calls = build(tmp_path / "resumed", "dps+ds", {"decay": 0.7, "max_rounds": 3}, resume=True)
    assert resumed.global_steps == 3
    run_steps(resumed, 3, save_every=3)
    assert resumed_calls.selected[:3] == straight_calls.selected[3:6]
    straight._save_checkpoint()
    a = read_log(tmp_path / "straight" / "rollouts.parquet")
    b = read_log(tmp_path / "resumed" / "rollouts.parquet")
    assert a.equals(b) and a["step"].unique().to_list() == [1, 2, 3, 4, 5, 6]


def test_resume_from_a_checkpoint_without_policy_state_is_refused(tmp_path):
    trainer, _, _ = build(tmp_path, "dps")
    run_steps(trainer, 1)
    trainer._save_checkpoint()
    (tmp_path / "global_step_1" / "dps_policy.npz").unlink()
    with pytest.raises(FileNotFoundError, match="no dps policy state"):
        build(tmp_path, "dps", resume=True)


def test_verl_filter_groups_and_a_colocated_reward_model_are_refused(tmp_path):
    rollout = SeededRollout(mixed_success(), k=K)
    config = cpu_config(tmp_path, B, {"policy": "dps"})
    config.algorithm.filter_groups = {"enable": True, "metric": "acc"}
    with pytest.raises(ValueError, match="dynamic sampling is a dps policy"):
        cpu_trainer(config, rollout, N)
    config = cpu_config(tmp_path, B, {"policy": "dps"})
    config.reward.reward_model.enable = True
    with pytest.raises(ValueError, match="needs rewards when groups finish"):
        cpu_trainer(config, rollout, N)
    config = cpu_config(tmp_path, B, {"policy": "dps", "lambda": 0.7})
    with pytest.raises(ValueError, match=r"unknown keys \['lambda'\]"):
        cpu_trainer(config, rollout, N)


@pytest.mark.parametrize(
    "script, batch, decay, model",
    [
        ("math_dps.sh", 256, 0.7, "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"),
        ("geo3k_dps.sh", 512, 0.5, "Qwen/Qwen2.5-VL-3B-Instruct"),
    ],
)
def test_launch_scripts_compose_with_verls_config(script, batch, decay, model):
    """Every override in the GPU launch scripts is a key of verl 0.9.1's config (Hydra refuses
    unknown ones); the scripts themselves were not run here."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "DRY_RUN": "1", "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", str(root / "scripts" / "verl" / script)], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    config = yaml.safe_load(result.stdout)
    assert config["trainer"]["v1"]["trainer_mode"] == "dps"
    assert config["data"]["train_batch_size"] == batch
    assert config["actor_rollout_ref"]["rollout"]["n"] == 8
    assert config["dps"]["policy"] == "dps" and config["dps"]["options"] == {"decay": decay}
    assert config["actor_rollout_ref"]["actor"]["clip_ratio_high"] == 0.28
    assert config["actor_rollout_ref"]["model"]["path"] == model
    # verl's multimodal data path, as its geo3k example sets it: the images column of its
    # preprocessed Parquet, and the processor of the model folder (no processor code to trust)
    assert config["data"]["image_key"] == "images"
    assert config["data"]["custom_cls"]["path"] is None
    assert not config["actor_rollout_ref"]["model"]["trust_remote_code"]


def test_policy_share_of_the_step_is_logged(tmp_path, monkeypatch):
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    trainer, _, _ = build(tmp_path, "dps")
    monkeypatch.setattr(PPOTrainer, "_compute_metrics", lambda self, *args, **kwargs: None)
    metrics = {"dps/policy_seconds": 0.5}
    trainer._compute_metrics(None, metrics, {"step": 10.0}, global_steps=1, epoch=0)
    assert metrics["dps/policy_share_of_step"] == pytest.approx(0.05)


def test_groups_finishing_while_verl_polls_are_each_observed_once(tmp_path):
    rollout = SeededRollout(mixed_success(), k=K, seed=1, delay=0.01)
    config = cpu_config(tmp_path, B, {"policy": "dps+ds", "seed": 3, "options": {"max_rounds": 4}})
    trainer = cpu_trainer(config, rollout, N)
    trainer.replay_buffer.poll_interval = 0.005
    recording = Recording(trainer.driver.policy)
    trainer.driver.policy = recording
    for step in range(3):
        metrics = run_steps(trainer, 1)[0]
        selected = recording.selected[step]
        assert Counter(recording.observed[step].tolist()) == Counter(selected)
        assert sorted(recording.admitted[-len(selected) :]) == sorted(selected)
        record = trainer.driver.last_step
        correct = dict(zip(record.ids, record.n_correct, strict=True))
        trained = trained_prompts(trainer, metrics)
        assert len(trained) == B
        if metrics["dps/gate_kept_at_cap"] == 0:
            assert all(0 < correct[p] < K for p in trained)
        rejected = sum(correct[p] in (0, K) for p in selected)
        assert metrics["dps/groups_evicted"] + metrics["dps/gate_kept_at_cap"] == rejected
    for thread in rollout.threads:
        thread.join(timeout=10)
    assert (tq.kv_list("train") or {}).get("train", {}) == {}


def test_the_entry_point_refuses_another_trainer_mode(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "dps.integrations.verl", "trainer.v1.trainer_mode=colocate_async"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # Hydra writes outputs/ there
    )
    assert result.returncode != 0
    assert "trainer_mode='colocate_async', where the dps section would be ignored" in result.stderr
