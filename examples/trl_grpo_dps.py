"""DPS choosing the prompts of TRL's GRPOTrainer: the paper's MATH setting on one 8-GPU node.

NOT RUN on a GPU: written and checked for syntax on a CPU-only machine (the same trainer class
is tested end to end on CPU with a tiny model in tests/test_integration_trl.py).

    pip install "dps[trl]" vllm math-verify
    accelerate launch --num_processes 8 examples/trl_grpo_dps.py --out runs/trl-math-dps

The paper's recipe (docs/method.md#recipe) as far as TRL 1.16 has it:
DeepSeek-R1-Distill-Qwen-1.5B on MATH's 7,500 training problems, B = 256 prompts x k = 8
responses per step, mini-batch 128 prompts (two optimizer steps per generation), 360 steps,
lr 1e-6 without warm-up, weight decay 0.1, grad-norm clip 1.0, clip 0.2 / 0.28, token-mean loss
(TRL's "dapo"), entropy bonus 0.001, no KL, temperature 1.0, top-p 1.0, max response 8192 tokens,
rollouts by vLLM colocated with training; DPS with lambda = 0.7, alpha0 = 1, uniform pi0.
Not mapped: verl's dual-clip constant 10 (TRL's `delta`, INTELLECT-2's two-sided clip, is the
closest: it caps the ratio of negative-advantage tokens at delta; set here to 10), and the max
prompt length 1024 (TRL 1.16 has no prompt truncation option; MATH problems are shorter).
"""

from __future__ import annotations

import argparse

from datasets import load_dataset
from trl import GRPOConfig
from trl.rewards import accuracy_reward

from dps import DPS, DynamicSampling
from dps.integrations.trl import DPSGRPOTrainer

INSTRUCTION = " Let's think step by step and output the final answer within \\boxed{}."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B")
    parser.add_argument("--dataset", default="DigitalLearningGmbH/MATH-lighteval")
    parser.add_argument("--out", default="runs/trl-math-dps")
    parser.add_argument("--steps", type=int, default=360, help="generations (policy steps)")
    parser.add_argument("--prompts", type=int, default=256, help="B, prompts per generation")
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--per-device", type=int, default=8, help="completions per GPU per micro-batch")
    parser.add_argument("--decay", type=float, default=0.7, help="DPS lambda")
    parser.add_argument("--gate", action="store_true", help="DS over DPS (one round: see docs/integrations/trl.md)")
    parser.add_argument("--resume", default=None, help="a checkpoint folder, or 'latest'")
    args = parser.parse_args()

    train = load_dataset(args.dataset, split="train")
    train = train.map(lambda row: {"prompt": [{"role": "user", "content": row["problem"] + INSTRUCTION}]},
                      remove_columns=[c for c in train.column_names if c != "solution"])

    completions = args.prompts * args.k
    micro_steps = completions // (args.per_device * args.gpus)  # micro-batches per generation
    config = GRPOConfig(
        output_dir=args.out,
        num_generations=args.k,
        generation_batch_size=completions,
        per_device_train_batch_size=args.per_device,
        gradient_accumulation_steps=micro_steps // 2,  # mini-batch = B / 2 prompts: two updates per generation
        max_steps=2 * args.steps,
        save_steps=20,  # a multiple of 2: checkpoints on generation boundaries resume exactly
        learning_rate=1e-6, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.1, max_grad_norm=1.0,
        epsilon=0.2, epsilon_high=0.28, delta=10.0, loss_type="dapo", scale_rewards="group",
        entropy_coef=0.001, beta=0.0,
        temperature=1.0, top_p=1.0, top_k=0, max_completion_length=8192,
        use_vllm=True, vllm_mode="colocate", vllm_gpu_memory_utilization=0.4, vllm_enable_sleep_mode=True,
        bf16=True, gradient_checkpointing=True, logging_steps=1, report_to=["tensorboard"], seed=0,
    )
    policy = DPS(num_prompts=len(train), decay=args.decay, seed=0)
    if args.gate:
        policy = DynamicSampling(policy)
    trainer = DPSGRPOTrainer(model=args.model, args=config, train_dataset=train, reward_funcs=[accuracy_reward],
                             policy=policy, correct_reward="accuracy_reward")
    resume = True if args.resume == "latest" else args.resume
    trainer.train(resume_from_checkpoint=resume)
    if trainer.accelerator.is_main_process:
        print("dps cost:", trainer.dps_cost())


if __name__ == "__main__":
    main()
