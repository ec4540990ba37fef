"""R2LED: multi-route retrieval over a lifelong history, refined by route-level attention (design.md §4).

The routes (one semantic route per SID level plus a collaborative route) are retrieved offline by the Spark
job; each arrives as a group r_<route> of k candidates (best first). The model refines them:

  h(v)    = SidGate(e_id(v), e_sid(v)) + e_cat(v)                    (SID-level fusion, `layers.SidGate`)
  u_r     = TargetAttention_r(h_t, {h(v) + e_rec(v) : v ∈ route r})  (per route, own parameters)
  u_long  = RouteFusion(h_t, {u_r})                                  (attention / mean / concat)
  u_short = DIN(h_t, short)
  logit   = MLP([h_t, u_long, u_short, h_t ⊙ u_long])
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

import torch
from torch import Tensor, nn

from r2led_model.config import ModelConfig
from r2led_model.models.inputs import FeatureSpec
from r2led_model.models.layers import Behaviours, InterestCTR, Target, TargetAttention, masked_softmax, shell_parts

FUSIONS: tuple[str, ...] = ("attention", "mean", "concat")


class RouteFusion(nn.Module):
    """Route-level fusion of the per-route interests (design.md §4, "Refinement").

    attention: q = W_q h_t, key_r = W_k (u_r + e_r), u_long = Σ_r softmax_r(q · key_r / √d) (u_r + e_r),
               with e_r a learned route embedding; routes whose pool is empty are masked out.
    mean:      u_long = mean of u_r over the routes with a non-empty pool.
    concat:    u_long = W [u_1; …; u_R] (an empty route's u_r is 0).
    Every mode gives u_long = 0 when all routes are empty.
    forward(target (B, d), interests (B, R, d), nonempty (B, R) bool) → (B, d).
    """

    def __init__(self, *, mode: Literal["attention", "mean", "concat"], dim: int, num_routes: int) -> None:
        super().__init__()
        if mode not in FUSIONS:
            raise ValueError(f"unknown route_fusion {mode!r}; expected one of {', '.join(FUSIONS)}")
        self.mode = mode
        self.dim = dim
        if mode == "attention":
            self.route_embedding = nn.Parameter(torch.randn(num_routes, dim) * 0.1)  # (R, d)
            self.query = nn.Linear(dim, dim, bias=False)
            self.key = nn.Linear(dim, dim, bias=False)
        elif mode == "concat":
            self.project = nn.Linear(num_routes * dim, dim)

    def forward(self, target: Tensor, interests: Tensor, nonempty: Tensor) -> Tensor:
        if self.mode == "mean":
            count = nonempty.sum(dim=1, keepdim=True).clamp(min=1)  # (B, 1)
            return (interests * nonempty[:, :, None]).sum(dim=1) / count  # (B, d)
        if self.mode == "concat":
            b, r, d = interests.shape
            projected = self.project(interests.reshape(b, r * d))  # (B, R, d) → (B, R·d) → (B, d)
            # With every route empty the bias alone would leak in; keep "all empty → 0".
            return projected * nonempty.any(dim=1, keepdim=True)
        values = interests + self.route_embedding[None]  # (B, R, d)
        q = self.query(target)[:, None, :]  # (B, d) → (B, 1, d)
        logits = (q * self.key(values)).sum(-1) / math.sqrt(self.dim)  # (B, R)
        weights = masked_softmax(logits, nonempty)  # (B, R)
        return (weights[:, :, None] * values).sum(dim=1)  # (B, d)


class RouteInterest(nn.Module):
    """u_long from the routes' candidate pools: per-route target attention, then RouteFusion.

    Reads the groups r_<route> for route in `routes`; each route has its own TargetAttention (the routes differ
    in what their candidates mean: same SID prefix at level l vs collaboratively close).
    """

    def __init__(self, *, routes: tuple[str, ...], attention: Mapping[str, TargetAttention],
                 fusion: RouteFusion) -> None:
        super().__init__()
        self.routes = routes
        self.groups = tuple(f"r_{route}" for route in routes)
        self.attention = nn.ModuleDict(attention)
        self.fusion = fusion

    def forward(self, target: Target, behaviours: Mapping[str, Behaviours]) -> Tensor:
        pools = [behaviours[f"r_{route}"] for route in self.routes]
        interests = [self.attention[route](target.h, pool) for route, pool in zip(self.routes, pools, strict=True)]
        interests = torch.stack(interests, dim=1)  # R × (B, d) → (B, R, d)
        nonempty = torch.stack([pool.mask.any(dim=1) for pool in pools], dim=1)  # (B, R)
        return self.fusion(target.h, interests, nonempty)


def resolve_routes(spec: FeatureSpec, wanted: tuple[str, ...]) -> tuple[str, ...]:
    """The routes R2LED reads: config.model.routes (in that order), or every route in the spec when empty."""
    routes = tuple(wanted) or spec.routes
    unknown = [r for r in routes if r not in spec.routes]
    if unknown:
        raise ValueError(f"model.routes {unknown} are not in the data's routes {list(spec.routes)}")
    if not routes:
        raise ValueError("R2LED needs at least one route; the feature spec has none")
    return routes


class R2LED(InterestCTR):
    """R2LED (design.md §4): SID-gated item representation, per-route target attention, route-level fusion.

    Reads r_<route> for each configured route (config.routes, else every spec route) and `short`.
    config.gate picks the SID-level fusion, config.route_fusion the route-level fusion.
    forward(batch) → logits (B,).
    """

    def __init__(self, *, spec: FeatureSpec, config: ModelConfig) -> None:
        routes = resolve_routes(spec, config.routes)
        dim = config.embedding_dim
        attention = {route: TargetAttention(dim=dim, heads=config.attention_heads,
                                            recency_buckets=spec.recency_buckets) for route in routes}
        fusion = RouteFusion(mode=config.route_fusion, dim=dim, num_routes=len(routes))
        super().__init__(long_interest=RouteInterest(routes=routes, attention=attention, fusion=fusion),
                         **shell_parts(spec=spec, config=config, gate=config.gate))
