"""R2LED: multi-route retrieval over a lifelong history, refined by route-level attention (design.md §4).

The routes (one semantic route per SID level plus a collaborative route) are retrieved offline by the Spark
job; each arrives as a group r_<route> of k candidates (best first). The model refines them:

  h(v)    = SidGate(e_id(v), e_sid(v)) + e_cat(v)                    (SID-level fusion, `layers.SidGate`)
  u_r     = TargetAttention_r(h_t, {h(v) + e_rec(v) : v ∈ route r})  (per route, own parameters; all
            routes in one batched call, `route_attention.RouteTargetAttention`)
            [+ e_occ(r, log2 bucket of route r's valid candidates, or of its matches over the whole stored
                     history: model.r2led.route_occupancy, occupancy_counts)]
  u_long  = RouteFusion(h_t, {u_r})                                  (attention / mean / concat)
       or = TargetAttention(h_t, ∪_r {h(v) + e_rec(v) + e_r})         (cross: one attention over every route)
  u_short = DIN(h_t, short)
  logit   = MLP([h_t, u_long, u_short, h_t ⊙ u_long])
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from functools import partial
from typing import get_args

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from r2led_model.config import ModelConfig, OccupancyCounts, RouteFusionMode
from r2led_model.models.inputs import Batch, FeatureSpec, pool_column
from r2led_model.models.layers import (Behaviours, InterestCTR, Target, TargetAttention, log2_bucket, masked_softmax,
                                       shell_parts)
from r2led_model.models.route_attention import RouteTargetAttention, stack_pools
from r2led_model.retrieval.route_names import CATEGORY_ROUTE, is_sid_route, route_level
from r2led_model.sequences.features import group_route, route_group

FUSIONS: tuple[str, ...] = get_args(RouteFusionMode)
# The route fusions that weigh routes by an attention (their weights are what the counterfactual freezes).
WEIGHTED = ("attention", "target_aware", "constant_query")
# The normalised route attentions: with the target as the query, or with one constant query.
LISTENING = ("target_aware", "constant_query")
# Occupancy buckets: 0 (empty), then ⌊log2(count)⌋ + 1, capped (k = 20 fills bucket 5).
OCCUPANCY_BUCKETS = 8
# Buckets of a route's matches over the whole history (occupancy_counts: history): up to 2^13 and more.
HISTORY_OCCUPANCY_BUCKETS = 15


class RouteFusion(nn.Module):
    """Route-level fusion of the per-route interests (design.md §4, "Refinement").

    attention: q = W_q h_t, key_r = W_k (u_r + e_r), u_long = Σ_r softmax_r(q · key_r / √d) (u_r + e_r),
               with e_r a learned route embedding; routes whose pool is empty are masked out.
    target_aware: q = LN(W_q [LN(h_t); e_warm(t)]), key_r = LN(W_k (u_r + e_r)),
               u_long = Σ_r softmax_r(τ · q · key_r / √d) (u_r + e_r): the query carries what the target is
               (its fused representation, so its ID, SID levels and category, and its warmth bucket when the
               gate reads one), the layer norms keep the logits at unit scale from the first step, and τ is a
               learned temperature (log-parameterised, starting at 1).
    constant_query: as target_aware with one learned query for every row (the control: the same inputs,
               keys, values and temperature, but no target).
    mean:      u_long = mean of u_r over the routes with a non-empty pool.
    concat:    u_long = W [u_1; …; u_R] (an empty route's u_r is 0).
    Every mode gives u_long = 0 when all routes are empty.
    forward(target (B, d), interests (B, R, d), nonempty (B, R) bool) → (B, d).
    """

    def __init__(self, *, mode: RouteFusionMode, dim: int, num_routes: int, warmth_buckets: int = 0) -> None:
        super().__init__()
        if mode not in FUSIONS:
            raise ValueError(f"unknown route_fusion {mode!r}; expected one of {', '.join(FUSIONS)}")
        self.mode = mode
        self.dim = dim
        if mode == "cross":
            raise ValueError("route_fusion 'cross' attends over the candidates themselves: see CrossRouteInterest")
        if mode == "attention":
            self.route_embedding = nn.Parameter(torch.randn(num_routes, dim) * 0.1)  # (R, d)
            self.query = nn.Linear(dim, dim, bias=False)
            self.key = nn.Linear(dim, dim, bias=False)
        elif mode in LISTENING:
            self.route_embedding = nn.Parameter(torch.randn(num_routes, dim) * 0.1)  # (R, d)
            self.key = nn.Linear(dim, dim, bias=False)
            self.log_temperature = nn.Parameter(torch.zeros(()))  # τ = exp(0) = 1 at the start
            if mode == "target_aware":
                # Bucket 0 (cold, or no warmth known) is a learned row too: a cold target is a context.
                self.warmth = nn.Embedding(max(warmth_buckets, 1), dim)
                nn.init.normal_(self.warmth.weight, std=0.1)
                self.query = nn.Linear(2 * dim, dim, bias=False)
            else:
                self.constant = nn.Parameter(torch.randn(dim))  # (d,) the query of every row
        elif mode == "concat":
            self.project = nn.Linear(num_routes * dim, dim)
        # A counterfactual (`r2led_model.evaluation.counterfactuals`): fixed route weights (R,) instead of the attention's.
        self.frozen: Tensor | None = None

    def forward(self, target: Tensor, interests: Tensor, nonempty: Tensor, warmth: Tensor | None = None) -> Tensor:
        if self.mode == "mean":
            count = nonempty.sum(dim=1, keepdim=True).clamp(min=1)  # (B, 1)
            return (interests * nonempty[:, :, None]).sum(dim=1) / count  # (B, d)
        if self.mode == "concat":
            b, r, d = interests.shape
            projected = self.project(interests.reshape(b, r * d))  # (B, R, d) → (B, R·d) → (B, d)
            # With every route empty the bias alone would leak in; keep "all empty → 0".
            return projected * nonempty.any(dim=1, keepdim=True)
        values = interests + self.route_embedding[None]  # (B, R, d)
        weights = self.weights(target, interests, nonempty, warmth)  # (B, R)
        if self.frozen is not None:
            weights = renormalised(self.frozen[None, :] * nonempty)  # (R,) → (B, R), over the routes listened to
        return (weights[:, :, None] * values).sum(dim=1)  # (B, d)

    def weights(self, target: Tensor, interests: Tensor, nonempty: Tensor, warmth: Tensor | None = None) -> Tensor:
        """attention, target_aware, constant_query: the softmax weights (B, R) over the routes listened to."""
        values = interests + self.route_embedding[None]  # (B, R, d)
        if self.mode in LISTENING:
            keys = F.layer_norm(self.key(values), (self.dim,))  # (B, R, d)
            if self.mode == "target_aware":
                bucket = warmth if warmth is not None else torch.zeros_like(target[:, 0], dtype=torch.long)
                context = torch.cat([F.layer_norm(target, (self.dim,)), self.warmth(bucket)], dim=-1)  # (B, 2d)
                q = F.layer_norm(self.query(context), (self.dim,))  # (B, d)
            else:
                q = F.layer_norm(self.constant, (self.dim,)).expand(target.shape[0], -1)  # (d,) → (B, d)
            logits = (q[:, None, :] * keys).sum(-1) * self.log_temperature.exp() / math.sqrt(self.dim)  # (B, R)
            return masked_softmax(logits, nonempty)
        q = self.query(target)[:, None, :]  # (B, d) → (B, 1, d)
        logits = (q * self.key(values)).sum(-1) / math.sqrt(self.dim)  # (B, R)
        return masked_softmax(logits, nonempty)  # (B, R)


def renormalised(weights: Tensor) -> Tensor:
    """Non-negative weights (..., R) scaled to sum to 1 over the last axis (all-zero rows stay 0)."""
    return weights / weights.sum(dim=-1, keepdim=True).clamp(min=1e-12)


def route_mass(weights: Tensor, widths: list[int]) -> Tensor:
    """Attention weights over the routes' candidates side by side (..., R·k) → each route's mass (..., R)."""
    return torch.stack([part.sum(dim=-1) for part in torch.split(weights, widths, dim=-1)], dim=-1)


def route_mass_fixed(weights: Tensor, *, mass: Tensor, widths: list[int]) -> Tensor:
    """The weights (B, H, R·k) rescaled so each route holds the share `mass` (R,) of the row's attention,
    renormalised over the routes with any weight; within a route the candidates keep their proportions."""
    current = route_mass(weights, widths)  # (B, H, R)
    wanted = renormalised(mass * (current > 0))  # (B, H, R)
    scale = wanted / current.clamp(min=1e-12)  # (B, H, R)
    return weights * torch.repeat_interleave(scale, torch.tensor(widths, device=weights.device), dim=-1)


def occupancy_bucket(count: Tensor, buckets: int = OCCUPANCY_BUCKETS) -> Tensor:
    """Valid candidates (or matches) per route (B, R) → bucket (B, R): 0 for none, ⌊log2(count)⌋ + 1
    otherwise, capped at buckets − 1."""
    return log2_bucket(count, buckets)


class _RoutePools(nn.Module):
    """What both long interests share: the routes they read (groups r_<route>) and, with `occupancy`, a
    learned embedding per route of how full its pool is (its bucket of valid candidates, or with
    `occupancy_counts: history` of every behaviour of the stored history the route matched), so the
    interest keeps how much of the history matched at that route's granularity."""

    def __init__(self, *, routes: tuple[str, ...]) -> None:
        super().__init__()
        self.routes = routes
        self.groups = tuple(route_group(route) for route in routes)

    def _init_occupancy(self, *, dim: int, occupancy: bool, counts: OccupancyCounts = "candidates") -> None:
        # Created after the subclass's own parameters: the seeded initialisation keeps its order.
        self.counts_history = occupancy and counts == "history"
        self.occupancy_buckets = HISTORY_OCCUPANCY_BUCKETS if self.counts_history else OCCUPANCY_BUCKETS
        self.occupancy = nn.Embedding(len(self.routes) * self.occupancy_buckets, dim) if occupancy else None
        if self.occupancy is not None:
            nn.init.normal_(self.occupancy.weight, std=0.1)

    def pools(self, behaviours: Mapping[str, Behaviours]) -> list[Behaviours]:
        return [behaviours[group] for group in self.groups]

    def _occupancy(self, pools: list[Behaviours]) -> Tensor:
        """(B, R, d) embedding of each route's bucket of valid candidates (or of its whole-history matches)."""
        if self.counts_history:
            missing = [group for group, pool in zip(self.groups, pools) if pool.pool is None]
            if missing:
                raise ValueError(f"occupancy_counts: history reads {[pool_column(g) for g in missing]}, which the "
                                 "batch lacks: re-run build-training-set (tables built before route pools were stored)")
            count = torch.stack([pool.pool.long() for pool in pools], dim=1)  # (B, R)
        else:
            count = torch.stack([pool.mask.sum(dim=1) for pool in pools], dim=1)  # (B, R)
        offset = torch.arange(len(pools), device=count.device) * self.occupancy_buckets  # (R,)
        return self.occupancy(occupancy_bucket(count, self.occupancy_buckets) + offset[None, :])  # (B, R) → (B, R, d)


class FusedRouteInterest(_RoutePools):
    """u_long from the routes' candidate pools: per-route target attention, then RouteFusion.

    Each route has its own attention parameters (the routes differ in what their candidates mean: same SID
    prefix at level l vs collaboratively close), all computed in one call of a RouteTargetAttention.
    """

    def __init__(self, *, routes: tuple[str, ...], attention: RouteTargetAttention, fusion: RouteFusion,
                 dim: int, occupancy: bool = False, counts: OccupancyCounts = "candidates") -> None:
        super().__init__(routes=routes)
        if attention.routes != tuple(routes):
            raise ValueError(f"the route attention's routes {attention.routes} differ from {tuple(routes)}")
        self.attention = attention
        self.fusion = fusion
        self._init_occupancy(dim=dim, occupancy=occupancy, counts=counts)

    def forward(self, target: Target, behaviours: Mapping[str, Behaviours]) -> Tensor:
        interests, listened = self.route_interests(target, self.pools(behaviours))
        return self.fusion(target.h, interests, listened, target.warmth)

    def route_interests(self, target: Target, pools: list[Behaviours]) -> tuple[Tensor, Tensor]:
        """What RouteFusion reads: the interests u_r (B, R, d) and the routes it may listen to (B, R) bool."""
        candidates, mask, recency = stack_pools(pools)  # (B, R, k, d), (B, R, k), (B, R, k)
        interests = self.attention(target.h, candidates, mask, recency)  # (B, R, d)
        nonempty = mask.any(dim=2)  # (B, R)
        if self.occupancy is not None:
            interests = interests + self._occupancy(pools)
            nonempty = torch.ones_like(nonempty)  # an empty pool now says something: "nothing matched"
        return interests, nonempty


class CrossRouteInterest(_RoutePools):
    """u_long as one target attention over the candidates of every route at once (`route_fusion: cross`),
    each candidate keyed with its route's embedding; occupancy, if any, is added to the result."""

    def __init__(self, *, routes: tuple[str, ...], cross: TargetAttention, dim: int, occupancy: bool = False,
                 counts: OccupancyCounts = "candidates") -> None:
        super().__init__(routes=routes)
        self.cross = cross
        self.route_embedding = nn.Parameter(torch.randn(len(routes), dim) * 0.1)  # (R, d)
        self._init_occupancy(dim=dim, occupancy=occupancy, counts=counts)
        # A counterfactual (`r2led_model.evaluation.counterfactuals`): a fixed share of the attention's mass
        # per route (R,), each route's candidates keeping their weights relative to each other.
        self.frozen_route_mass: Tensor | None = None

    def joint(self, pools: list[Behaviours]) -> Behaviours:
        """Every route's candidates in one pool, each keyed with its route's embedding."""
        return Behaviours(h=torch.cat([p.h + self.route_embedding[r] for r, p in enumerate(pools)], dim=1),
                          mask=torch.cat([p.mask for p in pools], dim=1),
                          recency=torch.cat([p.recency for p in pools], dim=1),
                          cat=torch.cat([p.cat for p in pools], dim=1))  # R × (B, k, ·) → (B, R·k, ·)

    def forward(self, target: Target, behaviours: Mapping[str, Behaviours]) -> Tensor:
        pools = self.pools(behaviours)
        joint = self.joint(pools)
        reweight = None
        if self.frozen_route_mass is not None:
            widths = [pool.mask.shape[1] for pool in pools]
            reweight = partial(route_mass_fixed, mass=self.frozen_route_mass, widths=widths)
        # The attention's output bias would leak into rows with no candidate at all: keep those at 0.
        u_long = self.cross(target.h, joint, reweight=reweight) * joint.mask.any(dim=1, keepdim=True)  # (B, d)
        if self.occupancy is not None:
            u_long = u_long + self._occupancy(pools).sum(dim=1)  # (B, R, d) → (B, d)
        return u_long


def exclusive_sid_pools(groups: Mapping[str, Behaviours], items: Mapping[str, Tensor], *,
                        levels: int) -> dict[str, Behaviours]:
    """The SID routes' pools with each behaviour kept only in the finest SID route holding it.

    groups: the embedded groups by name (r_sid<l> among them); items: each group's item indices (B, k).
    A slot of r_sid<l> whose item is also a real slot of some r_sid<m>, m > l, is masked out (padding
    and the other groups unchanged)."""
    sid_routes = sorted((route_level(group_route(g), levels), g) for g in groups
                        if is_sid_route(group_route(g)))  # (level, group), coarse first
    out = dict(groups)
    for position, (_, coarse) in enumerate(sid_routes):
        finer = [g for _, g in sid_routes[position + 1:]]
        if not finer:
            continue
        held = torch.cat([items[g].masked_fill(~groups[g].mask, -1) for g in finer], dim=1)  # (B, Σk), -1 = empty
        repeated = (items[coarse][:, :, None] == held[:, None, :]).any(dim=2)  # (B, k, 1) vs (B, 1, Σk) → (B, k)
        mask = groups[coarse].mask & ~repeated
        out[coarse] = dataclasses.replace(groups[coarse], mask=mask, recency=groups[coarse].recency * mask)
    return out


def resolve_routes(spec: FeatureSpec, wanted: tuple[str, ...]) -> tuple[str, ...]:
    """The routes R2LED reads: model.r2led.routes (in that order), or every R2LED route in the spec when empty
    (the "category" route is the two-stage SIM-hard baseline's, not R2LED's)."""
    routes = tuple(wanted) or tuple(r for r in spec.routes if r != CATEGORY_ROUTE)
    unknown = [r for r in routes if r not in spec.routes]
    if unknown:
        raise ValueError(f"model.r2led.routes {unknown} are not in the data's routes {list(spec.routes)}")
    if not routes:
        raise ValueError("R2LED needs at least one route; the feature spec has none")
    return routes


class R2LED(InterestCTR):
    """R2LED (design.md §4): SID-gated item representation, per-route target attention, route-level fusion.

    Reads r_<route> for each configured route (config.r2led.routes, else every spec route) and `short`.
    config.r2led.gate picks the SID-level fusion, config.r2led.route_fusion the route-level fusion.
    forward(batch) → logits (B,).
    """

    def __init__(self, *, spec: FeatureSpec, config: ModelConfig) -> None:
        options = config.r2led
        routes = resolve_routes(spec, options.routes)
        dim = config.embedding_dim
        heads, buckets = config.attention_heads, spec.recency_buckets
        interest: FusedRouteInterest | CrossRouteInterest
        if options.route_fusion == "cross":
            cross = TargetAttention(dim=dim, heads=heads, recency_buckets=buckets)
            interest = CrossRouteInterest(routes=routes, cross=cross, dim=dim, occupancy=options.route_occupancy,
                                          counts=options.occupancy_counts)
        else:
            attention = RouteTargetAttention(routes=routes, dim=dim, heads=heads, recency_buckets=buckets)
            interest = FusedRouteInterest(routes=routes, attention=attention,
                                          fusion=RouteFusion(mode=options.route_fusion, dim=dim,
                                                             num_routes=len(routes),
                                                             warmth_buckets=options.warmth_buckets),
                                          dim=dim, occupancy=options.route_occupancy,
                                          counts=options.occupancy_counts)
        super().__init__(long_interest=interest, **shell_parts(spec=spec, config=config, gate=options.gate,
                                                              per_level=options.sid_fusion == "per_level"))
        self.exclusive_sid_pools = options.sid_pools == "exclusive"

    @property
    def extra_input_columns(self) -> tuple[str, ...]:
        interest = self.long_interest
        return tuple(pool_column(group) for group in interest.groups) if interest.counts_history else ()

    def encode(self, batch: Batch) -> tuple[Target, dict[str, Behaviours]]:
        batch = self.inputs(batch)
        target, groups = super().encode(batch)
        if self.exclusive_sid_pools:
            groups = exclusive_sid_pools(groups, {g: batch[f"{g}_item"] for g in groups},
                                         levels=self.embedding.sid_levels)
        return target, groups
