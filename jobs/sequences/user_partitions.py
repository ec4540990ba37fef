"""Each user's stored sequence and that user's samples in one hash partition by user_id, the layout
retrieve and build-training-set both compute in: one row per sequence (arrays as stored), no
behaviour exploded into a row, joined or sorted in Spark.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

SEQUENCE_COLUMNS = ("user_id", "item_ids", "history_ts", "dropped")


def co_partitioned(sequences: DataFrame, samples: DataFrame, sample_columns: Sequence[str],
                   sample_only: Sequence[Column] = (), partitions: int | None = None) -> DataFrame:
    """One DataFrame of sequence rows (user_id, item_ids, history_ts, dropped) and sample rows
    (`sample_columns`), flagged by `is_sample`, hash-partitioned by user_id into `partitions`
    (default spark.sql.shuffle.partitions). `sample_only`: array columns the sample rows carry,
    given empty (never null) on the sequence rows."""
    # The other kind's arrays are empty, not null: Spark's Arrow writer is several times slower on
    # null array values than on empty ones (`r2led benchmark retrieval` measured it).
    no_behaviours = F.array().cast("array<bigint>")
    history_rows = sequences.select("user_id", "item_ids", F.col("ts").alias("history_ts"), "dropped",
                                    F.lit(False).alias("is_sample"), *sample_only)
    sample_rows = samples.select(*sample_columns, no_behaviours.alias("item_ids"), no_behaviours.alias("history_ts"),
                                 F.lit(True).alias("is_sample"))
    rows = history_rows.unionByName(sample_rows, allowMissingColumns=True)
    return rows.repartition(partitions, "user_id") if partitions else rows.repartition("user_id")


def partition_tables(batches: Iterator[pa.RecordBatch],
                     sample_columns: Sequence[str]) -> tuple[pa.Table, pa.Table] | None:
    """A `co_partitioned` partition → (its sequences, its samples), or None when it holds no sample.
    The whole partition is read first: a user's rows may straddle Arrow batches."""
    batches = list(batches)
    if not batches:
        return None
    table = pa.Table.from_batches(batches)
    is_sample = table["is_sample"]
    samples = table.filter(is_sample).select(list(sample_columns)).combine_chunks()
    if not samples.num_rows:
        return None
    return table.filter(pc.invert(is_sample)).select(list(SEQUENCE_COLUMNS)), samples
