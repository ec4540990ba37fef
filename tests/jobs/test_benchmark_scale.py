"""`r2led benchmark scale`'s own arithmetic, its memory sampler and its single-process references
(the stages it times are tested on their own)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from jobs.benchmarks.process_memory import MemorySampler
from jobs.benchmarks.scale import format_table, growth_lines, sized_config
from jobs.benchmarks.reference_als import Pairs, implicit_als
from jobs.benchmarks.single_process_stages import (collab_vectors_reference, retrieve_reference, snapshot,
                                                   training_set_reference)
from jobs.benchmarks.wide_layout import wide_layout_bytes
from jobs.runtime.tables import TableStore
from r2led_model.config import parse_utc_timestamp
from tests.helpers import config_in


def test_each_size_samples_only_its_last_days_and_writes_inside_its_folder(make_config, tmp_path):
    config = make_config()  # tiny: 20 days from 2024-01-01
    sized = sized_config(config, tmp_path / "n1000", sample_share=0.3)
    seq = sized.sequences
    assert seq.samples_from == "2024-01-15"  # the last 30% of 20 days
    assert parse_utc_timestamp(seq.samples_from) < parse_utc_timestamp(seq.split.valid_from) \
        < parse_utc_timestamp(seq.split.test_from) < parse_utc_timestamp("2024-01-21")
    for path in (sized.tables.root, sized.source.synthetic.path, sized.codebook.store_dir):
        assert Path(path).is_relative_to(tmp_path / "n1000")


def test_partitions_grow_with_the_events_and_never_drop_below_the_envs(make_config, tmp_path):
    config = make_config("benchmark.scale_events_per_partition=1000000")
    floor = config.spark.shuffle_partitions
    assert sized_config(config, tmp_path, 0.1, events=1000).spark.shuffle_partitions == floor
    large = sized_config(config, tmp_path, 0.1, events=100_000_000)
    assert large.spark.shuffle_partitions == large.training_set.files_per_split == max(floor, 100)


def test_growth_is_each_stage_time_ratio_over_the_events_ratio():
    results = [{"events": 1000, "stage": "ingest", "seconds": 10.0}, {"events": 1000, "stage": "retrieve", "seconds": 5.0},
               {"events": 10000, "stage": "ingest", "seconds": 50.0},
               {"events": 10000, "stage": "retrieve", "seconds": 100.0}]
    line = growth_lines(results, 1000, 10000)
    # ingest 5x time for 10x events: 0.50; retrieve 20x: 2.00; total 150 s vs a linear 150 s: 1.00.
    assert "ingest 0.50, retrieve 2.00; total 1.00x" in line
    rows = [{**r, "rows_in": 1, "rows_out": 1, "peak_jvm_mb": None, "peak_python_workers_mb": None,
             "spilled_mb": None} for r in results]
    table = format_table(rows)
    assert "      10,000 total                  150.0" in table and line in table


def test_the_table_shows_build_training_set_without_its_write_as_a_share_of_its_time():
    row = {"events": 1000, "stage": "build-training-set", "seconds": 80.0, "rows_in": 1, "rows_out": 1,
           "peak_jvm_mb": None, "peak_python_workers_mb": None, "spilled_mb": None, "noop_sink_seconds": 30.0}
    assert "training-set, noop      30.0  the stage without its write: 0.38 of its time" in format_table([row])


def test_the_sampler_sees_this_process_grow():
    with MemorySampler(jvm_pid=os.getppid(), interval_s=0.05) as sampler:
        ballast = bytearray(200 * 2**20)  # 200 MB touched
        ballast[::4096] = b"x" * len(ballast[::4096])
    assert sampler.peak.driver_python_mb is not None and sampler.peak.driver_python_mb > 200
    assert sampler.peak.jvm_mb is not None and sampler.peak.python_workers_mb is not None
    del ballast


def test_the_single_process_references_write_exactly_the_rows_of_their_spark_stages(spark, tiny_tables, tmp_path):
    config = config_in(tiny_tables)
    store = TableStore(spark, config.tables)
    for reference, table in ((retrieve_reference, "route_candidates"), (training_set_reference, "training_examples")):
        rows = reference(store, config, tmp_path / table)
        written = ds.dataset(tmp_path / table, format="parquet", partitioning="hive").to_table().sort_by("sample_id")
        stored = snapshot(store, table).sort_by("sample_id")
        # Every column but the version (and input layout) stamps the Spark stage adds after its partition function.
        stamps = {"codebook_version", "collab_version"} | ({"input_layout"} if table == "training_examples" else set())
        assert set(stored.column_names) - set(written.column_names) == stamps
        stored = stored.select(written.column_names)
        assert rows == written.num_rows == stored.num_rows > 1000, table
        assert written.cast(stored.schema).equals(stored), table


def test_the_reference_als_puts_items_of_one_audience_together():
    rng = np.random.default_rng(0)
    users = rng.integers(0, 400, 20_000)
    items = rng.integers(0, 50, 20_000) * 2 + users % 2  # even users touch even items, odd users odd ones
    pairs = Pairs.counted(users, items)
    assert pairs.strength.sum() == 20_000 and len(pairs.rows) == len(np.unique(users * 100 + items))
    _, vectors = implicit_als(pairs, rank=8, iterations=5, reg=0.1, alpha=10.0, seed=1)  # (100, 8)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cosine = unit @ unit.T  # (100, 100)
    same_audience = (np.arange(100)[:, None] % 2) == (np.arange(100)[None, :] % 2)
    assert cosine[same_audience].mean() > 0.7 and abs(cosine[~same_audience].mean()) < 0.2


def test_the_collab_vectors_reference_signs_every_item_spark_fits(spark, tiny_tables, tmp_path):
    config = config_in(tiny_tables)
    store = TableStore(spark, config.tables)
    rows = collab_vectors_reference(store, config, tmp_path / "collab")
    written = pq.read_table(tmp_path / "collab")
    stored = snapshot(store, "item_collab_vectors", ["item_id", "vector", "signature"])
    # The same items (those with a training-window behaviour), vectors and signatures of the same widths.
    assert rows == written.num_rows == stored.num_rows > 100
    assert sorted(written["item_id"].to_pylist()) == sorted(stored["item_id"].to_pylist())
    for column in ("vector", "signature"):
        assert {len(v) for v in written[column].to_pylist()} == {len(stored[column][0])}


def test_the_wide_layout_holds_every_example_with_its_looked_up_slots_and_more_bytes(spark, tiny_tables, tmp_path):
    config = config_in(tiny_tables)
    store = TableStore(spark, config.tables)
    relative = Path(os.path.relpath(tmp_path / "wide"))  # benchmark folders are relative to the workspace
    measured = wide_layout_bytes(spark, store, relative)
    narrow = snapshot(store, "training_examples").sort_by("sample_id")
    assert measured["wide_rows"] == narrow.num_rows > 1000
    wide = ds.dataset(tmp_path / "wide", format="parquet", partitioning="hive").to_table().sort_by("sample_id")
    assert wide["short_item"].to_pylist() == narrow["short_item"].to_pylist()
    assert wide.schema.field("long_sid").type == pa.list_(pa.int64()) and "r_sid1_pool" not in wide.column_names
    # A slot's category is the item index's; a real slot's mask is 1 and padding's 0.
    categories = dict(zip(*(snapshot(store, "item_index", ["item_idx", "category_idx"])[c].to_pylist()
                            for c in ("item_idx", "category_idx"))))
    for items, cats, mask in zip(*(wide[c].to_pylist()[:200] for c in ("long_item", "long_cat", "long_mask"))):
        assert cats == [categories[i] if i else 0 for i in items] and mask == [int(i != 0) for i in items]
    narrow_bytes = store.size_in_bytes("training_examples") / narrow.num_rows
    assert measured["wide_bytes_per_row"] > narrow_bytes
