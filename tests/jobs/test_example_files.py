"""How training_examples' files hold their rows: a user's samples side by side in history order, the
arrays' values zstd-compressed without a dictionary, so that the history windows a user's samples share
are stored about once; a nightly MERGE writes its files the same way."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import functions as F

from jobs.runtime.tables import TableStore
from jobs.training.build_training_set import EXAMPLE_ORDER
from tests.helpers import config_in


def data_files(store: TableStore) -> list[Path]:
    return [Path(unquote(urlparse(uri).path)) for uri in store.read("training_examples").inputFiles()]


def array_columns(metadata: pq.FileMetaData) -> dict[str, pq.ColumnChunkMetaData]:
    """The value column chunk of each array column of the first row group, by column name."""
    group = metadata.row_group(0)
    chunks = (group.column(i) for i in range(group.num_columns))
    return {chunk.path_in_schema.split(".")[0]: chunk for chunk in chunks if chunk.path_in_schema.endswith(".element")}


def test_each_file_holds_a_users_samples_together_in_history_order(spark, tiny_tables):
    store = TableStore(spark, config_in(tiny_tables).tables)
    for path in data_files(store):
        table = pq.read_table(path, columns=[c for c in EXAMPLE_ORDER if c != "split"])
        keys = list(zip(*(table[c].to_pylist() for c in EXAMPLE_ORDER if c != "split")))
        assert keys == sorted(keys), path


def test_array_values_are_stored_zstd_compressed_without_a_dictionary(spark, tiny_tables):
    store = TableStore(spark, config_in(tiny_tables).tables)
    files = data_files(store)
    assert files
    for path in files:
        arrays = array_columns(pq.ParquetFile(path).metadata)
        assert {"long_item", "short_item", "long_recency"} <= set(arrays), path
        for name, chunk in arrays.items():
            assert chunk.compression == "ZSTD", (path, name)
            assert not chunk.has_dictionary_page, (path, name, chunk.encodings)


def test_the_stored_windows_take_fewer_bytes_than_rows_in_sample_order_with_a_dictionary(spark, tiny_tables):
    """Each file's rows written as the table stored them before (by sample_id, Parquet's defaults: a
    dictionary, snappy) take more bytes for the long window: the saving is the order and the encoding."""
    store = TableStore(spark, config_in(tiny_tables).tables)
    stored, before = 0, 0
    for path in data_files(store):
        stored += array_columns(pq.ParquetFile(path).metadata)["long_item"].total_compressed_size
        rewritten = io.BytesIO()
        pq.write_table(pq.read_table(path).sort_by("sample_id"), rewritten)
        before += array_columns(pq.ParquetFile(pa.BufferReader(rewritten.getvalue())).metadata)[
            "long_item"].total_compressed_size
    assert stored < 0.7 * before, (stored, before)


def test_a_nightly_merge_writes_its_files_the_same_way(spark, tiny_tables, tmp_path):
    shutil.copytree(tiny_tables, tmp_path / "ws")
    store = TableStore(spark, config_in(tmp_path / "ws").tables)
    before = set(data_files(store))
    codec = spark.conf.get("spark.sql.parquet.compression.codec")
    # Ten examples under new sample ids: a MERGE inserts them as a new file.
    fresh = store.read("training_examples").orderBy("sample_id").limit(10).withColumn(
        "sample_id", F.col("sample_id") + F.lit(1 << 60))
    assert store.upsert("training_examples", fresh) == 10
    written = set(data_files(store)) - before
    assert written
    for path in written:
        for name, chunk in array_columns(pq.ParquetFile(path).metadata).items():
            assert chunk.compression == "ZSTD" and not chunk.has_dictionary_page, (path, name)
    # The session is left as it was: other tables keep Parquet's defaults.
    assert spark.conf.get("parquet.enable.dictionary#long_item.list.element", None) is None
    assert spark.conf.get("spark.sql.parquet.compression.codec") == codec
