# Sourced by the one-call GPU scripts (gpu_train.sh, gpu_trl.sh): what they all do on a bare GPU
# machine (Python 3.12, torch, transformers; no network, no vLLM, no polars). Everything comes
# from the working tree and .gpu/, which scripts/gpu_pack.sh fills here:
#   .gpu/wheels/   this project's abi3 wheel (its compiled core) and the pure-Python wheels the
#                  machine lacks (gguf; trl, datasets, dill, multiprocess for the TRL example)
#   .gpu/model/partN/   SmolLM2-135M-Instruct's GGUF in two parts, each under the 64 MiB a call carries
# The caller sets PY (python3), SITE (where the wheels go) and DEVICE (cuda, or cpu to rehearse).

GGUF=SmolLM2-135M-Instruct.Q4_1.gguf
MODEL_DIR=${MODEL_DIR:-runs/models/smollm2-135m-instruct}
say() { echo "[$(basename "$0") $(date -u +%H:%M:%S)] $*"; }

# 1. The compiled core from the abi3 wheel, the Python code from the working tree, the other
#    carried wheels beside the machine's own packages.
gpu_setup_python() {
  local whl
  whl=$(ls .gpu/wheels/dps-*.whl 2>/dev/null | head -1 || true)
  if [ -z "$whl" ]; then
    say "no .gpu/wheels/dps-*.whl: run scripts/gpu_pack.sh here and carry .gpu/wheels"; exit 2
  fi
  if [ "$("$PY" -c "import hashlib, pathlib; h = hashlib.sha256(); [h.update(p.as_posix().encode() + p.read_bytes()) for p in sorted(pathlib.Path('rust').rglob('*.rs')) + [pathlib.Path('Cargo.toml')]]; print(h.hexdigest())")" != "$(cat .gpu/wheels/rust.sha256 2>/dev/null)" ]; then
    say "the wheel in .gpu/wheels was built from other Rust sources than this tree's: run scripts/gpu_pack.sh again"; exit 2
  fi
  # Written beside and renamed over: a process that has the old file loaded keeps it intact.
  "$PY" -c "import os, sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); open('python/dps/_core.abi3.so.new', 'wb').write(z.read('dps/_core.abi3.so')); os.replace('python/dps/_core.abi3.so.new', 'python/dps/_core.abi3.so')" "$whl"
  local others=()
  for w in .gpu/wheels/*.whl; do others+=("$w"); done
  # Only the wheels this Python can install (multiprocess comes per Python version). dps's own
  # wheel goes in too, for its metadata (`dps --version`); its code comes from python/, first
  # on the path.
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" --upgrade \
    $("$PY" - "${others[@]}" <<'PYEOF'
import sys
from packaging.tags import sys_tags
from packaging.utils import parse_wheel_filename
ours = set(sys_tags())
for path in sys.argv[1:]:
    _, _, _, tags = parse_wheel_filename(path.rsplit("/", 1)[-1])
    if tags & ours:
        print(path)
PYEOF
)
  export PYTHONPATH="$PWD/python:$SITE${PYTHONPATH:+:$PYTHONPATH}"
  export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
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
}

# 2. The model: join the parts, check them, dequantise once into a plain folder. Returns 1 (after
#    saying so) while a part has not arrived yet: the caller ends its call there.
gpu_model_folder() {
  [ -f "$MODEL_DIR/config.json" ] && return 0
  local missing=() f want have i
  for i in 1 2; do
    f=".gpu/model/part$i/$GGUF.part$i"
    if [ ! -f "$f" ]; then missing+=("part$i"); continue; fi
    want=$(grep " $GGUF.part$i\$" scripts/smollm2.sha256 | cut -d' ' -f1)
    have=$(sha256sum "$f" | cut -d' ' -f1)
    [ "$want" = "$have" ] || { say "$f is corrupt (sha256 $have, expected $want)"; exit 2; }
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "waiting for ${missing[*]}: carry .gpu/model/${missing[0]} in the next call (machine checks passed)"
    return 1
  fi
  mkdir -p runs/models
  cat ".gpu/model/part1/$GGUF.part1" ".gpu/model/part2/$GGUF.part2" > "runs/models/$GGUF"
  want=$(grep " $GGUF\$" scripts/smollm2.sha256 | cut -d' ' -f1)
  [ "$(sha256sum "runs/models/$GGUF" | cut -d' ' -f1)" = "$want" ] || { say "joined GGUF is corrupt"; exit 2; }
  say "dequantising $GGUF into $MODEL_DIR"
  "$PY" -m dps.cli model "$MODEL_DIR" --gguf "runs/models/$GGUF" || { say "dequantising failed"; exit 2; }
}
