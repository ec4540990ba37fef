"""Labelled samples from time-sorted behaviours: hist_len, split and sampled negatives (numpy).

One vectorised kernel, run by Spark on each user-partitioned, sorted partition (mapInPandas)
and by the single-process benchmark reference on everything at once. Input rows must be sorted
by (user_id, ts, item_id, behavior) and hold *all* of each user's behaviours.

Point in time: a row's hist_len counts the history rows of the same user whose ts is strictly
smaller, so behaviours in the same second (the sample's own included) are never history.

Negatives: per positive, draws u = splitmix64(seed, sample_id, draw) / 2^64 are mapped through
the popularity CDF; draws that hit an item the user ever touched, or repeat an earlier draw, are
skipped; the first `ratio` survivors are kept. The result depends only on the seed, the sample
and the CDF, never on partitioning or batch order.

Sample ids: the Spark job hashes each event's whole `events` key (SAMPLE_ID_KEY) into its sample's
id, so two events that differ only in label (a click and a non-click of one item in one second)
are two samples with two ids. SAMPLE_ID_SCHEME numbers that rule: stored ids, and the negatives
drawn from them, belong to the scheme that computed them, and the dated pipeline refuses to add
rows of another scheme beside them (`jobs.orchestration.config_drift`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

# Scheme 1 hashed (user_id, item_id, ts, behavior, value): a labelled click and non-click in one
# second shared one id. Scheme 2 adds the label, which makes the id key the `events` key.
SAMPLE_ID_SCHEME = 2
SAMPLE_ID_KEY = ("user_id", "item_id", "ts", "behavior", "label", "value")
SAMPLE_COLUMNS = ("sample_id", "user_id", "item_id", "ts", "label", "hist_len", "split", "is_sampled_negative")


@dataclass(frozen=True)
class SplitRule:
    """`time`: ts ≥ test_from → test, ts ≥ valid_from → valid; `last_n`: each user's newest samples."""

    mode: str
    valid_from: int = 0
    test_from: int = 0
    last_n_valid: int = 0
    last_n_test: int = 0


@dataclass(frozen=True)
class NegativeRule:
    ratio: int
    oversample: int
    seed: int
    item_ids: np.ndarray  # (I,) items that can be drawn
    cdf: np.ndarray  # (I,) cumulative popularity, last element 1.0


def group_starts(keys: np.ndarray) -> np.ndarray:
    """For each row of a sorted key array, the index of the first row with the same key run."""
    n = len(keys)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    new_run = np.r_[True, keys[1:] != keys[:-1]]
    return np.maximum.accumulate(np.where(new_run, np.arange(n), 0))


def hist_len_sorted(user_ids: np.ndarray, ts: np.ndarray, in_history: np.ndarray) -> np.ndarray:
    """(N,) number of the same user's history rows with a strictly smaller ts; rows sorted by (user, ts)."""
    n = len(user_ids)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    user_start = group_starts(user_ids)
    new_stamp = np.r_[True, (user_ids[1:] != user_ids[:-1]) | (ts[1:] != ts[:-1])]
    stamp_start = np.maximum.accumulate(np.where(new_stamp, np.arange(n), 0))
    before = np.r_[0, np.cumsum(in_history.astype(np.int64))]  # history rows before index i
    return before[stamp_start] - before[user_start]


def assign_split(user_ids: np.ndarray, ts: np.ndarray, rule: SplitRule) -> np.ndarray:
    """(N,) 'train' / 'valid' / 'test' for sample rows sorted by (user, ts, ...)."""
    if rule.mode == "time":
        return np.where(ts >= rule.test_from, "test", np.where(ts >= rule.valid_from, "valid", "train"))
    n = len(user_ids)
    if n == 0:
        return np.zeros(0, dtype=object)
    is_last = np.r_[user_ids[1:] != user_ids[:-1], True]
    user_end = np.minimum.accumulate(np.where(is_last, np.arange(n), n)[::-1])[::-1]
    from_newest = user_end - np.arange(n)  # 0 for the user's newest sample
    return np.where(from_newest < rule.last_n_test, "test",
                    np.where(from_newest < rule.last_n_test + rule.last_n_valid, "valid", "train"))


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser on uint64 (wrapping arithmetic): a well-mixed counter hash."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def uniform_draws(seed: int, sample_ids: np.ndarray, draws: int) -> np.ndarray:
    """(N, draws) floats in [0, 1), a pure function of (seed, sample_id, draw index)."""
    with np.errstate(over="ignore"):
        base = splitmix64(np.uint64(seed) ^ sample_ids.astype(np.uint64))
        counters = base[:, None] + np.arange(draws, dtype=np.uint64)[None, :]  # (N, draws)
    return (splitmix64(counters) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def draw_negatives(sample_ids: np.ndarray, user_ids: np.ndarray, touched_users: np.ndarray,
                   touched_items: np.ndarray, rule: NegativeRule) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For N positives → (row index into the positives, negative item id, rank) of the kept draws."""
    draws = rule.ratio * rule.oversample
    n = len(sample_ids)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    picks = np.searchsorted(rule.cdf, uniform_draws(rule.seed, sample_ids, draws), side="right")
    items = rule.item_ids[np.minimum(picks, len(rule.item_ids) - 1)]  # (N, draws)
    candidates = pd.DataFrame({
        "row": np.repeat(np.arange(n), draws),
        "user_id": np.repeat(user_ids, draws),
        "item_id": items.ravel(),  # (N * draws,), draw order kept within each row
    })
    touched = pd.DataFrame({"user_id": touched_users, "item_id": touched_items, "touched": True}).drop_duplicates()
    candidates = candidates.merge(touched, on=["user_id", "item_id"], how="left", sort=False)
    fresh = candidates[candidates["touched"].isna()].drop_duplicates(["row", "item_id"])
    rank = fresh.groupby("row", sort=False).cumcount().to_numpy()
    keep = rank < rule.ratio
    return fresh["row"].to_numpy()[keep], fresh["item_id"].to_numpy()[keep], rank[keep]


def negative_sample_ids(positive_ids: np.ndarray, items: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """Stable, non-negative ids for sampled negatives, derived from their positive."""
    with np.errstate(over="ignore"):
        mixed = splitmix64(positive_ids.astype(np.uint64) ^ splitmix64(items.astype(np.uint64) + ranks.astype(np.uint64)))
    return (mixed >> np.uint64(1)).astype(np.int64)


def build_samples_sorted(events: pd.DataFrame, *, in_history: np.ndarray, is_sample: np.ndarray,
                         min_hist_len: int, split: SplitRule, negatives: NegativeRule | None,
                         emit: np.ndarray | None = None) -> pd.DataFrame:
    """Samples (SAMPLE_COLUMNS) from one user-complete, (user, ts, item, behavior)-sorted batch.

    `events` columns: sample_id (for sample rows), user_id, item_id, ts, label (null → click).
    `emit` (bool per row, default all) limits the output to those rows' samples and their negatives;
    every row still counts as history and as touched, so an emitted sample is the same as in a full run.
    """
    users = events["user_id"].to_numpy(np.int64)
    stamps = events["ts"].to_numpy(np.int64)
    hist_len = hist_len_sorted(users, stamps, in_history)
    chosen = is_sample & (hist_len >= min_hist_len)
    if emit is not None:
        chosen = chosen & emit
    labels = events["label"].to_numpy()[chosen]
    labels = np.where(pd.isna(labels), 1, labels).astype(np.int32)
    samples = pd.DataFrame({
        "sample_id": events["sample_id"].to_numpy(np.int64)[chosen],
        "user_id": users[chosen],
        "item_id": events["item_id"].to_numpy(np.int64)[chosen],
        "ts": stamps[chosen],
        "label": labels,
        "hist_len": hist_len[chosen],
        "split": assign_split(users[chosen], stamps[chosen], split),
        "is_sampled_negative": False,
    })
    if negatives is None:
        return samples
    positives = samples[samples["label"] == 1]
    rows, items, ranks = draw_negatives(positives["sample_id"].to_numpy(), positives["user_id"].to_numpy(),
                                        users, events["item_id"].to_numpy(np.int64), negatives)
    base = positives.iloc[rows]
    sampled = base.assign(
        sample_id=negative_sample_ids(base["sample_id"].to_numpy(), items, ranks),
        item_id=items, label=np.int32(0), is_sampled_negative=True,
    )
    return pd.concat([samples, sampled], ignore_index=True)
