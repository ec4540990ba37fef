"""CTR evaluation metrics (numpy only): AUC, GAUC, log loss.

* ``auc`` is the Mann–Whitney statistic: the probability that a random positive scores above a
  random negative, a tie counting one half. Computed from average ranks, so it equals
  ``sklearn.metrics.roc_auc_score`` (ties included) in O(N log N).
* ``gauc`` is the group AUC of Zhou et al. 2018 ("Deep Interest Network", §6.1):
  GAUC = Σ_u w_u · AUC_u / Σ_u w_u over the users u whose samples hold both classes, with
  w_u = the user's impression count (all of u's samples, positives and negatives). Users with a
  single class have no AUC and are left out of both sums.
* ``log_loss`` is the mean binary cross-entropy with probabilities clipped to [eps, 1 − eps].
"""

from __future__ import annotations

import numpy as np

LOG_LOSS_EPS = 1e-7  # float32 probabilities: 1 − 1e-7 is still below 1, so the clip is effective


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of `values` (N,), tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # Start of every run of equal values in the sorted order.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]  # exclusive
    run_rank = (starts + 1 + ends) / 2.0  # mean of the 1-based ranks starts+1 .. ends
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ranks


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of `scores` (N,) for binary `labels` (N,); NaN when only one class is present."""
    y = np.asarray(labels).reshape(-1) > 0.5
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"auc: labels {y.shape} and scores {s.shape} differ in length")
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    rank_sum = _average_ranks(s)[y].sum()
    # Mann–Whitney U of the positives, normalised by the number of (positive, negative) pairs.
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def gauc(users: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> float:
    """Impression-weighted mean of per-user AUC over users with both classes; NaN if there are none."""
    u = np.asarray(users).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not (len(u) == len(y) == len(s)):
        raise ValueError(f"gauc: users {len(u)}, labels {len(y)} and scores {len(s)} differ in length")
    if len(u) == 0:
        return float("nan")
    order = np.argsort(u, kind="mergesort")
    u, y, s = u[order], y[order], s[order]
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
    ends = np.r_[starts[1:], len(u)]
    weighted, weights = 0.0, 0
    for start, end in zip(starts, ends):
        value = auc(y[start:end], s[start:end])
        if not np.isnan(value):
            weighted += (end - start) * value
            weights += end - start
    return float(weighted / weights) if weights else float("nan")


def log_loss(labels: np.ndarray, probs: np.ndarray, eps: float = LOG_LOSS_EPS) -> float:
    """Mean binary cross-entropy of probabilities `probs` (N,) for labels (N,) in {0, 1}."""
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    p = np.clip(np.asarray(probs, dtype=np.float64).reshape(-1), eps, 1.0 - eps)
    if y.shape != p.shape:
        raise ValueError(f"log_loss: labels {y.shape} and probs {p.shape} differ in length")
    if len(y) == 0:
        return float("nan")
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def evaluate(users: np.ndarray, labels: np.ndarray, probs: np.ndarray) -> dict[str, float | int]:
    """{auc, gauc, logloss, n} of predicted click probabilities, ready for metric logging."""
    return {"auc": auc(labels, probs), "gauc": gauc(users, labels, probs), "logloss": log_loss(labels, probs),
            "n": np.asarray(labels).size}
