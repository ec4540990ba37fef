"""PetastormFeed: every row once per epoch, sharding without overlap, batch contract, shuffle determinism."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from r2led_model.feed import PetastormFeed, count_row_groups, count_rows

COLUMNS = ["sample_id", "user_id", "target_item", "target_sid", "r_sid1_item", "label"]
SID_LEVELS = 3
ROUTE_K = 4
# (rows, row_group_size) per file: 3 files, 2 + 3 + 2 = 7 row groups, 77 rows, uneven sizes.
FILES = ((25, 13), (30, 10), (22, 20))
TOTAL = sum(rows for rows, _ in FILES)


@pytest.fixture(scope="module")
def split_files(tmp_path_factory) -> list[str]:
    """Parquet files shaped like training_examples: int64 scalars, int32 label, list<int64> arrays."""
    folder = tmp_path_factory.mktemp("examples")
    paths, start = [], 0
    for i, (rows, group_size) in enumerate(FILES):
        ids = np.arange(start, start + rows, dtype=np.int64)
        start += rows
        table = pa.table({
            "sample_id": pa.array(ids, pa.int64()),
            "user_id": pa.array(ids % 7, pa.int64()),
            "target_item": pa.array(ids * 10 + 1, pa.int64()),
            # target_sid of row s is [s, s+1, s+2]: rows stay recognisable after batching
            "target_sid": pa.array([[s, s + 1, s + 2] for s in ids], pa.list_(pa.int64())),
            "r_sid1_item": pa.array([[s] * ROUTE_K for s in ids], pa.list_(pa.int64())),
            "label": pa.array(ids % 2, pa.int32()),
            "unused": pa.array(ids.astype(np.float64)),
        })
        path = folder / f"part-{i:05d}.parquet"
        pq.write_table(table, path, row_group_size=group_size)
        paths.append(str(path))
    return paths


def feed(files, **kwargs) -> PetastormFeed:
    options = {"columns": COLUMNS, "batch_size": 8, "shuffle": False, "seed": 3, "workers": 1,
               "shuffle_buffer": 1000, **kwargs}
    return PetastormFeed(files=files, **options)


def sample_ids(f: PetastormFeed, epoch: int = 0) -> list[int]:
    return [int(s) for batch in f.batches(epoch) for s in batch["sample_id"]]


def test_count_rows_and_row_groups_from_footers(split_files):
    assert count_rows(split_files) == TOTAL
    assert count_rows([Path(split_files[0]).as_uri()]) == 25
    assert count_rows(["file:" + split_files[1]]) == 30  # Spark writes local paths as file:/...
    assert count_row_groups(split_files) == 7


def test_unshuffled_epoch_yields_every_row_once_in_the_given_file_order(split_files):
    assert sample_ids(feed(split_files)) == list(range(TOTAL))
    # Files as listed, not as sorted by name: the last file's rows (55..76) come first.
    assert sample_ids(feed(split_files[::-1])) == list(range(55, 77)) + list(range(25, 55)) + list(range(25))


def test_batch_contract_shapes_dtypes_and_columns(split_files):
    batches = list(feed(split_files, batch_size=10).batches(0))
    assert [len(b["sample_id"]) for b in batches] == [10] * 7 + [7]  # exact batch_size, last smaller
    for batch in batches:
        assert set(batch) == set(COLUMNS)  # only requested columns ("unused" stays behind)
        b = len(batch["sample_id"])
        assert batch["target_sid"].shape == (b, SID_LEVELS) and batch["target_sid"].dtype == torch.int64
        assert batch["r_sid1_item"].shape == (b, ROUTE_K) and batch["r_sid1_item"].dtype == torch.int64
        assert batch["label"].shape == (b,) and batch["label"].dtype == torch.float32
        for name in ("sample_id", "user_id", "target_item"):
            assert batch[name].shape == (b,) and batch[name].dtype == torch.int64
        # Columns of one row stay together.
        s = batch["sample_id"]
        assert torch.equal(batch["target_sid"], torch.stack([s, s + 1, s + 2], dim=1))
        assert torch.equal(batch["target_item"], s * 10 + 1)
        assert torch.equal(batch["label"], (s % 2).float())


@pytest.mark.parametrize("shuffle", [False, True])
def test_two_ranks_partition_the_rows(split_files, shuffle):
    ranks = [sample_ids(feed(split_files, rank=r, world_size=2, shuffle=shuffle)) for r in (0, 1)]
    assert not set(ranks[0]) & set(ranks[1])
    assert sorted(ranks[0] + ranks[1]) == list(range(TOTAL))
    assert all(len(set(r)) == len(r) for r in ranks)
    if not shuffle:  # whole row groups, alternating between ranks in file order
        assert ranks[0][:13] == list(range(13)) and ranks[1][:12] == list(range(13, 25))


def test_world_size_beyond_row_groups_is_an_error(split_files):
    with pytest.raises(ValueError, match="exceeds the 7 Parquet row group"):
        feed(split_files, rank=0, world_size=8)


def test_missing_column_is_named(split_files):
    with pytest.raises(ValueError, match=r"\['long_item'\] not in"):
        feed(split_files, columns=["sample_id", "long_item"])


def test_shuffle_changes_order_between_epochs_not_the_rows(split_files):
    f = feed(split_files, shuffle=True)
    epoch0, epoch1 = sample_ids(f, 0), sample_ids(f, 1)
    assert sorted(epoch0) == sorted(epoch1) == list(range(TOTAL))
    assert epoch0 != epoch1
    assert epoch0 != list(range(TOTAL))


def test_spark_style_file_urls_read_like_paths(split_files):
    assert sample_ids(feed(["file:" + f for f in split_files])) == list(range(TOTAL))


def test_shuffle_is_reproducible_for_seed_and_epoch(split_files):
    assert sample_ids(feed(split_files, shuffle=True), 2) == sample_ids(feed(split_files, shuffle=True), 2)
    assert sample_ids(feed(split_files, shuffle=True, seed=4), 2) != sample_ids(feed(split_files, shuffle=True), 2)


def test_shuffle_reproducible_with_several_workers_when_the_shard_fits_the_buffer(split_files):
    orders = [sample_ids(feed(split_files, shuffle=True, workers=3), 1) for _ in range(3)]
    assert orders[0] == orders[1] == orders[2]
    assert sorted(orders[0]) == list(range(TOTAL))


def test_small_shuffle_buffer_streams_every_row_once(split_files):
    # A buffer smaller than the data: rows are emitted while reading goes on.
    f = feed(split_files, shuffle=True, shuffle_buffer=16, batch_size=5, workers=2)
    ids = sample_ids(f, 0)
    assert Counter(ids) == Counter(range(TOTAL))
    assert [len(b["sample_id"]) for b in f.batches(1)] == [5] * (TOTAL // 5) + [TOTAL % 5]
