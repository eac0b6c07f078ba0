# The Fink science-module UDFs (fink_t2.spark.fink_udf) under a Fink deployment's Spark (issue 13):
# a second venv with PySpark 3.5 and only the package's [fink] dependencies (no pyspark 4.0.0 pin,
# no connector jars). Included from the Makefile; `make test` builds it, and
# tests/spark/test_fink_udf_pyspark35.py runs the UDF tests inside it with a local Spark 3.5.
#
#   make fink-venv   create or reuse .venv-pyspark35 (FINK_PYTHON: any Python 3.9-3.11)

FINK_PYTHON ?= $(PYTHON)
FINK_PYSPARK ?= pyspark>=3.5,<3.6
FINK_VENV := $(CURDIR)/.venv-pyspark35
FINK_PY := $(FINK_VENV)/bin/python

.PHONY: fink-venv

fink-venv: $(FINK_VENV)/.installed

$(FINK_VENV)/.installed: setup.py mk/fink.mk
	test -x $(FINK_PY) || $(FINK_PYTHON) -m venv $(FINK_VENV)
	$(FINK_PY) -m pip install $(PIP_FLAGS) --upgrade pip
	$(FINK_PY) -m pip install $(PIP_FLAGS) '$(FINK_PYSPARK)' -e '.[fink]' 'pytest>=8'
	touch $@
