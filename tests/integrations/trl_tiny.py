"""A tiny TRL GRPO setting for the integration tests: a character-level Qwen2 of ~10k
parameters, prompts "q<i>:" whose answer counts as correct when its first character falls in a
prompt-specific set (prompt i: the first 6 x (i mod 12 + 1) printable characters), so a random
model solves prompts between 6% and 77% of the time and every state (solved, partial, unsolved)
appears; plus a 0.1 format bonus for a first character that is a lowercase letter (mostly wrong answers).

The ``vlm`` flavour is the same trainer on images: the tiny Qwen2-VL and its processor, 32
`figures` prompts (a drawn polygon: how many sides?) as TRL's image dataset, rewarded by the
task's verifier on the first integer of a response (`dps.integrations.tiny`)."""

from __future__ import annotations

from typing import Any

N_PROMPTS = 32
CHARS = [chr(c) for c in range(33, 127)]


def target(prompt_id: int) -> set[str]:
    return set(CHARS[: 6 * (prompt_id % 12 + 1)])


def accuracy(prompts: list, completions: list, prompt_id: list, **kwargs: Any) -> list[float]:
    return [1.0 if c[:1] in target(p) else 0.0 for c, p in zip(completions, prompt_id, strict=True)]


def format_bonus(prompts: list, completions: list, **kwargs: Any) -> list[float]:
    return [0.1 if c[:1].islower() else 0.0 for c in completions]


def dataset(n: int = N_PROMPTS):
    from datasets import Dataset

    return Dataset.from_dict({"prompt": [f"q{i}:" for i in range(n)], "prompt_id": list(range(n))})


def config(output_dir: str, max_steps: int, **overrides: Any):
    """B = 4 prompts x k = 4 per generation, one generation per two optimizer steps."""
    from trl import GRPOConfig

    options: dict[str, Any] = dict(
        output_dir=output_dir,
        per_device_train_batch_size=8,
        num_generations=4,
        gradient_accumulation_steps=1,
        steps_per_generation=2,
        max_completion_length=4,
        max_steps=max_steps,
        save_steps=4,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        learning_rate=1e-3,
        lr_scheduler_type="constant",
        seed=0,
        bf16=False,
        disable_tqdm=True,
        temperature=1.0,
        dataloader_num_workers=0,
    )
    options.update(overrides)
    return GRPOConfig(**options)


def text_setting() -> dict[str, Any]:
    from dps.models.tiny import char_tokenizer, tiny_model

    tok = char_tokenizer()
    model = tiny_model(tok, hidden_size=32, layers=1, heads=2, kv_heads=1, intermediate_size=64)
    return {"model": model, "processor": tok, "dataset": dataset(), "rewards": [accuracy, format_bonus], "config": {}}


def vlm_setting() -> dict[str, Any]:
    from dps.integrations import tiny
    from dps.integrations.trl import task_dataset, task_reward

    task = tiny.figures_task(N_PROMPTS)
    model, processor = tiny.tiny_vlm_with_processor()
    # 16 characters: a random VLM's first integer is the polygon's side count about one time in 12
    return {
        "model": model,
        "processor": processor,
        "dataset": task_dataset(task),
        "rewards": [task_reward(task, timeout_s=0)],
        "config": {"max_completion_length": 16},
    }


SETTINGS = {"text": text_setting, "vlm": vlm_setting}


def trainer(
    output_dir: str,
    policy: Any,
    max_steps: int = 8,
    callbacks: list | None = None,
    reward_funcs: list | None = None,
    flavour: str = "text",
    **overrides: Any,
):
    from dps.integrations.trl import DPSGRPOTrainer

    setting = SETTINGS[flavour]()
    correct_reward = overrides.pop("correct_reward", None)
    observe = overrides.pop("observe", "correct")
    return DPSGRPOTrainer(
        model=setting["model"],
        reward_funcs=reward_funcs or setting["rewards"],
        args=config(output_dir, max_steps, **{**setting["config"], **overrides}),
        train_dataset=setting["dataset"],
        processing_class=setting["processor"],
        policy=policy,
        callbacks=callbacks,
        correct_reward=correct_reward,
        observe=observe,
    )
