"""`r2led retrieve`: `samples` ⋈ `user_sequences` ⋈ SIDs and signatures → `route_candidates`.

Each user's stored sequence (one row, arrays as stored) and that user's samples meet in one hash
partition by user, so a user's sequence is read once for all of that user's samples; each task
looks item features up in arrays collected once (`ItemFeatureLookup`) and runs the numpy kernel
(`r2led_model.retrieval.multi_route.retrieve_routes_many`) once over all of its users. A sample only ever
sees positions [0, hist_len − dropped) of the stored sequence: its behaviours strictly before ts.

Output: one row per sample with, per configured route r, `cand_<r>_pos` (positions into the
user's stored sequence, −1 = empty slot), `cand_<r>_item`, `cand_<r>_mask`, `cand_<r>_pool`
(pool size before truncation to k); partitioned by split; the codebook and collaborative-vector
versions it used are columns too. Re-running overwrites with identical rows.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.retrieval.table_shapes import CANDIDATE_KINDS, CANDIDATE_PARTS, candidate_column, sid_levels
from jobs.runtime.entrypoint import spark_job_main
from jobs.runtime.stage_protocol import Scope, StageOutcome
from jobs.runtime.tables import TableStore
from jobs.sequences.derived_rows import not_yet_derived, upsert_derived, versions_compatible
from jobs.sequences.user_partitions import PartitionSequences, co_partitioned, partition_tables
from jobs.sids.codebook_versions import require_codebook_version
from r2led_model.arrow_arrays import list_column
from r2led_model.config import Config
from r2led_model.retrieval.item_feature_lookup import ItemFeatureLookup
from r2led_model.retrieval.multi_route import Histories, RouteCandidates, RoutePlan, Targets, retrieve_routes_many

log = logging.getLogger(__name__)

# (histories, targets, owner, plan) → {route name: candidates}, as `retrieve_routes_many`.
RankKernel = Callable[[Histories, Targets, np.ndarray, RoutePlan], dict[str, RouteCandidates]]


@dataclass
class RetrieveResult:
    samples: int
    codebook_version: str
    collab_version: str
    non_empty_share: dict[str, float]


def _single(df: DataFrame, column: str, table: str) -> str:
    values = sorted(r[0] for r in df.select(column).distinct().collect())
    if len(values) != 1:
        raise ValueError(f"{table}.{column}: expected one version, found {values}")
    return values[0]


def item_features(store: TableStore) -> DataFrame:
    """item_id → semantic codes (L), SimHash words (W, null without a vector), category (null if unknown)."""
    sids = store.read("item_sids").select("item_id", "semantic_codes")
    collab = store.read("item_collab_vectors").select("item_id", "signature")
    items = store.read("items").select("item_id", "category_id")
    return sids.join(collab, "item_id", "left").join(items, "item_id", "left")


def route_columns(plan: RoutePlan) -> list[tuple[str, str]]:
    return [(candidate_column(route, part), CANDIDATE_KINDS[part]) for route in plan.route_names
            for part in CANDIDATE_PARTS]


def candidates_for_partition(sequences: pa.Table, samples: pa.Table, features: ItemFeatureLookup,
                             plan: RoutePlan, rank: RankKernel = retrieve_routes_many) -> pa.RecordBatch | None:
    """Route candidates for every sample of a partition, in the samples' order.

    `sequences`: the stored sequence of (at least) every user with a sample here, one row per user
    (SEQUENCE_COLUMNS: user_id, item_ids, history_ts, dropped); `samples`: sample_id, user_id, item_id,
    ts, hist_len, split, and optionally label. The candidates carry the sample's CANDIDATE_KEYS (those
    present), so that build-training-set needs no join with `samples`.
    Columns reach numpy as whole buffers and all users are ranked in one kernel call
    (`rank`, `retrieve_routes_many`): no per-row objects and no per-user loop.
    """
    if samples.num_rows == 0:
        return None
    samples = samples.combine_chunks()
    partition = PartitionSequences.from_arrow(sequences)
    codes, signatures, categories = features.features(partition.item_ids)
    histories = Histories(item_ids=partition.item_ids, ts=partition.ts, sid_codes=codes, starts=partition.starts,
                          lengths=partition.lengths, dropped=partition.dropped, signatures=signatures,
                          categories=categories)
    owner = partition.owners(samples["user_id"].to_numpy())  # (S,)
    target_items = samples["item_id"].to_numpy()
    codes, signatures, categories = features.features(target_items)
    targets = Targets(item_ids=target_items, hist_len=samples["hist_len"].to_numpy(), sid_codes=codes,
                      signatures=signatures, categories=categories)
    found = rank(histories, targets, owner, plan)
    first_row = histories.starts[owner][:, None]  # (S, 1)
    names = [name for name, _ in CANDIDATE_KEYS if name in samples.column_names]
    arrays = [samples[name] for name in names]
    for name, candidates in found.items():
        at = np.where(candidates.mask, first_row + candidates.positions, 0)  # (S, k) rows into the behaviours
        items = np.where(candidates.mask, histories.item_ids[at] if len(histories.item_ids) else -1, -1)  # (S, k)
        arrays += [list_column(candidates.positions.astype(np.int32)), list_column(items.astype(np.int64)),
                   list_column(candidates.mask), pa.array(candidates.pool_size.astype(np.int32))]
        names += [candidate_column(name, part) for part in CANDIDATE_PARTS]
    return pa.RecordBatch.from_arrays([a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in arrays],
                                      names=names)


# The sample's own columns of a route_candidates row, before the routes' (label only where the samples
# have one: retrieve's do, `score --candidates`' pairs and the benchmarks' worlds need not).
CANDIDATE_KEYS = (("sample_id", "BIGINT"), ("user_id", "BIGINT"), ("item_id", "BIGINT"), ("label", "INT"),
                  ("ts", "BIGINT"), ("hist_len", "BIGINT"), ("split", "STRING"))


def build_route_candidates(spark: SparkSession, samples: DataFrame, sequences: DataFrame,
                           features: Callable[[], DataFrame], plan: RoutePlan, levels: int, words: int,
                           rank: RankKernel = retrieve_routes_many) -> DataFrame:
    """`features()` builds the item feature frame (item_id, semantic_codes, signature, category_id);
    `rank` is the kernel (the benchmark swaps in one that ranks nothing, to time Spark's own share).

    Each user's stored sequence (one row, arrays as stored) and samples meet in one hash partition
    by user_id; no behaviour is exploded into a row, joined or sorted in Spark. Item features are
    collected once and travel with the partition function (`ItemFeatureLookup`).
    """
    keys = [(name, kind) for name, kind in CANDIDATE_KEYS if name in samples.columns]
    sample_columns = [name for name, _ in keys]
    out_columns = [*keys, *route_columns(plan)]
    schema = ", ".join(f"{name} {kind}" for name, kind in out_columns)
    lookup = ItemFeatureLookup.from_arrow(features().toArrow(), levels, words)
    log.info("retrieve: item features of %d items (%.1f MB) travel with the tasks", len(lookup.item_ids),
             lookup.nbytes / 1e6)
    rows = co_partitioned(sequences, samples, sample_columns)

    def per_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        tables = partition_tables(batches, sample_columns)
        if tables is None:
            return
        user_sequences, wanted = tables
        out = candidates_for_partition(user_sequences, wanted, lookup, plan, rank)
        if out is not None:
            yield out

    return rows.mapInArrow(per_partition, schema)


@dataclass
class RetrievalInputs:
    codebook_version: str
    collab_version: str
    levels: int
    words: int
    plan: RoutePlan


def retrieval_inputs(store: TableStore, config: Config) -> RetrievalInputs:
    """The feature versions, SID levels, signature words and route plan retrieval runs with."""
    sids = store.read("item_sids")
    codebook_version = _single(sids, "codebook_version", "item_sids")
    collab_version = _single(store.read("item_collab_vectors"), "version", "item_collab_vectors")
    require_codebook_version(sids, codebook_version)
    levels = sid_levels(sids)
    try:
        plan = RoutePlan.from_config(config.retrieval, levels)
    except ValueError as exc:
        raise ValueError(f"retrieval.routes: {exc} (item_sids holds {levels}-level SIDs)") from exc
    return RetrievalInputs(codebook_version, collab_version, levels, (config.retrieval.simhash_bits + 63) // 64,
                           plan)


def stamped_candidates(spark: SparkSession, store: TableStore, inputs: RetrievalInputs, samples: DataFrame,
                       sequences: DataFrame) -> DataFrame:
    """Route candidates of `samples` (as `build_route_candidates` reads them) with the versions they used."""
    candidates = build_route_candidates(spark, samples, sequences, lambda: item_features(store), inputs.plan,
                                        inputs.levels, inputs.words)
    return (candidates.withColumn("codebook_version", F.lit(inputs.codebook_version))
            .withColumn("collab_version", F.lit(inputs.collab_version)))


@dataclass
class NewCandidates:
    new_samples: int
    inserted: int
    moved: int
    full_rebuild: bool


def update(spark: SparkSession, config: Config) -> NewCandidates:
    """Candidates for samples that have none yet, or whose hist_len changed (a nightly run); every other
    stored row stays as it is.

    A full rebuild instead when the table is missing or was built with another codebook or other
    collaborative vectors (after a retrain), since candidates of one table must share one version.
    """
    store = TableStore(spark, config.tables)
    inputs = retrieval_inputs(store, config)
    if store.exists("route_candidates"):
        stored = store.read("route_candidates").select("codebook_version", "collab_version").distinct().collect()
        if versions_compatible(map(tuple, stored), [(inputs.codebook_version, inputs.collab_version)]):
            # New samples, and stored ones whose hist_len a late behaviour raised (sequences recounts them).
            update = upsert_derived(
                store, "route_candidates", not_yet_derived(store.read("samples"), store.read("route_candidates")),
                store.read("user_sequences"),
                lambda rows, owners: stamped_candidates(spark, store, inputs, rows, owners),
                config.sequences.split)
            log.info("route_candidates: %d new samples, %d inserted, %d moved to a new split", update.new_samples,
                     update.inserted, update.moved)
            return NewCandidates(new_samples=update.new_samples, inserted=update.inserted, moved=update.moved,
                                 full_rebuild=False)
    result = run(spark, config)
    return NewCandidates(new_samples=result.samples, inserted=result.samples, moved=0, full_rebuild=True)


def run(spark: SparkSession, config: Config) -> RetrieveResult:
    store = TableStore(spark, config.tables)
    inputs = retrieval_inputs(store, config)
    plan, codebook_version, collab_version = inputs.plan, inputs.codebook_version, inputs.collab_version
    store.overwrite("route_candidates", stamped_candidates(spark, store, inputs, store.read("samples"),
                                                    store.read("user_sequences")))
    written = store.read("route_candidates")
    non_empty = [F.avg((F.col(candidate_column(r, "pool")) > 0).cast("double")).alias(r) for r in plan.route_names]
    shares = written.agg(*non_empty).first()
    result = RetrieveResult(samples=written.count(), codebook_version=codebook_version, collab_version=collab_version,
                            non_empty_share={r: float(shares[r]) for r in plan.route_names})
    log.info("route_candidates: %d samples; share with a non-empty pool: %s", result.samples,
             ", ".join(f"{r}={v:.1%}" for r, v in result.non_empty_share.items()))
    return result


def derive(spark: SparkSession, config: Config, *, scope: Scope) -> StageOutcome:
    """The stage (`jobs.runtime.stage_protocol`): every sample's candidates in the full run or a rebuild;
    a dated run derives the new or recounted samples' only (`update`)."""
    if scope.full_run or scope.rebuild:
        full = run(spark, config)
        return StageOutcome(full.samples, full.samples, {"full_rebuild": True, "action": "rebuilt"})
    result = update(spark, config)
    return StageOutcome(result.new_samples, result.inserted,
                        {"moved": result.moved, "full_rebuild": result.full_rebuild})


def main(argv: Sequence[str] | None = None) -> int:
    return spark_job_main(argv, "retrieve", "Precompute per-route retrieval candidates for every sample.", run)


if __name__ == "__main__":
    sys.exit(main())
