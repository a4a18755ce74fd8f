# Two entry points: `make demo` (install + main job) and `make test` (install + all tests).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test bench lint clean

$(BIN)/activate:
	$(PY) -m venv $(VENV)

# torch 2.13.0 (CPU) first so the project's torch range installs nothing more; recbole only for its data files.
$(VENV)/.installed: $(BIN)/activate pyproject.toml
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q --no-deps recbole==1.2.1
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/lucidrec demo

test: install
	$(BIN)/python -m pytest tests

bench: install
	$(BIN)/python benchmarks/accuracy.py

lint: install
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) models .pytest_cache
