#!/usr/bin/env bash
# GRPO on SmolLM2-135M-Instruct with US, DS and DPS on a bare GPU machine: no network, no vLLM
# (the transformers engine generates), no polars (logs are written with pyarrow), Python 3.12,
# torch 2.11, transformers 5.17. Everything comes from the working tree and .gpu/, which
# scripts/gpu_pack.sh fills here; the model arrives in two parts, one per device call:
#
#   call 1: bash scripts/gpu_train.sh     carry .gpu/wheels .gpu/model/part1   -> checks, "waiting for part2"
#   call 2: bash scripts/gpu_train.sh     carry .gpu/model/part2               -> builds the model, trains
#
# (call 2 within the machine's 30 s warm time, so that call 1's files are still there.)
# Settings by environment: STEPS (30), POLICIES ("uniform ds dps"), RUN_DIR (runs/gpu),
# DEVICE (cuda; "cpu" for the CPU rehearsal, with small B and k), PY (python3), and OUT: when
# set (the device tool sets it), the table and the runs' logs are copied there.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS="${STEPS:-30}"
POLICIES="${POLICIES:-uniform ds dps}"
RUN_DIR="${RUN_DIR:-runs/gpu}"
DEVICE="${DEVICE:-cuda}"
PY="${PY:-python3}"
SITE="${SITE:-/tmp/dps-gpu-site}"
GGUF=SmolLM2-135M-Instruct.Q4_1.gguf
MODEL_DIR=runs/models/smollm2-135m-instruct
say() { echo "[gpu_train $(date -u +%H:%M:%S)] $*"; }

# 1. The compiled core from the abi3 wheel, the Python code from the working tree.
whl=$(ls .gpu/wheels/dps-*.whl 2>/dev/null | head -1 || true)
if [ -z "$whl" ]; then
  say "no .gpu/wheels/dps-*.whl: run scripts/gpu_pack.sh here and carry .gpu/wheels"; exit 2
fi
if [ "$("$PY" -c "import hashlib, pathlib; h = hashlib.sha256(); [h.update(p.as_posix().encode() + p.read_bytes()) for p in sorted(pathlib.Path('rust').rglob('*.rs')) + [pathlib.Path('Cargo.toml')]]; print(h.hexdigest())")" != "$(cat .gpu/wheels/rust.sha256 2>/dev/null)" ]; then
  say "the wheel in .gpu/wheels was built from other Rust sources than this tree's: run scripts/gpu_pack.sh again"; exit 2
fi
"$PY" -c "import zipfile, sys; z = zipfile.ZipFile(sys.argv[1]); open('python/dps/_core.abi3.so', 'wb').write(z.read('dps/_core.abi3.so'))" "$whl"
# 2. gguf (pure Python) beside the machine's own packages.
"$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" --upgrade .gpu/wheels/gguf-*.whl
export PYTHONPATH="$PWD/python:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

# 3. What this machine has, and that dps runs on it.
"$PY" - "$DEVICE" <<'PYEOF'
import importlib.util, platform, sys
import torch, transformers
import dps, dps._core
print(f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, "
      f"cuda {torch.cuda.is_available()} {torch.cuda.get_device_name(0) if torch.cuda.is_available() else ''}")
print("absent here (fallbacks in use):", [m for m in ("vllm", "polars", "reasoning_gym", "math_verify")
                                           if importlib.util.find_spec(m) is None])
if sys.argv[1] == "cuda" and not torch.cuda.is_available():
    raise SystemExit("DEVICE=cuda but torch sees no GPU")
PYEOF

# 4. The model: join the parts, check them, dequantise once into a plain folder.
if [ ! -f "$MODEL_DIR/config.json" ]; then
  missing=()
  for i in 1 2; do
    f=".gpu/model/part$i/$GGUF.part$i"
    if [ ! -f "$f" ]; then missing+=("part$i"); continue; fi
    want=$(grep " $GGUF.part$i\$" scripts/smollm2.sha256 | cut -d' ' -f1)
    have=$(sha256sum "$f" | cut -d' ' -f1)
    [ "$want" = "$have" ] || { say "$f is corrupt (sha256 $have, expected $want)"; exit 2; }
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "waiting for ${missing[*]}: carry .gpu/model/${missing[0]} in the next call (machine checks passed)"
    exit 0
  fi
  mkdir -p runs/models
  cat ".gpu/model/part1/$GGUF.part1" ".gpu/model/part2/$GGUF.part2" > "runs/models/$GGUF"
  want=$(grep " $GGUF\$" scripts/smollm2.sha256 | cut -d' ' -f1)
  [ "$(sha256sum "runs/models/$GGUF" | cut -d' ' -f1)" = "$want" ] || { say "joined GGUF is corrupt"; exit 2; }
  say "dequantising $GGUF into $MODEL_DIR"
  "$PY" -m dps.cli model "$MODEL_DIR" --gguf "runs/models/$GGUF"
fi

# 5. Train each policy from the same start.
EXTRA=()
if [ "$DEVICE" = "cpu" ]; then
  # The rehearsal on a CPU: the same path with 4 prompts x 4 responses and a short eval.
  EXTRA=(--set policy.batch_size=4 --set rollout.k=4 --set rollout.gen_batch_size=4
         --set grpo.micro_batch_size=16 --set log.eval_max=8 --set log.checkpoint_every=2)
fi
mkdir -p "$RUN_DIR"
for POL in $POLICIES; do
  say "training $POL for $STEPS steps"
  "$PY" -m dps.cli train --preset smollm2-gpu --policy "$POL" --steps "$STEPS" --out "$RUN_DIR/$POL" \
    --set model.device=$DEVICE --no-progress "${EXTRA[@]}" > "$RUN_DIR/$POL.summary.json"
done

# 6. One table: rollouts, effective ratio, speed, the step-time split, held-out accuracy.
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
