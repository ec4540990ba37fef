# syntax=docker/dockerfile:1
# R2LED on Spark in one image: Python 3.11, Java 17, the pinned stack, the r2led wheel and the
# Delta jars (resolved at build time, so a run needs no Maven Central). Every job runs through
# deploy/submit.sh: spark-submit with Delta on the command line and the wheel on --py-files.
#
#   docker build -t r2led:0.1.0 .
#   docker run --rm -v "$PWD/workspace:/app/workspace" r2led:0.1.0                 # pipeline --env local
#   docker run --rm -v "$PWD/workspace:/app/workspace" r2led:0.1.0 ingest --env tiny
#
# Without a registry or a daemon (buildah, debootstrap, root): make base-image image image-smoke.
#
# Build arguments:
#   BASE_IMAGE       the image both stages start from (default python:3.11-slim-bookworm). Any Debian
#                    bookworm with python3 (3.11) and its venv module works: `make base-image` makes one
#                    with debootstrap (localhost/r2led-base:bookworm) where no registry can be reached,
#                    and `make image` builds on it (buildah bud --build-arg BASE_IMAGE=...).
#   TORCH_INDEX_URL  requirements/constraints.txt pins torch==2.13.0, whose default PyPI wheel pulls
#                    the CUDA 13 runtime (2.7 GB of nvidia-* wheels). For a CPU-only image (GBs smaller) build with
#                    --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu : pip then finds
#                    2.13.0+cpu, which the ==2.13.0 pin admits. Not verified here (download.pytorch.org is not
#                    reachable from the build machines; PyPI itself has no CPU-only torch 2.13.0).

# Bookworm, not trixie: trixie has no OpenJDK 17 package, and Spark 4.0 is built for Java 17.
# For reproducible builds pin the digest too: python:3.11-slim-bookworm@sha256:<digest>.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE} AS build

# A venv of its own: a Debian base has python3 but no pip on PATH (and must not be pip-installed into).
ENV PATH=/opt/build-venv/bin:$PATH
WORKDIR /src
COPY requirements/constraints.txt requirements/constraints.txt
RUN python3 -m venv /opt/build-venv \
    && pip install --no-cache-dir -c requirements/constraints.txt setuptools wheel
COPY setup.py README.md ./
COPY r2led_model r2led_model
COPY jobs jobs
COPY conf conf
# The same command as `make wheel`: built with the pinned setuptools, no other downloads.
RUN pip wheel --no-cache-dir --no-deps --no-build-isolation -w /dist .


FROM ${BASE_IMAGE}

# Version pins for apt come from the bookworm snapshot the base tag points at; pinning them here
# would break the build at every Debian point release. The man1 folder: slim images drop man
# pages, and the JDK's postinst fails without it on some releases.
# hadolint ignore=DL3008
RUN apt-get update \
    && mkdir -p /usr/share/man/man1 \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps \
    && ln -s "/usr/lib/jvm/java-17-openjdk-$(dpkg --print-architecture)" /usr/lib/jvm/java-17 \
    && rm -rf /var/lib/apt/lists/*

# JAVA_HOME is an arch-neutral link to the Java 17 above. SPARK_HOME is pyspark's own folder
# (spark-submit, jars), which Spark on Kubernetes needs inside executor pods. R2LED_WHEEL=installed:
# submit.sh passes no --py-files, since the venv holds the same wheel for driver and executors (on
# --py-files the package is imported from the zip, where MLflow cannot read the model's code file).
ENV JAVA_HOME=/usr/lib/jvm/java-17 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    SPARK_HOME=/opt/venv/lib/python3.11/site-packages/pyspark \
    PYSPARK_PYTHON=/opt/venv/bin/python \
    PYSPARK_DRIVER_PYTHON=/opt/venv/bin/python \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    R2LED_IVY_DIR=/opt/ivy2 \
    R2LED_CONF_DIR=/app/conf \
    R2LED_WHEEL=installed

ARG TORCH_INDEX_URL=""
RUN python3 -m venv /opt/venv
COPY requirements/constraints.txt /opt/r2led/constraints.txt
COPY --from=build /dist/ /app/dist/
# The package and its `local` extra (Spark, Delta, Petastorm: what a Databricks runtime would provide)
# with the exact verified versions, checked by `pip check`; then MovieLens-100K, which
# ships inside the recbole wheel, installed without its dependencies (not needed to read its files),
# so after the check: pip check would report every one of them missing.
RUN pip install --no-cache-dir -c /opt/r2led/constraints.txt \
        ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} "$(ls /app/dist/r2led-*-py3-none-any.whl)[local]" \
    && pip check \
    && pip install --no-cache-dir -c /opt/r2led/constraints.txt --no-deps recbole==1.2.1

# A numeric, non-root user: Kubernetes can check runAsNonRoot only against a numeric USER.
RUN groupadd --gid 10001 r2led \
    && useradd --create-home --no-log-init --uid 10001 --gid 10001 r2led \
    && install -d -o r2led -g r2led /app /app/workspace /opt/ivy2

WORKDIR /app
# Code and config stay root-owned (read-only to the job); the workspace and Ivy cache are writable.
COPY conf conf
COPY jobs jobs
COPY deploy/submit.sh deploy/submit.sh
USER 10001:10001

# Resolve the Delta package (the same --packages as submit.sh) into /opt/ivy2 now: an empty
# Python main makes spark-submit resolve and fetch the jars, then exit without starting Spark.
# SPARK_LOCAL_IP: Spark looks up the build container's host name otherwise, which not every builder
# puts in /etc/hosts (buildah with chroot isolation does not: UnknownHostException).
RUN touch /tmp/resolve.py \
    && SPARK_LOCAL_IP=127.0.0.1 spark-submit --packages io.delta:delta-spark_4.0_2.13:4.4.0 --conf spark.jars.ivy=/opt/ivy2 /tmp/resolve.py \
    && ls /opt/ivy2/jars/io.delta_delta-spark_4.0_2.13-4.4.0.jar \
    && rm /tmp/resolve.py

ENTRYPOINT ["/app/deploy/submit.sh"]
CMD ["pipeline", "--env", "local"]
