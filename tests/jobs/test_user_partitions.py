"""A partition's stored sequences laid end to end, as retrieve and build-training-set both read them."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from jobs.sequences.user_partitions import SEQUENCE_COLUMNS, PartitionSequences


def sequences(rows: list[tuple[int, list[int] | None, int | None]]) -> pa.Table:
    """(user_id, item ids or None, dropped or None) → SEQUENCE_COLUMNS; times are 100 + the position."""
    return pa.table({"user_id": pa.array([u for u, _, _ in rows], pa.int64()),
                     "item_ids": pa.array([items for _, items, _ in rows], pa.list_(pa.int64())),
                     "history_ts": pa.array([None if items is None else [100 + i for i in range(len(items))]
                                             for _, items, _ in rows], pa.list_(pa.int64())),
                     "dropped": pa.array([d for _, _, d in rows], pa.int64())}).select(list(SEQUENCE_COLUMNS))


def test_users_are_laid_end_to_end_with_an_empty_user_last():
    part = PartitionSequences.from_arrow(sequences([(9, [5, 6, 7], 2), (4, None, None), (6, [8], 0)]))
    assert part.item_ids.tolist() == [5, 6, 7, 8] and part.ts.tolist() == [100, 101, 102, 100]
    assert part.starts.tolist() == [0, 3, 3, 4] and part.lengths.tolist() == [3, 0, 1, 0]
    assert part.dropped.tolist() == [2, 0, 0, 0]  # a null dropped is 0; the empty user drops nothing
    # Samples find their user's row; a user without a stored sequence points to the empty user (3).
    assert part.owners(np.array([6, 9, 4, 5, 9])).tolist() == [2, 0, 1, 3, 0]


def test_an_empty_partition_points_every_sample_to_the_empty_user():
    part = PartitionSequences.from_arrow(sequences([]))
    assert part.owners(np.array([1, 2])).tolist() == [0, 0] and part.lengths.tolist() == [0]


def test_a_user_in_two_rows_and_mismatched_arrays_are_refused():
    with pytest.raises(ValueError, match="more than one row"):
        PartitionSequences.from_arrow(sequences([(1, [5], 0), (1, [6], 0)]))
    bad = sequences([(1, [5, 6], 0)]).set_column(2, "history_ts", pa.array([[100]], pa.list_(pa.int64())))
    with pytest.raises(ValueError, match="differ in length"):
        PartitionSequences.from_arrow(bad)
