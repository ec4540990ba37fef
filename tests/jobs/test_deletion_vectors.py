"""The training feed on a Delta table with deletion vectors: Petastorm reads the live files as plain
Parquet, so after the split UPDATE (`resplit`) a live file still holds the rows it moved away unless
training_data purges them first. Tiny hand-made tables; no pipeline run."""

from __future__ import annotations

import pytest

from jobs.runtime.tables import TableStore
from jobs.sequences.splits import resplit
from jobs.training.training_data import SPLITS, TrainingDataError, _uri, purge_deleted_rows, training_data
from r2led_model.config import SplitConfig, parse_utc_timestamp
from r2led_model.training.feed import PetastormFeed

DAY = 86_400
START = parse_utc_timestamp("2024-01-01")
SAMPLES = 24  # sample i is at day i
# Written with train < day 12 <= valid < day 18 <= test; the rolled rule moves days 8-11 to valid, 16-17 to test.
WRITTEN = SplitConfig(mode="time", valid_from="2024-01-13", test_from="2024-01-19")
ROLLED = SplitConfig(mode="time", valid_from="2024-01-09", test_from="2024-01-17")
LIVE = {"train": set(range(0, 8)), "valid": set(range(8, 16)), "test": set(range(16, 24))}

EXAMPLES = ("sample_id BIGINT, user_id BIGINT, ts BIGINT, label INT, split STRING, hist_len BIGINT, "
            "target_item BIGINT, short_item ARRAY<INT>, short_recency ARRAY<TINYINT>, long_item ARRAY<INT>, "
            "long_recency ARRAY<TINYINT>, codebook_version STRING, collab_version STRING, input_layout INT")
INDEX = "item_id BIGINT, item_idx BIGINT, category_id BIGINT, category_idx INT, sid ARRAY<INT>"


def _split(day: int) -> str:
    return "test" if day >= 18 else "valid" if day >= 12 else "train"


def tiny_tables(spark, config, *, deletion_vectors: bool) -> TableStore:
    """`training_examples` (one file per split, as WRITTEN splits it) and its `item_index`; the split
    UPDATE then moves rows as ROLLED splits them."""
    store = TableStore(spark, config.tables)
    rows = [(i, i % 3, START + i * DAY, i % 2, _split(i), 1, 1 + i % 4, [1, 2, 3], [1, 1, 2], [1, 2, 3, 4],
             [1, 1, 2, 2], "cb-1", "cv-1", 2) for i in range(SAMPLES)]
    store.overwrite("training_examples", spark.createDataFrame(rows, EXAMPLES).repartition("split"))
    store.overwrite("item_index", spark.createDataFrame(
        [(i, i, 1, 1, [1 + i, 2]) for i in range(1, 5)], INDEX))
    if deletion_vectors:
        spark.sql(f"ALTER TABLE {store.sql_name('training_examples')} "
                  "SET TBLPROPERTIES ('delta.enableDeletionVectors' = 'true')")
    assert resplit(store, "training_examples", ROLLED) == 6
    return store


def live_ids(store: TableStore) -> dict[str, set[int]]:
    ids: dict[str, set[int]] = {s: set() for s in SPLITS}
    for row in store.read("training_examples").select("split", "sample_id").collect():
        ids[row["split"]].add(int(row["sample_id"]))
    return ids


def fed_ids(files: list[str]) -> list[int]:
    """Every sample_id Petastorm yields from these files, in feed order."""
    feed = PetastormFeed(files=files, columns=["sample_id"], batch_size=5, shuffle=False, workers=1)
    return [int(v) for batch in feed.batches(epoch=0) for v in batch["sample_id"].tolist()]


def raw_files(store: TableStore, split: str) -> list[str]:
    return [_uri(f) for f in store.active_files("training_examples", {"split": split})]


def test_the_feed_yields_exactly_the_live_rows_of_each_split_after_a_split_update_with_deletion_vectors(
        spark, make_config):
    config = make_config()
    store = tiny_tables(spark, config, deletion_vectors=True)
    assert live_ids(store) == LIVE
    # The bug: the live files of train and valid still hold the rows the UPDATE moved out of them.
    assert set(fed_ids(raw_files(store, "train"))) == set(range(0, 12))
    assert set(fed_ids(raw_files(store, "valid"))) == set(range(8, 18))
    marked = store.files_with_deletion_vectors("training_examples")
    assert len(marked) == 2 and all("/split=train/" in f or "/split=valid/" in f for f in marked)
    before = store.version("training_examples")

    data = training_data(store, config)

    for split in SPLITS:
        ids = fed_ids(data.files[split])
        assert len(ids) == len(set(ids)), f"{split}: a sample fed twice"
        assert set(ids) == LIVE[split], split
        assert data.rows[split] == len(LIVE[split])
    # One REORG commit, and the recorded version is the purged table's, whose files were fed.
    assert store.version("training_examples") == before + 1
    assert store.delta("training_examples").history(1).first()["operation"] == "REORG"
    assert data.versions.training_examples_version == before + 1


def test_a_table_without_deletion_vectors_is_not_rewritten(spark, make_config):
    config = make_config()
    # Without the property the UPDATE rewrote whole files: nothing in them is deleted.
    store = tiny_tables(spark, config, deletion_vectors=False)
    before = store.version("training_examples")
    assert store.files_with_deletion_vectors("training_examples") == []
    assert purge_deleted_rows(store) is False

    data = training_data(store, config)

    assert store.version("training_examples") == before
    assert data.versions.training_examples_version == before
    assert {s: set(fed_ids(data.files[s])) for s in SPLITS} == LIVE


def test_training_is_refused_naming_the_table_and_the_fix_when_the_purge_cannot_run(spark, make_config,
                                                                                     monkeypatch):
    config = make_config()
    store = tiny_tables(spark, config, deletion_vectors=True)
    before = store.version("training_examples")
    # A purge Spark refuses (here: REORG of a folder that is no Delta table), as a read-only grant would.
    missing = config.workspace.root + "/no_such_table"
    monkeypatch.setattr(store, "purge_deletion_vectors",
                        lambda name: spark.sql(f"REORG TABLE delta.`{missing}` APPLY (PURGE)"))

    with pytest.raises(TrainingDataError) as refused:
        training_data(store, config)

    message = str(refused.value)
    assert store.location("training_examples") in message
    assert f"REORG TABLE {store.sql_name('training_examples')} APPLY (PURGE)" in message
    assert "2 live file(s)" in message
    assert store.version("training_examples") == before
