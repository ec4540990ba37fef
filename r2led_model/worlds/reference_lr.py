"""The "content features alone" reference: a logistic regression on point-in-time counting features.

How far do a user's topic counts, activity and click rate carry without any learned representation?
The benchmark prints this row beside the sequence models; a model that does not beat it has learned
nothing the planted taxonomy does not already say.

Features of a sample (user u, target item i, time t), every one point in time — it sees only rows
strictly before t, and labels only of *training* samples (so valid/test labels never leak):

* ``log1p_same_l1`` / ``_l2`` / ``_l3``: log1p of u's page views before t whose item shares i's topic
  at that level;
* ``log1p_history``: log1p of all of u's page views before t;
* ``user_ctr``: u's click rate over training samples before t, shrunk towards the global training
  CTR by a Beta prior worth `PRIOR_IMPRESSIONS` impressions;
* with item encoding, ``item_ctr`` (i's click rate, same shrinkage) and ``log1p_item_impressions``
  (i's training impressions before t).

The topics may be a world's planted taxonomy (truth no pipeline has) or the pipeline's own content view:
`sid_prefix_topics` makes an item's SID prefixes its three levels, so the same regression on them is a
deployable model reading exactly the SID-level information R2LED reads.

Counting is vectorised (`_sum_before`): one lexicographic sort of the history rows and the queries
together per key, then cumulative sums, so hundreds of thousands of rows take well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

PRIOR_IMPRESSIONS = 10.0  # Beta prior strength: a user or item with 10 impressions is half its own rate
LEVELS = ("l1", "l2", "l3")
SPLITS = ("train", "valid", "test")
_UNKNOWN_HISTORY_TOPIC = -1  # a viewed item without topics matches no target
_UNKNOWN_TARGET_TOPIC = -2  # a target without topics matches no viewed item (not even an unknown one)

_REQUIRED = {
    "history": ("user_id", "item_id", "ts"),
    "samples": ("sample_id", "user_id", "item_id", "ts", "label", "split"),
    "item_topics": ("item_id", "topic_l1", "topic_l2", "topic_l3"),
}


@dataclass(frozen=True)
class ReferenceScores:
    """The reference LR's click probabilities for the valid and test samples."""

    sample_ids: np.ndarray  # (n,) int64, valid and test rows in the order of `samples`
    split: np.ndarray  # (n,) "valid" / "test"
    scores: np.ndarray  # (n,) float64 probabilities
    coefficients: dict[str, float]  # feature name → weight on the standardised feature
    feature_names: tuple[str, ...]


def sid_prefix_topics(*, item_ids: np.ndarray, codes: np.ndarray) -> pd.DataFrame:
    """An item_topics frame whose level k is the item's first k SID codes: items share ``topic_l2`` exactly
    when their first two codes agree (as the sid2 route matches them). With fewer than three SID levels,
    the deeper topic levels repeat the whole code.

    item_ids (I,); codes (I, L) with L ≥ 1 semantic codes per item, each in [0, 2^20).
    """
    codes = np.asarray(codes, np.int64)
    if codes.ndim != 2 or codes.shape[1] < 1 or codes.shape[0] != np.size(item_ids):
        raise ValueError(f"reference_lr: codes must be (items, levels >= 1) for {np.size(item_ids)} items, "
                         f"got {codes.shape}")
    if codes.size and (codes.min() < 0 or codes.max() >= 1 << 20):
        raise ValueError("reference_lr: SID codes must lie in [0, 2^20) to pack three levels into one int64")
    prefix = np.zeros(codes.shape[0], np.int64)
    topics = {"item_id": np.asarray(item_ids, np.int64)}
    for j, level in enumerate(LEVELS):
        if j < codes.shape[1]:
            prefix = (prefix << 20) | codes[:, j]  # (I,) the first j + 1 codes packed, 20 bits each
        topics[f"topic_{level}"] = prefix
    return pd.DataFrame(topics)


def feature_names(*, with_item_encoding: bool) -> tuple[str, ...]:
    """Names of the reference features, in column order."""
    names = tuple(f"log1p_same_{level}" for level in LEVELS) + ("log1p_history", "user_ctr")
    return names + (("item_ctr", "log1p_item_impressions") if with_item_encoding else ())


def _check_columns(name: str, frame: pd.DataFrame) -> None:
    missing = [c for c in _REQUIRED[name] if c not in frame.columns]
    if missing:
        raise ValueError(f"reference_lr: {name} lacks columns {missing} (has {list(frame.columns)})")


def _time_values(ts: pd.Series) -> np.ndarray:
    """Timestamps as int64 (datetimes as nanoseconds) or float64, comparable across tables."""
    if pd.api.types.is_datetime64_any_dtype(ts):
        return ts.astype("datetime64[ns]").to_numpy().view(np.int64)
    return pd.to_numeric(ts).to_numpy()


def _sum_before(*, past_keys: list[np.ndarray], past_ts: np.ndarray, past_weights: np.ndarray,
                query_keys: list[np.ndarray], query_ts: np.ndarray) -> np.ndarray:
    """(Q,) for each query, the sum of `past_weights` (P,) over past rows with the same keys and a
    timestamp strictly before the query's.

    past_keys / query_keys: parallel lists of key columns, (P,) and (Q,) each.
    """
    n_past, n_query = past_ts.size, query_ts.size
    keys = pd.DataFrame({f"k{j}": np.r_[p, q] for j, (p, q) in enumerate(zip(past_keys, query_keys))})
    code = keys.groupby(list(keys.columns), sort=False, dropna=False).ngroup().to_numpy()  # (P + Q,)
    ts = np.r_[past_ts, query_ts]
    is_past = np.r_[np.ones(n_past, np.int8), np.zeros(n_query, np.int8)]
    # Within a key, by time; at equal times queries first, so a past row at the query's own time is not counted.
    order = np.lexsort((is_past, ts, code))
    weights = np.r_[np.asarray(past_weights, np.float64), np.zeros(n_query)][order]
    sorted_code = code[order]
    before = np.cumsum(weights) - weights  # (P + Q,) weight strictly earlier in the sorted order
    first = np.r_[True, sorted_code[1:] != sorted_code[:-1]]
    key_start = np.maximum.accumulate(np.where(first, np.arange(order.size), 0))
    sums = np.empty(order.size)
    sums[order] = before - before[key_start]
    return sums[n_past:]


def build_reference_features(*, history: pd.DataFrame, samples: pd.DataFrame, item_topics: pd.DataFrame,
                             with_item_encoding: bool) -> pd.DataFrame:
    """(n, 1 + F) frame: sample_id and the point-in-time features (`feature_names`) of every sample, in
    the order of `samples`."""
    for name, frame in (("history", history), ("samples", samples), ("item_topics", item_topics)):
        _check_columns(name, frame)
    if item_topics["item_id"].duplicated().any():
        raise ValueError("reference_lr: item_topics lists an item twice")
    bad_splits = sorted(set(samples["split"].unique()) - set(SPLITS))
    if bad_splits:
        raise ValueError(f"reference_lr: samples.split has values {bad_splits}; allowed {list(SPLITS)}")
    if pd.api.types.is_datetime64_any_dtype(history["ts"]) != pd.api.types.is_datetime64_any_dtype(samples["ts"]):
        raise ValueError(f"reference_lr: history.ts ({history['ts'].dtype}) and samples.ts ({samples['ts'].dtype}) "
                         "must both be datetimes or both be numbers")
    topics = item_topics.set_index("item_id")
    columns = [f"topic_{level}" for level in LEVELS]
    history_topics = topics.reindex(history["item_id"])[columns].fillna(_UNKNOWN_HISTORY_TOPIC).to_numpy()
    target_topics = topics.reindex(samples["item_id"])[columns].fillna(_UNKNOWN_TARGET_TOPIC).to_numpy()

    hist_user, hist_ts = history["user_id"].to_numpy(), _time_values(history["ts"])
    user, item, ts = samples["user_id"].to_numpy(), samples["item_id"].to_numpy(), _time_values(samples["ts"])
    ones = np.ones(len(history))
    features: dict[str, np.ndarray] = {}
    for j, level in enumerate(LEVELS):
        same = _sum_before(past_keys=[hist_user, history_topics[:, j]], past_ts=hist_ts, past_weights=ones,
                           query_keys=[user, target_topics[:, j]], query_ts=ts)
        features[f"log1p_same_{level}"] = np.log1p(same)
    features["log1p_history"] = np.log1p(_sum_before(past_keys=[hist_user], past_ts=hist_ts, past_weights=ones,
                                                     query_keys=[user], query_ts=ts))

    train = samples["split"].to_numpy() == "train"
    train_labels = (samples["label"].to_numpy()[train] > 0.5).astype(np.float64)
    prior_ctr = float(train_labels.mean()) if train_labels.size else 0.0
    encodings = [("user", user)] + ([("item", item)] if with_item_encoding else [])
    for name, key in encodings:
        kwargs = dict(past_keys=[key[train]], past_ts=ts[train], query_keys=[key], query_ts=ts)
        clicks = _sum_before(past_weights=train_labels, **kwargs)
        impressions = _sum_before(past_weights=np.ones(train_labels.size), **kwargs)
        features[f"{name}_ctr"] = (clicks + PRIOR_IMPRESSIONS * prior_ctr) / (impressions + PRIOR_IMPRESSIONS)
        if name == "item":
            features["log1p_item_impressions"] = np.log1p(impressions)
    names = feature_names(with_item_encoding=with_item_encoding)
    return pd.DataFrame({"sample_id": samples["sample_id"].to_numpy(), **{n: features[n] for n in names}})


def fit_reference(*, history: pd.DataFrame, samples: pd.DataFrame, item_topics: pd.DataFrame,
                  with_item_encoding: bool, seed: int = 0) -> ReferenceScores:
    """Fit a standardised logistic regression (sklearn defaults, C = 1) on the train samples' features
    and score the valid and test samples."""
    frame = build_reference_features(history=history, samples=samples, item_topics=item_topics,
                                     with_item_encoding=with_item_encoding)
    names = feature_names(with_item_encoding=with_item_encoding)
    x = frame[list(names)].to_numpy(np.float64)  # (n, F)
    split = samples["split"].to_numpy()
    train = split == "train"
    labels = (samples["label"].to_numpy()[train] > 0.5).astype(np.int64)
    if np.unique(labels).size < 2:
        raise ValueError("reference_lr: the train samples hold one class only; a logistic regression needs both")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed))
    model.fit(x[train], labels)
    scored = ~train
    weights = model[-1].coef_[0]
    return ReferenceScores(sample_ids=frame["sample_id"].to_numpy()[scored].astype(np.int64),
                           split=split[scored].astype(str),
                           scores=model.predict_proba(x[scored])[:, 1].astype(np.float64),
                           coefficients={n: float(w) for n, w in zip(names, weights)}, feature_names=names)
