"""`r2led build-training-set`: `route_candidates` + `samples` + sequences → `training_examples`.

Everything the trainer reads, as fixed-length integer arrays (padding rules in
`r2led_model/features.py`): the target (item, category, SID codes), each route's candidates
(item, category, SID codes, recency bucket, mask), the short-term window (last
`training_set.short_window` behaviours), the truncated long history (last
`training_set.long_history`, for baselines that retrieve inside the model), hist_len, label, split.
Items and categories get dense indices (`item_index`, 0 = padding), so the trainer's embedding
tables are sized by `item_index`. Like retrieve, samples and positions are co-grouped by user.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from functools import reduce
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from jobs.als import dense_index
from jobs.entrypoint import spark_job_main
from jobs.retrieve import sequence_positions, stack_rows
from jobs.tables import TableStore
from r2led_model.config import Config, TrainingSetConfig
from r2led_model.features import HistoryFeatures, gather, most_recent_positions

log = logging.getLogger(__name__)

UNKNOWN_CATEGORY_IDX = 1  # category index 0 is padding, 1 is "unknown"


@dataclass
class TrainingSetResult:
    examples_by_split: dict[str, int]
    items: int
    categories: int


def with_model_sids(index: DataFrame, sids: DataFrame, levels: int) -> DataFrame:
    """Index rows (item_id, item_idx, category_id, category_idx) + sid: the item's semantic codes + 1,
    zeros (padding) for an item without SIDs."""
    shifted = F.transform("semantic_codes", lambda c: c + 1)
    return index.join(sids.select("item_id", "semantic_codes"), "item_id", "left").select(
        "item_id", "item_idx", "category_id", "category_idx",
        F.coalesce(shifted, F.array(*[F.lit(0)] * levels)).alias("sid"))


def build_item_index(spark: SparkSession, items: DataFrame, sids: DataFrame, levels: int) -> DataFrame:
    """item_id → item_idx (1..I), category_idx (1 unknown, 2..), sid (codes + 1; zeros without SIDs)."""
    item_idx = dense_index(spark, items, "item_id").withColumn("item_idx", (F.col("item_id_idx") + 1).cast("bigint"))
    categories = dense_index(spark, items.where(F.col("category_id").isNotNull()), "category_id").withColumn(
        "category_idx", F.col("category_id_idx") + 2)
    index = (items.select("item_id", "category_id").join(item_idx.select("item_id", "item_idx"), "item_id")
             .join(categories.select("category_id", "category_idx"), "category_id", "left")
             .withColumn("category_idx", F.coalesce("category_idx", F.lit(UNKNOWN_CATEGORY_IDX)).cast("int")))
    return with_model_sids(index, sids, levels)


def output_columns(routes: Sequence[str]) -> list[tuple[str, str]]:
    array = "ARRAY<BIGINT>"
    columns = [("sample_id", "BIGINT"), ("user_id", "BIGINT"), ("ts", "BIGINT"), ("label", "INT"), ("split", "STRING"),
               ("hist_len", "BIGINT"), ("target_item", "BIGINT"), ("target_cat", "BIGINT"), ("target_sid", array)]
    for group in [f"r_{route}" for route in routes] + ["short", "long"]:
        columns += [(f"{group}_{part}", array) for part in ("item", "cat", "sid", "recency", "mask")]
    return columns


def build_examples(samples: DataFrame, sequences: DataFrame, index: Callable[[], DataFrame], routes: Sequence[str],
                   levels: int, config: TrainingSetConfig) -> DataFrame:
    # Behaviours or targets missing from item_index: padding item, unknown category, padding SID.
    no_sid = F.array(*[F.lit(0)] * levels)
    positions = sequence_positions(sequences).join(index().select("item_id", "item_idx", "category_idx", "sid"),
                                                   "item_id", "left").select(
        "user_id", "dropped", "position", "ts", F.coalesce("item_idx", F.lit(0)).alias("item_idx"),
        F.coalesce("category_idx", F.lit(UNKNOWN_CATEGORY_IDX)).alias("category_idx"),
        F.coalesce("sid", no_sid).alias("sid"))
    targets = samples.join(index().select("item_id", "item_idx", "category_idx", "sid"), "item_id", "left").select(
        "*", F.coalesce("item_idx", F.lit(0)).alias("t_item"),
        F.coalesce("category_idx", F.lit(UNKNOWN_CATEGORY_IDX)).alias("t_cat"),
        F.coalesce("sid", no_sid).alias("t_sid"))
    columns = output_columns(routes)
    schema = ", ".join(f"{name} {kind}" for name, kind in columns)

    def per_user(history: pd.DataFrame, wanted: pd.DataFrame) -> pd.DataFrame:
        if wanted.empty:
            return pd.DataFrame(columns=[name for name, _ in columns])
        history = history.sort_values("position")
        features = HistoryFeatures(
            item_idx=history["item_idx"].to_numpy(np.int64),
            category_idx=history["category_idx"].to_numpy(np.int64),
            sid=stack_rows(history["sid"], levels),
            ts=history["ts"].to_numpy(np.int64),
        )
        dropped = int(history["dropped"].iloc[0]) if len(history) else 0
        ends = np.clip(wanted["hist_len"].to_numpy(np.int64) - dropped, 0, len(history))  # (S,)
        sample_ts = wanted["ts"].to_numpy(np.int64)
        out = pd.DataFrame({
            "sample_id": wanted["sample_id"].to_numpy(), "user_id": wanted["user_id"].to_numpy(),
            "ts": sample_ts, "label": wanted["label"].to_numpy(), "split": wanted["split"].to_numpy(),
            "hist_len": wanted["hist_len"].to_numpy(),
            "target_item": wanted["t_item"].to_numpy(np.int64),
            "target_cat": wanted["t_cat"].to_numpy(np.int64),
            "target_sid": list(stack_rows(wanted["t_sid"], levels)),
        })
        groups = {f"r_{route}": (stack_rows(wanted[f"cand_{route}_pos"], 0),
                                 stack_rows(wanted[f"cand_{route}_mask"], 0, bool)) for route in routes}
        groups["short"] = most_recent_positions(ends, config.short_window)
        groups["long"] = most_recent_positions(ends, config.long_history)
        for group, (where, valid) in groups.items():
            for part, values in gather(features, where, valid, sample_ts, config.recency_buckets).items():
                out[f"{group}_{part}"] = list(values)
        return out

    return positions.groupBy("user_id").cogroup(targets.groupBy("user_id")).applyInPandas(per_user, schema)


def spread_over_files(examples: DataFrame, files_per_split: int) -> DataFrame:
    """Each split hashed by sample_id into `files_per_split` partitions, hence as many files.

    Petastorm hands whole row groups to each training process, so a split written as one file
    could feed only one of them. Splits go through one union, so the table is still one commit.
    """
    splits = sorted(r[0] for r in examples.select("split").distinct().collect())
    # Sorted inside each file: row order after a shuffle is arbitrary, and the trainer's shuffle is
    # only reproducible from a reproducible input order.
    parts = [examples.where(F.col("split") == split).repartition(files_per_split, "sample_id")
             .sortWithinPartitions("sample_id") for split in splits]
    return reduce(DataFrame.unionByName, parts) if parts else examples


def appended_index_rows(store: TableStore) -> DataFrame:
    """Index rows (without sid) for items that have none yet, numbered after the current maximum
    (ordered by item_id), and new categories likewise: stored indices never change, so a trained
    model's embedding rows stay aligned."""
    index = store.read("item_index")
    fresh = store.read("items").select("item_id", "category_id").join(index.select("item_id"), "item_id", "left_anti")
    top = index.agg(F.max("item_idx").alias("item"), F.max("category_idx").alias("category")).first()
    known_categories = index.where(F.col("category_id").isNotNull()).select("category_id", "category_idx").distinct()
    new_categories = (fresh.where(F.col("category_id").isNotNull()).select("category_id").distinct()
                      .join(known_categories, "category_id", "left_anti")
                      .withColumn("category_idx", (F.row_number().over(Window.orderBy("category_id"))
                                                   + F.lit(int(top["category"] or UNKNOWN_CATEGORY_IDX))).cast("int")))
    categories = known_categories.unionByName(new_categories)
    return (fresh.withColumn("item_idx", (F.row_number().over(Window.orderBy("item_id"))
                                          + F.lit(int(top["item"] or 0))).cast("bigint"))
            .join(categories, "category_id", "left")
            .select("item_id", "item_idx", "category_id",
                    F.coalesce("category_idx", F.lit(UNKNOWN_CATEGORY_IDX)).cast("int").alias("category_idx")))


def extend_item_index(store: TableStore, levels: int) -> int:
    """Append index rows for new items (`appended_index_rows`); returns the items appended."""
    rows = with_model_sids(appended_index_rows(store), store.read("item_sids"), levels)
    return store.insert_new("item_index", rows, already_distinct=True)


@dataclass
class NewExamples:
    new_items: int
    new_samples: int
    inserted: int
    moved: int
    full_rebuild: bool


def extend_training_set(spark: SparkSession, config: Config) -> NewExamples:
    """Examples for candidates that have none yet or were re-derived (a nightly run), and index rows
    for new items.

    A full rebuild instead when there is no training set yet or the candidates' feature versions
    differ from the stored examples' (after a retrain of the codebook or collaborative vectors).
    """
    from jobs.sequences import resplit

    store = TableStore(spark, config.tables)
    candidates = store.read("route_candidates")
    if store.exists("training_examples") and store.exists("item_index"):
        versions = candidates.select("codebook_version", "collab_version").distinct()
        stored = {tuple(r) for r in store.read("training_examples").select(
            "codebook_version", "collab_version").distinct().collect()}
        if stored <= {tuple(r) for r in versions.collect()}:
            routes = _routes(candidates)
            levels = len(store.read("item_sids").select("semantic_codes").first()[0])
            new_items = extend_item_index(store, levels)
            # New candidates, and re-derived ones (a recounted hist_len): their examples are (re)built.
            new = candidates.join(store.read("training_examples").select("sample_id", "hist_len"),
                                  ["sample_id", "hist_len"], "left_anti").join(
                store.read("samples").select("sample_id", "item_id", "label"), "sample_id").persist()
            try:
                count, inserted = new.count(), 0
                if count:
                    sequences = store.read("user_sequences").join(new.select("user_id").distinct(), "user_id",
                                                                  "left_semi")
                    examples = build_examples(new, sequences, lambda: store.read("item_index"), routes, levels,
                                              config.training_set).crossJoin(versions)
                    inserted = store.upsert("training_examples", examples)
            finally:
                new.unpersist()
            moved = resplit(store, "training_examples", config.sequences.split)
            log.info("training_examples: %d new samples, %d inserted, %d moved to a new split; %d new items indexed",
                     count, inserted, moved, new_items)
            return NewExamples(new_items=new_items, new_samples=count, inserted=inserted, moved=moved,
                               full_rebuild=False)
    result = run(spark, config)
    return NewExamples(new_items=result.items, new_samples=sum(result.examples_by_split.values()),
                       inserted=sum(result.examples_by_split.values()), moved=0, full_rebuild=True)


def _routes(candidates: DataFrame) -> list[str]:
    return [c[len("cand_"):-len("_pos")] for c in candidates.columns if c.startswith("cand_") and c.endswith("_pos")]


def run(spark: SparkSession, config: Config, args: argparse.Namespace | None = None) -> TrainingSetResult:
    store = TableStore(spark, config.tables)
    candidates = store.read("route_candidates")
    routes = _routes(candidates)
    sids = store.read("item_sids")
    levels = len(sids.select("semantic_codes").first()[0])
    if store.exists("item_index"):
        # Indices are never reassigned (a registered model's embedding rows stay aligned): new items
        # are appended and every SID is refreshed from the current item_sids, in one commit.
        kept = store.read("item_index").select("item_id", "item_idx", "category_id", "category_idx")
        refreshed = with_model_sids(kept.unionByName(appended_index_rows(store)), sids, levels).persist()
        refreshed.count()  # materialised before the table it was read from is replaced
        store.overwrite("item_index", refreshed)
        refreshed.unpersist()
    else:
        store.overwrite("item_index", build_item_index(spark, store.read("items"), sids, levels))
    samples = candidates.join(store.read("samples").select("sample_id", "item_id", "label"), "sample_id")
    examples = build_examples(samples, store.read("user_sequences"), lambda: store.read("item_index"), routes, levels,
                              config.training_set)
    versions = candidates.select("codebook_version", "collab_version").distinct()
    examples = examples.crossJoin(versions).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        store.overwrite("training_examples", spread_over_files(examples, config.training_set.files_per_split))
    finally:
        examples.unpersist()
    counts = {r["split"]: int(r["count"]) for r in store.read("training_examples").groupBy("split").count().collect()}
    index = store.read("item_index")
    result = TrainingSetResult(examples_by_split=counts, items=index.count(),
                               categories=index.select("category_idx").distinct().count())
    log.info("training_examples: %s; routes %s; %d items, %d categories",
             ", ".join(f"{k}={v:,}" for k, v in sorted(counts.items())), routes, result.items, result.categories)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    return spark_job_main(argv, "build-training-set", "Assemble fixed-length training examples.", run)


if __name__ == "__main__":
    sys.exit(main())
