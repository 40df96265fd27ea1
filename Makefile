# Two entry points, each creating .venv when missing:
#   make demo        set up and run the main job
#   make test        set up and run the linter and the tests
# and a quick tier for work in progress:
#   make test-fast   the linter and the tests not marked slow (under 2 minutes on 2 cores)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint clean mxnet-venv

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fcnxs demo --out demo-out

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/pytest -q

test-fast: lint
	$(BIN)/pytest -q -m "not slow"

# MXNet 1.9.1 in a venv of its own, the oracle of tests/test_mxnet_oracle.py:
#   make mxnet-venv && FCNXS_MXNET_PYTHON=.venv-mxnet/bin/python make test
mxnet-venv: .venv-mxnet/.installed
.venv-mxnet/.installed:
	test -x .venv-mxnet/bin/python || $(PYTHON) -m venv .venv-mxnet
	.venv-mxnet/bin/python -m pip install --quiet mxnet==1.9.1 'numpy<1.24' pillow
	touch $@

clean:
	rm -rf $(VENV) .venv-mxnet build dist demo-out .pytest_cache
