"""What a CTR model reads: the feature spec (vocabulary sizes, array widths) and the batch contract.

A batch is a dict of tensors named like the `training_examples` columns (padding rules in
`r2led_model/sequences/features.py`; index 0 is padding everywhere). Input layout 2 (`INPUT_LAYOUT`, what
`training_examples` stores) is narrow, per slot only what is per sample:

  target_item (B,)        <group>_item (B, n)     <group>_recency (B, n)
  r_<route>_pool (B,)     behaviours of the whole stored history the route matched, before truncation to k
  label (B,) float        (the task wrapper's, never the model's)

and the model looks up the rest from the item index (`item_lookup.ItemLookup`). Layout 1 (wide, what
models saved before it read, and what `random_batch` builds) also carries

  target_cat (B,)         target_sid (B, L)
  <group>_cat (B, n)      <group>_sid (B, n·L)    <group>_mask (B, n)

with <group> one of r_<route> (n = that route's k), short (n = short_window) and long
(n = long_history). Integer tensors are int64; masks are 0/1 int64; a narrow slot is real iff item ≠ 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np
import torch

from r2led_model.sequences.features import example_routes, group_route, route_group

# Version 1 stored every slot's category, SID codes and mask; version 2 the item and its recency only.
INPUT_LAYOUT = 2
WIDE_LAYOUT = 1
GROUP_PARTS = {1: ("item", "cat", "sid", "recency", "mask"), 2: ("item", "recency")}
TARGET_COLUMNS = {1: ("target_item", "target_cat", "target_sid"), 2: ("target_item",)}

Batch = Mapping[str, torch.Tensor]
# What a stored example carries besides its inputs: its keys, label and split (the feed's, never the model's).
EXAMPLE_KEYS = (("sample_id", "BIGINT"), ("user_id", "BIGINT"), ("ts", "BIGINT"), ("label", "INT"), ("split", "STRING"),
                ("hist_len", "BIGINT"))
# Each stored slot part's type: item indices fit 32 bits (2·10^9 items), recency buckets one byte
# (training_set.recency_buckets ≤ 127); the feed widens both to int64.
STORED_SLOT_TYPES = {"item": ("ARRAY<INT>", np.int32), "recency": ("ARRAY<TINYINT>", np.int8)}
# A route's pool: one count per example (retrieve's `cand_<route>_pool`), read only by models that ask for it
# (`InterestCTR.extra_input_columns`); absent from tables built before it was stored.
POOL_TYPE = ("INT", np.int32)


def pool_column(group: str) -> str:
    """The count column of a route group r_<route>: r_<route>_pool."""
    return f"{group}_pool"


@dataclass(frozen=True)
class ExampleLayout:
    """The one statement of a training example's columns for a set of retrieval routes: the groups
    (r_<route> per route in route order, then short and long), each group's slot columns in the input
    layout, and the types `training_examples` stores them with. build-training-set writes it, the
    feature spec and the feed read it, and a model's `input_groups` name a subset of its groups."""

    routes: tuple[str, ...]
    layout: int = INPUT_LAYOUT

    @classmethod
    def of_columns(cls, columns: Iterable[str]) -> "ExampleLayout":
        """The layout a training_examples-shaped frame holds (its routes in column order)."""
        return cls(example_routes(columns))

    @property
    def groups(self) -> tuple[str, ...]:
        return (*(route_group(route) for route in self.routes), "short", "long")

    def input_columns(self) -> list[str]:
        """Every model input column: the targets, then each group's slot parts."""
        return columns_for(self.groups, self.layout)

    def stored_columns(self) -> list[tuple[str, str]]:
        """`training_examples`' columns with their SQL types, in the order build-training-set writes them."""
        if self.layout != INPUT_LAYOUT:
            raise ValueError(f"only layout {INPUT_LAYOUT} is written; layout {self.layout} is read from old models")
        return [*EXAMPLE_KEYS, ("target_item", "BIGINT"),
                *((f"{group}_{part}", STORED_SLOT_TYPES[part][0]) for group in self.groups
                  for part in GROUP_PARTS[self.layout]),
                *((pool_column(route_group(route)), POOL_TYPE[0]) for route in self.routes)]

    @staticmethod
    def stored_dtype(column: str) -> np.dtype:
        """The numpy type a slot column is written with (its part is the name's last `_` field)."""
        return np.dtype(STORED_SLOT_TYPES[column.rsplit("_", 1)[1]][1])


@dataclass(frozen=True)
class FeatureSpec:
    """Sizes the model's tables and checks the batches it is given."""

    num_items: int  # item embedding rows, including padding row 0
    num_categories: int  # category rows, including padding 0 and "unknown" 1
    sid_levels: int  # L
    sid_vocab: int  # rows per SID level's code table, including padding 0
    routes: tuple[str, ...]  # the r_<route> groups present in the data
    route_k: tuple[int, ...]  # candidates per route, aligned with routes
    short_window: int
    long_history: int
    recency_buckets: int

    def width(self, group: str) -> int:
        if group == "short":
            return self.short_window
        if group == "long":
            return self.long_history
        return self.route_k[self.routes.index(group_route(group))]

    def to_dict(self) -> dict:
        return {"num_items": self.num_items, "num_categories": self.num_categories, "sid_levels": self.sid_levels,
                "sid_vocab": self.sid_vocab, "routes": list(self.routes), "route_k": list(self.route_k),
                "short_window": self.short_window, "long_history": self.long_history,
                "recency_buckets": self.recency_buckets}

    @classmethod
    def from_dict(cls, data: Mapping) -> "FeatureSpec":
        return cls(**{**data, "routes": tuple(data["routes"]), "route_k": tuple(data["route_k"])})


def within_vocab(batch: Mapping[str, torch.Tensor], *, num_items: int, num_categories: int) -> dict[str, torch.Tensor]:
    """Ids a model has no embedding row for (items or categories indexed after it was trained) →
    the padding item 0 and the unknown category 1; their SIDs still describe them."""
    out = dict(batch)
    for key, value in batch.items():
        if key.endswith("_item"):
            out[key] = torch.where(value < num_items, value, torch.zeros_like(value))
        elif key.endswith("_cat"):
            out[key] = torch.where(value < num_categories, value, torch.ones_like(value))
    return out


def group_columns(group: str, layout: int = INPUT_LAYOUT) -> list[str]:
    return [f"{group}_{part}" for part in GROUP_PARTS[layout]]


def columns_for(groups: Iterable[str], layout: int = INPUT_LAYOUT) -> list[str]:
    """The columns a model reading `groups` needs in input `layout` (targets always)."""
    columns = list(TARGET_COLUMNS[layout])
    for group in groups:
        columns += group_columns(group, layout)
    return columns


def narrow(batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A wide batch's layout-2 part: what a model with item lookups reads (the rest follows from the items)."""
    derived = {"target_cat", "target_sid"} | {f"{key[:-len('_item')]}_{part}" for key in batch
                                               if key.endswith("_item") for part in ("cat", "sid", "mask")}
    return {key: value for key, value in batch.items() if key not in derived}


def random_batch(spec: FeatureSpec, batch_size: int, generator: torch.Generator | None = None,
                 fill: float = 0.7) -> dict[str, torch.Tensor]:
    """A wide batch of valid random inputs (for shape checks, tests and latency benchmarks).

    Each group keeps a random prefix of real slots (share ≈ fill); padded slots follow the padding rules.
    """
    g = generator or torch.Generator().manual_seed(0)
    levels = spec.sid_levels

    def ints(high: int, *shape: int) -> torch.Tensor:
        return torch.randint(1, max(high, 2), shape, generator=g)

    batch: dict[str, torch.Tensor] = {
        "target_item": ints(spec.num_items, batch_size),
        "target_cat": ints(spec.num_categories, batch_size),
        "target_sid": ints(spec.sid_vocab, batch_size, levels),
        "label": torch.randint(0, 2, (batch_size,), generator=g).float(),
    }
    for group in ExampleLayout(spec.routes).groups:
        n = spec.width(group)
        lengths = (torch.rand(batch_size, generator=g) * (n + 1) * fill / 0.7).long().clamp(0, n)  # (B,)
        mask = (torch.arange(n)[None, :] < lengths[:, None]).long()  # (B, n)
        batch[f"{group}_item"] = ints(spec.num_items, batch_size, n) * mask
        batch[f"{group}_cat"] = ints(spec.num_categories, batch_size, n) * mask
        batch[f"{group}_sid"] = (ints(spec.sid_vocab, batch_size, n, levels) * mask[:, :, None]).reshape(
            batch_size, n * levels)  # (B, n, L) → (B, n·L)
        batch[f"{group}_recency"] = ints(spec.recency_buckets, batch_size, n) * mask
        batch[f"{group}_mask"] = mask
        if group_route(group) is not None:  # the whole history's matches: at least the real candidates
            # No draw from `g`: the other inputs stay what they were before pools existed (golden logits).
            extra = (torch.arange(batch_size) * 37 + lengths * 11) % 300 * (lengths == n)  # (B,) beyond a full pool
            batch[pool_column(group)] = lengths + extra
    return batch
