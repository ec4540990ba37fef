"""The model's item indices as sorted numpy arrays: what build-training-set looks behaviours and
targets up in, as retrieve does with `ItemFeatureLookup`, instead of a join per behaviour.

Cost on every executor: 8·(2 + L) bytes per item (item_id, item_idx, category_idx, L SID codes),
40 bytes for 3-level SIDs: 10 million items take about 400 MB.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from jobs.runtime.arrow_arrays import fixed_width
from jobs.runtime.sorted_lookup import locate
from r2led_model.features import PAD

UNKNOWN_CATEGORY_IDX = 1  # category index 0 is padding, 1 is "unknown"


@dataclass(frozen=True)
class ItemIndexLookup:
    """item_id → (item_idx, category_idx, SID codes + 1); an item missing from `item_index` gets the
    padding item, the unknown category and the padding SID."""

    item_ids: np.ndarray  # (I,) ascending, unique
    item_idx: np.ndarray  # (I,) int64
    category_idx: np.ndarray  # (I,) int64
    sid: np.ndarray  # (I, L) int64

    @classmethod
    def from_arrow(cls, table: pa.Table, levels: int) -> "ItemIndexLookup":
        """From `item_index` columns item_id, item_idx, category_idx, sid (L ints)."""
        table = table.combine_chunks()
        item_ids = table["item_id"].to_numpy()
        if len(np.unique(item_ids)) != len(item_ids):
            raise ValueError("item_index: an item_id appears more than once")
        order = np.argsort(item_ids, kind="stable")
        sid = fixed_width(table["sid"], levels, "item_index.sid").astype(np.int64)  # (I, L)
        return cls(item_ids=item_ids[order], item_idx=table["item_idx"].to_numpy().astype(np.int64)[order],
                   category_idx=table["category_idx"].to_numpy().astype(np.int64)[order], sid=sid[order])

    def indices(self, item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(n,) ids → item_idx (n,), category_idx (n,), sid (n, L), with the missing-item defaults."""
        rows, known = locate(self.item_ids, np.asarray(item_ids))  # (n,), (n,)
        item_idx = np.full(len(known), PAD, dtype=np.int64)
        category_idx = np.full(len(known), UNKNOWN_CATEGORY_IDX, dtype=np.int64)
        sid = np.full((len(known), self.sid.shape[1]), PAD, dtype=np.int64)  # (n, L)
        item_idx[known] = self.item_idx[rows[known]]
        category_idx[known] = self.category_idx[rows[known]]
        sid[known] = self.sid[rows[known]]
        return item_idx, category_idx, sid

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.item_ids, self.item_idx, self.category_idx, self.sid))
