"""The local session: Delta works, and the Delta package jars are not on the Python workers' import path."""

from __future__ import annotations

import pyarrow as pa


def _jar_paths_seen_by_a_task(batches):
    import sys

    for _ in batches:
        pass
    # Spark puts its own spark-core jar on the workers' path; anything else would be a package's.
    jars = [entry for entry in sys.path if entry.lower().endswith(".jar") and "/pyspark/jars/" not in entry]
    yield pa.RecordBatch.from_arrays([pa.array([len(jars)], pa.int64())], names=["jars"])


def test_python_tasks_do_not_get_the_package_jars_on_their_path(spark, tmp_path):
    # The jars are still the JVM's: a Delta table can be written and read back.
    spark.range(3).write.format("delta").save(str(tmp_path / "t"))
    assert spark.read.format("delta").load(str(tmp_path / "t")).count() == 3
    assert spark.sparkContext.getConf().get("spark.jars.packages", "").startswith("io.delta")
    assert not [f for f in spark.sparkContext._python_includes if f.endswith(".jar")]
    seen = spark.range(0, 10, numPartitions=2).mapInArrow(_jar_paths_seen_by_a_task, "jars BIGINT").collect()
    assert [row.jars for row in seen] == [0, 0]
