"""Fixed-width Arrow list columns ↔ 2-D numpy arrays, as whole buffers (no per-row objects).

The mapInArrow jobs (assign-sids, collab-vectors, retrieve) read list columns whose rows all hold
the same number of values (vectors, SID codes, SimHash words) and write such columns back.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def fixed_width(column: pa.Array | pa.ChunkedArray, width: int, what: str) -> np.ndarray:
    """A list column whose rows all hold `width` values → one (n, width) array; `what` names it in errors."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if column.null_count:
        raise ValueError(f"{what}: {column.null_count} null rows")
    flat = column.flatten().to_numpy(zero_copy_only=False)
    if len(flat) != len(column) * width:
        raise ValueError(f"{what}: rows do not all hold {width} values")
    return flat.reshape(len(column), width)  # (n, width)


def vectors_of(batch: pa.RecordBatch, width: int) -> np.ndarray:
    """The `vector` list column of an item_embeddings-shaped Arrow batch as one (n, width) array."""
    return fixed_width(batch.column("vector"), width, "item_embeddings.vector")


def list_column(values: np.ndarray) -> pa.ListArray:
    """(n, k) → a list column of n rows with k values each."""
    n, k = values.shape
    return pa.ListArray.from_arrays(pa.array(np.arange(0, n * k + 1, k, dtype=np.int32)), pa.array(values.ravel()))
