"""`r2led build-training-set`: `route_candidates` + `samples` + sequences → `training_examples`.

Everything the trainer reads that is per sample, as fixed-length integer arrays (padding rules in
`r2led_model/sequences/features.py`), in input layout 2 (`r2led_model.models.inputs`): the target item, and per
slot of each route's candidates, the short-term window (last `training_set.short_window` behaviours)
and the truncated long history (last `training_set.long_history`, for baselines that retrieve inside
the model) the item index and its recency bucket; hist_len, label, split. A slot's category and SID
codes follow from its item, so the model looks them up (`ItemLookup`, built from `item_index`) rather
than every example storing them. Items and categories get dense indices (`item_index`, 0 = padding),
so the trainer's embedding tables are sized by `item_index`. Like retrieve, each user's stored
sequence and samples meet in one partition, and item indices are looked up in arrays that travel
with the tasks.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from jobs.retrieval.als import dense_index
from jobs.retrieval.table_shapes import CANDIDATE_KINDS, candidate_column, candidate_routes, sid_levels
from jobs.runtime.entrypoint import spark_job_main
from jobs.runtime.spark_progress import stage_progress
from jobs.runtime.stage_protocol import Scope, StageOutcome
from jobs.runtime.tables import TableStore
from jobs.sequences.derived_rows import not_yet_derived, upsert_derived, versions_compatible
from jobs.sequences.user_partitions import PartitionSequences, co_partitioned, partition_tables
from r2led_model.arrow_arrays import fixed_width, list_column
from r2led_model.config import Config, TrainingSetConfig
from r2led_model.models.inputs import INPUT_LAYOUT, WIDE_LAYOUT, ExampleLayout, pool_column
from r2led_model.sequences.features import HistoryFeatures, example_slots, route_group
from r2led_model.training.item_index_lookup import UNKNOWN_CATEGORY_IDX, ItemIndexLookup

log = logging.getLogger(__name__)


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


def carries_targets(candidate_columns: Iterable[str]) -> bool:
    """Whether route candidates hold each sample's target item and label (retrieve writes both; tables
    written before it did lack them)."""
    return {"item_id", "label"} <= set(candidate_columns)


def with_targets(candidates: DataFrame, samples: DataFrame) -> DataFrame:
    """Route candidates with each sample's target item and label: as they are when they carry both, so no
    join (and no shuffle of the candidate arrays by sample_id) is needed; else joined with `samples`."""
    if carries_targets(candidates.columns):
        return candidates
    return candidates.join(samples.select("sample_id", "item_id", "label"), "sample_id")


def full_examples(store: TableStore, candidates: DataFrame, config: TrainingSetConfig) -> DataFrame:
    """Every example of `candidates` (build-training-set's full run): `files_per_split` user partitions, each
    writing one file per split (Petastorm hands whole row groups to each training process: a split in one
    file could feed only one), in the order `build_examples` emits them (`EXAMPLE_ORDER` inside each file)."""
    return build_examples(with_targets(candidates, store.read("samples")), store.read("user_sequences"),
                          store.read("item_index"), candidate_routes(candidates.columns), config,
                          partitions=config.files_per_split)


def example_sample_columns(routes: Sequence[str]) -> list[str]:
    """What build-training-set reads of each sample (route candidates ⋈ samples): its keys, label and split,
    and per route the candidates' positions and the pool's size."""
    return (["sample_id", "user_id", "item_id", "ts", "label", "split", "hist_len"]
            + [candidate_column(route, part) for route in routes for part in ("pos", "pool")])


def output_columns(routes: Sequence[str]) -> list[tuple[str, str]]:
    return ExampleLayout(tuple(routes)).stored_columns()


_CHUNK = 8192  # samples per output batch of a task
# The row order of a task's examples: by split, then each user's samples in history order (sample_id
# breaks ties between samples at the same point of a history).
EXAMPLE_ORDER = ("split", "user_id", "hist_len", "sample_id")


def build_examples(samples: DataFrame, sequences: DataFrame, index: DataFrame, routes: Sequence[str],
                   config: TrainingSetConfig, partitions: int | None = None) -> DataFrame:
    """Examples for `samples` (route candidates ⋈ samples: sample_id, user_id, item_id, ts, label,
    split, hist_len, cand_<r>_pos), in retrieve's layout: each user's stored
    sequence (one row, arrays as stored) and samples meet in one hash partition by user; no
    behaviour is exploded into a row or joined. `index` (item_index) is collected once and travels
    with the tasks (`ItemIndexLookup`); each task gathers its samples' features `_CHUNK` samples at
    a time. `partitions`: how many hash partitions by user (default spark.sql.shuffle.partitions).
    """
    lookup = ItemIndexLookup.from_arrow(index.select("item_id", "item_idx").toArrow())
    log.info("build-training-set: the index of %d items (%.1f MB) travels with the tasks", len(lookup.item_ids),
             lookup.nbytes / 1e6)
    columns = output_columns(routes)
    schema = ", ".join(f"{name} {kind}" for name, kind in columns)
    sample_columns = example_sample_columns(routes)
    # Only the positions cross the shuffle: a slot holds a behaviour iff its position is ≥ 0 (retrieve's mask).
    candidate_arrays = [F.array().cast(CANDIDATE_KINDS["pos"]).alias(candidate_column(route, "pos"))
                        for route in routes]
    rows = co_partitioned(sequences, samples, sample_columns, sample_only=candidate_arrays, partitions=partitions)
    names = [name for name, _ in columns]

    def per_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        tables = partition_tables(batches, sample_columns)
        if tables is not None:
            yield from examples_for_partition(*tables, lookup, routes, config, names)

    return rows.mapInArrow(per_partition, schema)


def examples_for_partition(sequences: pa.Table, samples: pa.Table, lookup: ItemIndexLookup, routes: Sequence[str],
                           config: TrainingSetConfig, names: Sequence[str]) -> Iterator[pa.RecordBatch]:
    """The examples of one partition's `samples` (as `build_examples` reads them), given the stored
    `sequences` (user_id, item_ids, history_ts, dropped) of at least their users, in `EXAMPLE_ORDER`:
    each split's file then holds a reproducible row order (the trainer's shuffle is only reproducible
    from one) without Spark sorting wide rows, and a user's samples side by side, so that their
    overlapping history windows compress to little more than what is new (`repeating_array_settings`)."""
    histories = PartitionSequences.from_arrow(sequences)
    features = HistoryFeatures(item_idx=lookup.item_indices(histories.item_ids), ts=histories.ts)  # (N,) each
    samples = samples.sort_by([(column, "ascending") for column in EXAMPLE_ORDER])
    # Output in chunks: an example holds ~700 values, so a whole partition's at once would not fit.
    for start in range(0, samples.num_rows, _CHUNK):
        yield examples_for_samples(histories, features, samples.slice(start, _CHUNK), lookup, routes, config, names)


def examples_for_samples(histories: PartitionSequences, features: HistoryFeatures, samples: pa.Table,
                         lookup: ItemIndexLookup, routes: Sequence[str], config: TrainingSetConfig,
                         names: Sequence[str]) -> pa.RecordBatch:
    """The examples of `samples` (as `build_examples` reads them), all at once: a sample's positions
    (relative to its user's stored sequence) become rows of the partition's concatenation, whose
    behaviours' `features` are looked up once per partition."""
    owner = histories.owners(samples["user_id"].to_numpy())  # (S,)
    hist_len = samples["hist_len"].to_numpy().astype(np.int64)
    ends = np.clip(hist_len - histories.dropped[owner], 0, histories.lengths[owner])  # (S,)
    positions = {route: _stack(samples[candidate_column(route, "pos")]).astype(np.int64) for route in routes}  # (S, k)
    route_slots = {route: (pos, pos >= 0) for route, pos in positions.items()}
    slots = example_slots(features, first=histories.starts[owner], ends=ends,
                          sample_ts=samples["ts"].to_numpy().astype(np.int64), route_slots=route_slots,
                          short_window=config.short_window, long_history=config.long_history,
                          recency_buckets=config.recency_buckets)
    arrays: dict[str, pa.Array] = {
        "sample_id": samples["sample_id"], "user_id": samples["user_id"], "ts": samples["ts"],
        "label": samples["label"], "split": samples["split"], "hist_len": samples["hist_len"],
        "target_item": pa.array(lookup.item_indices(samples["item_id"].to_numpy())),
        **{name: list_column(values.astype(ExampleLayout.stored_dtype(name))) for name, values in slots.items()},
        **{pool_column(route_group(route)): samples[candidate_column(route, "pool")].cast(pa.int32())
           for route in routes},
    }
    return pa.RecordBatch.from_arrays([a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a
                                       for a in (arrays[name] for name in names)], names=list(names))


def _stack(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A list column whose rows hold the same number of values (a route's k) → (n, k)."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    width = len(column[0]) if len(column) else 0
    return fixed_width(column, width, "route candidates")


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


def update(spark: SparkSession, config: Config) -> NewExamples:
    """Examples for candidates that have none yet or were re-derived (a nightly run), and index rows
    for new items.

    A full rebuild instead when there is no training set yet, the candidates' feature versions differ
    from the stored examples' (after a retrain of the codebook or collaborative vectors), or the stored
    examples have another input layout (`layout_of`: examples written before layout 2).
    """
    store = TableStore(spark, config.tables)
    candidates = store.read("route_candidates")
    if store.exists("training_examples") and store.exists("item_index"):
        versions = candidates.select("codebook_version", "collab_version").distinct()
        stored = store.read("training_examples").select("codebook_version", "collab_version").distinct().collect()
        outdated = layout_outdated(store.read("training_examples"))
        if outdated:
            log.info("%s: rebuilding it", outdated)
        elif versions_compatible(map(tuple, stored), map(tuple, versions.collect())):
            routes = candidate_routes(candidates.columns)
            levels = sid_levels(store.read("item_sids"))
            new_items = extend_item_index(store, levels)
            # New candidates, and re-derived ones (a recounted hist_len): their examples are (re)built.
            new = with_targets(not_yet_derived(candidates, store.read("training_examples")), store.read("samples"))
            with stage_progress(spark, "build-training-set"):
                update = upsert_derived(
                    store, "training_examples", new, store.read("user_sequences"),
                    lambda rows, owners: build_examples(rows, owners, store.read("item_index"), routes,
                                                        config.training_set).crossJoin(versions)
                    .withColumn("input_layout", F.lit(INPUT_LAYOUT)),
                    config.sequences.split)
            log.info("training_examples: %d new samples, %d inserted, %d moved to a new split; %d new items indexed",
                     update.new_samples, update.inserted, update.moved, new_items)
            return NewExamples(new_items=new_items, new_samples=update.new_samples, inserted=update.inserted,
                               moved=update.moved, full_rebuild=False)
    result = run(spark, config)
    return NewExamples(new_items=result.items, new_samples=sum(result.examples_by_split.values()),
                       inserted=sum(result.examples_by_split.values()), moved=0, full_rebuild=True)


def layout_outdated(examples: DataFrame) -> str | None:
    """Why a training_examples table is not what this release writes (another input layout, or columns
    of the layout it lacks: route pools, stored since), or None when it is."""
    layout = layout_of(examples)
    if layout != INPUT_LAYOUT:
        return f"training_examples has input layout {layout}, this release writes {INPUT_LAYOUT}"
    missing = [name for name, _ in ExampleLayout.of_columns(examples.columns).stored_columns()
               if name not in examples.columns]
    if missing:
        return f"training_examples lacks {missing}, which this release writes"
    return None


def layout_of(examples: DataFrame) -> int:
    """The input layout a training_examples table was written in: its `input_layout` column, or 1 for a
    table written before layouts were numbered (every slot's category, SID codes and mask stored)."""
    if "input_layout" not in examples.columns:
        return WIDE_LAYOUT
    layouts = sorted(r[0] for r in examples.select("input_layout").distinct().collect())
    return layouts[0] if len(layouts) == 1 else WIDE_LAYOUT  # mixed: not a layout the trainer can read


def _one_version_pair(candidates: DataFrame) -> tuple[str, str]:
    """The (codebook, collaborative) versions of the candidates: retrieve writes one pair per table."""
    pairs = [tuple(r) for r in candidates.select("codebook_version", "collab_version").distinct().collect()]
    if len(pairs) != 1:
        raise ValueError(f"route_candidates: expected one (codebook_version, collab_version), found {sorted(pairs)}")
    return pairs[0]


def run(spark: SparkSession, config: Config) -> TrainingSetResult:
    store = TableStore(spark, config.tables)
    candidates = store.read("route_candidates")
    routes = candidate_routes(candidates.columns)
    sids = store.read("item_sids")
    levels = sid_levels(sids)
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
    examples = full_examples(store, candidates, config.training_set)
    codebook_version, collab_version = _one_version_pair(candidates)
    examples = (examples.withColumn("codebook_version", F.lit(codebook_version))
                .withColumn("collab_version", F.lit(collab_version))
                .withColumn("input_layout", F.lit(INPUT_LAYOUT)))
    with stage_progress(spark, "build-training-set"):
        store.overwrite("training_examples", examples, in_task_order=True)
    counts = {r["split"]: int(r["count"]) for r in store.read("training_examples").groupBy("split").count().collect()}
    index = store.read("item_index")
    result = TrainingSetResult(examples_by_split=counts, items=index.count(),
                               categories=index.select("category_idx").distinct().count())
    log.info("training_examples: %s; routes %s; %d items, %d categories",
             ", ".join(f"{k}={v:,}" for k, v in sorted(counts.items())), routes, result.items, result.categories)
    return result


def derive(spark: SparkSession, config: Config, *, scope: Scope) -> StageOutcome:
    """The stage (`jobs.runtime.stage_protocol`): every example in the full run or a rebuild; a dated run
    derives the new or recounted samples' only (`update`), with an append-only item index."""
    if scope.full_run or scope.rebuild:
        full = run(spark, config)
        written = sum(full.examples_by_split.values())
        return StageOutcome(written, written, {"full_rebuild": True, "action": "rebuilt"})
    result = update(spark, config)
    return StageOutcome(result.new_samples, result.inserted,
                        {"moved": result.moved, "new_items": result.new_items, "full_rebuild": result.full_rebuild})


def main(argv: Sequence[str] | None = None) -> int:
    return spark_job_main(argv, "build-training-set", "Assemble fixed-length training examples.", run)


if __name__ == "__main__":
    sys.exit(main())
