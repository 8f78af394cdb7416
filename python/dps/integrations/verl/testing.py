"""A CPU stand-in for verl's rollout, to run `DPSTrainer`'s prompt path and replay buffer
against a real TransferQueue without GPUs, Ray workers or a model (as verl's own
``tests/trainer/ppo/v1/*_on_cpu.py`` do).

`SeededRollout` takes the place of verl's `AgentLoopManagerTQ`: for every prompt it receives it
writes k trajectories into TransferQueue, each with a reward drawn from the prompt's success
rate, seeded by (seed, step, prompt id, session), so a rerun or a resumed run sees the same
outcomes; then it marks the group finished, as verl's agent loop workers do. With `delay` the
groups finish one at a time in a background thread while verl's buffer polls, as on GPUs.
`cpu_trainer` builds a `DPSTrainer` with the parts a step needs (config, training set, replay
buffer, policy; stubs for the actor's checkpoint calls); `run_steps` runs the sampling half of
`PPOTrainer.fit`'s steps (prepare_step, sample, clear), which is what dps changes.
`cpu_trainer(..., trainer=DPSAsyncTrainer)` and `run_async_steps` do the same for verl's
``colocate_async`` loop (warm-up batches before the first step; `LateRollout` finishes each
batch's groups only when the next batch arrives, so every selection is made one batch ahead).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any
from unittest.mock import patch

import numpy as np
import torch
import transfer_queue as tq
from omegaconf import OmegaConf
from tensordict import TensorDict

from dps.integrations.verl.trainer import DPSAsyncTrainer, DPSTrainer

PARTITION = "train"


class SeededRollout:
    """verl's rollout stand-in: k scored responses per prompt, written to TransferQueue."""

    def __init__(
        self,
        success: np.ndarray,
        k: int,
        seed: int = 0,
        reward_correct: float = 1.0,
        reward_wrong: float = 0.0,
        delay: float = 0.0,
        by_step: bool = True,
    ):
        self.success = np.asarray(success, float)
        self.by_step = by_step  # False: a prompt's outcomes are the same whenever it is rolled out
        self.k, self.seed = k, seed
        self.reward_correct, self.reward_wrong = reward_correct, reward_wrong
        self.delay = delay  # > 0: groups finish one by one in a background thread, this far apart
        self.batches: list[list[int]] = []  # dataset indices of each batch received, in order
        self.prompts: list[list[Any]] = []  # each batch's raw prompts (chat messages, images included)
        self.threads: list[threading.Thread] = []
        self.seconds = 0.0

    def generate_sequences(self, batch: TensorDict) -> None:
        uids, index = list(batch["uid"]), [int(i) for i in batch["index"]]
        step = int(batch["global_steps"])
        self.batches.append(index)
        self.prompts.append(list(batch["raw_prompt"]) if "raw_prompt" in batch.keys() else [])
        if not self.delay:
            self._finish(uids, index, step)
            return
        running = [{"status": "running"} for _ in uids]
        tq.kv_batch_put(keys=uids, partition_id=PARTITION, tags=running)
        thread = threading.Thread(target=self._finish_slowly, args=(uids, index, step), daemon=True)
        thread.start()
        self.threads.append(thread)

    def _finish_slowly(self, uids: list[str], index: list[int], step: int) -> None:
        for uid, prompt_id in zip(uids, index, strict=True):
            time.sleep(self.delay)
            self._finish([uid], [prompt_id], step)

    def _finish(self, uids: list[str], index: list[int], step: int) -> None:
        started = time.perf_counter()
        keys, rewards = [], []
        for uid, prompt_id in zip(uids, index, strict=True):
            rng = np.random.default_rng([self.seed, step if self.by_step else 0, prompt_id])
            correct = rng.random(self.k) < self.success[prompt_id]
            for session, ok in enumerate(correct):
                keys.append(f"{uid}_{session}_0")
                rewards.append(self.reward_correct if ok else self.reward_wrong)
        n = len(keys)
        scores = torch.zeros(n, 4)
        scores[:, -1] = torch.tensor(rewards)
        fields = TensorDict({"rm_scores": scores, "input_ids": torch.ones(n, 8, dtype=torch.int64)}, batch_size=n)
        tags = [{"status": "success", "seq_len": 8, "global_steps": step} for _ in keys]
        tq.kv_batch_put(keys=keys, partition_id=PARTITION, fields=fields, tags=tags)
        done = [{"is_prompt": True, "status": "finished", "global_steps": step} for _ in uids]
        tq.kv_batch_put(keys=uids, partition_id=PARTITION, tags=done)
        self.seconds += time.perf_counter() - started


class LateRollout(SeededRollout):
    """`SeededRollout` whose groups finish one batch late: a batch's groups are written when the
    next batch is submitted (`flush` writes the last one)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.held: list[tuple[list[str], list[int], int]] = []

    def generate_sequences(self, batch: TensorDict) -> None:
        uids, index = list(batch["uid"]), [int(i) for i in batch["index"]]
        self.batches.append(index)
        tq.kv_batch_put(keys=uids, partition_id=PARTITION, tags=[{"status": "running"} for _ in uids])
        self.flush()
        self.held.append((uids, index, int(batch["global_steps"])))

    def flush(self) -> None:
        while self.held:
            self._finish(*self.held.pop(0))


class _Stub:
    """Accepts the actor / checkpoint-callback calls `_save_checkpoint` and `_load_checkpoint` make."""

    def save_checkpoint(self, local_path: str, *args: Any, **kwargs: Any) -> None:
        Path(local_path).mkdir(parents=True, exist_ok=True)

    def load_checkpoint(self, *args: Any, **kwargs: Any) -> None:
        pass

    def on_save(self, *args: Any, **kwargs: Any) -> None:
        pass


def dataset(num_prompts: int) -> list[dict[str, Any]]:
    """Rows as verl's RLHFDataset returns them (the fields the trainer and rollout read)."""
    return [
        {"raw_prompt": [{"role": "user", "content": f"question {i}"}], "index": i, "data_source": "cpu"}
        for i in range(num_prompts)
    ]


def cpu_config(out: str | Path, batch_size: int, dps: dict[str, Any], resume: bool = False, mode: str = "dps") -> Any:
    return OmegaConf.create(
        {
            "algorithm": {"filter_groups": None},
            "data": {
                "train_batch_size": batch_size,
                "gen_batch_size": None,
                "train_files": [],
                "val_files": [],
                "train_max_samples": -1,
                "val_max_samples": -1,
                "dataloader_num_workers": 0,
                "val_batch_size": 1,
                "validation_shuffle": False,
            },
            "reward": {"reward_model": {"enable": False, "enable_resource_pool": False}},
            "actor_rollout_ref": {"actor": {"checkpoint": {}}},
            "trainer": {
                "total_epochs": 1000,
                "total_training_steps": None,
                "default_local_dir": str(out),
                "default_hdfs_dir": None,
                "resume_mode": "auto" if resume else "disable",
                "resume_from_path": None,
                "del_local_ckpt_after_load": False,
                "v1": {
                    "trainer_mode": mode,
                    "colocate_async": {"num_warmup_batches": 1},
                    "sampler": {
                        "custom_sampler": None,
                        "max_off_policy_threshold": None,
                        "max_off_policy_strategy": "drop",
                        "sampler_kwargs": {},
                    },
                },
            },
            "skip": {"rollout_tq": {"enable": False}},
            "dps": dps,
        }
    )


def cpu_trainer(
    config: Any,
    rollout: SeededRollout,
    num_prompts: int,
    rows: Any = None,
    trainer_class: type[DPSTrainer | DPSAsyncTrainer] = DPSTrainer,
) -> Any:
    """A dps trainer with its config, data, replay buffer and policy, and stubs for the rest.
    `rows`: the training set (default `dataset(num_prompts)`), e.g. a verl dataset of image prompts."""
    trainer = trainer_class.__new__(trainer_class)
    trainer.trainer_mode = config.trainer.v1.trainer_mode
    trainer._restored_tq_prompt_count = 0
    trainer.config = config
    trainer.parameter_sync_step = 1
    trainer.use_critic = False
    trainer.tokenizer = trainer.processor = None
    trainer.actor_rollout_wg = trainer.checkpoint_callback = _Stub()
    trainer.replay_buffer = trainer._build_replay_buffer()
    trainer.replay_buffer.poll_interval = 0.0
    rows = dataset(num_prompts) if rows is None else rows
    with (
        patch("verl.trainer.ppo.v1.trainer_base.create_rl_dataset", side_effect=[rows, [rows[0]]]),
        patch("verl.trainer.ppo.v1.trainer_base.create_rl_sampler", return_value=None),
    ):
        trainer._init_dataloader()
    trainer.agent_loop_manager = rollout
    trainer._load_checkpoint()
    return trainer


def run_steps(trainer: DPSTrainer, steps: int, save_every: int = 0) -> list[dict[str, float]]:
    """`PPOTrainer.fit`'s sampling half, `steps` times: dispatch the batch, sample (observe,
    evict, refill), clear the trained groups; checkpoint every `save_every` steps."""
    batch_size = int(trainer.config.data.train_batch_size)
    all_metrics = []
    for _ in range(steps):
        trainer.global_steps += 1
        started = time.perf_counter()
        trainer.prepare_step()
        batch, metrics = trainer.replay_buffer.sample(
            global_steps=trainer.global_steps, partition_id=PARTITION, batch_size=batch_size
        )
        metrics["step_seconds"] = time.perf_counter() - started
        metrics["trained_uids"] = sorted({key.rsplit("_", 2)[0] for key in batch.keys})
        metrics["trained_keys"] = list(batch.keys)
        tq.kv_clear(keys=batch.keys, partition_id=PARTITION)
        if save_every and trainer.global_steps % save_every == 0:
            trainer._save_checkpoint()
        all_metrics.append(metrics)
    return all_metrics


def run_async_steps(trainer: DPSAsyncTrainer, steps: int, save_every: int = 0) -> list[dict[str, Any]]:
    """`PPOTrainerColocateAsync.fit`'s sampling half: before the first step (and after a resume)
    verl's re-issue of the prompts in flight and its warm-up batches, then `steps` times prepare,
    sample, clear, checkpoint every `save_every` steps."""
    batch_size = int(trainer.config.data.train_batch_size)
    trainer.global_steps += 1
    trainer._reissue_inflight_prompts()
    trainer._add_async_warmup_batches(trainer.config.trainer.v1.colocate_async.num_warmup_batches)
    all_metrics = []
    for _ in range(steps):
        trainer.prepare_step()
        batch, metrics = trainer.replay_buffer.sample(
            global_steps=trainer.global_steps, partition_id=PARTITION, batch_size=batch_size
        )
        metrics["trained_uids"] = sorted({key.rsplit("_", 2)[0] for key in batch.keys})
        tq.kv_clear(keys=batch.keys, partition_id=PARTITION)
        if save_every and trainer.global_steps % save_every == 0:
            trainer._save_checkpoint()
        all_metrics.append(metrics)
        trainer.global_steps += 1  # as fit() does: one past the last step run
    return all_metrics


def clear_partition() -> None:
    """Remove whatever a test left in the training partition."""
    listing = tq.kv_list(PARTITION) or {}
    keys = list(listing.get(PARTITION, {}))
    if keys:
        tq.kv_clear(keys=keys, partition_id=PARTITION)
