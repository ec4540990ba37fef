"""The one place that builds a SparkSession for an environment.

Local: `local[*]` with Delta enabled through `configure_spark_with_delta_pip` (the jars are
resolved from Maven Central once and cached under the workspace), UTC, and every scratch
folder (Ivy, warehouse, shuffle spill, JVM and Python temp) inside the workspace.
Databricks: the session the cluster already has.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pyspark.sql import SparkSession

from r2led_model.config import Config

log = logging.getLogger(__name__)

# Delta's SQL extension and catalog: what makes MERGE, time travel and DESCRIBE HISTORY work.
_DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


def get_spark(config: Config) -> SparkSession:
    """Return the session for `config.spark.mode`, creating it if needed."""
    if config.spark.mode in ("databricks", "submit"):
        # spark-submit and Databricks own the session's resources; we only add our settings.
        spark = SparkSession.builder.appName(config.spark.app_name).getOrCreate()
        spark.conf.set("spark.sql.session.timeZone", "UTC")
        if config.spark.mode == "submit":
            _adopt_submitted_session(spark, config)
        return spark
    return _local_session(config)


def _adopt_submitted_session(spark: SparkSession, config: Config) -> None:
    """Check that spark-submit enabled Delta; apply the session-scoped settings the config owns.

    Delta's extension and catalog are static: only the submit command line can set them.
    Master, memory and jars stay spark-submit's; `extra_conf` is not applied (mostly static keys).
    """
    missing = [f"--conf {key}={value}" for key, value in _DELTA_CONF.items()
               if value not in (spark.conf.get(key, None) or "")]
    if missing:
        raise RuntimeError("spark.mode=submit needs Delta enabled on the spark-submit command line; add "
                           + " ".join(missing) + " (deploy/submit.sh does)")
    sc = config.spark
    spark.conf.set("spark.sql.shuffle.partitions", str(sc.shuffle_partitions))
    spark.conf.set("spark.databricks.delta.snapshotPartitions", str(sc.shuffle_partitions))
    spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
    spark.sparkContext.setLogLevel("WARN")
    _keep_jars_off_the_python_path(spark)
    log.info("spark %s (spark-submit) adopted: master=%s, delta enabled", spark.version, spark.sparkContext.master)


def _local_session(config: Config) -> SparkSession:
    from delta import configure_spark_with_delta_pip

    sc = config.spark
    dirs = {name: Path(p).resolve() for name, p in
            (("ivy", sc.ivy_dir), ("local", sc.local_dir), ("warehouse", sc.warehouse_dir))}
    for folder in dirs.values():
        folder.mkdir(parents=True, exist_ok=True)
    _keep_temp_files_in(dirs["local"])
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # Workers must run the same interpreter (and so the same pinned packages) as the driver.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)

    java_tmp = f"-Djava.io.tmpdir={dirs['local']} -Dderby.system.home={dirs['local']}"
    builder = (
        SparkSession.builder.master(sc.master)
        .appName(sc.app_name)
        .config("spark.driver.memory", sc.driver_memory)
        .config("spark.sql.shuffle.partitions", str(sc.shuffle_partitions))
        .config("spark.default.parallelism", str(sc.shuffle_partitions))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", str(sc.ui_enabled).lower())
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.jars.ivy", str(dirs["ivy"]))
        .config("spark.local.dir", str(dirs["local"]))
        .config("spark.sql.warehouse.dir", str(dirs["warehouse"]))
        .config("spark.driver.extraJavaOptions", java_tmp)
        .config("spark.executor.extraJavaOptions", java_tmp)
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.databricks.delta.schema.autoMerge.enabled", "false")
        # Delta rebuilds table state with 50 partitions by default: pure overhead on small tables
        # and on a few cores. Match it to the shuffle width instead.
        .config("spark.databricks.delta.snapshotPartitions", str(sc.shuffle_partitions))
    )
    for key, value in _DELTA_CONF.items():
        builder = builder.config(key, value)
    for key, value in sc.extra_conf.items():
        builder = builder.config(key, value)
    spark = configure_spark_with_delta_pip(builder).getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    _keep_jars_off_the_python_path(spark)
    log.info("spark %s up: master=%s, delta enabled", spark.version, sc.master)
    return spark


@contextmanager
def stage_jobs(spark: SparkSession, stage: str) -> Iterator[None]:
    """Every Spark job started inside is in job group `r2led-<stage>` ("r2led <stage>" in the UI and
    the REST API), so an operator, or a drill, can tell which pipeline stage a running job belongs to."""
    context = spark.sparkContext
    context.setJobGroup(f"r2led-{stage}", f"r2led {stage}", interruptOnCancel=False)
    try:
        yield
    finally:
        context.setLocalProperty("spark.jobGroup.id", None)
        context.setLocalProperty("spark.job.description", None)


def _keep_jars_off_the_python_path(spark: SparkSession) -> None:
    """Stop shipping `--packages` jars to the Python workers as import paths.

    spark-submit adds the jars of `spark.jars.packages` (Delta's 30-odd) to `spark.submit.pyFiles`,
    and PySpark puts every such .jar on each task's sys.path, since a jar could hold Python. Delta's
    hold none. On Python 3.11 each task's `importlib.invalidate_caches()` then re-reads the
    directory of every one of those zip files, a fixed cost per task larger than the work of many
    short tasks. Only future tasks are affected, so this runs before any Python task. Our own
    --py-files (.zip, .egg, .whl) stay.
    """
    includes = spark.sparkContext._python_includes  # no public setter; the list each task ships
    kept = [name for name in includes if not name.lower().endswith(".jar")]
    if len(kept) < len(includes):
        log.info("kept %d package jars off the Python workers' import path", len(includes) - len(kept))
        includes[:] = kept


def _keep_temp_files_in(folder: Path) -> None:
    """Python-side temp files (PySpark's gateway handshake, Arrow spill) go to the workspace."""
    os.environ["TMPDIR"] = str(folder)
    tempfile.tempdir = str(folder)
