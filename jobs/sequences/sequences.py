"""`r2led sequences`: `events` → `user_sequences` and `samples`.

`user_sequences` holds each user's behaviours in ascending time (ties broken by item id, then
behaviour), truncated to the newest `max_stored`. `samples` holds one row per labelled
impression with `hist_len`, the number of the user's behaviours strictly before the sample's ts:
a pointer into the sequence, never a copy, so no sample can see its own or any later behaviour.
With `sequences.samples_from`, events before that time are history only: they count in every
later sample's hist_len but become no sample themselves (the training window).

Samples are built by repartitioning events by user, sorting each partition by (user, ts, item,
behaviour) and running the numpy kernel `r2led_model.sequences.sample_kernel` on each partition: hist_len
(history rows with a strictly smaller ts, so ties at the same second are excluded), the split,
and, for positive-only logs, `ratio` negatives per positive drawn with probability proportional to
training-window popularity, never an item the user touched. Draws are a counter-based hash of
(seed, sample_id, draw index): deterministic and independent of partitioning.

A sample's id hashes its event's whole `events` key, label included (`SAMPLE_ID_KEY`): an
explicit-label source that logs a click and a non-click of one item in one second gives two
samples, each with its own id and label.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.runtime.entrypoint import spark_job_main
from jobs.runtime.stage_protocol import Scope, StageOutcome
from jobs.runtime.tables import TableStore, spec_for
from jobs.sequences.splits import resplit, split_rule, training_window_end
from r2led_model.config import Config, NegativeSamplingConfig, SequencesConfig, parse_utc_timestamp
from r2led_model.sequences.sample_kernel import SAMPLE_ID_KEY, NegativeRule, build_samples_sorted

log = logging.getLogger(__name__)

_ID_MASK = 0x7FFFFFFFFFFFFFFF  # ids are non-negative longs
SAMPLES_SCHEMA = ("sample_id BIGINT, user_id BIGINT, item_id BIGINT, ts BIGINT, label INT, hist_len BIGINT, "
                  "split STRING, is_sampled_negative BOOLEAN")
# An events key that changed would change every id: bump SAMPLE_ID_SCHEME with it.
assert spec_for("events").key == SAMPLE_ID_KEY, "a sample's id hashes exactly its event's key"


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


def _from(samples_from: str | None) -> Column:
    """Events at or after the training window's start (`sequences.samples_from`); all when None."""
    return F.lit(True) if samples_from is None else F.col("ts") >= F.lit(parse_utc_timestamp(samples_from))


def sample_id() -> Column:
    """The id of the sample an `events` row becomes: a hash of the row's whole key (SAMPLE_ID_SCHEME)."""
    return F.xxhash64(*SAMPLE_ID_KEY).bitwiseAND(F.lit(_ID_MASK))


def negative_rule(events: DataFrame, config: NegativeSamplingConfig, popularity_until: int | None) -> NegativeRule:
    """Item popularity in the training window, as the CDF negatives are drawn from."""
    window = events if popularity_until is None else events.where(F.col("ts") < popularity_until)
    counts = window.groupBy("item_id").count().orderBy("item_id").toPandas()
    if counts.empty:
        raise ValueError("negative sampling: no events in the training window to estimate popularity from")
    cdf = np.cumsum(counts["count"].to_numpy(np.float64))
    return NegativeRule(ratio=config.ratio, oversample=config.oversample, seed=config.seed,
                        item_ids=counts["item_id"].to_numpy(np.int64), cdf=cdf / cdf[-1])


def needs_negatives(events: DataFrame, config: NegativeSamplingConfig) -> bool:
    if config.enabled == "auto":
        return events.where(F.col("label").isNull()).limit(1).count() > 0
    return config.enabled == "always"


def build_samples(spark: SparkSession, events: DataFrame, config: SequencesConfig, emit: Column | None = None,
                  popularity_events: DataFrame | None = None) -> DataFrame:
    """All of a user's behaviours meet in one sorted partition; the numpy kernel does the rest.

    `emit` (a boolean column over `events`) keeps only those events' samples; `popularity_events`
    (default `events`) are the events negatives are drawn by.
    """
    everyone = events if popularity_events is None else popularity_events
    negatives = (negative_rule(everyone, config.negatives, training_window_end(config.split))
                 if needs_negatives(everyone, config.negatives) else None)
    split = split_rule(config.split)
    min_hist_len = config.min_hist_len
    rows = events.select(
        sample_id().alias("sample_id"),
        "user_id", "item_id", "ts", "behavior", "label", "value",
        _in("behavior", config.history_behaviors).alias("in_history"),
        (_in("behavior", config.sample_behaviors) & _from(config.samples_from)).alias("is_sample"),
        (F.lit(True) if emit is None else emit).alias("emit"),
    )
    by_user = rows.repartition("user_id").sortWithinPartitions("user_id", "ts", "item_id", "behavior", "label", "value")

    def kernel(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        # The whole partition at once: Arrow batches may cut a user's rows in two.
        frame = pd.concat(list(batches), ignore_index=True)
        if frame.empty:
            return
        yield build_samples_sorted(frame, in_history=frame["in_history"].to_numpy(bool),
                                   is_sample=frame["is_sample"].to_numpy(bool), min_hist_len=min_hist_len,
                                   split=split, negatives=negatives, emit=frame["emit"].to_numpy(bool))

    return by_user.mapInPandas(kernel, SAMPLES_SCHEMA)


@dataclass
class BatchUpdate:
    """What one dated run's sequences stage changed."""

    batches: list[str]  # the ingest batches sampled now
    batch_events: int
    users: int
    samples_inserted: int
    samples_recounted: int  # stored samples whose hist_len grew (late behaviours before them)
    samples_moved: int


def pending_batches(store: TableStore) -> list[tuple[str, int]]:
    """(ingest_run_id, events) of every batch of `events` not yet sampled, or grown since it was
    (an ingest re-run, a late file under the same day): whatever run ingested it."""
    counts = store.read("events").groupBy("ingest_run_id").agg(F.count("*").alias("events"))
    if store.exists("sampled_batches"):
        sampled = store.read("sampled_batches").select("ingest_run_id", F.col("events").alias("sampled"))
        counts = counts.join(sampled, "ingest_run_id", "left").where(
            F.col("sampled").isNull() | (F.col("sampled") != F.col("events")))
    return sorted((r["ingest_run_id"], int(r["events"])) for r in counts.collect())  # one row per batch: small


def recount_hist_len(samples: DataFrame, history: DataFrame, since: DataFrame) -> DataFrame:
    """Stored samples of `since`'s users later than their earliest new behaviour, with hist_len
    recounted over `history` (the users' history events); only rows whose hist_len changed."""
    later = samples.join(since, "user_id").where(F.col("ts") > F.col("since")).drop("since")
    counted = (later.select("sample_id", "user_id", "ts")
               .join(history.select("user_id", F.col("ts").alias("before")), "user_id")
               .where(F.col("before") < F.col("ts"))  # strictly earlier, as in the kernel
               .groupBy("sample_id").agg(F.count("*").alias("recounted")))
    return (later.join(counted, "sample_id", "left")
            .withColumn("recounted", F.coalesce(F.col("recounted"), F.lit(0)).cast("bigint"))
            .where(F.col("recounted") != F.col("hist_len"))
            .withColumn("hist_len", F.col("recounted")).drop("recounted"))


def update(spark: SparkSession, config: Config) -> BatchUpdate:
    """Fold every ingest batch not yet sampled into the tables, incrementally.

    Only the batches' users are rebuilt: their sequences are MERGEd (the same rows a full rebuild
    gives) and their unsampled events' samples (with negatives) inserted. A late behaviour dated
    before stored samples of its user raises their hist_len (a pointer into the sequence), so those
    rows are recounted in place; retrieve and build-training-set re-derive rows whose hist_len
    changed. Otherwise stored samples never change except for their split, rolled to the current rule.
    """
    store = TableStore(spark, config.tables)
    seq = config.sequences
    events = store.read("events")
    batches = pending_batches(store)
    in_batches = F.col("ingest_run_id").isin([run_id for run_id, _ in batches])
    users = inserted = recounted = 0
    if batches:
        fresh = events.where(in_batches)
        since = fresh.groupBy("user_id").agg(F.min("ts").alias("since")).persist()
        theirs = events.join(since, "user_id")
        event_sample_id = sample_id()
        stored = store.read("samples").join(since, "user_id", "left_semi") if store.exists("samples") else None
        if stored is not None:
            # An event sampled before (a re-ingested batch) is not sampled again: its negatives were drawn then.
            done = stored.where(~F.col("is_sampled_negative")).select(F.col("sample_id").alias("done_id"),
                                                                      F.lit(True).alias("done"))
            theirs = theirs.join(done, event_sample_id == F.col("done_id"), "left").drop("done_id")
        else:
            theirs = theirs.withColumn("done", F.lit(None).cast("boolean"))
        # New events, and later events of their users that a longer history may now qualify as samples.
        emit = (in_batches | (F.col("ts") > F.col("since"))) & F.col("done").isNull()
        users = since.count()
        store.upsert("user_sequences", build_user_sequences(theirs, store.read("items"), seq))
        if stored is not None:
            changed = recount_hist_len(stored, theirs.where(_in("behavior", seq.history_behaviors)), since)
            if changed.limit(1).count():
                recounted = store.upsert("samples", changed)
        inserted = store.insert_new("samples", build_samples(spark, theirs, seq, emit=emit,
                                                             popularity_events=events))
        since.unpersist()
        # Recorded last: a crash before this re-samples the batches, and the steps above are idempotent.
        store.upsert("sampled_batches", spark.createDataFrame(batches, "ingest_run_id STRING, events BIGINT"))
    moved = resplit(store, "samples", seq.split) if store.exists("samples") else 0
    result = BatchUpdate(batches=[run_id for run_id, _ in batches], batch_events=sum(n for _, n in batches),
                         users=users, samples_inserted=inserted, samples_recounted=recounted, samples_moved=moved)
    log.info("sequences: %d events of %d batches from %d users; %d samples inserted, %d recounted, %d moved to a "
             "new split", result.batch_events, len(batches), result.users, result.samples_inserted,
             result.samples_recounted, result.samples_moved)
    return result


def run(spark: SparkSession, config: Config) -> SequencesResult:
    store = TableStore(spark, config.tables)
    events = store.read("events")
    items = store.read("items")
    store.overwrite("user_sequences", build_user_sequences(events, items, config.sequences))
    store.overwrite("samples", build_samples(spark, events, config.sequences))
    # Every batch is sampled now: a later nightly run samples only what is ingested after this.
    store.overwrite("sampled_batches", events.groupBy("ingest_run_id").agg(F.count("*").alias("events")))

    per_split = store.read("samples").groupBy("split").agg(
        F.count("*").alias("samples"), F.sum("label").alias("clicks"),
        F.sum(F.col("is_sampled_negative").cast("long")).alias("negatives")).collect()
    result = SequencesResult(
        users=store.read("user_sequences").count(),
        samples_by_split={r["split"]: int(r["samples"]) for r in per_split},
        clicks=sum(int(r["clicks"] or 0) for r in per_split),
        sampled_negatives=sum(int(r["negatives"] or 0) for r in per_split),
    )
    log.info(result.summary())
    return result


def derive(spark: SparkSession, config: Config, *, scope: Scope) -> StageOutcome:
    """The stage (`jobs.runtime.stage_protocol`): every user rebuilt in the full run or a rebuild; a
    dated run samples every ingested batch not yet sampled, whichever run ingested it (a forced ingest,
    a backfill)."""
    if scope.full_run or scope.rebuild:
        full = run(spark, config)
        return StageOutcome(TableStore(spark, config.tables).read("events").count(),
                            sum(full.samples_by_split.values()), {"users": full.users, "action": "rebuilt"})
    result = update(spark, config)
    return StageOutcome(result.batch_events, result.samples_inserted,
                        {"users": result.users, "batches": result.batches, "samples_moved": result.samples_moved,
                         "samples_recounted": result.samples_recounted})


def main(argv: Sequence[str] | None = None) -> int:
    return spark_job_main(argv, "sequences", "Build user_sequences and samples from events.", run)


if __name__ == "__main__":
    sys.exit(main())
