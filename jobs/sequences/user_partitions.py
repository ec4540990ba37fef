"""Each user's stored sequence and that user's samples in one hash partition by user_id, the layout
retrieve and build-training-set both compute in: one row per sequence (arrays as stored), no
behaviour exploded into a row, joined or sorted in Spark; and a partition's sequences laid end to end
for numpy (`PartitionSequences`), read the same way by both stages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from r2led_model.sorted_lookup import locate

SEQUENCE_COLUMNS = ("user_id", "item_ids", "history_ts", "dropped")
# The same columns as `user_sequences` names them (its `ts` is the behaviours' times).
STORED_SEQUENCE_COLUMNS = ("user_id", "item_ids", "ts", "dropped")


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


def as_partition_sequences(stored: pa.Table) -> pa.Table:
    """`user_sequences` rows read outside Spark (STORED_SEQUENCE_COLUMNS among them) → the columns a
    partition function reads (SEQUENCE_COLUMNS), as `co_partitioned` names them."""
    return stored.select(list(STORED_SEQUENCE_COLUMNS)).rename_columns(list(SEQUENCE_COLUMNS))


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


@dataclass(frozen=True)
class PartitionSequences:
    """A partition's stored sequences (SEQUENCE_COLUMNS, one row per user) laid end to end: N behaviours in
    user row order, plus one last empty user that samples without a stored sequence point to."""

    users: np.ndarray  # (U,) user ids in row order
    by_user: np.ndarray  # (U,) argsort of users
    item_ids: np.ndarray  # (N,)
    ts: np.ndarray  # (N,) int64
    starts: np.ndarray  # (U + 1,) each user's first behaviour; the empty user starts at N
    lengths: np.ndarray  # (U + 1,)
    dropped: np.ndarray  # (U + 1,) behaviours cut from storage before each user's first

    @classmethod
    def from_arrow(cls, sequences: pa.Table) -> "PartitionSequences":
        """`sequences`: SEQUENCE_COLUMNS, one row per user (a user in two rows is refused)."""
        users = sequences["user_id"].to_numpy()
        if len(np.unique(users)) != len(users):
            raise ValueError("user_sequences: a user_id appears in more than one row")
        item_lists = sequences["item_ids"].combine_chunks()
        lengths = pc.list_value_length(item_lists).fill_null(0).to_numpy().astype(np.int64)  # (U,)
        item_ids = item_lists.flatten().to_numpy()  # (N,) flatten honours slices and skips null lists
        ts = sequences["history_ts"].combine_chunks().flatten().to_numpy().astype(np.int64)  # (N,)
        if len(ts) != len(item_ids):
            raise ValueError("user_sequences: item_ids and ts differ in length")
        return cls(users=users, by_user=np.argsort(users), item_ids=item_ids, ts=ts,
                   starts=np.r_[0, np.cumsum(lengths)].astype(np.int64), lengths=np.r_[lengths, 0],
                   dropped=np.r_[sequences["dropped"].fill_null(0).to_numpy(), 0].astype(np.int64))

    def owners(self, user_ids: np.ndarray) -> np.ndarray:
        """(S,) user ids → (S,) rows of their users; a user without a stored sequence → the empty user (U)."""
        slot, has_sequence = locate(self.users[self.by_user], user_ids)  # (S,), (S,)
        return np.where(has_sequence, self.by_user[slot] if len(self.users) else 0, len(self.users))
