"""Lookup by binary search in sorted keys: how the tasks of retrieve and build-training-set find
items and users in arrays that travel with them, instead of a join per behaviour."""

from __future__ import annotations

import numpy as np


def locate(sorted_keys: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n,) ids → (n,) rows of `sorted_keys` (ascending) holding them, and (n,) whether each is there
    (a row is only meaningful where it is)."""
    rows = np.minimum(np.searchsorted(sorted_keys, ids), max(len(sorted_keys) - 1, 0))  # (n,)
    found = sorted_keys[rows] == ids if len(sorted_keys) else np.zeros(len(ids), dtype=bool)  # (n,)
    return rows, found


def take_known(values: np.ndarray, rows: np.ndarray, known: np.ndarray, default) -> np.ndarray:
    """values[rows] where `known` (from `locate`), `default` elsewhere: (n, *values.shape[1:]), values' dtype."""
    out = np.full((len(known), *values.shape[1:]), default, dtype=values.dtype)
    out[known] = values[rows[known]]
    return out
