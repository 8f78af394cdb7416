#!/usr/bin/env bash
# DPS in verl 0.9.1: the paper's MATH setting (DeepSeek-R1-Distill-Qwen-1.5B, B = 256, k = 8,
# lambda = 0.7, 8 GPUs, one node) with the released hyperparameters (docs/method.md#recipe).
# Not run on a GPU (no session that touched it had one); DRY_RUN=1 prints the composed config.
# The overrides it shares with geo3k_dps.sh are in common.sh.
#
#   python examples/data_preprocess/math_dataset.py --local_save_dir ~/data/math   # verl's MATH preprocessing
#   bash scripts/verl/math_dps.sh                                     # DPS
#   POLICY=ds OPTIONS='{max_rounds: 4}' bash scripts/verl/math_dps.sh # the DS baseline (cap 4 for MATH)
#   POLICY=uniform OPTIONS='{}' bash scripts/verl/math_dps.sh         # uniform
#   NNODES=2 bash scripts/verl/math_dps.sh                            # on a Ray cluster (docs/integrations/verl.md)
# Extra Hydra overrides go after the script's name.
set -euo pipefail

MODEL=${MODEL:-deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B}
DATA=${DATA:-$HOME/data/math}
VAL_FILES=${VAL_FILES:-$DATA/test.parquet}   # the paper validates on AIME: point this at an AIME parquet
POLICY=${POLICY:-dps}
OPTIONS=${OPTIONS:-'{decay: 0.7}'}
GPUS=${GPUS:-8}
OUT=${OUT:-checkpoints/dps-math-r1-1.5b-$POLICY}
EXPERIMENT="math-r1-1.5b-$POLICY"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ARGS=(
    data.train_files="$DATA/train.parquet"
    data.val_files="$VAL_FILES"
    data.train_batch_size=256
    data.max_response_length=8192
    actor_rollout_ref.actor.ppo_mini_batch_size=128
    actor_rollout_ref.actor.ppo_max_token_len_per_gpu=24576
    actor_rollout_ref.actor.use_kl_loss=False
    trainer.total_training_steps=360
)
dps_verl_launch "$@"
