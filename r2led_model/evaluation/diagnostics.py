"""What a trained R2LED does with its inputs: how much the gate trusts the ID over the SIDs, and which
routes the route-level fusion listens to. Read by `r2led benchmark models` beside each R2LED row.

* gate: the mean ID weight of the SID-level gate on test targets (g of h = g ⊙ e_id + (1 − g) ⊙ P·e_sid,
  averaged over dimensions; for the per-level gate, the ID component's softmax share), with its
  spread across targets (10th and 90th percentile). Near 0.5 with little spread means the gate mixes
  everything alike, i.e. it is not choosing.
* routes: the share of the route-level fusion's weight each route receives, over test rows (cross:
  the target attention's mass on each route's candidates, mean over heads; attention: the fusion's
  softmax over routes), and the share of rows in which each route's pool is non-empty; the mean entropy
  of the route weights (log R for a fusion that weighs every route alike in every row).
* by segment: the same per value of each segment family of the test rows (target warmth, dormant
  interest, community- or taxonomy-driven relevance, noisy or clean text): a gate that chooses rises
  with warmth; a fusion that listens weighs routes differently where their reliability differs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import torch
from torch import Tensor

from r2led_model.evaluation.segments import ordered_values, warmth_bucket
from r2led_model.models.inputs import Batch
from r2led_model.models.layers import masked_softmax
from r2led_model.models.r2led import R2LED, WEIGHTED, CrossRouteInterest


def _gate_id_weight(model: R2LED, batch: Batch) -> Tensor | None:
    """(B,) mean ID weight of the gate for the batch's targets, or None for a gate-free fusion."""
    weights = model.gate_weights(batch)
    if weights is None:
        return None
    if model.embedding.fusion.per_level:
        return weights[:, 0].mean(dim=-1)  # the ID component's share: (B, 1+L, d) → (B,)
    return weights.mean(dim=-1)  # (B, d) or (B, 1) (warmth) → (B,)


def _route_weights(model: R2LED, batch: Batch) -> tuple[Tensor, Tensor]:
    """((B, R) fusion weight per route, (B, R) non-empty) for the batch."""
    interest = model.long_interest
    target, groups = model.encode(batch)
    pools = interest.pools(groups)
    nonempty = torch.stack([pool.mask.any(dim=1) for pool in pools], dim=1)  # (B, R)
    if isinstance(interest, CrossRouteInterest):
        joint = interest.joint(pools)
        attention = interest.cross
        weights = masked_softmax(attention._logits(target.h, attention._keys(joint)), joint.mask[:, None, :])
        weights = weights.mean(dim=1)  # (B, H, R·k) → (B, R·k)
        widths = [pool.mask.shape[1] for pool in pools]
        return torch.stack([part.sum(dim=1) for part in torch.split(weights, widths, dim=1)], dim=1), nonempty
    fusion = interest.fusion
    if fusion.mode not in WEIGHTED:
        mean = nonempty.float() / nonempty.float().sum(dim=1, keepdim=True).clamp(min=1)
        return mean, nonempty
    interests, mask = interest.route_interests(target, pools)  # (B, R, d), (B, R)
    return fusion.weights(target.h, interests, mask, target.warmth), nonempty  # (B, R)


def route_entropy(weights: np.ndarray) -> np.ndarray:
    """(n, R) route weights → (n,) entropy in nats (0: one route takes all; log R: every route alike)."""
    safe = np.where(weights > 0, weights, 1.0)
    return -(weights * np.log(safe)).sum(axis=1)


def _summary(routes: list[str], g: np.ndarray | None, w: np.ndarray, n: np.ndarray) -> dict:
    out = {"rows": int(w.shape[0]), "route_weight": dict(zip(routes, np.round(w.mean(axis=0), 4).tolist())),
           "route_nonempty": dict(zip(routes, np.round(n.mean(axis=0), 4).tolist())),
           "route_entropy": round(float(route_entropy(w).mean()), 4)}
    if g is not None:
        out["gate_id_weight"] = {"mean": round(float(g.mean()), 4), "p10": round(float(np.quantile(g, 0.1)), 4),
                                 "p90": round(float(np.quantile(g, 0.9)), 4)}
    return out


@torch.no_grad()
def r2led_diagnostics(model: R2LED, batches: Iterable[Batch], max_rows: int = 20_000,
                      segments: Mapping[str, np.ndarray] | None = None,
                      item_impressions: np.ndarray | None = None) -> dict:
    """Gate and route-fusion statistics of a trained R2LED over (up to `max_rows` of) the batches.

    With `segments` ({"sample_id": (m,) ascending, family: (m,) value per row}, as `benchmark models`
    saves them), the same statistics per value of each family under "by_segment", for the rows whose
    sample_id the batches carry. With `item_impressions` (num_items,) (each item's train-split
    impressions), a "warmth" family is computed from the rows' targets where `segments` has none."""
    was_training = model.training
    model.eval()
    gates, weights, nonempty, ids, targets, seen = [], [], [], [], [], 0
    try:
        for batch in batches:
            g = _gate_id_weight(model, batch)
            if g is not None:
                gates.append(g.numpy())
            w, n = _route_weights(model, batch)
            weights.append(w.numpy())
            nonempty.append(n.numpy())
            if "sample_id" in batch:
                ids.append(batch["sample_id"].numpy())
            targets.append(batch["target_item"].numpy())
            seen += w.shape[0]
            if seen >= max_rows:
                break
    finally:
        model.train(was_training)
    routes = list(model.long_interest.routes)
    w, n = np.concatenate(weights).astype(np.float64), np.concatenate(nonempty).astype(np.float64)
    g = np.concatenate(gates).astype(np.float64) if gates else None
    out = _summary(routes, g, w, n)
    by_segment: dict[str, dict] = {}
    if segments is not None and ids and len(ids) == len(weights):
        sample_ids = np.concatenate(ids)
        known = np.asarray(segments["sample_id"])
        position = np.clip(np.searchsorted(known, sample_ids), 0, max(len(known) - 1, 0))
        found = known[position] == sample_ids if len(known) else np.zeros(len(sample_ids), bool)
        for family, values in segments.items():
            if family != "sample_id":
                by_segment[family] = _by_value(routes, g, w, n, np.asarray(values)[position], found)
    if item_impressions is not None and "warmth" not in by_segment:
        target = np.concatenate(targets)
        counts = np.asarray(item_impressions)[np.clip(target, 0, len(item_impressions) - 1)]
        by_segment["warmth"] = _by_value(routes, g, w, n, warmth_bucket(counts), np.ones(len(target), bool))
    if by_segment:
        out["by_segment"] = by_segment
    return out


def _by_value(routes: list[str], g: np.ndarray | None, w: np.ndarray, n: np.ndarray, row_values: np.ndarray,
              found: np.ndarray) -> dict:
    """{value: `_summary` of the rows (among `found`) holding it}, warmth buckets in their natural order."""
    return {str(value): _summary(routes, g[chosen] if g is not None else None, w[chosen], n[chosen])
            for value in ordered_values(row_values[found])
            for chosen in [found & (row_values == value)]}
