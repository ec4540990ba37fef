"""`r2led sequences`: `events` → `user_sequences` and `samples`.

`user_sequences` holds each user's behaviours in ascending time (ties broken by item id, then
behaviour), truncated to the newest `max_stored`. `samples` holds one row per labelled
impression with `hist_len`, the number of the user's behaviours strictly before the sample's ts:
a pointer into the sequence, never a copy, so no sample can see its own or any later behaviour.

Point-in-time rule: hist_len is a window sum over rows with ts < the sample's ts (a RANGE frame
ending at -1 second), so ties at the same second are excluded too.

Negative sampling (positive-only logs): per positive, `ratio` items drawn with probability
proportional to training-window popularity, excluding every item the user ever touched. The
draw is a counter-based hash of (seed, sample_id, draw index), so it is deterministic and
independent of partitioning.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from jobs.entrypoint import spark_job_main
from jobs.tables import TableStore
from r2led_model.config import Config, NegativeSamplingConfig, SequencesConfig, SplitConfig, parse_utc_timestamp

log = logging.getLogger(__name__)

_ID_MASK = 0x7FFFFFFFFFFFFFFF  # ids are non-negative longs
_UNIT_BITS = 53  # a double holds 53 bits exactly: hash → uniform in [0, 1)


@dataclass
class SequencesResult:
    users: int
    samples_by_split: dict[str, int]
    clicks: int
    sampled_negatives: int

    def summary(self) -> str:
        splits = ", ".join(f"{k}={v:,}" for k, v in sorted(self.samples_by_split.items()))
        return (f"user_sequences: {self.users:,} users; samples: {splits}; "
                f"label=1 {self.clicks:,}, sampled negatives {self.sampled_negatives:,}")


def _in(column: str, values: Sequence[str]) -> Column:
    return F.col(column).isin(list(values)) if values else F.lit(True)


def build_user_sequences(events: DataFrame, items: DataFrame, config: SequencesConfig) -> DataFrame:
    history = (events.where(_in("behavior", config.history_behaviors))
               .join(items.select("item_id", "category_id"), "item_id", "left"))
    ordered = F.sort_array(F.collect_list(F.struct("ts", "item_id", "behavior", "category_id")))
    per_user = history.groupBy("user_id").agg(ordered.alias("seq"), F.count("*").alias("total"))
    keep = F.least(F.col("total"), F.lit(config.max_stored))
    # Newest `max_stored`: slice is 1-based and the array is ascending.
    newest = F.slice("seq", F.col("total") - keep + 1, keep)
    return per_user.select(
        "user_id",
        newest.alias("seq"),
        (F.col("total") - keep).alias("dropped"),
    ).select(
        "user_id",
        F.col("seq.item_id").alias("item_ids"),
        F.col("seq.ts").alias("ts"),
        F.col("seq.category_id").alias("category_ids"),
        F.col("seq.behavior").alias("behaviors"),
        F.size("seq").cast("int").alias("length"),
        F.col("dropped").cast("bigint").alias("dropped"),
    )


def _hashed_id(*cols: Column) -> Column:
    return F.xxhash64(*cols).bitwiseAND(F.lit(_ID_MASK))


def label_sample_events(events: DataFrame, config: SequencesConfig) -> DataFrame:
    """One sample per sample-behaviour event, with hist_len; a null label (positive-only logs) is a click."""
    in_history = _in("behavior", config.history_behaviors).cast("long")
    strictly_before = (Window.partitionBy("user_id").orderBy("ts")
                       .rangeBetween(Window.unboundedPreceding, -1))
    tagged = events.select(
        "user_id", "item_id", "ts", "behavior", "label", "value",
        _in("behavior", config.sample_behaviors).alias("is_sample"),
        F.coalesce(F.sum(in_history).over(strictly_before), F.lit(0)).cast("bigint").alias("hist_len"),
    )
    return tagged.where("is_sample").where(F.col("hist_len") >= config.min_hist_len).select(
        _hashed_id("user_id", "item_id", "ts", "behavior", "value", F.lit(-1)).alias("sample_id"),
        "user_id", "item_id", "ts",
        F.coalesce("label", F.lit(1)).cast("int").alias("label"),
        "hist_len",
        F.lit(False).alias("is_sampled_negative"),
    )


def assign_split(samples: DataFrame, config: SplitConfig) -> DataFrame:
    if config.mode == "time":
        valid_from, test_from = parse_utc_timestamp(config.valid_from), parse_utc_timestamp(config.test_from)
        split = (F.when(F.col("ts") >= test_from, "test")
                 .when(F.col("ts") >= valid_from, "valid").otherwise("train"))
        return samples.withColumn("split", split)
    newest_first = Window.partitionBy("user_id").orderBy(F.desc("ts"), F.desc("item_id"), F.desc("sample_id"))
    rank = F.row_number().over(newest_first)
    split = (F.when(rank <= config.last_n_test, "test")
             .when(rank <= config.last_n_test + config.last_n_valid, "valid").otherwise("train"))
    return samples.withColumn("split", split)


def training_window_end(config: SplitConfig) -> int | None:
    """Latest ts (exclusive) whose events may shape training-time statistics, or None for all."""
    return parse_utc_timestamp(config.valid_from) if config.mode == "time" else None


def sample_negatives(
    spark: SparkSession,
    positives: DataFrame,
    events: DataFrame,
    config: NegativeSamplingConfig,
    popularity_until: int | None,
) -> DataFrame:
    """`config.ratio` popularity-proportional negatives per positive (fewer only if the user touched
    nearly every drawn item); each inherits the positive's user, ts, hist_len and split."""
    window = events if popularity_until is None else events.where(F.col("ts") < popularity_until)
    counts = window.groupBy("item_id").count().orderBy("item_id").toPandas()
    if counts.empty:
        raise ValueError("negative sampling: no events in the training window to estimate popularity from")
    item_ids = counts["item_id"].to_numpy(np.int64)
    cdf = np.cumsum(counts["count"].to_numpy(np.float64))
    cdf /= cdf[-1]
    shared = spark.sparkContext.broadcast((item_ids, cdf))

    @F.pandas_udf("long")
    def item_at(unit: pd.Series) -> pd.Series:
        ids, cumulative = shared.value
        index = np.searchsorted(cumulative, unit.to_numpy(), side="right")
        return pd.Series(ids[np.minimum(index, len(ids) - 1)])

    draws = config.ratio * config.oversample
    unit = (F.xxhash64(F.lit(config.seed), "sample_id", "draw").bitwiseAND(F.lit((1 << _UNIT_BITS) - 1))
            / float(1 << _UNIT_BITS))
    candidates = (positives.withColumn("draw", F.explode(F.sequence(F.lit(0), F.lit(draws - 1))))
                  .withColumn("neg_item", item_at(unit)))
    touched = events.select("user_id", F.col("item_id").alias("neg_item")).distinct()
    fresh = candidates.join(touched, ["user_id", "neg_item"], "left_anti")
    # One row per distinct item per positive, then the first `ratio` in draw order.
    first_draw = Window.partitionBy("sample_id", "neg_item").orderBy("draw")
    by_draw = Window.partitionBy("sample_id").orderBy("draw")
    kept = (fresh.withColumn("dup", F.row_number().over(first_draw)).where("dup = 1")
            .withColumn("rank", F.row_number().over(by_draw)).where(F.col("rank") <= config.ratio))
    return kept.select(
        _hashed_id("sample_id", "neg_item", "rank").alias("sample_id"),
        "user_id", F.col("neg_item").alias("item_id"), "ts",
        F.lit(0).alias("label"), "hist_len", F.lit(True).alias("is_sampled_negative"), "split",
    )


def needs_negatives(events: DataFrame, config: NegativeSamplingConfig) -> bool:
    if config.enabled == "auto":
        return events.where(F.col("label").isNull()).limit(1).count() > 0
    return config.enabled == "always"


def build_samples(spark: SparkSession, events: DataFrame, config: SequencesConfig) -> DataFrame:
    labelled = assign_split(label_sample_events(events, config), config.split)
    if not needs_negatives(events, config.negatives):
        return labelled
    negatives = sample_negatives(spark, labelled.where("label = 1"), events, config.negatives,
                                 popularity_until=training_window_end(config.split))
    return labelled.unionByName(negatives)


def run(spark: SparkSession, config: Config, args: argparse.Namespace | None = None) -> SequencesResult:
    store = TableStore(spark, config.tables)
    events = store.read("events")
    items = store.read("items")
    store.overwrite("user_sequences", build_user_sequences(events, items, config.sequences))
    store.overwrite("samples", build_samples(spark, events, config.sequences))

    written = store.read("samples")
    by_split = {r["split"]: int(r["count"]) for r in written.groupBy("split").count().collect()}
    flags = written.agg(F.sum("label").alias("clicks"),
                        F.sum(F.col("is_sampled_negative").cast("long")).alias("negatives")).first()
    result = SequencesResult(
        users=store.read("user_sequences").count(),
        samples_by_split=by_split,
        clicks=int(flags["clicks"] or 0),
        sampled_negatives=int(flags["negatives"] or 0),
    )
    log.info(result.summary())
    return result


def main(argv: Sequence[str] | None = None) -> int:
    return spark_job_main(argv, "sequences", "Build user_sequences and samples from events.", run)


if __name__ == "__main__":
    sys.exit(main())
