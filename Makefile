# `make run`: set up and run the pipeline end to end on the embedded default (MovieLens-100K).
# `make test`: set up and run the test suite. Both reuse .venv once it is installed.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ENV    ?= local

# Spark 4.0 needs Java 17; where several JDKs exist, pick a 17 explicitly (override with JAVA_HOME=...).
JAVA_HOME ?= $(firstword $(wildcard /usr/lib/jvm/java-17-openjdk* /usr/lib/jvm/temurin-17* /usr/lib/jvm/*-17-* /usr/lib/jvm/*17*))
export JAVA_HOME
export SPARK_LOCAL_IP ?= 127.0.0.1
export PYSPARK_PYTHON := $(abspath $(BIN)/python)

.PHONY: run test setup bench-sequences clean-workspace

setup: $(STAMP)

$(STAMP): setup.py requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -c requirements/constraints.txt setuptools wheel
	$(BIN)/pip install -c requirements/constraints.txt -e '.[test]'
	# MovieLens-100K ships inside this wheel; its other dependencies are not needed to read the files.
	$(BIN)/pip install --no-deps recbole==1.2.1
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/r2led pipeline --env $(ENV)

test: $(STAMP)
	$(BIN)/python -m pytest

bench-sequences: $(STAMP)
	$(BIN)/r2led benchmark sequences --env $(ENV)

clean-workspace:
	rm -rf workspace/tables workspace/tmp workspace/spark-warehouse

# `make wheel`: dist/r2led-<version>-py3-none-any.whl, the --py-files of deploy/submit.sh.
# --no-build-isolation builds with the venv's pinned setuptools/wheel (no download at build time).
.PHONY: wheel
wheel: $(STAMP)
	$(BIN)/pip wheel --no-deps --no-build-isolation -w dist .
