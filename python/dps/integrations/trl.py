"""DPS in TRL: `DPSGRPOTrainer`, TRL's `GRPOTrainer` with each step's prompts chosen by a
dps policy (built-in or your own), pinned to ``trl==1.16.*``.

How it meets TRL's loop (trl/trainer/grpo_trainer.py, 1.16):

* TRL generates once per *generation batch* (``generation_batch_size`` completions =
  ``B = generation_batch_size / num_generations`` prompts x k) in ``_generate_and_score_completions``
  and reuses it for ``steps_per_generation x num_iterations`` micro-steps. One generation is one
  policy step. Its dataloader (RepeatSampler) pre-computes prompt indices ahead of time; they are
  ignored: the prompts are chosen *inside* ``_generate_and_score_completions``, after the previous
  generation was observed and trained on, so there is no lag.
* Several processes: the main process selects and broadcasts the ids; every rank builds its
  slice of the same global batch (prompt-major, k rows per prompt, TRL's own layout); the
  rewards TRL gathers across ranks give the main process every group once, which it admits,
  observes and logs. Only the main process's policy object is used.
* Correctness: a response is correct when the reward function named ``correct_reward`` (or,
  without one, the weighted total reward) is ``>= correct_threshold``; a NaN (None) reward is
  not correct. With a 0/1 accuracy reward plus a small format bonus, the total of a wrong answer
  stays below 0.5, so the bonus never turns a wrong group into a partial one.
* What the policy observes (``observe``): ``"correct"`` (default), each group's count of correct
  responses as above; or ``"reward"``, each response's weighted total reward, the number TRL's
  ``sum_then_normalize`` advantages are computed from (``nansum`` of reward x ``reward_weights``;
  a response no function scored counts 0, as in the log): a group is effective when its rewards
  differ (`GroupOutcomes.from_rewards`, population spread above `SPREAD_TOL`; TRL logs the same
  groups in ``frac_reward_zero_std``), otherwise solved at ``correct_threshold``. With
  ``multi_objective_aggregation="normalize_then_sum"`` the advantages come from each function's
  own spread, not the total's, so ``observe="reward"`` is refused there.
* A gate (``admit``, e.g. ``DynamicSampling``): TRL's batches have a fixed shape, so a rejected
  group cannot be replaced by a new rollout inside a step. The gate runs one round; rejected
  groups stay in the batch with advantage 0 (no policy-gradient signal; their tokens still count
  in a token-level loss's denominator, and a KL term with ``beta > 0`` still applies to them).
  ``dps/admitted`` and ``dps/shortfall`` in TRL's logs say how many groups were trained on.
* Checkpoints: the policy state (``dps_policy.npz``), the generation counter and a copy of the
  rollout log go into each ``checkpoint-N`` folder; ``resume_from_checkpoint`` restores them.
  A resumed run selects exactly what the uninterrupted run selects when the checkpoint falls on
  a generation boundary (``save_steps`` a multiple of ``steps_per_generation x num_iterations /
  gradient_accumulation_steps``); TRL itself regenerates after a resume, so a checkpoint inside
  a generation cannot be resumed exactly and is warned about.
* Logs: every rolled-out group goes to ``output_dir/rollouts.parquet`` (dps's log schema, step =
  generation index), written at each checkpoint and when `train()` returns or raises; the
  policy's ``metrics()`` go to TRL's own logging under ``dps/``.
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate.utils import broadcast_object_list
from trl import GRPOTrainer

from dps.logs import RolloutLogWriter
from dps.outcomes import GroupOutcomes, effective_ratio
from dps.policies.base import Policy, abandon_step, checked_selection, policy_size
from dps.tasks.base import Task

POLICY_FILE = "dps_policy.npz"
STATE_FILE = "dps_state.json"
LOG_FILE = "rollouts.parquet"
CHECKPOINT_PREFIX = "checkpoint"
#: What the policy observes of a group: its count of correct responses, or their total rewards.
OBSERVE = ("correct", "reward")


class DPSGRPOTrainer(GRPOTrainer):
    """`GRPOTrainer(...)` plus ``policy=`` (a `dps.Policy` over the rows of ``train_dataset``:
    prompt id = row index). Options: ``correct_reward`` (name of the reward function that says
    right or wrong; default: the weighted total reward), ``correct_threshold`` (0.5),
    ``observe`` (``"correct"``: counts of correct responses; ``"reward"``: each response's
    weighted total reward, effective by spread; see the module docstring)."""

    # What TRL sets up by the time our code runs (its stubs type them more loosely).
    args: Any  # a GRPOConfig
    model: Any
    train_dataset: Any
    num_generations: int

    def __init__(
        self,
        *args: Any,
        policy: Policy,
        correct_reward: str | None = None,
        correct_threshold: float = 0.5,
        observe: str = "correct",
        **kwargs: Any,
    ) -> None:
        if observe not in OBSERVE:
            raise ValueError(f"observe must be one of {list(OBSERVE)}, got {observe!r}")
        super().__init__(*args, **kwargs)
        self.policy = policy
        self.observe = observe
        self.correct_threshold = float(correct_threshold)
        self._correct_index = self._check_setup(correct_reward)
        if observe == "reward" and self.args.multi_objective_aggregation == "normalize_then_sum":
            raise ValueError(
                'observe="reward" judges a group by the spread of its total reward, and with '
                "multi_objective_aggregation=\"normalize_then_sum\" TRL's advantages come from each function's "
                'own spread: use observe="correct", or sum_then_normalize'
            )
        self.prompts_per_generation = self.args.generation_batch_size // self.num_generations
        self.dps_generation = 0
        self.dps_log = RolloutLogWriter(Path(self.args.output_dir) / LOG_FILE)
        # wall seconds, and the process's CPU seconds (robust to preemption on a shared machine)
        self.dps_timing = {
            "policy_s": 0.0,
            "log_s": 0.0,
            "train_s": 0.0,
            "generations": 0,
            "policy_cpu_s": 0.0,
            "train_cpu_s": 0.0,
        }
        self._gathered_rewards: torch.Tensor | None = None

    # ------------------------------------------------------------------ checks
    def _check_setup(self, correct_reward: str | None) -> int | None:
        dataset = self.train_dataset
        if dataset is None or isinstance(dataset, torch.utils.data.IterableDataset) or not hasattr(dataset, "__len__"):
            raise TypeError(
                f"DPSGRPOTrainer needs a map-style train_dataset (row index = prompt id), got {type(dataset).__name__}"
            )
        if type(dataset).__name__ == "IterableDataset":  # datasets.IterableDataset
            raise TypeError("DPSGRPOTrainer needs a map-style train_dataset, got a datasets.IterableDataset")
        if len(dataset) != policy_size(self.policy):
            raise ValueError(
                f"the policy has num_prompts={self.policy.num_prompts}, "
                f"train_dataset has {len(dataset)} rows: they must be equal"
            )
        prompts = self.args.generation_batch_size // self.num_generations
        if prompts > self.policy.num_prompts:
            raise ValueError(f"a generation batch needs {prompts} prompts, the dataset has {self.policy.num_prompts}")
        if correct_reward is None:
            return None
        if correct_reward not in self.reward_func_names:
            raise ValueError(
                f"correct_reward={correct_reward!r} is not one of the reward functions {self.reward_func_names}"
            )
        return self.reward_func_names.index(correct_reward)

    # ------------------------------------------------------------------ one generation = one policy step
    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        if not self.model.training:
            return super()._generate_and_score_completions(inputs)
        ids = self._select()
        rows = self._local_rows(ids, len(inputs), inputs[0].keys())
        self._gathered_rewards = None
        try:
            output = super()._generate_and_score_completions(rows)
        except BaseException as error:
            if self.accelerator.is_main_process:
                abandon_step(self.policy, error)
            raise
        n_correct, rewards = self._group_outcomes(len(ids))
        keep, metrics = self._admit_and_observe(self._observed(ids, n_correct, rewards), rewards)
        self._zero_rejected(output, keep, len(inputs))
        for name, value in metrics.items():
            self._metrics["train"][f"dps/{name}"].append(value)
        self.dps_generation += 1
        return output

    def _calculate_rewards(self, inputs: Any, prompts: Any, completions: Any, completion_ids_list: Any) -> torch.Tensor:
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if self.model.training:
            self._gathered_rewards = rewards.detach().float().cpu()  # every rank's rows, in rank order
        return rewards

    def _select(self) -> np.ndarray:
        payload: list[Any] = [None]
        if self.accelerator.is_main_process:
            t0, c0 = time.perf_counter(), time.process_time()
            asked = self.prompts_per_generation
            ids = checked_selection(self.policy, self.policy.select(asked), asked, ())
            self.dps_timing["policy_s"] += time.perf_counter() - t0
            self.dps_timing["policy_cpu_s"] += time.process_time() - c0
            if ids.shape != (self.prompts_per_generation,):
                raise ValueError(
                    f"{type(self.policy).__name__}.select({self.prompts_per_generation}) returned {len(ids)} ids"
                )
            payload = [ids]
        broadcast_object_list(payload)
        return payload[0]

    def _local_rows(self, ids: np.ndarray, n_local: int, keys: Any) -> list[dict[str, Any]]:
        """This rank's slice of the global batch: each prompt k times, prompt-major (TRL's layout)."""
        k, rank, ranks = self.num_generations, self.accelerator.process_index, self.accelerator.num_processes
        if n_local * ranks != len(ids) * k:
            raise RuntimeError(f"TRL's generation batch holds {n_local} x {ranks} rows, the selection {len(ids)} x {k}")
        local = np.repeat(ids, k)[rank * n_local : (rank + 1) * n_local]
        keys = list(keys)
        cache: dict[int, dict[str, Any]] = {}
        rows = []
        for prompt_id in local.tolist():
            if prompt_id not in cache:
                row = self.train_dataset[prompt_id]
                cache[prompt_id] = {key: row[key] for key in keys if key in row}
            rows.append(dict(cache[prompt_id]))
        return rows

    def _group_outcomes(self, n_prompts: int) -> tuple[np.ndarray, list[list[float]]]:
        rewards = self._gathered_rewards
        if rewards is None:
            raise RuntimeError("DPSGRPOTrainer: TRL scored the batch without calling _calculate_rewards")
        weights = self.reward_weights.detach().float().cpu()
        total = (rewards * weights.unsqueeze(0)).nansum(dim=1)
        total[torch.isnan(rewards).all(dim=1)] = torch.nan
        score = total if self._correct_index is None else rewards[:, self._correct_index]
        correct = (score >= self.correct_threshold) & ~torch.isnan(score)
        k = self.num_generations
        n_correct = correct.view(n_prompts, k).sum(dim=1).numpy().astype(np.int64)
        per_group = torch.nan_to_num(total, nan=0.0).view(n_prompts, k).tolist()
        return n_correct, per_group

    def _observed(self, ids: np.ndarray, n_correct: np.ndarray, rewards: list[list[float]]) -> GroupOutcomes:
        """The groups as the policy observes them (``observe``), counts kept beside rewards."""
        if self.observe == "correct":
            return GroupOutcomes.counts(ids, n_correct, np.full(len(ids), self.num_generations, np.int64))
        return GroupOutcomes.from_rewards(
            ids, np.array(rewards), n_correct=n_correct, success_at=self.correct_threshold
        )

    def _admit_and_observe(
        self, groups: GroupOutcomes, rewards: list[list[float]]
    ) -> tuple[np.ndarray, dict[str, float]]:
        payload: list[Any] = [None]
        if self.accelerator.is_main_process:
            ids, n_correct, n_rollouts = groups.prompt_ids, groups.n_correct, groups.n_rollouts
            t0, c0 = time.perf_counter(), time.process_time()
            keep = np.asarray(self.policy.admit_groups(groups), dtype=bool)
            self.policy.observe_groups(groups)
            policy_metrics = self.policy.metrics()
            spent = time.perf_counter() - t0
            self.dps_timing["policy_s"] += spent
            self.dps_timing["policy_cpu_s"] += time.process_time() - c0
            self.dps_timing["generations"] += 1
            t1 = time.perf_counter()
            self.dps_log.add(self.dps_generation, ids, n_correct, n_rollouts, rewards)
            self.dps_timing["log_s"] += time.perf_counter() - t1
            partial = groups.effective
            metrics = {name: float(value) for name, value in policy_metrics.items()}
            metrics.update(
                {
                    "partial_share": float(partial.mean()),
                    "admitted": float(keep.sum()),
                    "shortfall": float(len(ids) - keep.sum()),
                    "effective_ratio": effective_ratio(int((partial & keep).sum()), int(keep.sum())),
                    "policy_ms": 1000.0 * spent,
                }
            )
            payload = [(keep, metrics)]
        broadcast_object_list(payload)
        return payload[0]

    def _zero_rejected(self, output: dict[str, Any], keep: np.ndarray, n_local: int) -> None:
        if keep.all():
            return
        rank = self.accelerator.process_index
        rows = np.repeat(keep, self.num_generations)[rank * n_local : (rank + 1) * n_local]
        mask = torch.as_tensor(~rows, device=output["advantages"].device)
        output["advantages"] = output["advantages"].masked_fill(mask, 0.0)

    # ------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        super()._save_checkpoint(model, trial)
        generate_every = self.args.steps_per_generation * self.num_iterations
        if self._step % generate_every:
            warnings.warn(
                f"checkpoint at global step {self.state.global_step} falls inside a generation batch "
                f"(TRL regenerates after a resume): choose save_steps as a multiple of "
                f"{generate_every // self.args.gradient_accumulation_steps} for an exact resume",
                stacklevel=2,
            )
        if not self.accelerator.is_main_process:
            return
        folder = Path(self._get_output_dir(trial=trial)) / f"{CHECKPOINT_PREFIX}-{self.state.global_step}"
        folder.mkdir(parents=True, exist_ok=True)
        self.policy.save(folder / POLICY_FILE)
        self._write_log()
        if self.dps_log.path.exists():
            shutil.copyfile(self.dps_log.path, folder / LOG_FILE)
        state = {
            "generation": self.dps_generation,
            "global_step": self.state.global_step,
            "policy": type(self.policy).__name__,
        }
        (folder / STATE_FILE).write_text(json.dumps(state))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        """The model's weights from a checkpoint. transformers' Trainer (5.19) loads them with a
        plain ``load_state_dict``, which matches none of the keys of a model whose checkpoints are
        written under other names (Qwen2-VL and other VLMs: ``visual.*`` and ``model.layers.*`` on
        disk, ``model.visual.*`` and ``model.language_model.*`` in memory; transformers#43701) and
        goes on with the weights it had, after a warning. Such a checkpoint is read the way
        ``from_pretrained`` reads it (renaming the keys), and every weight is restored."""
        target = self.accelerator.unwrap_model(self.model if model is None else model)
        on_disk = _checkpoint_keys(Path(resume_from_checkpoint))
        if on_disk is None or on_disk <= set(target.state_dict()) or self.is_deepspeed_enabled or self.is_fsdp_enabled:
            super()._load_from_checkpoint(resume_from_checkpoint, model)
            return
        loaded = type(target).from_pretrained(resume_from_checkpoint, dtype=next(target.parameters()).dtype)
        target.load_state_dict(loaded.state_dict(), strict=True)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None:
            self._resume_policy(Path(checkpoint))

    def _resume_policy(self, folder: Path) -> None:
        state_file = folder / STATE_FILE
        if not state_file.exists():
            raise FileNotFoundError(
                f"{state_file}: the checkpoint holds no dps state (was it written by DPSGRPOTrainer?)"
            )
        state = json.loads(state_file.read_text())
        self.dps_generation = int(state["generation"])
        if not self.accelerator.is_main_process:
            return
        self.policy.load(folder / POLICY_FILE)
        log = RolloutLogWriter(folder / LOG_FILE)
        log.load(keep_below=self.dps_generation)
        log.path = Path(self.args.output_dir) / LOG_FILE
        self.dps_log = log
        self.dps_log.write()

    # ------------------------------------------------------------------ cost
    def train(self, *args: Any, **kwargs: Any) -> Any:
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            return super().train(*args, **kwargs)
        finally:
            if self.accelerator.is_main_process:
                self._write_log()
            self.dps_timing["train_s"] += time.perf_counter() - t0
            self.dps_timing["train_cpu_s"] += time.process_time() - c0

    def _write_log(self) -> None:
        t0 = time.perf_counter()
        self.dps_log.write()
        self.dps_timing["log_s"] += time.perf_counter() - t0

    def dps_cost(self) -> dict[str, float]:
        """The policy's and the log's share of `train()` (main process): of its wall time, and of
        the process's CPU time (which preemption on a shared machine does not inflate)."""
        timing = self.dps_timing
        train, cpu = max(timing["train_s"], 1e-12), max(timing["train_cpu_s"], 1e-12)
        return {
            **timing,
            "policy_share": timing["policy_s"] / train,
            "log_share": timing["log_s"] / train,
            "policy_cpu_share": timing["policy_cpu_s"] / cpu,
        }


def _checkpoint_keys(folder: Path) -> set[str] | None:
    """The weight names of a checkpoint's safetensors (one file or an index); None without them."""
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.exists():
        from safetensors import safe_open

        with safe_open(str(single), framework="pt") as handle:
            return set(handle.keys())
    if index.exists():
        return set(json.loads(index.read_text())["weight_map"])
    return None


# ---------------------------------------------------------------------- a dps task as TRL's data
def task_dataset(task: Task) -> Any:
    """A dps task's train split as a dataset TRL's `GRPOTrainer` takes (row i = prompt id i):
    ``prompt``, one user turn (its text; for a task with images, its parts with the images where
    the task places them, `Example.chat_content`), ``images`` (image files, which `datasets`
    decodes) for a task with images, and ``prompt_id``. TRL turns image rows into the VLM's
    inputs with the processor given as ``processing_class``."""
    from datasets import Dataset, Image, List

    examples = task.train()
    with_images = any(ex.images for ex in examples)
    columns: dict[str, list[Any]] = {
        "prompt": [[{"role": "user", "content": ex.chat_content() if with_images else ex.prompt}] for ex in examples],
        "prompt_id": [ex.id for ex in examples],
    }
    if not with_images:
        return Dataset.from_dict(columns)
    columns["images"] = [[{"bytes": data, "path": None} for data in ex.images] for ex in examples]
    return Dataset.from_dict(columns).cast_column("images", List(Image()))


def task_reward(task: Task, name: str = "accuracy", timeout_s: float | None = None) -> Any:
    """A TRL reward function (named `name`, for ``correct_reward``) that scores each completion
    1.0 or 0.0 with the task's verifier against the row's example (`Task.verify`: time-bounded in
    a worker process unless ``timeout_s=0``); the dataset must carry ``prompt_id`` (`task_dataset`
    does)."""
    examples = [ex.without_images() for ex in task.train()]

    def reward(prompts: list, completions: list, prompt_id: list, **kwargs: Any) -> list[float]:
        return [
            float(task.verify(examples[int(i)], _completion_text(c), timeout_s=timeout_s))
            for c, i in zip(completions, prompt_id, strict=True)
        ]

    reward.__name__ = reward.__qualname__ = name
    return reward


def _completion_text(completion: Any) -> str:
    """A completion as text: TRL gives conversational prompts' completions as messages."""
    if isinstance(completion, list):
        return "".join(str(m.get("content") or "") for m in completion if m.get("role") == "assistant")
    return str(completion)
