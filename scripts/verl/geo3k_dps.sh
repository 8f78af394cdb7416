#!/usr/bin/env bash
# DPS in verl 0.9.1: the paper's visual-geometry setting (Geometry3k, Qwen2.5-VL-3B-Instruct,
# B = 512, k = 8, lambda = 0.5, 8 GPUs) with the released hyperparameters (docs/method.md#recipe).
# Not run on a GPU (no session that touched it had one); DRY_RUN=1 prints the config.
# The overrides it shares with math_dps.sh are in common.sh.
#
#   python examples/data_preprocess/geo3k.py --local_save_dir ~/data/geo3k   # verl's Geometry3k preprocessing
#   bash scripts/verl/geo3k_dps.sh
# The reward is verl's geo3k score, 0.9 x accuracy + 0.1 x format: a response counts as correct
# for the policy when its reward is >= 0.5 (dps.threshold), so the format bonus alone is wrong.
# The multimodal data path is verl's own, as in its geo3k example
# (examples/grpo_trainer/run_qwen2_5_vl-7b.sh): data.image_key names the images column of the
# preprocessed Parquet (its prompt carries an <image> marker per image), and the processor is the
# model folder's own (verl's hf_processor: Qwen2.5-VL's, which needs torchvision and
# qwen_vl_utils, installed beside vLLM on GPU machines). DPSTrainer's prompts are rows of that
# dataset, images included; nothing in dps depends on the modality. The CPU rehearsal with a tiny
# Qwen2-VL is `make verl-demo-vlm` (docs/integrations/verl.md#images).
set -euo pipefail

MODEL=${MODEL:-Qwen/Qwen2.5-VL-3B-Instruct}
DATA=${DATA:-$HOME/data/geo3k}
POLICY=${POLICY:-dps}
OPTIONS=${OPTIONS:-'{decay: 0.5}'}
KL_COEF=${KL_COEF:-0.01}   # 0.03 for the 7B model
GPUS=${GPUS:-8}
OUT=${OUT:-checkpoints/dps-geo3k-vl-3b-$POLICY}
EXPERIMENT="geo3k-vl-3b-$POLICY"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ARGS=(
    data.train_files="$DATA/train.parquet"
    data.val_files="$DATA/test.parquet"
    data.image_key=images
    data.train_batch_size=512
    data.max_response_length=1024
    actor_rollout_ref.actor.ppo_mini_batch_size=256
    actor_rollout_ref.actor.ppo_max_token_len_per_gpu=16384
    actor_rollout_ref.actor.use_kl_loss=True
    actor_rollout_ref.actor.kl_loss_coef="$KL_COEF"
    actor_rollout_ref.actor.kl_loss_type=low_var_kl
    trainer.total_training_steps=120
)
dps_verl_launch "$@"
