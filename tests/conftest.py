"""One Spark session (with Delta) for the whole test run, and per-test configs.

Each test gets its own workspace (tables under tmp_path) from `make_config`; the session's
own scratch lives in a session temp folder; Delta jars are cached in the repo's workspace.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from r2led_model.config import Config, load_config

REPO = Path(__file__).resolve().parents[1]
IVY_DIR = REPO / "workspace" / "ivy2"


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from jobs.spark_runtime import get_spark

    root = tmp_path_factory.mktemp("spark-session")
    config = load_config("tiny", [f"workspace.root={root}", f"spark.ivy_dir={IVY_DIR}"])
    session = get_spark(config)
    yield session
    session.stop()


def config_in(root: Path, *overrides: str, env: str = "tiny") -> Config:
    """A Config whose workspace is `root` (Delta jars still come from the shared Ivy cache)."""
    return load_config(env, [f"workspace.root={root}", f"spark.ivy_dir={IVY_DIR}", *overrides])


@pytest.fixture
def make_config(tmp_path):
    """`make_config("key=value", ..., env="tiny")` → a Config whose workspace is this test's tmp_path."""

    def make(*overrides: str, env: str = "tiny") -> Config:
        return config_in(tmp_path, *overrides, env=env)

    return make
