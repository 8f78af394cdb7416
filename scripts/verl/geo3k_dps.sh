#!/usr/bin/env bash
# DPS in verl 0.9.1: the paper's visual-geometry setting (Geometry3k, Qwen2.5-VL-3B-Instruct,
# B = 512, k = 8, lambda = 0.5, 8 GPUs) with the released hyperparameters
# (docs/method.md#recipe). Not run here (no GPU in the session that wrote it); DRY_RUN=1 prints the config only.
#
#   python examples/data_preprocess/geo3k.py --local_save_dir ~/data/geo3k   # verl's Geometry3k preprocessing
#   bash scripts/verl/geo3k_dps.sh
# The reward is verl's geo3k score, 0.9 x accuracy + 0.1 x format: a response counts as correct
# for the policy when its reward is >= 0.5 (dps.threshold), so the format bonus alone is wrong.
set -euo pipefail

PYTHON=${PYTHON:-python3}
MODEL=${MODEL:-Qwen/Qwen2.5-VL-3B-Instruct}
DATA=${DATA:-$HOME/data/geo3k}
POLICY=${POLICY:-dps}
OPTIONS=${OPTIONS:-'{decay: 0.5}'}
KL_COEF=${KL_COEF:-0.01}   # 0.03 for the 7B model
GPUS=${GPUS:-8}
OUT=${OUT:-checkpoints/dps-geo3k-vl-3b-$POLICY}

ARGS=(
    data.train_files="$DATA/train.parquet"
    data.val_files="$DATA/test.parquet"
    data.image_key=images
    data.train_batch_size=512
    data.max_prompt_length=1024
    data.max_response_length=1024
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
    actor_rollout_ref.actor.ppo_mini_batch_size=256
    actor_rollout_ref.actor.use_dynamic_bsz=True
    actor_rollout_ref.actor.ppo_max_token_len_per_gpu=16384
    actor_rollout_ref.actor.clip_ratio_low=0.2
    actor_rollout_ref.actor.clip_ratio_high=0.28
    actor_rollout_ref.actor.clip_ratio_c=10.0
    actor_rollout_ref.actor.loss_agg_mode=token-mean
    actor_rollout_ref.actor.entropy_coeff=0.001
    actor_rollout_ref.actor.use_kl_loss=True
    actor_rollout_ref.actor.kl_loss_coef="$KL_COEF"
    actor_rollout_ref.actor.kl_loss_type=low_var_kl
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
    trainer.total_training_steps=120
    trainer.n_gpus_per_node="$GPUS"
    trainer.nnodes=1
    trainer.save_freq=20
    trainer.test_freq=20
    trainer.default_local_dir="$OUT"
    trainer.project_name=dps
    trainer.experiment_name="geo3k-vl-3b-$POLICY"
    trainer.logger='["console"]'
    dps.policy="$POLICY"
    dps.options="$OPTIONS"
)

if [[ -n "${DRY_RUN:-}" ]]; then
    exec "$PYTHON" -m dps.integrations.verl "${ARGS[@]}" "$@" --cfg job
fi
exec "$PYTHON" -m dps.integrations.verl "${ARGS[@]}" "$@"
