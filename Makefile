# Two commands do all set-up on a fresh clone (each installs what it needs into .venv):
#   make pipeline   - the full pipeline on the embedded default (synthetic data, local teacher, tiny VLM, CPU)
#   make test       - the test suite (what CI runs)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE ?= 1
export DVC_NO_ANALYTICS := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: install pipeline test

# The GPU stack's lock (requirements/gpu.txt, README "GPU stack"): what uv resolves for linux x86_64 as of LOCK_DATE.
LOCK_DATE := 2026-12-07T00:00:00Z
LOCK = $(BIN)/uv pip compile requirements/gpu.in --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	--exclude-newer $(LOCK_DATE) --custom-compile-command "make lock" --quiet
# The lock's transformers and huggingface_hub (older than the CPU set: vLLM caps them), laid over .venv for the tests
# that run the training stages with them (tests/test_gpu_stack.py).
OVERLAY := $(VENV)/gpu-overlay

.PHONY: lock check-lock

$(STAMP): pyproject.toml constraints.txt requirements/gpu.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,deepspeed]'
	$(BIN)/pip install -q --no-deps --upgrade --target $(OVERLAY) \
		$$(grep -E '^(transformers|huggingface-hub)==' requirements/gpu.txt)
	touch $(STAMP)

install: $(STAMP)

lock: $(STAMP)
	$(LOCK) -o requirements/gpu.txt

# CI: the committed lock is what requirements/gpu.in resolves to (needs the package index).
check-lock: $(STAMP)
	$(LOCK) -o $(VENV)/gpu.txt.check
	diff -u requirements/gpu.txt $(VENV)/gpu.txt.check && echo "requirements/gpu.txt is current"

pipeline: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/tatar run

test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest -q -p no:cacheprovider --durations=15
