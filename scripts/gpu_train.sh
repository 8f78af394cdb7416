#!/usr/bin/env bash
# GRPO on SmolLM2-135M-Instruct with US, DS and DPS on a bare GPU machine: no network, no vLLM
# (the transformers engine generates), no polars (logs are written with pyarrow), Python 3.12,
# torch 2.11, transformers 5.17. Everything comes from the working tree and .gpu/, which
# scripts/gpu_pack.sh fills here (what it holds: scripts/gpu_common.sh); the model arrives in
# two parts, one per device call:
#
#   call 1: bash scripts/gpu_train.sh     carry .gpu/wheels .gpu/model/part1   -> checks, "waiting for part2"
#   call 2: bash scripts/gpu_train.sh     carry .gpu/model/part2               -> builds the model, trains
#
# (call 2 within the machine's 30 s warm time, so that call 1's files are still there.)
# Settings by environment: STEPS (30), POLICIES ("uniform ds dps"), RUN_DIR (runs/gpu),
# DEVICE (cuda; "cpu" for the CPU rehearsal, with small B and k), PY (python3), and OUT: when
# set (the device tool sets it), the table and the runs' logs are copied there.
#
# PRESET=paper-geo3k runs the paper's Geometry3k recipe on one GPU at a smaller B instead (one
# call; no SmolLM2 parts): MODEL (a Qwen2.5-VL-Instruct folder), DATA (a folder with
# train.parquet and test.parquet, Geometry3k's or verl's layout; math-verify installed), B (64
# prompts a step, in the recipe's 2 mini-batches), MICRO (4 sequences a forward pass), STEPS.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS="${STEPS:-30}"
POLICIES="${POLICIES:-uniform ds dps}"
RUN_DIR="${RUN_DIR:-runs/gpu}"
DEVICE="${DEVICE:-cuda}"
PY="${PY:-python3}"
SITE="${SITE:-/tmp/dps-gpu-site}"
source scripts/gpu_common.sh

PRESET="${PRESET:-smollm2-gpu}"

gpu_setup_python
if [ "$PRESET" = "paper-geo3k" ]; then
  : "${MODEL:?PRESET=paper-geo3k needs MODEL=DIR, a Qwen2.5-VL-Instruct folder}"
  : "${DATA:?PRESET=paper-geo3k needs DATA=DIR holding train.parquet and test.parquet}"
  # transformers rollouts (no vLLM on the bare machine); B prompts in the recipe's 2 mini-batches
  PRESET_ARGS=(--model "$MODEL" --engine hf --set "task.options.path=$DATA/train.parquet"
               --set "task.options.test_path=$DATA/test.parquet" --set "policy.batch_size=${B:-64}"
               --set grpo.mini_batches=2 --set "grpo.micro_batch_size=${MICRO:-4}")
else
  gpu_model_folder || exit 0
  PRESET_ARGS=()
fi

# Train each policy from the same start.
EXTRA=()
if [ "$DEVICE" = "cpu" ]; then
  # The rehearsal on a CPU: the same path with 4 prompts x 4 responses and a short eval.
  EXTRA=(--set policy.batch_size=4 --set rollout.k=4 --set rollout.gen_batch_size=4 --set rollout.max_new_tokens=16
         --set grpo.micro_batch_size=16 --set log.eval_max=8 --set log.checkpoint_every=2)
fi
mkdir -p "$RUN_DIR"
for POL in $POLICIES; do
  say "training $POL for $STEPS steps"
  "$PY" -m dps.cli train --preset "$PRESET" --policy "$POL" --steps "$STEPS" --out "$RUN_DIR/$POL" \
    --set model.device=$DEVICE --no-progress "${PRESET_ARGS[@]}" "${EXTRA[@]}" > "$RUN_DIR/$POL.summary.json"
done

# One table: rollouts, effective ratio, speed, the step-time split, held-out accuracy.
"$PY" - "$RUN_DIR" $POLICIES > "$RUN_DIR/table.md" <<'PYEOF'
import json, pathlib, sys
out, policies = pathlib.Path(sys.argv[1]), sys.argv[2:]
print("| policy | steps | rollouts | rollouts / trained group | effective ratio | generated tokens/s | "
      "select s | generate s | update s | weight sync s | held-out acc start -> end |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for p in policies:
    m = [json.loads(x) for x in (out / p / "metrics.jsonl").read_text().splitlines()]
    e = [json.loads(x) for x in (out / p / "eval.jsonl").read_text().splitlines()]
    avg = lambda k: sum(r[k] for r in m) / len(m)
    print(f"| {p} | {len(m)} | {sum(r['rollouts'] for r in m)} | {avg('rollouts_per_trained_group'):.1f} | "
          f"{avg('effective_ratio'):.2f} | {avg('gen_tokens_per_s'):.0f} | {avg('time_select'):.3f} | "
          f"{avg('time_generate'):.2f} | {avg('time_update'):.2f} | {avg('time_sync'):.3f} | "
          f"{e[0]['test_accuracy']:.3f} -> {e[-1]['test_accuracy']:.3f} |")
PYEOF
cat "$RUN_DIR/table.md"
if [ -n "${OUT:-}" ]; then
  cp "$RUN_DIR/table.md" "$OUT/"
  tar czf "$OUT/runs.tar.gz" --exclude=ckpt --exclude=model --exclude=engine-model -C "$RUN_DIR" .
fi
