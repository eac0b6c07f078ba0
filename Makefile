# fink_t2 — the two set-up commands are `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python
FINK_T2 := $(VENV)/bin/fink-t2
PIP_FLAGS ?= -q --disable-pip-version-check

.PHONY: venv demo test test-fast bench train clean

venv: $(VENV)/.installed

$(VENV)/.installed: setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) --upgrade pip
	$(PY) -m pip install $(PIP_FLAGS) -e '.[test]'
	touch $@

include mk/jvm.mk

demo: venv jars
	$(FINK_T2) demo

test: venv jars
	$(PY) -m pytest tests

bench: venv jars
	$(FINK_T2) bench --out out/bench.json --plot out/bench.png

test-fast: venv
	$(PY) -m pytest tests -m "not integration"

clean:
	rm -rf run out .pytest_cache
