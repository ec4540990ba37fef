"""Each item index's category and SID codes, held by the model: what turns a narrow batch (items and
recency only, input layout 2) into the one every model reads.

`training_examples` stores per slot only what is per sample: the item index and its recency bucket.
The category and SID codes follow from the item (`item_index`), and the mask is "item ≠ 0"; so they
are looked up here, inside the model, the same way for training, evaluation, the pyfunc model and
scoring. The lookup is data, not weights: two non-trainable buffers saved with the state dict, set
by the trainer from `item_index` and, at scoring, extended with the rows of items indexed after
training (`ItemLookup.extended`). A batch that already holds a group's `_cat`, `_sid` and `_mask`
(the wide layout of input layout 1) is left as it is.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from r2led_model.compat import missing_item_lookups
from r2led_model.models.inputs import Batch
from r2led_model.sequences.features import PAD, UNKNOWN_CATEGORY


class ItemLookupError(ValueError):
    """A narrow batch reached a model without item lookups, or lookups disagree with the tables."""


class ItemLookup(nn.Module):
    """category (R,) and sid (R, L) per item index (row 0: padding). Built empty (R = 0): a model refuses
    narrow batches until `set` gives it rows; a state dict's rows load whatever their number."""

    def __init__(self, *, levels: int) -> None:
        super().__init__()
        self.levels = levels
        self.register_buffer("category", torch.zeros(0, dtype=torch.long))  # (R,)
        self.register_buffer("sid", torch.zeros(0, levels, dtype=torch.long))  # (R, L)

    @property
    def rows(self) -> int:
        return int(self.category.shape[0])

    def set(self, category: np.ndarray | Tensor, sid: np.ndarray | Tensor) -> None:
        """Replace the rows: category (R,), sid (R, L), row r describing item index r (row 0 padding)."""
        category, sid = torch.as_tensor(category, dtype=torch.long), torch.as_tensor(sid, dtype=torch.long)
        if category.ndim != 1 or sid.shape != (category.shape[0], self.levels):
            raise ItemLookupError(f"item lookups need category (R,) and sid (R, {self.levels}); got "
                                  f"{tuple(category.shape)} and {tuple(sid.shape)}")
        if len(category) and (int(category[0]) != PAD or bool(sid[0].ne(PAD).any())):
            raise ItemLookupError("item lookup row 0 is padding: category 0 and SID codes 0")
        device = self.category.device
        self.category, self.sid = category.to(device), sid.to(device)

    def widen(self, batch: Batch) -> dict[str, Tensor]:
        """The batch with target_cat, target_sid and, for each group with only `<g>_item`, its `_cat`,
        `_sid` (B, n·L) and `_mask`, looked up from the raw item indices (before any vocabulary clamp,
        so an item indexed after training is still a real slot)."""
        out = dict(batch)
        for key, item in batch.items():
            if not key.endswith("_item"):
                continue
            prefix = key[:-len("_item")]
            if f"{prefix}_cat" in batch:
                continue
            category, sid = self._rows(item)
            if prefix == "target":
                # Every target is an item: one without an index (0) is unknown, not padding.
                out["target_cat"] = torch.where(item == PAD, UNKNOWN_CATEGORY, category)
                out["target_sid"] = sid  # (B, L)
            else:
                b, n = item.shape
                out[f"{prefix}_cat"] = category
                out[f"{prefix}_sid"] = sid.reshape(b, n * self.levels)  # (B, n, L) → (B, n·L)
                out[f"{prefix}_mask"] = (item != PAD).long()
        return out

    def _rows(self, item: Tensor) -> tuple[Tensor, Tensor]:
        """item (B, *n) → category (B, *n), sid (B, *n, L); an index beyond the rows is an unknown item."""
        if self.rows == 0:
            raise ItemLookupError(
                "this model holds no item lookups (saved with input layout 1, or built and never given them), "
                "so it cannot read a batch of item indices alone: set them from item_index "
                "(`model.item_lookup.set(*item_lookup_arrays(...))`; `r2led score` does so), or pass the "
                "wide inputs (<group>_cat, <group>_sid, <group>_mask) it was trained with")
        known = item < self.rows
        safe = torch.where(known, item, torch.zeros_like(item))
        category = torch.where(known, self.category[safe], torch.full_like(item, UNKNOWN_CATEGORY))
        sid = torch.where(known[..., None], self.sid[safe], torch.zeros_like(self.sid[safe]))
        return category, sid

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        missing_item_lookups(state_dict, prefix, {"category": self.category, "sid": self.sid})
        for name in ("category", "sid"):  # rows are data: take the stored number of rows
            setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)


def lookup_arrays(item_idx: np.ndarray, category_idx: np.ndarray, sid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`item_index` rows (item_idx (I,), category_idx (I,), sid (I, L), codes + 1) → the lookup's
    category (R,) and sid (R, L) with R = max item_idx + 1; an index no row names is an unknown item."""
    rows = int(item_idx.max()) + 1 if len(item_idx) else 1
    levels = sid.shape[1] if sid.ndim == 2 else 0
    category = np.full(rows, UNKNOWN_CATEGORY, dtype=np.int64)
    codes = np.zeros((rows, levels), dtype=np.int64)
    category[item_idx] = category_idx
    codes[item_idx] = sid
    category[PAD], codes[PAD] = PAD, PAD
    return category, codes


def lookup_disagreements(mine: tuple[np.ndarray, np.ndarray], current: tuple[np.ndarray, np.ndarray],
                         limit: int = 5) -> list[str]:
    """Where a model's lookups (category (R,), sid (R, L)) differ from the current ones (`lookup_arrays` of
    today's item_index) on the items both know: indices never change, so a difference means another
    index or refreshed SIDs. Items indexed after the model (rows beyond R) are not differences."""
    (mine_cat, mine_sid), (category, sid) = mine, current
    rows = min(len(mine_cat), len(category))
    differ = np.flatnonzero((mine_cat[:rows] != category[:rows]) | (mine_sid[:rows] != sid[:rows]).any(axis=1))
    problems = [f"item index {i}: model has category {mine_cat[i]}, SID {mine_sid[i].tolist()}; item_index has "
                f"{category[i]}, {sid[i].tolist()}" for i in differ[:limit]]
    if len(differ) > limit:
        problems.append(f"... {len(differ) - limit} more")
    if len(category) < len(mine_cat):
        problems.append(f"item_index names {len(category) - 1} items, the model's lookups {len(mine_cat) - 1}")
    return problems
