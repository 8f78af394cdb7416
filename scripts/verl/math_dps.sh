#!/usr/bin/env bash
# DPS in verl 0.9.1: the paper's MATH setting (DeepSeek-R1-Distill-Qwen-1.5B, B = 256, k = 8,
# lambda = 0.7, 8 GPUs, one node) with the released hyperparameters (docs/method.md#recipe).
# Not run here (no GPU in the session that wrote it); DRY_RUN=1 prints the composed config only.
#
#   python examples/data_preprocess/math_dataset.py --local_save_dir ~/data/math   # verl's MATH preprocessing
#   bash scripts/verl/math_dps.sh                                     # DPS
#   POLICY=ds OPTIONS='{max_rounds: 4}' bash scripts/verl/math_dps.sh # the DS baseline (cap 4 for MATH)
#   POLICY=uniform OPTIONS='{}' bash scripts/verl/math_dps.sh         # uniform
# Extra Hydra overrides go after the script's name.
set -euo pipefail

PYTHON=${PYTHON:-python3}
MODEL=${MODEL:-deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B}
DATA=${DATA:-$HOME/data/math}
VAL_FILES=${VAL_FILES:-$DATA/test.parquet}   # the paper validates on AIME: point this at an AIME parquet
POLICY=${POLICY:-dps}
OPTIONS=${OPTIONS:-'{decay: 0.7}'}
GPUS=${GPUS:-8}
OUT=${OUT:-checkpoints/dps-math-r1-1.5b-$POLICY}

ARGS=(
    data.train_files="$DATA/train.parquet"
    data.val_files="$VAL_FILES"
    data.train_batch_size=256
    data.max_prompt_length=1024
    data.max_response_length=8192
    data.filter_overlong_prompts=True
    algorithm.adv_estimator=grpo
    algorithm.norm_adv_by_std_in_grpo=True
    algorithm.use_kl_in_reward=False
    actor_rollout_ref.model.path="$MODEL"
    actor_rollout_ref.model.use_remove_padding=True
    actor_rollout_ref.model.enable_gradient_checkpointing=True
    actor_rollout_ref.actor.optim.lr=1e-6
    actor_rollout_ref.actor.optim.lr_warmup_steps=0
    actor_rollout_ref.actor.optim.weight_decay=0.1
    actor_rollout_ref.actor.grad_clip=1.0
    actor_rollout_ref.actor.ppo_mini_batch_size=128
    actor_rollout_ref.actor.use_dynamic_bsz=True
    actor_rollout_ref.actor.ppo_max_token_len_per_gpu=24576
    actor_rollout_ref.actor.clip_ratio_low=0.2
    actor_rollout_ref.actor.clip_ratio_high=0.28
    actor_rollout_ref.actor.clip_ratio_c=10.0
    actor_rollout_ref.actor.loss_agg_mode=token-mean
    actor_rollout_ref.actor.entropy_coeff=0.001
    actor_rollout_ref.actor.use_kl_loss=False
    actor_rollout_ref.rollout.name=vllm
    actor_rollout_ref.rollout.n=8
    actor_rollout_ref.rollout.temperature=1.0
    actor_rollout_ref.rollout.top_p=1.0
    actor_rollout_ref.rollout.top_k=-1
    actor_rollout_ref.rollout.gpu_memory_utilization=0.6
    actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=True
    actor_rollout_ref.rollout.val_kwargs.n=16
    actor_rollout_ref.rollout.val_kwargs.temperature=0.6
    actor_rollout_ref.rollout.val_kwargs.do_sample=True
    trainer.total_training_steps=360
    trainer.n_gpus_per_node="$GPUS"
    trainer.nnodes=1
    trainer.save_freq=20
    trainer.test_freq=20
    trainer.default_local_dir="$OUT"
    trainer.project_name=dps
    trainer.experiment_name="math-r1-1.5b-$POLICY"
    trainer.logger='["console"]'
    dps.policy="$POLICY"
    dps.options="$OPTIONS"
)

if [[ -n "${DRY_RUN:-}" ]]; then
    exec "$PYTHON" -m dps.integrations.verl "${ARGS[@]}" "$@" --cfg job
fi
exec "$PYTHON" -m dps.integrations.verl "${ARGS[@]}" "$@"
