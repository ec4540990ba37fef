"""The ceiling of an oracle-scored world: the true click probabilities, scored on a model's exact rows.

A model's AUC means little alone; beside the oracle's AUC on the same rows it says how much of the
learnable signal the model found: lift share = (AUC − 0.5) / (oracle AUC − 0.5), 1 for a model as
good as the truth, 0 for a coin.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from r2led_model.evaluation.metrics import auc, evaluate


@dataclass(frozen=True)
class OracleTruth:
    """True click probabilities keyed by sample id (sorted, unique)."""

    sample_ids: np.ndarray  # (S,) int64, ascending
    probs: np.ndarray  # (S,) float64
    # Partial oracles aligned with sample_ids: scores that know only some of the truth's terms (e.g.
    # "relation": the interest relation alone), so a report can say how far each term carries.
    parts: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def from_arrays(cls, sample_ids: np.ndarray, probs: np.ndarray,
                    parts: dict[str, np.ndarray] | None = None) -> "OracleTruth":
        ids = np.asarray(sample_ids, dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        ids, values = ids[order], np.asarray(probs, dtype=np.float64)[order]
        if ids.size and (ids[1:] == ids[:-1]).any():
            raise ValueError("oracle truth: a sample id appears twice")
        return cls(sample_ids=ids, probs=values,
                   parts={k: np.asarray(v, dtype=np.float64)[order] for k, v in (parts or {}).items()})

    def _positions(self, sample_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray(sample_ids, dtype=np.int64)
        if self.sample_ids.size == 0:
            return np.zeros(ids.shape, np.int64), np.zeros(ids.shape, bool)
        at = np.clip(np.searchsorted(self.sample_ids, ids), 0, self.sample_ids.size - 1)
        return at, self.sample_ids[at] == ids

    def lookup(self, sample_ids: np.ndarray, part: str | None = None) -> np.ndarray:
        """(N,) the truth (or one partial oracle) of each sample, NaN where the world has none."""
        at, found = self._positions(sample_ids)
        values = self.probs if part is None else self.parts[part]
        return np.where(found, values[at] if values.size else np.nan, np.nan)


def quality_from_clicks(item_ids: np.ndarray, known_logits: np.ndarray, labels: np.ndarray, *,
                        quality_std: float, grid_points: int = 161, block_rows: int = 65_536) -> dict[int, float]:
    """Each item's posterior-mean quality q given its own labelled impressions, the Bayes estimate for
    p = sigmoid(known_logit + quality_std · q) with q ~ N(0, 1) independent across items.

    What the item's clicks alone can reveal of its quality: the best any model can learn of it from
    those rows, however it is built (an item with few impressions stays near the prior's 0).
    """
    items = np.asarray(item_ids, dtype=np.int64)
    if items.size == 0:
        return {}
    grid = np.linspace(-5.0, 5.0, grid_points)
    order = np.argsort(items, kind="stable")
    items = items[order]
    known = np.asarray(known_logits, dtype=np.float64)[order]
    y = np.asarray(labels, dtype=np.float64)[order]
    unique = np.unique(items)
    # (I, G): each item's log-posterior at each grid value of its quality, starting from the N(0, 1) prior.
    log_post = np.repeat(-0.5 * grid[None, :] ** 2, unique.size, axis=0)
    # Impressions in blocks, so the (rows, G) log-likelihood stays small however many there are.
    for start in range(0, items.size, block_rows):
        block = slice(start, start + block_rows)
        logits = known[block, None] + quality_std * grid[None, :]  # (rows, G)
        loglik = -(y[block, None] * np.logaddexp(0.0, -logits) + (1.0 - y[block, None]) * np.logaddexp(0.0, logits))
        block_items, starts = np.unique(items[block], return_index=True)
        log_post[np.searchsorted(unique, block_items)] += np.add.reduceat(loglik, starts, axis=0)
    weights = np.exp(log_post - log_post.max(axis=1, keepdims=True))
    means = (weights * grid).sum(axis=1) / weights.sum(axis=1)
    return dict(zip(unique.tolist(), means.tolist()))


def lift_share(model_auc: float, oracle_auc: float) -> float:
    """(AUC − 0.5) / (oracle AUC − 0.5); NaN when the oracle itself is no better than chance."""
    if not oracle_auc > 0.5:
        return float("nan")
    return (model_auc - 0.5) / (oracle_auc - 0.5)


def oracle_metrics(truth: OracleTruth, sample_ids: np.ndarray, users: np.ndarray,
                   labels: np.ndarray) -> dict[str, float | int] | None:
    """The oracle's {auc, gauc, logloss, n} on exactly these rows, or None if any row has no truth."""
    probs = truth.lookup(sample_ids)
    if probs.size == 0 or np.isnan(probs).any():
        return None
    out = evaluate(users, labels, probs)
    for part in truth.parts:
        out[f"{part}_auc"] = auc(labels, truth.lookup(sample_ids, part))
    return out


def with_ceiling(model: dict, oracle: dict | None) -> dict:
    """A model's metrics plus oracle_auc / oracle_gauc / oracle_logloss and lift_share, when known."""
    if oracle is None:
        return dict(model)
    parts = {f"oracle_{k}": v for k, v in oracle.items() if k.endswith("_auc")}
    return {**model, "oracle_auc": oracle["auc"], "oracle_gauc": oracle["gauc"], "oracle_logloss": oracle["logloss"],
            **parts, "lift_share": lift_share(model["auc"], oracle["auc"])}
