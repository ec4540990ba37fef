"""`r2led retrieve`: `samples` ⋈ `user_sequences` ⋈ SIDs and signatures → `route_candidates`.

Samples and the per-position view of each user's stored sequence meet in one user-partitioned,
sorted frame, so a user's sequence is read once for all of that user's samples; inside a group the numpy kernel
(`r2led_model.retrieval`) computes every route for all samples at once. A sample only ever sees
positions [0, hist_len − dropped) of the stored sequence: its behaviours strictly before ts.

Output: one row per sample with, per configured route r, `cand_<r>_pos` (positions into the
user's stored sequence, −1 = empty slot), `cand_<r>_item`, `cand_<r>_mask`, `cand_<r>_pool`
(pool size before truncation to k); partitioned by split; the codebook and collaborative-vector
versions it used are columns too. Re-running overwrites with identical rows.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.arrow_arrays import fixed_width, list_column
from jobs.assign_sids import require_codebook_version
from jobs.entrypoint import spark_job_main
from jobs.tables import TableStore
from r2led_model.config import Config
from r2led_model.retrieval import RoutePlan, Targets, UserHistory, retrieve_routes

log = logging.getLogger(__name__)

UNKNOWN_CATEGORY = -1


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
    """item_id → semantic codes (L), SimHash words (W), category; gaps are filled after the joins."""
    sids = store.read("item_sids").select("item_id", "semantic_codes")
    collab = store.read("item_collab_vectors").select("item_id", "signature")
    items = store.read("items").select("item_id", "category_id")
    return sids.join(collab, "item_id", "left").join(items, "item_id", "left")


def route_columns(plan: RoutePlan) -> list[tuple[str, str]]:
    columns = []
    for route in plan.route_names:
        columns += [(f"cand_{route}_pos", "ARRAY<INT>"), (f"cand_{route}_item", "ARRAY<BIGINT>"),
                    (f"cand_{route}_mask", "ARRAY<BOOLEAN>"), (f"cand_{route}_pool", "INT")]
    return columns


def _with_defaults(df: DataFrame, levels: int, words: int) -> DataFrame:
    """Behaviours or targets whose item has no features: codes −1 (match no prefix), zero words."""
    return (df.withColumn("semantic_codes", F.coalesce("semantic_codes", F.array(*[F.lit(-1)] * levels)))
            .withColumn("signature", F.coalesce("signature", F.array(*[F.lit(0).cast("bigint")] * words)))
            .withColumn("category_id", F.coalesce("category_id", F.lit(UNKNOWN_CATEGORY).cast("bigint"))))


def stack_rows(series: pd.Series, width: int, dtype=np.int64) -> np.ndarray:
    """An object Series of equal-length arrays → one (n, width) array."""
    if not len(series):
        return np.zeros((0, width), dtype=dtype)
    flat = np.concatenate(series.to_numpy())  # one copy; np.stack would reshape every row first
    return flat.reshape(len(series), -1).astype(dtype, copy=False)  # (n, width)


def sequence_positions(sequences: DataFrame) -> DataFrame:
    """user_sequences → one row per stored behaviour: user_id, dropped, position, item_id, ts."""
    behaviours = F.posexplode(F.arrays_zip("item_ids", "ts")).alias("position", "b")
    return sequences.select("user_id", "dropped", behaviours).select(
        "user_id", "dropped", "position", F.col("b.item_ids").alias("item_id"), F.col("b.ts").alias("ts"))


def candidates_for_partition(table: pa.Table, plan: RoutePlan, levels: int, words: int) -> pa.RecordBatch | None:
    """Route candidates for every user of a partition.

    `table`: behaviours and samples as `build_route_candidates` lays them out, sorted by (user_id,
    is_sample, position, sample_id), so each user is one run of rows with the stored sequence first.
    Columns reach numpy as whole buffers and each user is a pair of slices: no per-row objects on
    the way in or out.
    """
    if table.num_rows == 0:
        return None
    table = table.combine_chunks()
    user = table["user_id"].to_numpy()
    is_sample = table["is_sample"].to_numpy(zero_copy_only=False)
    item, ts = table["item_id"].to_numpy(), table["ts"].to_numpy()
    categories, dropped, hist_len = (table["category_id"].to_numpy(), table["dropped"].to_numpy(),
                                     table["hist_len"].to_numpy())
    codes = fixed_width(table["semantic_codes"], levels, "semantic_codes").astype(np.int64, copy=False)  # (n, L)
    signatures = fixed_width(table["signature"], words, "signature").astype(np.int64, copy=False).view(
        np.uint64)  # (n, W)
    bounds = np.flatnonzero(np.r_[True, user[1:] != user[:-1], True])
    rows, found = [], {r: [] for r in plan.route_names}
    for start, stop in zip(bounds[:-1], bounds[1:]):
        first_sample = start + int(np.count_nonzero(~is_sample[start:stop]))
        if first_sample == stop:
            continue
        h, s = slice(start, first_sample), slice(first_sample, stop)
        history = UserHistory(item_ids=item[h], ts=ts[h], sid_codes=codes[h], signatures=signatures[h],
                              categories=categories[h], dropped=int(dropped[start]) if first_sample > start else 0)
        targets = Targets(item_ids=item[s], hist_len=hist_len[s], sid_codes=codes[s], signatures=signatures[s],
                          categories=categories[s])
        for name, candidates in retrieve_routes(history, targets, plan).items():
            safe = np.where(candidates.mask, candidates.positions, 0)
            found[name].append((candidates.positions, np.where(candidates.mask, history.item_ids[safe], -1),
                                candidates.mask, candidates.pool_size))
        rows.append(np.arange(first_sample, stop))
    if not rows:
        return None
    taken = pa.array(np.concatenate(rows))
    arrays = [table[c].take(taken) for c in ("sample_id", "user_id", "ts", "hist_len", "split")]
    names = ["sample_id", "user_id", "ts", "hist_len", "split"]
    for name in plan.route_names:
        positions, items, mask, pool = (np.concatenate(part) for part in zip(*found[name]))
        arrays += [list_column(positions.astype(np.int32)), list_column(items.astype(np.int64)),
                   list_column(mask), pa.array(pool.astype(np.int32))]
        names += [f"cand_{name}_pos", f"cand_{name}_item", f"cand_{name}_mask", f"cand_{name}_pool"]
    return pa.RecordBatch.from_arrays([a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in arrays],
                                      names=names)


def build_route_candidates(spark: SparkSession, samples: DataFrame, sequences: DataFrame,
                           features: Callable[[], DataFrame], plan: RoutePlan, levels: int, words: int) -> DataFrame:
    """`features()` builds the item feature frame (item_id, semantic_codes, signature, category_id)."""
    out_columns = [("sample_id", "BIGINT"), ("user_id", "BIGINT"), ("ts", "BIGINT"), ("hist_len", "BIGINT"),
                   ("split", "STRING")] + route_columns(plan)
    schema = ", ".join(f"{name} {kind}" for name, kind in out_columns)
    # Behaviours and samples travel as one frame (is_sample tells them apart), joined to the item
    # features once, partitioned by user and sorted, so each task walks its users in one Arrow table.
    history_rows = sequence_positions(sequences).select(
        "user_id", "item_id", "ts", "dropped", "position", F.lit(0).cast("bigint").alias("sample_id"),
        F.lit(0).cast("bigint").alias("hist_len"), F.lit("").alias("split"), F.lit(False).alias("is_sample"))
    sample_rows = samples.select(
        "user_id", "item_id", "ts", F.lit(0).cast("bigint").alias("dropped"), F.lit(-1).cast("int").alias("position"),
        "sample_id", "hist_len", "split", F.lit(True).alias("is_sample"))
    rows = (_with_defaults(history_rows.unionByName(sample_rows).join(features(), "item_id", "left"), levels, words)
            .repartition("user_id").sortWithinPartitions("user_id", "is_sample", "position", "sample_id"))

    def per_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        # The whole partition at once: a user's rows may straddle Arrow batches.
        out = candidates_for_partition(pa.Table.from_batches(list(batches)), plan, levels, words)
        if out is not None:
            yield out

    return rows.mapInArrow(per_partition, schema)


@dataclass
class _Inputs:
    codebook_version: str
    collab_version: str
    levels: int
    words: int
    plan: RoutePlan


def _inputs(store: TableStore, config: Config) -> _Inputs:
    sids = store.read("item_sids")
    codebook_version = _single(sids, "codebook_version", "item_sids")
    collab_version = _single(store.read("item_collab_vectors"), "version", "item_collab_vectors")
    require_codebook_version(sids, codebook_version)
    levels = len(sids.select("semantic_codes").first()[0])
    try:
        plan = RoutePlan.from_config(config.retrieval, levels)
    except ValueError as exc:
        raise ValueError(f"retrieval.routes: {exc} (item_sids holds {levels}-level SIDs)") from exc
    return _Inputs(codebook_version, collab_version, levels, (config.retrieval.simhash_bits + 63) // 64, plan)


def _candidates(spark: SparkSession, store: TableStore, inputs: _Inputs, samples: DataFrame,
                sequences: DataFrame) -> DataFrame:
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


def retrieve_new(spark: SparkSession, config: Config) -> NewCandidates:
    """Candidates for samples that have none yet (a nightly run); everything stored stays as it is.

    A full rebuild instead when the table is missing or was built with another codebook or other
    collaborative vectors (after a retrain), since candidates of one table must share one version.
    """
    from jobs.sequences import resplit

    store = TableStore(spark, config.tables)
    inputs = _inputs(store, config)
    if store.exists("route_candidates"):
        stored = store.read("route_candidates").select("codebook_version", "collab_version").distinct().collect()
        current = [(inputs.codebook_version, inputs.collab_version)]
        if [tuple(r) for r in stored] in ([], current):
            new = store.read("samples").join(store.read("route_candidates").select("sample_id"), "sample_id",
                                             "left_anti").persist()
            try:
                count, inserted = new.count(), 0
                if count:
                    users = new.select("user_id").distinct()
                    sequences = store.read("user_sequences").join(users, "user_id", "left_semi")
                    inserted = store.insert_new("route_candidates", _candidates(spark, store, inputs, new, sequences),
                                                already_distinct=True)
            finally:
                new.unpersist()
            moved = resplit(store, "route_candidates", config.sequences.split)
            log.info("route_candidates: %d new samples, %d inserted, %d moved to a new split", count, inserted, moved)
            return NewCandidates(new_samples=count, inserted=inserted, moved=moved, full_rebuild=False)
    result = run(spark, config)
    return NewCandidates(new_samples=result.samples, inserted=result.samples, moved=0, full_rebuild=True)


def run(spark: SparkSession, config: Config, args: argparse.Namespace | None = None) -> RetrieveResult:
    store = TableStore(spark, config.tables)
    inputs = _inputs(store, config)
    plan, codebook_version, collab_version = inputs.plan, inputs.codebook_version, inputs.collab_version
    store.overwrite("route_candidates", _candidates(spark, store, inputs, store.read("samples"),
                                                    store.read("user_sequences")))
    written = store.read("route_candidates")
    non_empty = [F.avg((F.col(f"cand_{r}_pool") > 0).cast("double")).alias(r) for r in plan.route_names]
    shares = written.agg(*non_empty).first()
    result = RetrieveResult(samples=written.count(), codebook_version=codebook_version, collab_version=collab_version,
                            non_empty_share={r: float(shares[r]) for r in plan.route_names})
    log.info("route_candidates: %d samples; share with a non-empty pool: %s", result.samples,
             ", ".join(f"{r}={v:.1%}" for r, v in result.non_empty_share.items()))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    return spark_job_main(argv, "retrieve", "Precompute per-route retrieval candidates for every sample.", run)


if __name__ == "__main__":
    sys.exit(main())
