"""DPS under TRL's real GRPOTrainer on CPU: selection order, the log, resume, two processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("trl")
pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from transformers import TrainerCallback  # noqa: E402

from dps import DPS, DynamicSampling, Policy  # noqa: E402
from dps.logs import LogSpec  # noqa: E402
from dps.logs import read_log as read_any_log  # noqa: E402


def read_log(path: Path):
    """The integration's log: prompt ids are dataset rows, kept as they are."""
    return read_any_log(path, LogSpec(prompt_ids="index"))


sys.path.insert(0, str(Path(__file__).parent))
import trl_tiny  # noqa: E402

N, B, K = trl_tiny.N_PROMPTS, 4, 4
STEPS = 8  # optimizer steps; one generation per two: 4 generations


class Recording(Policy):
    """A DPS that writes every call into a shared event list."""

    def __init__(self, events: list, **options: Any) -> None:
        self.inner = DPS(N, **options)
        self.num_prompts = N
        self.events = events

    def select(self, batch_size: int) -> np.ndarray:
        ids = self.inner.select(batch_size)
        self.events.append(("select", ids.tolist()))
        return ids

    def observe(self, prompt_ids, n_correct, n_rollouts) -> None:
        self.events.append(("observe", np.asarray(prompt_ids).tolist()))
        self.inner.observe(prompt_ids, n_correct, n_rollouts)

    def abandon(self) -> None:
        self.inner.abandon()

    def metrics(self) -> dict[str, float]:
        return self.inner.metrics()

    def state_dict(self) -> dict:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state)


class StepEvents(TrainerCallback):
    def __init__(self, events: list) -> None:
        self.events = events

    def on_step_end(self, args, state, control, **kwargs):
        self.events.append(("optimizer_step", state.global_step))


@pytest.fixture(scope="module")
def full_runs(tmp_path_factory):
    """The uninterrupted run of a flavour (text: a character Qwen2; vlm: the tiny Qwen2-VL on
    figures), trained once per module when a test first asks for it."""
    torch.set_num_threads(1)
    runs: dict[str, dict[str, Any]] = {}

    def run(flavour: str) -> dict[str, Any]:
        if flavour not in runs:
            out = tmp_path_factory.mktemp(f"trl-{flavour}") / "full"
            events: list = []
            policy = Recording(events, decay=0.5, seed=0)
            trainer = trl_tiny.trainer(str(out), policy, STEPS, [StepEvents(events)], flavour=flavour)
            trainer.train()
            log = read_log(out / "rollouts.parquet")
            runs[flavour] = {"out": out, "events": events, "trainer": trainer, "log": log}
        return runs[flavour]

    return run


@pytest.fixture(scope="module")
def full_run(full_runs) -> dict[str, Any]:
    return full_runs("text")


def test_every_generation_is_selected_after_the_previous_one_was_observed(full_run) -> None:
    kinds = [kind for kind, _ in full_run["events"]]
    # steps_per_generation = 2: one generation serves two optimizer steps, then the next is
    # selected, never before the previous generation was observed and trained on.
    assert kinds == ["select", "observe", "optimizer_step", "optimizer_step"] * (STEPS // 2)
    selects = [ids for kind, ids in full_run["events"] if kind == "select"]
    observes = [ids for kind, ids in full_run["events"] if kind == "observe"]
    assert selects == observes and all(len(ids) == B for ids in selects)


def test_the_log_holds_every_group_with_binary_correctness(full_run) -> None:
    log = full_run["log"]
    selects = [ids for kind, ids in full_run["events"] if kind == "select"]
    assert log["step"].to_list() == [t for t in range(STEPS // 2) for _ in range(B)]
    for t, ids in enumerate(selects):
        assert sorted(ids) == log.filter(log["step"] == t)["prompt_id"].to_list()
    assert (log["n_rollouts"] == K).all()
    rewards = np.array(log["rewards"].to_list())
    # Correct = total reward >= 0.5: a wrong answer with the 0.1 format bonus is not correct.
    assert np.array_equal(log["n_correct"].to_numpy(), (rewards >= 0.5).sum(axis=1))
    assert np.any(np.isclose(rewards, 0.1)), "the run should hold wrong answers with a format bonus"
    c = log["n_correct"].to_numpy()
    assert np.any((c > 0) & (c < K))


def test_policy_metrics_go_to_trls_logs(full_run) -> None:
    history = [h for h in full_run["trainer"].state.log_history if "loss" in h]
    assert len(history) == STEPS
    # Like TRL's own reward metrics, they are logged at the optimizer step that generated.
    generating = history[::2]
    for key in ("dps/pred_accuracy", "dps/partial_share", "dps/admitted", "dps/shortfall", "dps/policy_ms"):
        assert all(key in h for h in generating), key
    assert not any("dps/admitted" in h for h in history[1::2])
    assert all(h["dps/admitted"] == B and h["dps/shortfall"] == 0 for h in generating)
    cost = full_run["trainer"].dps_cost()
    assert cost["generations"] == STEPS // 2 and 0 < cost["policy_s"] < cost["train_s"]


def test_the_log_replays_to_the_same_selections(full_run) -> None:
    from dps.replay.logworld import LogWorld
    from dps.replay.runner import replay

    log = full_run["log"]
    result = replay(
        DPS(N, decay=0.5, seed=0), LogWorld(log, num_prompts=N), steps=STEPS // 2, batch_size=B, record=True
    )
    assert result.groups is not None
    order = np.lexsort((result.groups["prompt_id"], result.groups["step"]))
    assert np.array_equal(result.groups["prompt_id"][order], log["prompt_id"].to_numpy())
    assert np.array_equal(result.groups["n_correct"][order], log["n_correct"].to_numpy())


@pytest.mark.parametrize("flavour", ["text", "vlm"])
def test_resume_from_a_checkpoint_selects_what_the_uninterrupted_run_selected(full_runs, flavour, tmp_path) -> None:
    full_run = full_runs(flavour)
    checkpoint = full_run["out"] / "checkpoint-4"
    for name in ("dps_policy.npz", "dps_state.json", "rollouts.parquet"):
        assert (checkpoint / name).exists(), name
    events: list = []
    resumed = trl_tiny.trainer(str(tmp_path / "resumed"), Recording(events, decay=0.5, seed=0), STEPS, flavour=flavour)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    full = full_run["log"]
    again = read_log(tmp_path / "resumed" / "rollouts.parquet")
    assert again["step"].to_list() == full["step"].to_list()
    assert again["prompt_id"].to_list() == full["prompt_id"].to_list()
    assert again["n_correct"].to_list() == full["n_correct"].to_list()
    assert again["rewards"].to_list() == full["rewards"].to_list()
    selects = [ids for kind, ids in events if kind == "select"]
    full_selects = [ids for kind, ids in full_run["events"] if kind == "select"]
    assert selects == full_selects[2:]
    assert np.array_equal(
        resumed.policy.inner.state_dict()["post"], full_run["trainer"].policy.inner.state_dict()["post"]
    )
    # the model resumed too: both runs end on the same weights (a VLM's checkpoint names its weights
    # differently from the model, which transformers' Trainer alone would not restore)
    ended = full_run["trainer"].model.state_dict()
    assert all(torch.equal(value, ended[name]) for name, value in resumed.model.state_dict().items())


def test_correctness_from_a_named_reward_or_a_threshold(full_run) -> None:
    trainer = full_run["trainer"]
    # four prompts x k = 4 responses; columns: accuracy, format bonus
    rewards = torch.tensor([[0, 0.1], [1, 0.1], [0, 0], [1, 0]] * 4, dtype=torch.float32)
    rewards[4:8, 0] = torch.nan  # prompt 1: an accuracy that could not be computed is not correct
    trainer._gathered_rewards = rewards
    n_correct, per_group = trainer._group_outcomes(4)
    assert n_correct.tolist() == [2, 0, 2, 2]
    assert per_group[0] == pytest.approx([0.1, 1.1, 0.0, 1.0])
    trainer._correct_index, trainer.correct_threshold = 1, 0.05  # "format" as the named verifier
    try:
        assert trainer._group_outcomes(4)[0].tolist() == [2, 2, 2, 2]
    finally:
        trainer._correct_index, trainer.correct_threshold = None, 0.5


def test_a_gate_trains_on_admitted_groups_and_reports_the_shortfall(tmp_path) -> None:
    gate = DynamicSampling(DPS(N, decay=0.5, seed=0), lo=0.3, hi=0.7)
    trainer = trl_tiny.trainer(str(tmp_path / "gate"), gate, max_steps=2, save_steps=100)
    trainer.train()
    log = read_log(tmp_path / "gate" / "rollouts.parquet")
    assert log.height == B  # one round: TRL's batch has a fixed shape
    rate = log["n_correct"].to_numpy() / K
    admitted = int(((rate >= 0.3) & (rate <= 0.7)).sum())
    history = [h for h in trainer.state.log_history if "loss" in h]
    assert history[0]["dps/admitted"] == admitted and history[0]["dps/shortfall"] == B - admitted
    # The rejected groups' advantages are zeroed on this rank's rows.
    output = {"advantages": torch.ones(8)}
    trainer._zero_rejected(output, np.array([True, False, True, False]), 8)
    assert output["advantages"].tolist() == [1, 1, 1, 1, 0, 0, 0, 0]


def test_ratedps_by_name_trains_like_any_builtin(tmp_path) -> None:
    from dps.policies.registry import make_policy

    policy = make_policy("ratedps", num_prompts=N, seed=0, revisit=0.25)
    trainer = trl_tiny.trainer(str(tmp_path / "rate"), policy, max_steps=4, save_steps=100)
    trainer.train()
    log = read_log(tmp_path / "rate" / "rollouts.parquet")
    assert log.height == 2 * B and policy.step == 2
    history = [h for h in trainer.state.log_history if "loss" in h]
    assert "dps/switch_rate" in history[0]


def test_observing_rewards_judges_groups_by_their_spread_as_trl_does(tmp_path) -> None:
    """observe="reward": the policy sees each response's weighted total reward; the DS gate keeps
    the groups whose rewards differ, which are the groups TRL itself counts as not zero-std."""
    gate = DynamicSampling(DPS(N, decay=0.5, seed=0))
    trainer = trl_tiny.trainer(str(tmp_path / "graded"), gate, max_steps=4, save_steps=100, observe="reward")
    trainer.train()
    log = read_log(tmp_path / "graded" / "rollouts.parquet")
    history = [h for h in trainer.state.log_history if "loss" in h]
    for generation, first in ((0, history[0]), (1, history[2])):
        rewards = log.filter(log["step"] == generation)["rewards"].to_list()
        differ = sum(len(set(np.round(r, 6))) > 1 for r in rewards)
        assert first["dps/admitted"] == differ
        assert first["frac_reward_zero_std"] == pytest.approx((B - differ) / B)  # TRL's own count
    # a group of one wrong answer with the format bonus and three without: effective by spread,
    # though no response is correct
    groups = trainer._observed(np.arange(2), np.array([0, 4]), [[0.1, 0.0, 0.0, 0.0], [1.1, 1.1, 1.1, 1.1]])
    assert groups.graded and groups.effective.tolist() == [True, False] and groups.states.tolist() == [1, 2]


def test_bad_setups_fail_before_training(tmp_path) -> None:
    with pytest.raises(ValueError, match="num_prompts=10"):
        trl_tiny.trainer(str(tmp_path / "a"), DPS(10), max_steps=1)
    with pytest.raises(ValueError, match="correct_reward='exact'"):
        trl_tiny.trainer(str(tmp_path / "b"), DPS(N), max_steps=1, correct_reward="exact")
    with pytest.raises(ValueError, match="normalize_then_sum"):
        trl_tiny.trainer(
            str(tmp_path / "c"), DPS(N), max_steps=1, observe="reward", multi_objective_aggregation="normalize_then_sum"
        )
    with pytest.raises(ValueError, match="observe must be one of"):
        trl_tiny.trainer(str(tmp_path / "d"), DPS(N), max_steps=1, observe="spread")


def test_two_processes_train_on_one_selection_and_the_policy_sees_each_group_once(tmp_path) -> None:
    script = Path(__file__).parent / "trl_two_ranks.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    with socket.socket() as free:  # port 0 would hang torch.distributed.run's static rendezvous
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(port),
        str(script),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rows-rank{r}.json").read_text()) for r in range(2)]
    log = read_log(tmp_path / "run" / "rollouts.parquet")
    generations = sorted(log["step"].unique().to_list())
    assert generations == [0, 1]
    for t in generations:
        selected = log.filter(log["step"] == t)["prompt_id"].to_list()
        assert len(selected) == B == len(set(selected))  # observed once each
        rows = ranks[0][str(t)] + ranks[1][str(t)]
        assert ranks[0][str(t)] and ranks[1][str(t)]  # both ranks generated part of the batch
        assert sorted(rows) == sorted(p for p in selected for _ in range(K))  # k rows per selected prompt
    # Every rank saw the same selection (broadcast from the main process).
    assert ranks[0]["selected"] == ranks[1]["selected"]


def test_a_generation_whose_scoring_raises_is_abandoned(tmp_path) -> None:
    calls = [0]

    def flaky(prompts: list, completions: list, prompt_id: list, **kwargs: Any) -> list[float]:
        calls[0] += 1
        if calls[0] == 2:
            raise RuntimeError("verifier went away")
        return trl_tiny.accuracy(prompts, completions, prompt_id)

    policy = DPS(N, decay=0.5, seed=0)
    trainer = trl_tiny.trainer(str(tmp_path / "flaky"), policy, max_steps=4, reward_funcs=[flaky], save_steps=100)
    with pytest.raises(RuntimeError, match="verifier went away"):
        trainer.train()
    state = policy.state_dict()
    assert state["step"] == 1 and len(state["pending"]) == 0  # the second generation's ids were handed back
    assert len(policy.select(N)) == N
    assert read_log(tmp_path / "flaky" / "rollouts.parquet")["step"].to_list() == [0] * B  # written on the way out


@pytest.mark.parametrize("task", ["arithmetic", "figures"])
def test_the_shipped_example_trains_four_generations_on_a_tiny_local_setting(tmp_path, task) -> None:
    """`python examples/trl_grpo_dps.py --tiny --task TASK --steps 4 --out DIR`, as a user runs it
    (nothing downloaded): arithmetic on a text Qwen2, figures (images) on a tiny Qwen2-VL."""
    example = Path(__file__).resolve().parents[2] / "examples" / "trl_grpo_dps.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, str(example), "--tiny", "--task", task, "--steps", "4", "--out", str(tmp_path / "run")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = read_log(tmp_path / "run" / "rollouts.parquet")
    assert sorted(log["step"].unique().to_list()) == [0, 1, 2, 3]  # 4 generations, each a DPS step
    assert log.height == 4 * 4 and set(log["n_rollouts"].to_list()) == {8}
    cost = json.loads(proc.stdout.split("dps cost:", 1)[1].strip().splitlines()[0])
    assert cost["generations"] == 4 and 0 < cost["policy_share"] < 1
    # the log replays: a fresh DPS fed the logged outcomes selects what the run rolled out
    fresh = DPS(32, decay=0.7, seed=0)
    for t in range(4):
        rows = log.filter(log["step"] == t).sort("prompt_id")
        ids = np.array(rows["prompt_id"].to_list())
        assert sorted(fresh.select(4).tolist()) == ids.tolist()
        fresh.observe(ids, np.array(rows["n_correct"].to_list()), np.full(4, 8))


def test_a_task_becomes_trls_dataset_and_reward() -> None:
    from dps.integrations import tiny
    from dps.integrations.trl import task_dataset, task_reward
    from dps.tasks import make_task

    task = tiny.figures_task(n_train=4, n_test=2)
    data = task_dataset(task)
    assert data.column_names == ["prompt", "prompt_id", "images"] and data["prompt_id"] == [0, 1, 2, 3]
    row = data[2]
    assert [part["type"] for part in row["prompt"][0]["content"]] == ["image", "text"]  # the image first
    assert row["images"][0].size == (56, 56)  # decoded by datasets
    reward = task_reward(task, timeout_s=0)
    answer = task.train()[2].answer
    completions = [[{"role": "assistant", "content": f"it has {answer} sides"}], "no idea", f"{int(answer) + 1}"]
    assert reward.__name__ == "accuracy"
    assert reward([None] * 3, completions, prompt_id=[2, 2, 2]) == [1.0, 0.0, 0.0]
    text = task_dataset(make_task("arithmetic-qa", n_train=8, n_test=4))
    assert text.column_names == ["prompt", "prompt_id"] and isinstance(text[0]["prompt"][0]["content"], str)
