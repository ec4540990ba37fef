"""SIM (Pi et al., "Search-based User Interest Modeling with Lifelong Sequential Behavior Data for
Click-Through Rate Prediction", CIKM 2020): a General Search Unit picks behaviours of the long history,
an Exact Search Unit (target attention with a time embedding) reads them. Hard search: same category
as the target (§4.1, "hard-search"); soft search: inner product of embeddings (§4.1, "soft-search")."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from r2led_model.config import ModelConfig
from r2led_model.models.inputs import FeatureSpec
from r2led_model.models.layers import Behaviours, InterestCTR, RetrieveThenAttend, Target, TargetAttention, shell_parts
from r2led_model.retrieval.route_names import CATEGORY_ROUTE
from r2led_model.sequences.features import UNKNOWN_CATEGORY, route_group


class CategoryRetriever(nn.Module):
    """SIM hard search: eligible = same category as the target (and a known one); ranked by recency only.

    All scores are 0, so top_k's stable tie-break keeps the most recent matches (`long` is most recent first).
    """

    def forward(self, target: Target, behaviours: Behaviours) -> tuple[Tensor, Tensor]:
        eligible = (behaviours.cat == target.cat[:, None]) & (target.cat[:, None] > UNKNOWN_CATEGORY)  # (B, n)
        return torch.zeros_like(behaviours.h[..., 0]), eligible  # (B, n), (B, n)


class SidPrefixRetriever(nn.Module):
    """SIM hard search on semantic IDs: eligible = the behaviour's first `prefix` SID codes equal the target's
    (a target whose prefix holds an unknown code, index 0, matches nothing); ranked by recency only, as the
    category search is."""

    def __init__(self, *, prefix: int) -> None:
        super().__init__()
        self.prefix = prefix

    def forward(self, target: Target, behaviours: Behaviours) -> tuple[Tensor, Tensor]:
        t_codes = target.sid[:, None, :self.prefix]  # (B, L) → (B, 1, p)
        same = (behaviours.sid[:, :, :self.prefix] == t_codes).all(dim=-1)  # (B, n, p) → (B, n)
        eligible = same & (t_codes > 0).all(dim=-1)  # (B, n)
        return torch.zeros_like(behaviours.h[..., 0]), eligible  # (B, n), (B, n)


class PrecomputedRetriever(nn.Module):
    """The group already holds the search's result, best first (an offline route): every real slot is eligible,
    all scores equal, so the top k are the first k."""

    def forward(self, target: Target, behaviours: Behaviours) -> tuple[Tensor, Tensor]:
        return torch.zeros_like(behaviours.h[..., 0]), torch.ones_like(behaviours.mask)  # (B, n), (B, n)


class InnerProductRetriever(nn.Module):
    """SIM soft search: score_j = h_j · h_t with the model's own (jointly trained) item embeddings."""

    def forward(self, target: Target, behaviours: Behaviours) -> tuple[Tensor, Tensor]:
        scores = (behaviours.h * target.h[:, None, :]).sum(-1)  # (B, n, d) · (B, 1, d) → (B, n)
        return scores, torch.ones_like(behaviours.mask)


class _SIM(InterestCTR):
    def __init__(self, *, spec: FeatureSpec, config: ModelConfig, retriever: nn.Module, retrieve_k: int,
                 group: str = "long") -> None:
        attention = TargetAttention(dim=config.embedding_dim, heads=config.attention_heads,
                                    recency_buckets=spec.recency_buckets)
        long_interest = RetrieveThenAttend(retriever=retriever, attention=attention, k=retrieve_k, group=group)
        super().__init__(long_interest=long_interest, **shell_parts(spec=spec, config=config))


class SIMHard(_SIM):
    """SIM hard search (Pi et al., CIKM 2020): retrieves the model.sim_hard.retrieve_k most recent `long`
    behaviours whose category equals the target's (an unknown category, index 1, matches nothing), then target
    attention with a recency embedding. With `model.sim_hard.match: sid_prefix` the match is on the first
    `sid_prefix` SID codes instead. With `search: offline` it reads the precomputed "category" route (the same
    search over the whole stored history, run by the retrieve job) instead of searching `long`.
    forward(batch) → logits (B,).
    """

    def __init__(self, *, spec: FeatureSpec, config: ModelConfig) -> None:
        options = config.sim_hard
        if options.search == "offline":
            if CATEGORY_ROUTE not in spec.routes:
                raise ValueError(f"model.sim_hard.search: offline reads the {CATEGORY_ROUTE!r} route, which the "
                                 f"training examples lack (routes {list(spec.routes)}): add it to retrieval.routes")
            super().__init__(spec=spec, config=config, retriever=PrecomputedRetriever(),
                             retrieve_k=options.retrieve_k, group=route_group(CATEGORY_ROUTE))
            return
        if options.match == "sid_prefix":
            if options.sid_prefix > spec.sid_levels:
                raise ValueError(f"model.sim_hard.sid_prefix: {options.sid_prefix} is more than the "
                                 f"{spec.sid_levels} SID levels of the training examples")
            retriever: nn.Module = SidPrefixRetriever(prefix=options.sid_prefix)
        else:
            retriever = CategoryRetriever()
        super().__init__(spec=spec, config=config, retriever=retriever, retrieve_k=options.retrieve_k)


class SIMSoft(_SIM):
    """SIM soft search (Pi et al., CIKM 2020): retrieves the model.sim_soft.retrieve_k `long` behaviours with
    the largest inner product h_j · h_t (embeddings trained jointly; the ranking itself passes no gradient),
    then target attention with a recency embedding. forward(batch) → logits (B,).
    """

    def __init__(self, *, spec: FeatureSpec, config: ModelConfig) -> None:
        super().__init__(spec=spec, config=config, retriever=InnerProductRetriever(),
                         retrieve_k=config.sim_soft.retrieve_k)
