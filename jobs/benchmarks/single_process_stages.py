"""Single-process references of collab-vectors, retrieve and build-training-set for
`r2led benchmark scale`.

Each does its stage's work in one Python process, without Spark: read the stage's input tables
(the Parquet files of their current Delta snapshots), compute, and write Parquet. retrieve's and
build-training-set's split the users into as many groups as the Spark stage has partitions and run
the stage's own per-partition function on each group (`retrieve.candidates_for_partition`,
`build_training_set.examples_for_partition`), writing by split; collab-vectors' counts the
training window's (user, item) pairs, fits the same implicit ALS in numpy (`reference_als`) and
signs the item vectors with the same SimHash. The Spark stage's time over its reference's is what
Spark's reading, shuffling and hand-offs cost on top of the vectorised work.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator, Sequence
from urllib.parse import unquote, urlparse

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from jobs.benchmarks.reference_als import Pairs, implicit_als
from jobs.retrieval.retrieve import candidates_for_partition
from jobs.retrieval.table_shapes import candidate_routes
from jobs.runtime.tables import REPEATING_ARRAYS_CODEC, TableStore, spec_for
from jobs.sequences.splits import training_window_end
from jobs.sequences.user_partitions import STORED_SEQUENCE_COLUMNS, as_partition_sequences
from jobs.training.build_training_set import (carries_targets, example_sample_columns, examples_for_partition,
                                              output_columns)
from r2led_model.arrow_arrays import list_column
from r2led_model.config import Config
from r2led_model.retrieval.item_feature_lookup import ItemFeatureLookup
from r2led_model.retrieval.multi_route import RoutePlan
from r2led_model.retrieval.simhash import simhash_signatures
from r2led_model.training.item_index_lookup import ItemIndexLookup


def snapshot(store: TableStore, name: str, columns: Sequence[str] | None = None) -> pa.Table:
    """The rows of `name`'s current snapshot, read from its Parquet files by pyarrow (partition
    columns from the paths). Refuses a snapshot whose rows the files alone do not give (deletion
    vectors): the benchmark writes every table in one overwrite, so its snapshots have none."""
    if store.config.backend != "path":
        raise ValueError(f"{name}: the single-process reference reads tables of the path backend only")
    df = store.read(name)
    files = [unquote(urlparse(uri).path) for uri in df.inputFiles()]
    # Partition values are parsed from the paths only when a partition column is asked for.
    wanted = set(columns) if columns else None
    partition_columns = set(spec_for(name).partition_by)
    partitioning = (ds.partitioning(flavor="hive")
                    if partition_columns and (wanted is None or wanted & partition_columns) else None)
    table = ds.dataset(files, format="parquet", partitioning=partitioning,
                       partition_base_dir=store.location(name)).to_table(columns=list(columns) if columns else None)
    if table.num_rows != df.count():
        raise ValueError(f"{name}: its files hold {table.num_rows} rows, its snapshot {df.count()}")
    return table


def joined(left: pa.Table, right: pa.Table, key: str, inner: bool = False) -> pa.Table:
    """`left` with the other columns of its row in `right` (unique on `key`): nulls where it has none,
    or, `inner`, without those rows. (Arrow's hash join does not carry list columns.)"""
    at = pc.index_in(left[key], value_set=right[key])  # (n,) row of `right`, null without one
    if inner:
        left, at = left.filter(pc.is_valid(at)), at.filter(pc.is_valid(at))
    matched = right.drop_columns([key]).take(at)
    for name in matched.column_names:
        left = left.append_column(name, matched[name])
    return left


def user_groups(user_ids: pa.ChunkedArray, groups: int) -> pa.Array:
    """(n,) user ids → (n,) group in [0, groups): every row of one user in one group."""
    return pa.array(np.abs(user_ids.to_numpy()) % groups)


def _grouped(sequences: pa.Table, samples: pa.Table, groups: int) -> Iterator[tuple[pa.Table, pa.Table]]:
    """(sequences, samples) of each group of users that has samples."""
    sequence_group, sample_group = user_groups(sequences["user_id"], groups), user_groups(samples["user_id"], groups)
    for group in range(groups):
        wanted = samples.filter(pc.equal(sample_group, group))
        if wanted.num_rows:
            yield sequences.filter(pc.equal(sequence_group, group)), wanted


def _write(batches: Iterator[pa.RecordBatch], schema: pa.Schema, out: Path, *, repeating_arrays: bool = False) -> int:
    """Write `batches` as Parquet partitioned by split under `out` (replaced); returns rows written.
    `repeating_arrays`: the arrays as the Spark stage writes such a table's (`repeating_array_settings`)."""
    shutil.rmtree(out, ignore_errors=True)
    written = 0

    def counted() -> Iterator[pa.RecordBatch]:
        nonlocal written
        for batch in batches:
            written += batch.num_rows
            yield batch

    file_options = None
    if repeating_arrays:  # a dictionary for the scalar columns only
        scalars = [name for name in schema.names if not pa.types.is_list(schema.field(name).type)]
        file_options = ds.ParquetFileFormat().make_write_options(compression=REPEATING_ARRAYS_CODEC,
                                                                 use_dictionary=scalars)
    ds.write_dataset(counted(), out, schema=schema, format="parquet", partitioning=["split"],
                     partitioning_flavor="hive", file_options=file_options)
    return written


def collab_vectors_reference(store: TableStore, config: Config, out: Path) -> int:
    """collab-vectors' work on `store`'s events; returns the item vectors written."""
    events = snapshot(store, "events", ["user_id", "item_id", "ts"])
    until = training_window_end(config.sequences.split)
    if until is not None:
        events = events.filter(pc.less(events["ts"], until))
    user_ids, users = np.unique(events["user_id"].to_numpy(), return_inverse=True)
    item_ids, items = np.unique(events["item_id"].to_numpy(), return_inverse=True)
    c = config.collab
    _, item_vectors = implicit_als(Pairs.counted(users, items), rank=c.rank, iterations=c.iterations, reg=c.reg,
                                   alpha=c.alpha, seed=c.seed)  # (I, rank)
    words = simhash_signatures(item_vectors, config.retrieval.simhash_bits, config.retrieval.simhash_seed)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    rows = pa.table({"item_id": item_ids, "vector": list_column(item_vectors), "signature": list_column(
        words.view(np.int64))})
    pq.write_table(rows, out / "part-0.parquet")
    return rows.num_rows


def retrieve_reference(store: TableStore, config: Config, out: Path) -> int:
    """retrieve's work on `store`'s samples and sequences; returns the candidate rows written."""
    sids = snapshot(store, "item_sids", ["item_id", "semantic_codes"])
    levels = len(sids["semantic_codes"][0]) if sids.num_rows else 0
    words = (config.retrieval.simhash_bits + 63) // 64
    plan = RoutePlan.from_config(config.retrieval, levels)
    features = joined(joined(sids, snapshot(store, "item_collab_vectors", ["item_id", "signature"]), "item_id"),
                      snapshot(store, "items", ["item_id", "category_id"]), "item_id")
    lookup = ItemFeatureLookup.from_arrow(features, levels, words)
    sequences = as_partition_sequences(snapshot(store, "user_sequences", list(STORED_SEQUENCE_COLUMNS)))
    samples = snapshot(store, "samples", ["sample_id", "user_id", "item_id", "ts", "hist_len", "split", "label"])
    batches = (candidates_for_partition(group_sequences, group_samples, lookup, plan)
               for group_sequences, group_samples in _grouped(sequences, samples, config.spark.shuffle_partitions))
    first = next(batches, None)
    if first is None:
        return 0
    return _write(_chain(first, batches), first.schema, out)


def training_set_reference(store: TableStore, config: Config, out: Path) -> int:
    """build-training-set's work on `store`'s route candidates and the item index as stored; returns
    the example rows written."""
    candidates = snapshot(store, "route_candidates")
    routes = candidate_routes(candidates.column_names)
    sample_columns = example_sample_columns(routes)
    if carries_targets(candidates.column_names):  # as build-training-set reads them (`with_targets`)
        samples = candidates.select(sample_columns)
    else:
        samples = joined(candidates.drop_columns(["split"]),
                         snapshot(store, "samples", ["sample_id", "item_id", "label", "split"]), "sample_id",
                         inner=True).select(sample_columns)
    lookup = ItemIndexLookup.from_arrow(snapshot(store, "item_index", ["item_id", "item_idx"]))
    sequences = as_partition_sequences(snapshot(store, "user_sequences", list(STORED_SEQUENCE_COLUMNS)))
    names = [name for name, _ in output_columns(routes)]
    batches = (batch for group_sequences, group_samples in
               _grouped(sequences, samples, config.training_set.files_per_split)
               for batch in examples_for_partition(group_sequences, group_samples, lookup, routes,
                                                   config.training_set, names))
    first = next(batches, None)
    if first is None:
        return 0
    return _write(_chain(first, batches), first.schema, out,
                  repeating_arrays=spec_for("training_examples").repeating_arrays)


def _chain(first: pa.RecordBatch, rest: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    yield first
    yield from rest
