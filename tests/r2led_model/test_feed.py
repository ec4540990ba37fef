"""The feeds: every row once per epoch, sharding without overlap, batch contract, shuffle determinism, and
ArrowFeed (plain pyarrow) yielding PetastormFeed's batches; training.feed choosing between them."""

from __future__ import annotations

import logging
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from r2led_model.config import ConfigError, TrainingConfig, load_config
from r2led_model.training import feed as feed_module
from r2led_model.training.arrow_feed import ArrowFeed
from r2led_model.training.feed import PetastormFeed, build_feed, count_row_groups, count_rows, shard_row_groups

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


# The row groups those files hold, as sample_id ranges (row group i over the files in order, then within each).
ROW_GROUPS = (range(0, 13), range(13, 25), range(25, 35), range(35, 45), range(45, 55), range(55, 75), range(75, 77))


def feed(files, implementation=PetastormFeed, **kwargs) -> PetastormFeed | ArrowFeed:
    options = {"columns": COLUMNS, "batch_size": 8, "shuffle": False, "seed": 3, "workers": 1,
               "shuffle_buffer": 1000, **kwargs}
    return implementation(files=files, **options)


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


# ArrowFeed against PetastormFeed, and training.feed.

def batch_ids(f, epoch: int) -> list[list[int]]:
    return [batch["sample_id"].tolist() for batch in f.batches(epoch)]


def test_row_group_table_matches_the_files(split_files):
    assert [list(g) for g in ROW_GROUPS] == [ids for ids in (
        sorted(sample_ids(feed(split_files, rank=r, world_size=7))) for r in range(7))]


@pytest.mark.parametrize("buffer, batch_size, workers", [
    (1000, 8, 1),  # the whole shard fits the buffer
    (16, 5, 1),  # a small buffer emits while reading goes on
    (1000, 8, 3),  # several reader threads: Petastorm's order is reproducible only because the shard fits
])
def test_arrow_yields_petastorms_batches_per_epoch_and_rank(split_files, buffer, batch_size, workers):
    for rank in (0, 1):
        options = {"shuffle": True, "rank": rank, "world_size": 2, "shuffle_buffer": buffer,
                   "batch_size": batch_size, "workers": workers}
        petastorm, arrow = feed(split_files, **options), feed(split_files, ArrowFeed, **options)
        for epoch in (0, 1):
            expected = batch_ids(petastorm, epoch)
            assert batch_ids(arrow, epoch) == expected  # same batches in the same order
            assert len(sum(expected, [])) == (35, 42)[rank]  # rank 0: row groups 0, 2, 4, 6; rank 1: 1, 3, 5


def test_arrow_unshuffled_reads_in_file_order_like_petastorm(split_files):
    assert sample_ids(feed(split_files, ArrowFeed)) == list(range(TOTAL))
    assert sample_ids(feed(split_files[::-1], ArrowFeed)) == sample_ids(feed(split_files[::-1]))
    assert batch_ids(feed(split_files, ArrowFeed, rank=1, world_size=2), 0) == \
        batch_ids(feed(split_files, rank=1, world_size=2), 0)


def test_both_feeds_give_the_same_columns_dtypes_and_values_per_batch(split_files):
    options = {"shuffle": True, "rank": 1, "world_size": 2, "batch_size": 10}
    petastorm = list(feed(split_files, **options).batches(1))
    arrow = list(feed(split_files, ArrowFeed, **options).batches(1))
    assert [len(b["sample_id"]) for b in arrow] == [10] * 4 + [2]  # rank 1 holds 42 rows
    for p, a in zip(petastorm, arrow, strict=True):
        assert list(a) == list(p) == COLUMNS  # only the model's columns ("unused" stays behind), in order
        for name in COLUMNS:
            assert a[name].dtype == p[name].dtype and a[name].shape == p[name].shape, name
            assert torch.equal(a[name], p[name]), name
        assert a["target_sid"].shape == (len(a["sample_id"]), SID_LEVELS) and a["label"].dtype == torch.float32


@pytest.mark.parametrize("implementation", [PetastormFeed, ArrowFeed])
def test_a_rank_never_sees_another_ranks_row_group(split_files, implementation):
    own = {0: set().union(*ROW_GROUPS[0::2]), 1: set().union(*ROW_GROUPS[1::2])}
    for rank in (0, 1):
        f = feed(split_files, implementation, shuffle=True, rank=rank, world_size=2, shuffle_buffer=16)
        for epoch in (0, 1, 2):
            ids = sample_ids(f, epoch)
            assert sorted(ids) == sorted(own[rank])  # every row of its own row groups once, nothing else


def test_arrow_epochs_shuffle_differently(split_files):
    f = feed(split_files, ArrowFeed, shuffle=True, rank=0, world_size=2)
    epoch0, epoch1 = sample_ids(f, 0), sample_ids(f, 1)
    assert sorted(epoch0) == sorted(epoch1)
    assert epoch0 != epoch1 and epoch0 != sorted(epoch0)
    assert sample_ids(feed(split_files, ArrowFeed, shuffle=True, rank=0, world_size=2), 1) == epoch1  # reproducible


def test_shard_row_groups_keeps_the_set_and_shuffles_the_order():
    assert shard_row_groups(7, rank=1, world_size=2, shuffle=False, seed=3, epoch=0) == [1, 3, 5]
    orders = [shard_row_groups(7, rank=0, world_size=2, shuffle=True, seed=3, epoch=e) for e in range(6)]
    assert all(sorted(o) == [0, 2, 4, 6] for o in orders)
    assert len({tuple(o) for o in orders}) > 1


def test_training_feed_arrow_works_on_the_pinned_stack(split_files):
    config = load_config("base", overrides=["training.feed=arrow", "training.batch_size=10"]).training
    f = build_feed(config, files=split_files, columns=COLUMNS, shuffle=False)
    assert isinstance(f, ArrowFeed)
    assert [len(b["sample_id"]) for b in f.batches(0)] == [10] * 7 + [7]
    assert sample_ids(f) == list(range(TOTAL))
    with pytest.raises(ConfigError, match=r"training\.feed: 'spark' is not one of"):
        load_config("base", overrides=["training.feed=spark"])


@pytest.fixture
def fresh_announcements(monkeypatch):
    monkeypatch.setattr(feed_module, "_announced", set())


def test_auto_takes_petastorm_where_it_runs_and_logs_why_once(split_files, fresh_announcements, caplog):
    with caplog.at_level(logging.INFO, logger="r2led_model.training.feed"):
        feeds = [build_feed(TrainingConfig(feed="auto"), files=split_files, columns=COLUMNS, shuffle=False)
                 for _ in range(2)]
    assert all(type(f) is PetastormFeed for f in feeds)
    assert [r.getMessage() for r in caplog.records] == ["training feed: petastorm (training.feed is 'auto' and "
                                                        "Petastorm runs here (pyarrow 14.0.2))"]


def test_auto_takes_arrow_on_new_pyarrow_and_forced_petastorm_names_the_key(split_files, fresh_announcements,
                                                                          monkeypatch, caplog):
    monkeypatch.setattr(feed_module.pyarrow, "__version__", "17.0.0")
    with caplog.at_level(logging.INFO, logger="r2led_model.training.feed"):
        f = build_feed(TrainingConfig(feed="auto"), files=split_files, columns=COLUMNS, shuffle=False)
    assert type(f) is ArrowFeed and sample_ids(f) == list(range(TOTAL))
    assert "training feed: arrow (training.feed is 'auto' and Petastorm cannot run: pyarrow 17.0.0" in caplog.text
    with pytest.raises(ConfigError, match=r"training\.feed: 'petastorm' cannot run here: pyarrow 17\.0\.0 .*< 15"):
        build_feed(TrainingConfig(feed="petastorm"), files=split_files, columns=COLUMNS, shuffle=False)


def test_petastorm_that_does_not_import_is_not_chosen(split_files, fresh_announcements, monkeypatch):
    monkeypatch.setitem(sys.modules, "petastorm", None)  # `import petastorm` now raises ImportError
    f = build_feed(TrainingConfig(feed="auto"), files=split_files, columns=COLUMNS, shuffle=False)
    assert type(f) is ArrowFeed
    with pytest.raises(ConfigError, match=r"training\.feed: 'petastorm' cannot run here: petastorm does not import"):
        build_feed(TrainingConfig(feed="petastorm"), files=split_files, columns=COLUMNS, shuffle=False)
