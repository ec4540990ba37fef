"""What notebook 01 shows of `events`, `samples` and `user_sequences`: row counts, split sizes, the
`hist_len` distribution, stored sequence lengths and behaviours per day."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.runtime.tables import TableStore

SEQUENCE_TABLES = ("events", "samples", "user_sequences")


def table_counts(spark: SparkSession, store: TableStore, names: tuple[str, ...] = SEQUENCE_TABLES) -> DataFrame:
    """One row per table: its name, rows and current Delta version."""
    return spark.createDataFrame([(name, store.read(name).count(), store.version(name)) for name in names],
                                 "table string, rows long, delta_version long")


def split_sizes(samples: DataFrame) -> DataFrame:
    """Per split: samples, positives, users and the mean `hist_len`."""
    return (samples.groupBy("split")
            .agg(F.count("*").alias("samples"), F.sum("label").alias("positives"),
                 F.countDistinct("user_id").alias("users"), F.avg("hist_len").alias("mean_hist_len"))
            .orderBy("split"))


def hist_len_buckets(samples: DataFrame) -> DataFrame:
    """Samples per power-of-two `hist_len` bucket (0, 1, 2-3, 4-7, ...) and split."""
    bucket = F.when(F.col("hist_len") <= 0, F.lit(0)).otherwise(
        F.pow(F.lit(2), F.floor(F.log2(F.col("hist_len")))).cast("long"))
    return (samples.withColumn("hist_len_from", bucket).groupBy("hist_len_from")
            .pivot("split", ["train", "valid", "test"]).count().na.fill(0).orderBy("hist_len_from"))


def stored_lengths(sequences: DataFrame) -> DataFrame:
    """One row: the shortest, median and longest stored sequence and the behaviours dropped by the cap."""
    return sequences.select(F.min("length").alias("min"), F.expr("percentile_approx(length, 0.5)").alias("median"),
                            F.max("length").alias("max"), F.sum("dropped").alias("dropped_behaviours"))


def events_per_day(events: DataFrame) -> DataFrame:
    """Per event date: events and distinct users, oldest first."""
    return (events.groupBy("event_date").agg(F.count("*").alias("events"), F.countDistinct("user_id").alias("users"))
            .orderBy("event_date"))


def behaviours_on(events: DataFrame, day: str | None) -> DataFrame:
    """The events of one day (`YYYY-MM-DD`; None: none), counted per behaviour."""
    on_day = events.where(F.col("event_date") == F.lit(day).cast("date"))
    return on_day.groupBy("behavior").count().orderBy("behavior")
