"""What build-training-set's Spark job costs before its write: `benchmark scale --sink-share` runs the
stage's own job (`build_training_set.full_examples`) on the tables the stage just read, into Spark's `noop`
sink, which consumes every row and writes nothing. The stage's seconds less these are the Parquet/Delta
write and the stage's bookkeeping (the item index, the counts)."""

from __future__ import annotations

import time

from pyspark.sql import SparkSession

from jobs.runtime.tables import TableStore
from jobs.training.build_training_set import full_examples
from r2led_model.config import Config


def noop_sink_seconds(spark: SparkSession, store: TableStore, config: Config) -> dict:
    """{"noop_sink_seconds"}: build-training-set's examples computed and consumed, not written."""
    examples = full_examples(store, store.read("route_candidates"), config.training_set)
    started = time.perf_counter()
    examples.write.format("noop").mode("overwrite").save()
    return {"noop_sink_seconds": round(time.perf_counter() - started, 2)}
