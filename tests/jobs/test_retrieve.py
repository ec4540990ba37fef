"""retrieve on a hand-made world: hand-computed candidates for every route, the point-in-time
property for every sample, and an idempotent re-run."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest
import torch
from pyspark.sql import functions as F

from jobs.retrieval import retrieve
from jobs.runtime.tables import TableStore
from jobs.sequences import sequences
from tests.helpers import rows

BASE = int(dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc).timestamp())
DAY = 86400
# item → (semantic codes (L = 2), SimHash word (4 bits), category)
ITEMS = {10: ([0, 0], 0b0000, 1), 11: ([0, 1], 0b0001, 1), 12: ([1, 0], 0b1111, 2), 13: ([0, 0], 0b0011, 1),
         14: ([1, 1], 0b0111, 2)}
# user 1 sees 10, 11, 12, 13, 14 on days 1..5; user 2 sees 12 then 10.
EVENTS = [(1, item, BASE + day * DAY) for day, item in enumerate([10, 11, 12, 13, 14], start=1)]
EVENTS += [(2, 12, BASE + 2 * DAY), (2, 10, BASE + 3 * DAY)]


@pytest.fixture(scope="module")
def world(spark, tmp_path_factory):
    from tests.helpers import config_in

    config = config_in(tmp_path_factory.mktemp("retrieve"), "retrieval.routes=[sid1, sid2, collab]", "retrieval.k=2",
                       "retrieval.simhash_bits=4", "sequences.negatives.enabled=never",
                       "sequences.split.valid_from=2024-01-05", "sequences.split.test_from=2024-01-06")
    store = TableStore(spark, config.tables)
    events = [(u, i, t, "pv", None, None, "test", "run", dt.datetime.fromtimestamp(t, dt.timezone.utc).date())
              for u, i, t in EVENTS]
    store.overwrite("events", spark.createDataFrame(events, (
        "user_id BIGINT, item_id BIGINT, ts BIGINT, behavior STRING, label INT, value DOUBLE, source STRING, "
        "ingest_run_id STRING, event_date DATE")))
    store.overwrite("items", spark.createDataFrame(
        [(i, cat, None, "test") for i, (_, _, cat) in ITEMS.items()],
        "item_id BIGINT, category_id BIGINT, text STRING, source STRING"))
    store.overwrite("item_sids", spark.createDataFrame(
        [(i, codes, codes, 0, "cb-test") for i, (codes, _, _) in ITEMS.items()],
        "item_id BIGINT, codes ARRAY<INT>, semantic_codes ARRAY<INT>, dedup_digit INT, codebook_version STRING"))
    store.overwrite("item_collab_vectors", spark.createDataFrame(
        [(i, [0.0], [word], "test", "cv-test") for i, (_, word, _) in ITEMS.items()],
        "item_id BIGINT, vector ARRAY<FLOAT>, signature ARRAY<BIGINT>, source STRING, version STRING"))
    sequences.run(spark, config)
    result = retrieve.run(spark, config)
    return config, store, result


def _candidates(store, user: int, day: int) -> dict:
    row = store.read("route_candidates").where(
        (F.col("user_id") == user) & (F.col("ts") == BASE + day * DAY)).collect()
    assert len(row) == 1
    return row[0].asDict()


def test_hand_computed_candidates(world):
    _, store, result = world
    assert result.codebook_version == "cb-test" and result.collab_version == "cv-test"
    # Day 5, target 14 (codes [1, 1], 0111); history 10, 11, 12, 13 at positions 0..3.
    day5 = _candidates(store, 1, 5)
    assert (day5["cand_sid1_pos"], day5["cand_sid1_mask"], day5["cand_sid1_pool"]) == ([2, -1], [True, False], 1)
    assert (day5["cand_sid2_pos"], day5["cand_sid2_mask"], day5["cand_sid2_pool"]) == ([-1, -1], [False, False], 0)
    # Hamming to 0111: 10→3, 11→2, 12→1, 13→1; the tie 12/13 goes to the later position (13).
    assert (day5["cand_collab_pos"], day5["cand_collab_item"]) == ([3, 2], [13, 12])
    # Day 4, target 13 (codes [0, 0], 0011); history 10, 11, 12.
    day4 = _candidates(store, 1, 4)
    assert day4["cand_sid1_pos"] == [1, 0]  # prefix [0]: 11 (distance 1) before 10 (distance 2)
    assert day4["cand_sid2_pos"] == [0, -1]  # prefix [0, 0]: only item 10
    assert day4["cand_collab_pos"] == [1, 2]  # 11 (1), then 10 and 12 tie at 2: the later one, 12
    # Day 1: no history at all.
    day1 = _candidates(store, 1, 1)
    assert day1["cand_collab_mask"] == [False, False] and day1["cand_collab_pool"] == 0


def test_no_candidate_is_at_or_after_its_sample(world):
    _, store, _ = world
    seqs = {r["user_id"]: r["ts"] for r in store.read("user_sequences").collect()}
    checked = 0
    for row in store.read("route_candidates").collect():
        for route in ("sid1", "sid2", "collab"):
            for position, valid in zip(row[f"cand_{route}_pos"], row[f"cand_{route}_mask"]):
                if valid:
                    assert seqs[row["user_id"]][position] < row["ts"]
                    assert position < row["hist_len"]
                    checked += 1
                else:
                    assert position == -1
    assert checked > 0


def test_each_candidate_row_carries_its_samples_item_and_label(spark, world):
    _, store, _ = world
    carried = store.read("route_candidates").select("sample_id", "item_id", "label")
    assert rows(carried, "sample_id") == rows(store.read("samples").select("sample_id", "item_id", "label"), "sample_id")


def test_rerun_is_identical_and_partitioned_by_split(spark, world):
    config, store, _ = world
    before = rows(store.read("route_candidates"), "sample_id")
    retrieve.run(spark, config)
    assert rows(store.read("route_candidates"), "sample_id") == before
    assert {r[0] for r in store.read("route_candidates").select("split").distinct().collect()} == {
        "train", "valid", "test"}


def test_training_examples_carry_hand_computed_arrays(spark, world):
    from jobs.training import build_training_set

    config, store, _ = world
    small = replace(config, training_set=replace(config.training_set, short_window=3, long_history=5))
    result = build_training_set.run(spark, small)
    assert sum(result.examples_by_split.values()) == len(EVENTS)
    index = {r["item_id"]: r for r in store.read("item_index").collect()}
    assert sorted(r["item_idx"] for r in index.values()) == [1, 2, 3, 4, 5]  # dense, 0 kept for padding
    assert sorted({r["category_idx"] for r in index.values()}) == [2, 3]  # categories 1, 2 → 2, 3
    row = store.read("training_examples").where((F.col("user_id") == 1) & (F.col("ts") == BASE + 5 * DAY)).first()
    idx = {i: index[i]["item_idx"] for i in ITEMS}
    assert row["target_item"] == idx[14]
    # sid1 route: [12, pad]
    assert row["r_sid1_item"] == [idx[12], 0]
    assert row["r_collab_item"] == [idx[13], idx[12]]
    # Short window (3): most recent first among 10, 11, 12, 13 → 13, 12, 11; long (5): 13, 12, 11, 10, pad.
    assert row["short_item"] == [idx[13], idx[12], idx[11]]
    assert row["long_item"] == [idx[13], idx[12], idx[11], idx[10], 0]
    # Recency: 13 is one day old → 1 + floor(log2(25)) = 5; item 10 four days → 1 + floor(log2(97)) = 7.
    assert row["long_recency"] == [5, 6, 7, 7, 0]
    assert row["codebook_version"] == "cb-test" and row["collab_version"] == "cv-test" and row["input_layout"] == 2
    assert "target_sid" not in row.asDict() and "r_sid1_mask" not in row.asDict()  # per item, so the model looks them up
    wide = widened(store, row, ["target", "r_sid1", "long"])
    assert wide["target_sid"] == [[2, 2]]  # codes [1, 1] + 1
    assert wide["r_sid1_mask"] == [[1, 0]] and wide["r_sid1_sid"] == [[2, 1, 0, 0]]  # flattened per slot, padding 0
    assert wide["long_mask"] == [[1, 1, 1, 1, 0]]


def widened(store: TableStore, row, groups: list[str]) -> dict[str, list]:
    """One stored example's groups as the model reads them: item lookups from item_index added."""
    from jobs.training.training_data import item_lookup_arrays
    from r2led_model.models.item_lookup import ItemLookup

    category, sid = item_lookup_arrays(store)
    lookup = ItemLookup(levels=sid.shape[1])
    lookup.set(category, sid)
    batch = {f"{g}_item": torch.tensor([row[f"{g}_item"]]) for g in groups}
    return {key: value.tolist() for key, value in lookup.widen(batch).items()}


def test_retrieval_report_counts_pools(spark, world):
    from jobs.retrieval.report_retrieval import build_retrieval_report

    config, _, _ = world
    report = build_retrieval_report(spark, config)
    collab = next(r for r in report.routes if r.name == "collab")
    # The collab pool is the whole history: user 1 has 0..4 behaviours before its samples, user 2 has 0, 1.
    assert report.samples == 7
    assert collab.non_empty_share == pytest.approx(5 / 7) and collab.mean_pool == pytest.approx(11 / 7)
    assert report.precision_samples == 0  # no planted truth outside synthetic data


def test_spark_and_single_process_paths_equal_the_kernel_on_random_users(spark, tmp_path):
    """The Arrow partition function, fed by Spark (users split over Arrow batches) and by
    the benchmark's single-process layout, gives each sample exactly the kernel's candidates."""
    import numpy as np

    from jobs.benchmarks import retrieval as bench
    from r2led_model.config import RetrievalConfig
    from r2led_model.retrieval.multi_route import RoutePlan, retrieve_routes

    plan = RoutePlan.from_config(RetrievalConfig(routes=("sid1", "sid3", "collab"), k=5), bench.LEVELS)
    cases = bench.write_world(tmp_path, users=6, length=40, per_user=12)
    batch_key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    previous = spark.conf.get(batch_key)
    spark.conf.set(batch_key, "7")  # every user's rows straddle several Arrow batches
    try:
        got = retrieve.build_route_candidates(
            spark, spark.read.parquet(str(tmp_path / "samples")), spark.read.parquet(str(tmp_path / "sequences")),
            lambda: spark.read.parquet(str(tmp_path / "features")), plan, bench.LEVELS, 1).toPandas()
    finally:
        spark.conf.set(batch_key, previous)
    assert len(got) == 6 * 12 == bench.single_process(tmp_path, plan, 1)
    got = got.set_index("sample_id")
    for user, (history, targets) in enumerate(cases):
        expected = retrieve_routes(history, targets, plan)
        ids = [user * 1_000_000 + s for s in range(len(targets))]
        for name, found in expected.items():
            assert np.array_equal(np.stack(got.loc[ids, f"cand_{name}_pos"].to_numpy()), found.positions), (user, name)
            assert np.array_equal(np.stack(got.loc[ids, f"cand_{name}_mask"].to_numpy()), found.mask), (user, name)
            assert got.loc[ids, f"cand_{name}_pool"].tolist() == found.pool_size.tolist()
            items = np.where(found.mask, history.item_ids[np.maximum(found.positions, 0)], -1)
            assert np.array_equal(np.stack(got.loc[ids, f"cand_{name}_item"].to_numpy()), items), (user, name)


def test_every_training_example_of_the_tiny_world_equals_the_per_sample_reference(spark, tiny_tables):
    from jobs.training.build_training_set import output_columns, with_targets
    from jobs.training.training_data import item_lookup_arrays
    from r2led_model.models.item_lookup import ItemLookup
    from tests.helpers import config_in
    from tests.reference_examples import reference_example

    config = config_in(tiny_tables)
    store = TableStore(spark, config.tables)
    candidates = with_targets(store.read("route_candidates"), store.read("samples"))
    routes = [c[len("cand_"):-len("_pos")] for c in candidates.columns if c.startswith("cand_") and c.endswith("_pos")]
    index = {r["item_id"]: (r["item_idx"], r["category_idx"], r["sid"]) for r in store.read("item_index").collect()}
    levels = len(next(iter(index.values()))[2])
    sequences = {r["user_id"]: r.asDict() for r in store.read("user_sequences").collect()}
    ts = config.training_set
    expected = {row["sample_id"]: reference_example(row.asDict(), sequences.get(row["user_id"]), index, routes, levels,
                                                    ts.short_window, ts.long_history, ts.recency_buckets)
                for row in candidates.collect()}
    names = [name for name, _ in output_columns(routes)]
    groups = [f"r_{route}" for route in routes] + ["short", "long"]
    stored = store.read("training_examples").collect()
    assert len(stored) == len(expected) > 1000
    # What is stored (per sample) is the reference's; what the model looks up is too.
    assert {row["sample_id"]: {name: row[name] for name in names} for row in stored} == {
        sample_id: {name: example[name] for name in names} for sample_id, example in expected.items()}
    category, sid = item_lookup_arrays(store)
    lookup = ItemLookup(levels=sid.shape[1])
    lookup.set(category, sid)
    batch = {f"{g}_item": torch.tensor([row[f"{g}_item"] for row in stored]) for g in ["target", *groups]}
    wide = {key: value.tolist() for key, value in lookup.widen(batch).items()}
    for part in ["target_cat", "target_sid"] + [f"{g}_{p}" for g in groups for p in ("cat", "sid", "mask")]:
        assert wide[part] == [expected[row["sample_id"]][part] for row in stored], part


def test_each_split_is_spread_over_files(spark, tiny_tables):
    """(The order of each file's rows: tests/jobs/test_example_files.py.)"""
    from tests.helpers import config_in

    config = config_in(tiny_tables)
    store = TableStore(spark, config.tables)
    for split in ("train", "valid", "test"):
        files = store.active_files("training_examples", {"split": split})
        # One file per user partition holding the split: enough for each training process to get its own.
        assert 2 <= len(files) <= config.training_set.files_per_split, (split, len(files))
