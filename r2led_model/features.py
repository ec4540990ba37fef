"""Fixed-length model inputs from a user's history, and the one statement of the padding rules.

Padding conventions (every array the trainer reads):
  * index 0 means "nothing here": item indices, category indices and SID codes are stored +1, so
    the padding slot never collides with a real item, category or code 0;
  * a `*_mask` array is 1 for a real behaviour and 0 for padding, and padding always has index 0;
  * route candidates keep the retrieval order (best first); the short window and the long history
    are most recent first; padding fills the tail;
  * SID arrays are flattened row-major: slot j's L codes are at [j·L, (j+1)·L);
  * recency is a bucket of the time between the behaviour and the sample:
    1 + min(floor(log2(1 + hours)), recency_buckets − 2), and 0 for padding.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

PAD = 0
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
    """One user's stored sequence, already mapped to model indices (T positions)."""

    item_idx: np.ndarray  # (T,) int64, ≥ 1
    category_idx: np.ndarray  # (T,) int64, ≥ 1 (1 = unknown category)
    sid: np.ndarray  # (T, L) int64, codes + 1
    ts: np.ndarray  # (T,) int64


def recency_bucket(delta_seconds: np.ndarray, buckets: int) -> np.ndarray:
    hours = np.maximum(delta_seconds, 0) / 3600.0
    return 1 + np.minimum(np.floor(np.log2(1.0 + hours)).astype(np.int64), buckets - 2)


def gather(history: HistoryFeatures, positions: np.ndarray, valid: np.ndarray, sample_ts: np.ndarray,
           buckets: int) -> dict[str, np.ndarray]:
    """Features of the behaviours at `positions` (S, n) where `valid` (S, n), padding elsewhere.

    → item (S, n), cat (S, n), sid (S, n·L), recency (S, n), mask (S, n), all int64.
    """
    s, n = positions.shape
    levels = history.sid.shape[1]
    safe = np.where(valid, positions, 0)  # (S, n): any index for padded slots, masked below
    if len(history.item_idx) == 0:
        safe = np.zeros_like(positions)
        valid = np.zeros_like(valid)
        history = HistoryFeatures(np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros((1, levels), np.int64),
                                  np.zeros(1, np.int64))
    sid = np.where(valid[:, :, None], history.sid[safe], PAD)  # (S, n, L)
    delta = sample_ts[:, None] - history.ts[safe]  # (S, n)
    return {
        "item": np.where(valid, history.item_idx[safe], PAD),
        "cat": np.where(valid, history.category_idx[safe], PAD),
        "sid": sid.reshape(s, n * levels),  # (S, n·L), row-major per slot
        "recency": np.where(valid, recency_bucket(delta, buckets), PAD),
        "mask": valid.astype(np.int64),
    }


def most_recent_positions(ends: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The last `width` history positions before each end, most recent first: (S, width) + mask."""
    offsets = np.arange(width)[None, :]  # (1, width)
    positions = ends[:, None] - 1 - offsets  # (S, width)
    valid = positions >= 0
    return np.where(valid, positions, -1), valid
