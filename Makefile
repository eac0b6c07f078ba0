# fink_t2 — the two set-up commands are `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python
FINK_T2 := $(VENV)/bin/fink-t2
PIP_FLAGS ?= -q --disable-pip-version-check

.PHONY: venv demo test test-fast bench lsst-night fuzz train clean

venv: $(VENV)/.installed

$(VENV)/.installed: setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) --upgrade pip
	$(PY) -m pip install $(PIP_FLAGS) -e '.[stream,test,plot]'  # stream: pyspark 4.0.0; test: pytest + what the tests run (bench, reference GP); plot: the demo's PNG
	touch $@

include mk/jvm.mk
include mk/train.mk
include mk/fink.mk
include mk/pretrain.mk

# the training stack (TensorFlow) is only needed by the tests and `make train`, not by the stream
$(VENV)/.train-installed: $(VENV)/.installed mk/train.mk
	$(MAKE) --no-print-directory train-venv
	touch $@

demo: venv jars
	$(FINK_T2) demo

test: venv $(VENV)/.train-installed fink-venv jars
	$(PY) -m pytest tests

# the reference path of the bench is george (the deployed recipe): the [bench] extra is installed first
bench: venv jars
	$(PY) -m pip install $(PIP_FLAGS) -e '.[stream,bench]'
	FINK_T2_BENCH_COMMAND="make bench" $(FINK_T2) bench --require-george --out out/bench.json --plot out/bench.png \
	  --readme README.md

# LSST-night latency run (README "Latency under an LSST night"): a fresh broker on free loopback ports,
# the framework floor then `fink-t2 stream` (packaged config) under the same load, MINUTES each
MINUTES ?= 30
LSST_RATE ?= 280
LSST_BURST ?= 10000
LSST_BURST_PERIOD ?= 300
lsst-night: venv jars
	$(PY) -m pip install $(PIP_FLAGS) -e '.[stream,bench]'
	FINK_T2_BENCH_COMMAND="make lsst-night MINUTES=$(MINUTES)" $(FINK_T2) bench --lsst-night --minutes $(MINUTES) \
	  --rate $(LSST_RATE) --burst-size $(LSST_BURST) --burst-period $(LSST_BURST_PERIOD) \
	  --out out/lsst-night.json --plot out/lsst-night.png --readme README.md

# long fuzz of the alert decoder against fastavro: JSON report in out/fuzz.json, failing payloads in out/fuzz/
FUZZ_CASES ?= 1000000
fuzz: venv
	nice $(PY) -m fink_t2.tools.fuzz --cases $(FUZZ_CASES) --out out/fuzz.json --save-dir out/fuzz

test-fast: venv
	$(PY) -m pytest tests -m "not integration"

clean:
	rm -rf run out .pytest_cache
