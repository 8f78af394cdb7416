"""Wall time per step of one tiny setting under TRL's GRPOTrainer with DPS, against `dps train`.

    .venv/bin/python benchmarks/bench_trl.py                    # 10 steps each, the first 2 not timed
    .venv/bin/python benchmarks/bench_trl.py --steps 22 --skip 2

The setting: the `tiny-cpu` preset's model (a 0.8M-parameter Qwen2 with the character
tokenizer, freshly initialised), DPS (lambda 0.5), B = 16 prompts, k = 8, up to 7 new tokens at
temperature 1, one optimizer step per generation on all 128 sequences (lr 3e-5), no KL, on the
CPU. The task is the integration tests' first-character task (512 prompts "q<i>:", a response
is correct when its first character falls in a prompt-specific set), on which an untrained
model already solves some responses of most prompts, so both trainers do a real update every
step (`dps train` skips the update of zero-advantage groups; on arithmetic without a warm-up
every group is unsolved and the comparison would time generation only). A step's wall time is
the time between two consecutive `select` calls of the policy (generation, scoring, update,
logging: everything a step does). Prints one row per trainer: median and mean step wall time,
the policy's time per step (select + admit + observe) and its share of the step.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from dps import DPS, Policy
from dps.tasks import Example, Task

B, K, DECAY, MAX_TOKENS, LR = 16, 8, 0.5, 7, 3e-5
N_PROMPTS = 512
CHARS = [chr(c) for c in range(33, 127)]


def target(i: int) -> set[str]:
    return set(CHARS[: 6 * (i % 12 + 1)])


class FirstChar(Task):
    """Prompt i is "q<i>:"; a response is correct when its first character is in target(i).
    At module level: `dps train` verifies in a worker process, which unpickles the task."""

    name = "first-char"

    def __init__(self) -> None:
        self.examples = [Example(i, f"q{i}", f"q{i}:", CHARS[0]) for i in range(N_PROMPTS)]
        self.held_out = [Example(i, f"t{i}", f"t{i}:", CHARS[0]) for i in range(16)]

    def train(self) -> list[Example]:
        return self.examples

    def test(self) -> list[Example]:
        return self.held_out

    def check(self, example: Example, answer: str) -> bool:
        return answer[:1] in target(int(example.key[1:]))

    def verify(self, example: Example, response: str) -> bool:
        return self.check(example, response)


def first_char_task() -> FirstChar:
    return FirstChar()


class Timed(Policy):
    """DPS, with the time of each select call and of the policy's own work recorded."""

    def __init__(self, num_prompts: int) -> None:
        self.inner = DPS(num_prompts, decay=DECAY, seed=0)
        self.num_prompts = num_prompts
        self.select_times: list[float] = []
        self.policy_s: list[float] = []

    def select(self, batch_size: int) -> np.ndarray:
        now = time.perf_counter()
        self.select_times.append(now)
        ids = self.inner.select(batch_size)
        self.policy_s.append(time.perf_counter() - now)
        return ids

    def observe(self, prompt_ids: Any, n_correct: Any, n_rollouts: Any) -> None:
        t = time.perf_counter()
        self.inner.observe(prompt_ids, n_correct, n_rollouts)
        self.policy_s[-1] += time.perf_counter() - t

    def metrics(self) -> dict[str, float]:
        return self.inner.metrics()

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)


def row(name: str, policy: Timed, skip: int) -> dict[str, Any]:
    walls = np.diff(policy.select_times)[skip:]
    spent = np.array(policy.policy_s[skip : len(policy.select_times) - 1])
    return {
        "trainer": name,
        "steps": len(walls),
        "median_s": float(np.median(walls)),
        "mean_s": float(walls.mean()),
        "policy_ms": 1000 * float(spent.mean()),
        "policy_share": float(spent.sum() / walls.sum()),
    }


def run_dps_train(steps: int, out: Path) -> Timed:
    from dps.train.config import config_from_dict
    from dps.train.presets import preset
    from dps.train.trainer import Trainer

    cfg = preset("tiny-cpu")
    cfg.update(steps=steps)
    cfg["warmup"]["steps"] = 0
    cfg["policy"].update(name="dps", batch_size=B)
    # verify in-process, as TRL's reward function does (no worker process, no time limit)
    cfg["rollout"].update(k=K, max_new_tokens=MAX_TOKENS, temperature=1.0, verify_timeout_s=0)
    cfg["grpo"].update(lr=LR)
    cfg["log"].update(eval_every=0, checkpoint_every=10**6, progress=False)
    policy = Timed(N_PROMPTS)
    trainer = Trainer(config_from_dict(cfg), out, task=first_char_task(), policy=policy)
    trainer.run()
    return policy


def run_trl(steps: int, out: Path) -> tuple[Timed, dict[str, float]]:
    from datasets import Dataset
    from trl import GRPOConfig

    from dps.integrations.trl import DPSGRPOTrainer
    from dps.models.tiny import char_tokenizer, tiny_model

    task = first_char_task()
    examples = task.train()
    dataset = Dataset.from_dict({"prompt": [ex.prompt for ex in examples], "prompt_id": [ex.id for ex in examples]})

    def correct(prompts: list, completions: list, prompt_id: list, **kwargs: Any) -> list[float]:
        return [float(task.verify(examples[i], c)) for c, i in zip(completions, prompt_id, strict=True)]

    tok = char_tokenizer()
    args = GRPOConfig(
        output_dir=str(out),
        per_device_train_batch_size=B * K,
        num_generations=K,
        gradient_accumulation_steps=1,
        steps_per_generation=1,
        max_completion_length=MAX_TOKENS,
        max_steps=steps,
        learning_rate=LR,
        lr_scheduler_type="constant",
        beta=0.0,
        loss_type="dapo",
        temperature=1.0,
        use_cpu=True,
        bf16=False,
        report_to=[],
        logging_steps=1,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    policy = Timed(len(examples))
    trainer = DPSGRPOTrainer(
        model=tiny_model(tok),
        reward_funcs=[correct],
        args=args,
        train_dataset=dataset,
        processing_class=tok,
        policy=policy,
    )
    trainer.train()
    return policy, trainer.dps_cost()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--skip", type=int, default=2, help="first steps not timed (start-up)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [row("dps train", run_dps_train(args.steps, Path(tmp) / "dps"), args.skip)]
        policy, cost = run_trl(args.steps, Path(tmp) / "trl")
        rows.append(row("TRL 1.16 + DPSGRPOTrainer", policy, args.skip))
    print("| trainer | steps timed | median s/step | mean s/step | policy ms/step | policy share |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['trainer']} | {r['steps']} | {r['median_s']:.3f} | {r['mean_s']:.3f} | {r['policy_ms']:.3f} "
            f"| {100 * r['policy_share']:.3f}% |"
        )
    print(
        f"TRL whole train(): {cost['train_s']:.1f} s, policy {cost['policy_s'] * 1000:.1f} ms "
        f"({100 * cost['policy_share']:.3f}%; of CPU time {100 * cost['policy_cpu_share']:.3f}%), "
        f"rollout log {cost['log_s'] * 1000:.1f} ms "
        f"({100 * cost['log_share']:.3f}%)",
        file=sys.stdout,
    )
    print("TRL/dps train median step ratio:", f"{rows[1]['median_s'] / rows[0]['median_s']:.2f}")


if __name__ == "__main__":
    main()
