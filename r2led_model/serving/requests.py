"""The raw-id request contract of the served model, and its checks.

One request per row, with what a caller has (raw ids as in `events`, times in epoch seconds):
  * `item_id` (long): the candidate item;
  * `request_ts` (long): when it is to be shown; only behaviours strictly before it are history;
  * `history_item_ids` (array<long>): the user's behaviours, oldest first (most recent last);
  * `history_ts` (array<long>): their times, ascending, none after `request_ts`.
An empty history (or null) is a user without history. A malformed request is refused as a whole
with a `RequestError` that names the rows and what is wrong, before anything is scored: a value
that is not an integer, histories whose two arrays differ in length, times out of order, a
behaviour after the request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

REQUEST_COLUMNS = ("item_id", "request_ts", "history_item_ids", "history_ts")
MAX_NAMED_ROWS = 5  # rows an error message names before "and N more"


class RequestError(ValueError):
    """A request the served model refuses (HTTP 400 when served)."""


@dataclass(frozen=True)
class RawRequests:
    """N checked requests; every request's behaviours lie end to end (M in all)."""

    item_ids: np.ndarray  # (N,) int64 raw item ids
    request_ts: np.ndarray  # (N,) int64
    history_item_ids: np.ndarray  # (M,) int64, oldest first within each request
    history_ts: np.ndarray  # (M,) int64, ascending within each request
    starts: np.ndarray  # (N + 1,): request i's behaviours are rows [starts[i], starts[i + 1])

    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.starts)  # (N,)

    @property
    def owner(self) -> np.ndarray:
        """(M,) the request each behaviour belongs to."""
        return np.repeat(np.arange(len(self)), self.lengths)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> "RawRequests":
        missing = [c for c in REQUEST_COLUMNS if c not in frame.columns]
        if missing:
            raise RequestError(f"the request lacks column(s) {', '.join(missing)}; a request has "
                               f"{', '.join(REQUEST_COLUMNS)} (got {', '.join(map(str, frame.columns))})")
        item_ids = _integers(frame["item_id"].to_numpy(), "item_id")
        request_ts = _integers(frame["request_ts"].to_numpy(), "request_ts")
        items = [_integer_list(cell, row, "history_item_ids") for row, cell in enumerate(frame["history_item_ids"])]
        times = [_integer_list(cell, row, "history_ts") for row, cell in enumerate(frame["history_ts"])]
        lengths = np.array([len(a) for a in items], dtype=np.int64)  # (N,)
        differ = np.flatnonzero(lengths != np.array([len(a) for a in times], dtype=np.int64))
        _refuse(differ, lambda r: f"row {r}: {len(items[r])} history_item_ids but {len(times[r])} history_ts")
        starts = np.r_[0, np.cumsum(lengths)].astype(np.int64)
        history_item_ids = np.concatenate(items) if items else np.zeros(0, np.int64)
        history_ts = np.concatenate(times) if times else np.zeros(0, np.int64)
        owner = np.repeat(np.arange(len(lengths)), lengths)  # (M,)
        backwards = np.flatnonzero((np.diff(history_ts) < 0) & (owner[1:] == owner[:-1]))
        _refuse(np.unique(owner[backwards + 1]),
                lambda r: f"row {r}: history_ts is not ascending (send the history oldest first)")
        future = np.flatnonzero(history_ts > request_ts[owner])
        _refuse(np.unique(owner[future]),
                lambda r: f"row {r}: history_ts holds {int(history_ts[starts[r + 1] - 1])}, after request_ts "
                          f"{int(request_ts[r])} (a history holds what happened before the request)")
        return cls(item_ids=item_ids, request_ts=request_ts, history_item_ids=history_item_ids,
                   history_ts=history_ts, starts=starts)


def _refuse(rows: np.ndarray, describe) -> None:
    """Raise a RequestError naming the first MAX_NAMED_ROWS of `rows`, if any."""
    if len(rows) == 0:
        return
    named = "; ".join(describe(int(r)) for r in rows[:MAX_NAMED_ROWS])
    more = f"; and {len(rows) - MAX_NAMED_ROWS} more rows" if len(rows) > MAX_NAMED_ROWS else ""
    raise RequestError(f"malformed request: {named}{more}")


def _is_integer(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _integers(values: np.ndarray, column: str) -> np.ndarray:
    """A scalar column → (N,) int64, refusing nulls, booleans, fractions and text."""
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    bad = np.flatnonzero([not _is_integer(v) for v in values])
    _refuse(bad, lambda r: f"row {r}: {column} {values[r]!r} is not an integer")
    return values.astype(np.int64)


def _integer_list(cell: Any, row: int, column: str) -> np.ndarray:
    """One history cell (a list or 1-D array of integers; null: empty) → (n,) int64."""
    if cell is None or (isinstance(cell, float) and np.isnan(cell)):
        return np.zeros(0, np.int64)
    values = np.asarray(cell)
    if values.ndim != 1:
        raise RequestError(f"malformed request: row {row}: {column} is not a list of integers")
    if len(values) == 0 or values.dtype.kind in "iu":
        return values.astype(np.int64)
    # The cell's own elements: numpy would have turned [1, "x"] into text and named 1 the culprit.
    bad = next((v for v in (cell if isinstance(cell, (list, tuple)) else values) if not _is_integer(v)), None)
    if bad is not None:
        raise RequestError(f"malformed request: row {row}: {column} holds {bad!r}, not an integer")
    return values.astype(np.int64)
