"""One Spark session (with Delta) for the whole test run, per-test configs, and the tiny world's
data stages built once per run for the modules that train on it.

Each test gets its own workspace (tables under tmp_path) from `make_config`; the session's
own scratch lives in a session temp folder; Delta jars are cached in the repo's workspace.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from r2led_model.config import Config, load_config
from tests.helpers import IVY_DIR, NIGHTLY_DAY1, NIGHTLY_FAST, config_in

@pytest.fixture
def restore_logging():
    """Jobs call logging.basicConfig(force=True) on stderr (`run_job`); put the root logger back afterwards.
    A module whose tests run jobs in-process uses it for every test (`pytest.mark.usefixtures`)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from jobs.runtime.java_home import java17_home
    from jobs.runtime.spark_runtime import get_spark

    # Plain `pytest` (without make) finds the Java 17 the Makefile would, not whatever `java` is on PATH.
    if not os.environ.get("JAVA_HOME") and java17_home():
        os.environ["JAVA_HOME"] = java17_home()

    root = tmp_path_factory.mktemp("spark-session")
    config = load_config("tiny", [f"workspace.root={root}", f"spark.ivy_dir={IVY_DIR}"])
    session = get_spark(config)
    yield session
    session.stop()


@pytest.fixture
def make_config(tmp_path):
    """`make_config("key=value", ..., env="tiny")` → a Config whose workspace is this test's tmp_path."""

    def make(*overrides: str, env: str = "tiny") -> Config:
        return config_in(tmp_path, *overrides, env=env)

    return make


@pytest.fixture(scope="session")
def tiny_tables(spark, tmp_path_factory) -> Path:
    """A workspace holding the tiny synthetic world after every data stage of the full run, built
    once per test run. Modules copy it with `trained_world` (never write into it)."""
    from jobs.ingest import generate
    from jobs.orchestration.stages import DATA_STAGES, stages

    root = tmp_path_factory.mktemp("tiny-tables")
    config = config_in(root)
    generate.run(spark, config)
    for stage in stages(DATA_STAGES):
        stage.run(spark, config)
    return root


@pytest.fixture(scope="session")
def nightly_day1(spark, tmp_path_factory) -> Path:
    """The tiny world after a clean first `pipeline --date 2024-01-18` (a catch-up) with NIGHTLY_FAST,
    on the session's local[2], built once per test run. Modules copy it (never write into it)."""
    from jobs.ingest import generate
    from jobs.orchestration.nightly import run_date

    root = tmp_path_factory.mktemp("nightly-day1") / "workspace"
    config = config_in(root, *NIGHTLY_FAST)
    generate.run(spark, config)
    run_date(spark, config, NIGHTLY_DAY1)
    return root
