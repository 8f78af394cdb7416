#!/usr/bin/env bash
# The TRL example (examples/trl_grpo_dps.py --smollm2) on SmolLM2-135M-Instruct, on a bare GPU
# machine: DPSGRPOTrainer on dps's arithmetic questions, B = 32 x k = 8, two optimizer steps per
# generation. Same two calls as gpu_train.sh (scripts/gpu_pack.sh first, here):
#
#   call 1: bash scripts/gpu_trl.sh     carry .gpu/wheels .gpu/model/part1   -> checks, "waiting for part2"
#   call 2: bash scripts/gpu_trl.sh     carry .gpu/model/part2               -> builds the model, trains
#
# Settings by environment: STEPS (30 generations), RUN_DIR (runs/gpu-trl), DEVICE (cuda; "cpu"
# for the CPU rehearsal, with B = 4), PY (python3), and OUT: when set (the device tool sets
# it), the table, TRL's log history and the rollout log are copied there.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS="${STEPS:-30}"
RUN_DIR="${RUN_DIR:-runs/gpu-trl}"
DEVICE="${DEVICE:-cuda}"
PY="${PY:-python3}"
SITE="${SITE:-/tmp/dps-gpu-site}"
source scripts/gpu_common.sh

gpu_setup_python
gpu_model_folder || exit 0

EXTRA=()
[ "$DEVICE" = "cpu" ] && EXTRA=(--prompts 4)
mkdir -p "$RUN_DIR"
say "TRL + DPS on SmolLM2 for $STEPS generations"
started=$(date +%s.%N)
"$PY" examples/trl_grpo_dps.py --smollm2 "$MODEL_DIR" --steps "$STEPS" --out "$RUN_DIR" "${EXTRA[@]}" \
  | tee "$RUN_DIR/stdout.txt" | grep -v "^{'" || true
echo "wall_s $(echo "$(date +%s.%N) - $started" | bc)" >> "$RUN_DIR/stdout.txt"

# One table: generations, step time, generated tokens/s, effective ratio, the policy's share.
"$PY" - "$RUN_DIR" > "$RUN_DIR/table.md" <<'PYEOF'
import ast, json, pathlib, sys
import pyarrow.parquet as pq
out = pathlib.Path(sys.argv[1])
lines = (out / "stdout.txt").read_text().splitlines()
cost = json.loads(next(l for l in lines if l.startswith("dps cost:")).split(":", 1)[1])
logs = [ast.literal_eval(l) for l in lines if l.startswith("{'")]
gen = [r for r in logs if "num_tokens" in r]
log = pq.read_table(out / "rollouts.parquet").to_pydict()
k = log["n_rollouts"][0]
partial = sum(0 < c < k for c in log["n_correct"]) / len(log["n_correct"])
tokens = float(gen[-1]["num_tokens"]) if gen else 0.0
wall = float(next(l for l in lines if l.startswith("wall_s")).split()[1])
print("| generations | train() s | s / generation | tokens (prompt + completion) / s | partly solved groups | "
      "policy share (wall) | policy share (CPU) | log share |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|")
print(f"| {cost['generations']} | {cost['train_s']:.1f} | {cost['train_s'] / cost['generations']:.2f} | "
      f"{tokens / cost['train_s']:.0f} | {partial:.3f} | {100 * cost['policy_share']:.3f}% | "
      f"{100 * cost['policy_cpu_share']:.3f}% | {100 * cost['log_share']:.2f}% |")
print(f"\nwall time of the whole script step: {wall:.0f} s")
PYEOF
cat "$RUN_DIR/table.md"
if [ -n "${OUT:-}" ]; then
  cp "$RUN_DIR/table.md" "$RUN_DIR/stdout.txt" "$RUN_DIR/rollouts.parquet" "$OUT/"
fi
