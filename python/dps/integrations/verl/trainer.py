"""`DPSTrainer` and `DPSAsyncTrainer`: verl's V1 trainers with every prompt chosen by a dps policy.

Registered as trainer mode ``dps`` (``trainer.v1.trainer_mode=dps``). What it changes in
verl 0.9.1's `PPOTrainer`:

* `_next_train_batch(n)` (the batch and every refill) asks the policy for n ids and collates
  those rows of the training set, instead of reading the shuffled dataloader;
* `_build_replay_buffer` builds a `DPSReplayBuffer`, which observes each finished group once,
  evicts the groups the policy's `admit` rejects (verl refills them) and observes the step;
* `_save_checkpoint` / `_load_checkpoint` keep the policy state in ``global_step_N/dps_policy.npz``
  and the rollout log (``rollouts.parquet``) in the run's checkpoint folder.

verl's base class treats every trainer mode other than ``sync`` as asynchronous, so the
trainer reports ``trainer_mode == "sync"`` to it while registered under ``dps``.

`DPSAsyncTrainer` (trainer mode ``dps_async``) is verl's ``colocate_async`` trainer (generation
runs ``trainer.v1.colocate_async.num_warmup_batches`` batches ahead of the update, rollout and
actor colocated) with the same prompt path: the policy selects step t + 1's prompts while step
t's groups may still be in flight, and each step observes the groups finished since the last
(`FlightDriver`, `DPSAsyncReplayBuffer`). Its checkpoint adds the flight table
(``dps_flights.json``) to the policy state; verl saves TransferQueue and re-issues the prompts
that were in flight.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf
from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_colocate_async import PPOTrainerColocateAsync
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
from verl.utils import tensordict_utils as tu
from verl.utils.checkpoint.checkpoint_manager import find_latest_ckpt_path
from verl.utils.dataset.rl_dataset import collate_fn

from dps.integrations.verl.buffer import DPSAsyncReplayBuffer, DPSReplayBuffer
from dps.integrations.verl.driver import FlightDriver, StepDriver, check_observe
from dps.policies.base import Policy
from dps.policies.registry import make_policy

TRAINER_MODE = "dps"
ASYNC_TRAINER_MODE = "dps_async"
LOG_FILE = "rollouts.parquet"
#: The `dps` config section's defaults (overridden by the run's config).
DEFAULTS: dict[str, Any] = {
    "policy": "dps",  # a name for dps.policies.make_policy: dps, uniform, ds, dps+ds, module:Class, ...
    "seed": 0,
    "options": {},  # keyword options of the policy, e.g. {decay: 0.7}
    "correct_key": None,  # reward_extra_info key holding correctness (e.g. acc); None: reward >= threshold
    "threshold": 0.5,
    "observe": "correct",  # what the policy observes: correct (counts) or reward (each response's reward)
    "log": True,  # write rollouts.parquet into trainer.default_local_dir
    "placement_timeout_s": 60.0,  # the longest wait for Ray to place the run's actors; None: no limit
}


def dps_options(config: DictConfig) -> dict[str, Any]:
    section = config.get("dps", None)
    given = OmegaConf.to_container(section, resolve=True) if section is not None else {}
    assert isinstance(given, dict)
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"config section dps: unknown keys {unknown}; known: {sorted(DEFAULTS)}")
    options = {**DEFAULTS, **given}
    check_observe(options["observe"])
    return options


def build_policy(options: dict[str, Any], num_prompts: int) -> Policy:
    return make_policy(
        str(options["policy"]), num_prompts=num_prompts, seed=int(options["seed"]), **(options["options"] or {})
    )


class _DPSPrompts:
    """What both dps trainers change in verl's `PPOTrainer`: the prompts, the policy's
    checkpoint, the metrics. The subclass builds `driver` in `_build_replay_buffer`."""

    config: Any
    driver: StepDriver | FlightDriver
    dps: dict[str, Any]
    global_steps: int
    train_dataset: Any

    def _log_path(self) -> Path | None:
        return Path(self.config.trainer.default_local_dir) / LOG_FILE if self.dps["log"] else None

    def _buffer_options(self) -> dict[str, Any]:
        sampler = self.config.trainer.v1.sampler
        return {
            "correct_key": self.dps["correct_key"],
            "threshold": float(self.dps["threshold"]),
            "max_off_policy_threshold": sampler.max_off_policy_threshold,
            "max_off_policy_strategy": sampler.max_off_policy_strategy,
            "sampler_kwargs": sampler.sampler_kwargs,
        }

    def _check_reward_at_sampling(self) -> None:
        """The policy needs each group's rewards when it finishes (as verl's DAPO filter does)."""
        reward_model = self.config.reward.reward_model
        if reward_model.enable and not reward_model.enable_resource_pool:
            raise ValueError(
                "DPSTrainer needs rewards when groups finish: use a rule-based reward or "
                "reward.reward_model.enable_resource_pool=True (a colocated reward model scores only after sampling)"
            )
        filter_groups = self.config.algorithm.get("filter_groups", None)
        if filter_groups is not None and filter_groups.get("enable", False):
            raise ValueError(
                "algorithm.filter_groups.enable=True: with DPSTrainer, dynamic sampling is a dps "
                "policy (dps.policy=ds or dps+ds), not verl's filter"
            )

    def _init_dataloader(self) -> None:
        super()._init_dataloader()  # type: ignore[misc]
        self.driver.attach(build_policy(self.dps, len(self.train_dataset)), len(self.train_dataset))

    @property
    def policy(self) -> Policy:
        return self.driver._policy()

    # -- prompts ---------------------------------------------------------------------------
    def _next_train_batch(self, num_prompts: int | None = None) -> Any:
        """The policy's next `num_prompts` prompts, as verl's dataloader would collate them."""
        if num_prompts is None:
            num_prompts = int(self.config.data.train_batch_size)
        uids = [uuid.uuid4().hex for _ in range(num_prompts)]
        ids = self.driver.select(num_prompts, uids, self.global_steps)
        batch_dict = collate_fn([self.train_dataset[int(i)] for i in ids])
        batch_dict["uid"] = np.array(uids[: len(ids)], dtype=object)
        batch = tu.get_tensordict(batch_dict)
        tu.assign_non_tensor_data(batch, "global_steps", self.global_steps)
        return batch

    # -- metrics ---------------------------------------------------------------------------
    def _compute_metrics(self, batch: Any, metrics: dict, timing_raw: dict, global_steps: int, epoch: int) -> None:
        super()._compute_metrics(batch, metrics, timing_raw, global_steps=global_steps, epoch=epoch)  # type: ignore[misc]
        if timing_raw.get("step") and "dps/policy_seconds" in metrics:
            metrics["dps/policy_share_of_step"] = metrics["dps/policy_seconds"] / timing_raw["step"]

    # -- checkpoints -----------------------------------------------------------------------
    def _save_checkpoint(self) -> None:
        folder = os.path.join(self.config.trainer.default_local_dir, f"global_step_{self.global_steps}")
        self.driver.save(folder)  # before verl marks the checkpoint as the latest
        super()._save_checkpoint()  # type: ignore[misc]

    def _load_checkpoint(self) -> None:
        super()._load_checkpoint()  # type: ignore[misc]
        folder = self._resumed_folder()
        if folder is not None:
            self.driver.load(folder, self.global_steps)

    def _resumed_folder(self) -> str | None:
        """The checkpoint folder `PPOTrainer._load_checkpoint` resumed from (same rules)."""
        if self.global_steps == 0:
            return None
        trainer = self.config.trainer
        if trainer.resume_mode == "resume_path":
            folder = str(trainer.resume_from_path)
        else:
            folder = find_latest_ckpt_path(os.path.abspath(trainer.default_local_dir))
        if folder is None:
            return None
        return folder if os.path.isabs(folder) else os.path.join(os.getcwd(), folder)


@register_trainer(TRAINER_MODE)
class DPSTrainer(_DPSPrompts, PPOTrainerSync):
    """verl's sync trainer; a dps policy picks every prompt (see the module docstring)."""

    @property
    def trainer_mode(self) -> str:
        return "sync"

    @trainer_mode.setter
    def trainer_mode(self, value: str) -> None:  # PPOTrainer.__init__ assigns the registered name
        if value not in (TRAINER_MODE, "sync"):
            raise ValueError(f"DPSTrainer runs as trainer mode {TRAINER_MODE!r}, not {value!r}")

    def _build_replay_buffer(self) -> ReplayBuffer:
        self.dps = dps_options(self.config)
        if self.parameter_sync_step != 1:
            raise ValueError("DPSTrainer needs one update per step (parameter_sync_step = 1)")
        self._check_reward_at_sampling()
        self.driver = StepDriver(
            int(self.config.data.train_batch_size), self._log_path(), self.dps["observe"], self.dps["threshold"]
        )
        filter_groups = self.config.algorithm.get("filter_groups", None) or {}
        return DPSReplayBuffer(
            self.driver,
            trainer_mode="sync",
            trainer_config={},
            refill_fn=self._add_prompts_to_generate,
            max_inflight_gen_batches=int(filter_groups.get("max_inflight_gen_batches", 1)),
            **self._buffer_options(),
        )

    def _add_prompts_to_generate(self, num_prompts: int) -> int:
        """A refill: at most what the step's prompt budget still allows (0 once it is spent)."""
        assert isinstance(self.driver, StepDriver)
        num_prompts = min(num_prompts, self.driver.budget_left)
        if num_prompts <= 0:
            return 0
        return self._submit_batch_to_rollout(self._next_train_batch(num_prompts))


@register_trainer(ASYNC_TRAINER_MODE)
class DPSAsyncTrainer(_DPSPrompts, PPOTrainerColocateAsync):
    """verl's ``colocate_async`` trainer; a dps policy picks every prompt, in flight."""

    def _build_replay_buffer(self) -> ReplayBuffer:
        self.dps = dps_options(self.config)
        self._check_reward_at_sampling()
        self.driver = FlightDriver(
            int(self.config.data.train_batch_size), self._log_path(), self.dps["observe"], self.dps["threshold"]
        )
        return DPSAsyncReplayBuffer(
            self.driver,
            trainer_mode=self.trainer_mode,
            trainer_config=self.config.trainer.v1.get("colocate_async", {}),
            refill_fn=self._add_prompts_to_generate,
            **self._buffer_options(),
        )
