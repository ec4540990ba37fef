"""Fixed-length model inputs from a user's history, and the one statement of the padding rules.

Padding conventions (every array the trainer reads):
  * index 0 means "nothing here": item indices, category indices and SID codes are stored +1, so
    the padding slot never collides with a real item, category or code 0;
  * a slot is real iff its item index is not 0 (the wide layout's `*_mask` array says the same: 1 for a
    real behaviour, 0 for padding); padding has recency 0;
  * route candidates keep the retrieval order (best first); the short window and the long history
    are most recent first; padding fills the tail;
  * SID arrays (looked up by the model, `models/item_lookup.py`) are flattened row-major: slot j's L codes
    are at [j·L, (j+1)·L);
  * recency is a bucket of the time between the behaviour and the sample:
    1 + min(floor(log2(1 + hours)), recency_buckets − 2), and 0 for padding.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

PAD = 0
UNKNOWN_CATEGORY = 1  # category index 0 is padding, 1 an item whose category is unknown
# A retrieval route's group of candidates in a batch and in `training_examples` (columns r_<route>_<part>).
ROUTE_GROUP_PREFIX = "r_"


def route_group(route: str) -> str:
    """The batch group (and training_examples column prefix) of a retrieval route: r_<route>."""
    return f"{ROUTE_GROUP_PREFIX}{route}"


def group_route(group: str) -> str | None:
    """The route of a batch group r_<route>, or None for short and long."""
    return group[len(ROUTE_GROUP_PREFIX):] if group.startswith(ROUTE_GROUP_PREFIX) else None


def example_routes(columns: Iterable[str]) -> tuple[str, ...]:
    """The routes a training_examples-shaped frame holds, in column order (a route's `_item` column names it)."""
    return tuple(route for c in columns if c.endswith("_item") and (route := group_route(c[:-len("_item")])))


@dataclass(frozen=True)
class HistoryFeatures:
    """Stored behaviours, already mapped to model indices (T positions)."""

    item_idx: np.ndarray  # (T,) int64, ≥ 1 (0 for an item the index does not know)
    ts: np.ndarray  # (T,) int64


def recency_bucket(delta_seconds: np.ndarray, buckets: int) -> np.ndarray:
    hours = np.maximum(delta_seconds, 0) / 3600.0
    return 1 + np.minimum(np.floor(np.log2(1.0 + hours)).astype(np.int64), buckets - 2)


def gather(history: HistoryFeatures, positions: np.ndarray, valid: np.ndarray, sample_ts: np.ndarray,
           buckets: int) -> dict[str, np.ndarray]:
    """What is per sample of the behaviours at `positions` (S, n) where `valid` (S, n), padding elsewhere.

    → item (S, n), recency (S, n), int64. A valid slot whose item the index does not know is padding
    (item 0): it has no representation to read.
    """
    if len(history.item_idx) == 0:
        return {"item": np.zeros(positions.shape, np.int64), "recency": np.zeros(positions.shape, np.int64)}
    safe = np.where(valid, positions, 0)  # (S, n): any index for padded slots, masked below
    item = np.where(valid, history.item_idx[safe], PAD)  # (S, n)
    delta = sample_ts[:, None] - history.ts[safe]  # (S, n)
    return {"item": item, "recency": np.where(item != PAD, recency_bucket(delta, buckets), PAD)}


def most_recent_positions(ends: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The last `width` history positions before each end, most recent first: (S, width) + mask."""
    offsets = np.arange(width)[None, :]  # (1, width)
    positions = ends[:, None] - 1 - offsets  # (S, width)
    valid = positions >= 0
    return np.where(valid, positions, -1), valid


def example_slots(history: HistoryFeatures, *, first: np.ndarray, ends: np.ndarray, sample_ts: np.ndarray,
                  route_slots: dict[str, tuple[np.ndarray, np.ndarray]], short_window: int, long_history: int,
                  recency_buckets: int) -> dict[str, np.ndarray]:
    """Every behaviour group's per-sample arrays (`<group>_item`, `<group>_recency`, each (S, n)) of S samples
    whose users' behaviours lie end to end in `history`, in the group order r_<route>..., short, long.

    first (S,): each sample's user's first row in `history`; ends (S,): how many of that user's rows are the
    sample's history (behaviours strictly before it); route_slots: per route, the retrieval kernel's
    positions (S, k) relative to the user's first row and their mask (S, k). Build-training-set and the
    raw-id served model both assemble examples here, so a served request reads what training read.
    """
    groups = {route_group(route): slots for route, slots in route_slots.items()}
    groups["short"] = most_recent_positions(ends, short_window)
    groups["long"] = most_recent_positions(ends, long_history)
    out: dict[str, np.ndarray] = {}
    for group, (positions, valid) in groups.items():
        rows = np.where(valid, first[:, None] + positions, 0)  # (S, n) rows of `history`
        for part, values in gather(history, rows, valid, sample_ts, recency_buckets).items():
            out[f"{group}_{part}"] = values
    return out
