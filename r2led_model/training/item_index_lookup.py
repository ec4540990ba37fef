"""The model's item indices as sorted numpy arrays: what build-training-set looks behaviours and
targets up in, as retrieve does with `ItemFeatureLookup`, instead of a join per behaviour; the raw-id
served model carries one too (`serving.catalog`).

Cost on every executor: 8·(2 + L) bytes per item (item_id, item_idx, category_idx, L SID codes),
40 bytes for 3-level SIDs: 10 million items take about 400 MB.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from r2led_model.arrow_arrays import fixed_width
from r2led_model.sequences.features import PAD
from r2led_model.sequences.features import UNKNOWN_CATEGORY as UNKNOWN_CATEGORY_IDX
from r2led_model.sorted_lookup import locate, take_known


@dataclass(frozen=True)
class ItemIndexLookup:
    """item_id → (item_idx, category_idx, SID codes + 1); an item missing from `item_index` gets the
    padding item, the unknown category and the padding SID."""

    item_ids: np.ndarray  # (I,) ascending, unique
    item_idx: np.ndarray  # (I,) int64
    category_idx: np.ndarray  # (I,) int64
    sid: np.ndarray  # (I, L) int64

    @classmethod
    def from_arrow(cls, table: pa.Table, levels: int = 0) -> "ItemIndexLookup":
        """From `item_index` columns item_id, item_idx and, where the caller needs them, category_idx and
        sid (`levels` ints); without them every item has the unknown category and no SID codes."""
        table = table.combine_chunks()
        item_ids = table["item_id"].to_numpy()
        if len(np.unique(item_ids)) != len(item_ids):
            raise ValueError("item_index: an item_id appears more than once")
        order = np.argsort(item_ids, kind="stable")
        n = len(item_ids)
        sid = (fixed_width(table["sid"], levels, "item_index.sid").astype(np.int64) if "sid" in table.column_names
               else np.zeros((n, levels), np.int64))  # (I, L)
        category_idx = (table["category_idx"].to_numpy().astype(np.int64) if "category_idx" in table.column_names
                        else np.full(n, UNKNOWN_CATEGORY_IDX, np.int64))
        return cls(item_ids=item_ids[order], item_idx=table["item_idx"].to_numpy().astype(np.int64)[order],
                   category_idx=category_idx[order], sid=sid[order])

    def item_indices(self, item_ids: np.ndarray) -> np.ndarray:
        """(n,) ids → item_idx (n,), 0 (padding) for an item missing from `item_index`."""
        rows, known = locate(self.item_ids, np.asarray(item_ids))  # (n,), (n,)
        return take_known(self.item_idx, rows, known, PAD)

    def indices(self, item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(n,) ids → item_idx (n,), category_idx (n,), sid (n, L), with the missing-item defaults."""
        rows, known = locate(self.item_ids, np.asarray(item_ids))  # (n,), (n,)
        item_idx = take_known(self.item_idx, rows, known, PAD)  # (n,)
        category_idx = take_known(self.category_idx, rows, known, UNKNOWN_CATEGORY_IDX)  # (n,)
        sid = take_known(self.sid, rows, known, PAD)  # (n, L)
        return item_idx, category_idx, sid

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.item_ids, self.item_idx, self.category_idx, self.sid))
