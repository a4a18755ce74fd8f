# Two entry points: `make demo` (install + main job) and `make test` (install + all tests).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test test-deps bench lint clean

$(BIN)/activate:
	$(PY) -m venv $(VENV)

# torch 2.13.0 (CPU) first so the project's torch range installs nothing more. ML-100K's files come out of
# the recbole wheel without installing recbole (scripts/install-ml100k.sh).
$(VENV)/.installed: $(BIN)/activate pyproject.toml scripts/install-ml100k.sh
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	scripts/install-ml100k.sh $(BIN)/python
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/lucidrec demo

# What the tests need beyond the venv (chromium for the web page tests); the same script .ci/run calls.
test-deps:
	scripts/install-test-deps.sh

test: install test-deps
	$(BIN)/python -m pytest tests

bench: install
	$(BIN)/python benchmarks/accuracy.py

lint: install
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) models .pytest_cache
