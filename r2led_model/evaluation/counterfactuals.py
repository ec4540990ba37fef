"""Counterfactual ablations of a trained R2LED that need no retraining: what its refinement stage is worth.

* frozen gate: the SID-level gate g (σ(W[e_id; e_sid]), the per-level softmax shares, or the warmth gate's
  one weight per item) replaced by its mean over a split's targets, the same g for every item. A gate that does not vary by item is a fixed
  rescaling: if the frozen model scores as well, the gate is not choosing.
* frozen route weights: the route-level fusion's weights replaced by their mean, the same for every row:
  the attention fusion's softmax over routes, or (cross) each route's share of the target attention's mass,
  each route's candidates keeping their weights relative to each other. Rows where a route has nothing
  renormalise over the others.

`mean_refinement` measures the means on one split's batches; `frozen` applies them while scoring.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from r2led_model.models.inputs import Batch
from r2led_model.models.r2led import R2LED, WEIGHTED, CrossRouteInterest, route_mass


@dataclass(frozen=True)
class MeanRefinement:
    """The means a frozen R2LED uses: gate (d,) or (1+L, d), None without a gate; route (R,), None for
    fusions without route weights (mean, concat)."""

    gate: Tensor | None
    route: Tensor | None


def _gate_weights(model: R2LED, batch: Batch) -> Tensor | None:
    """(B, d), (B, 1+L, d) or (B, 1) (warmth): the gate of the batch's targets."""
    return model.gate_weights(batch)


def _route_weights(model: R2LED, batch: Batch) -> Tensor | None:
    """(B·H, R) route masses of the cross attention (one row per head) or (B, R) fusion weights."""
    interest = model.long_interest
    target, groups = model.encode(batch)
    pools = interest.pools(groups)
    if isinstance(interest, CrossRouteInterest):
        joint = interest.joint(pools)  # R × (B, k, ·) → (B, R·k, ·)
        mass = route_mass(interest.cross.weights(target.h, joint), [p.mask.shape[1] for p in pools])  # (B, H, R)
        return mass[joint.mask.any(dim=1)].reshape(-1, len(pools))  # rows with a candidate: (B', H, R) → (B'·H, R)
    if interest.fusion.mode not in WEIGHTED:
        return None
    interests, listened = interest.route_interests(target, pools)
    return interest.fusion.weights(target.h, interests, listened, target.warmth)  # (B, R)


@torch.no_grad()
def mean_refinement(model: R2LED, batches: Iterable[Batch], max_rows: int = 50_000) -> MeanRefinement:
    """The gate's and the route weights' means over (up to `max_rows` of) the batches, in eval mode."""
    was_training = model.training
    model.eval()
    gates, routes, seen = [], [], 0
    try:
        for batch in batches:
            g, w = _gate_weights(model, batch), _route_weights(model, batch)
            if g is not None:
                gates.append(g.sum(dim=0))
            if w is not None:
                routes.append((w.sum(dim=0), w.shape[0]))
            seen += int(batch["target_item"].shape[0])
            if seen >= max_rows:
                break
    finally:
        model.train(was_training)
    gate = torch.stack(gates).sum(dim=0) / seen if gates and seen else None
    route = None
    if routes and sum(n for _, n in routes):
        route = torch.stack([s for s, _ in routes]).sum(dim=0) / sum(n for _, n in routes)
    return MeanRefinement(gate=gate, route=route)


@contextlib.contextmanager
def frozen(model: R2LED, *, gate: Tensor | None = None, route: Tensor | None = None) -> Iterator[R2LED]:
    """Within the block the model uses the given fixed gate and/or route weights; restored after."""
    fusion, interest = model.embedding.fusion, model.long_interest
    # Where the route weights live: the cross attention's fixed mass, or the fusion's frozen weights.
    if isinstance(interest, CrossRouteInterest):
        holder, name = interest, "frozen_route_mass"
    else:
        holder, name = interest.fusion, "frozen"
    saved = (fusion.frozen, getattr(holder, name))
    try:
        if gate is not None:
            fusion.frozen = gate
        if route is not None:
            setattr(holder, name, route)
        yield model
    finally:
        fusion.frozen = saved[0]
        setattr(holder, name, saved[1])
