"""What input layout 1 stored for the same examples: `benchmark scale --wide-bytes` writes the current
`training_examples` widened back to layout 1 (every slot's category, SID codes and mask beside its item and
recency, every array BIGINT, by sample_id within each file, as the release before layout 2 wrote them) and
reports its bytes per row beside the narrow table's, so the two layouts are compared on the very same samples.

The widening is the models' own (`ItemLookup.widen`, which tests hold equal to the per-sample reference), so
the wide rows are the rows layout 1 would have written; route pools (stored since) are left out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import torch
from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from jobs.runtime.tables import TableStore
from jobs.training.training_data import item_lookup_arrays
from r2led_model.arrow_arrays import fixed_width, list_column
from r2led_model.models.inputs import EXAMPLE_KEYS, GROUP_PARTS, WIDE_LAYOUT, ExampleLayout
from r2led_model.models.item_lookup import ItemLookup

WIDE_ARRAY = "ARRAY<BIGINT>"  # layout 1 stored every array as BIGINT


def wide_columns(layout: ExampleLayout) -> list[tuple[str, str]]:
    """Layout 1's columns and types for `layout`'s routes, in the order that release wrote them."""
    columns = [*EXAMPLE_KEYS, ("target_item", "BIGINT"), ("target_cat", "BIGINT"), ("target_sid", WIDE_ARRAY)]
    return columns + [(f"{group}_{part}", WIDE_ARRAY) for group in layout.groups for part in GROUP_PARTS[WIDE_LAYOUT]]


def _stack(column: pa.Array) -> np.ndarray:
    """A list column of equal-length rows → (n, width) int64."""
    return fixed_width(column, len(column[0]) if len(column) else 0, "training_examples").astype(np.int64)


def widen_batch(batch: pa.RecordBatch, lookup: ItemLookup, names: list[str]) -> pa.RecordBatch:
    """One narrow batch of training_examples → the same rows in layout 1 (`names` in order)."""
    items = {name: torch.as_tensor(_stack(batch.column(name)) if name != "target_item"
                                   else batch.column(name).to_numpy().astype(np.int64))
             for name in batch.schema.names if name.endswith("_item")}
    recency = {name: torch.as_tensor(_stack(batch.column(name))) for name in batch.schema.names
               if name.endswith("_recency")}
    wide = lookup.widen({**items, **recency})
    arrays = {}
    for name in names:
        if name in batch.schema.names and not (name.endswith("_item") or name.endswith("_recency")):
            arrays[name] = batch.column(name)
            continue
        value = wide[name].numpy().astype(np.int64)
        arrays[name] = pa.array(value) if value.ndim == 1 else list_column(value)
    return pa.RecordBatch.from_arrays([arrays[name] for name in names], names=names)


def wide_layout_bytes(spark: SparkSession, store: TableStore, out: Path) -> dict:
    """Write `training_examples` in layout 1 to `out` (Delta, partitioned by split as the table is) and
    return {"wide_bytes", "wide_rows", "wide_bytes_per_row"}."""
    examples = store.read("training_examples")
    layout = ExampleLayout.of_columns(examples.columns)
    category, sid = item_lookup_arrays(store)
    columns = wide_columns(layout)
    names = [name for name, _ in columns]

    def per_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        lookup = ItemLookup(levels=sid.shape[1])
        lookup.set(category, sid)
        for batch in batches:
            yield widen_batch(batch, lookup, names)

    location = str(out.resolve())  # Delta's table detail needs an absolute path
    # In the order that release wrote (by sample_id within each file) with Parquet's defaults (a dictionary,
    # snappy): today's order and encoding would shrink layout 1 too, which no table of it ever was.
    wide = examples.sortWithinPartitions("split", "sample_id").mapInArrow(
        per_partition, ", ".join(f"{name} {kind}" for name, kind in columns))
    wide.write.format("delta").mode("overwrite").partitionBy("split").save(location)
    size = int(DeltaTable.forPath(spark, location).detail().select("sizeInBytes").first()[0])
    rows = spark.read.format("delta").load(location).count()
    return {"wide_bytes": size, "wide_rows": rows, "wide_bytes_per_row": round(size / rows, 1) if rows else None}
