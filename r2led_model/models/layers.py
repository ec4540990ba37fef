"""Shared building blocks of every CTR model: embeddings, attention units, retrieval, head, and the model shell.

Shapes follow the glossary in `r2led_model/models/__init__.py`. Every model here is an `InterestCTR`: it embeds
the target and the behaviour groups it reads, pools a long-term interest (the part that differs between R2LED
and the baselines), a short-term interest with the same DIN unit everywhere, and scores
MLP([h_t, u_long, u_short, h_t ⊙ u_long]) → one logit (design.md §4, "Refinement").

Padding (index 0, mask 0) never changes an output: attention uses `masked_softmax` (an all-masked row gives
a zero vector, not NaN), pooling multiplies by the mask, and retrieval never selects a padded slot.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, get_args

import torch
from torch import Tensor, nn

from r2led_model.compat import missing_item_bias
from r2led_model.config import GateMode, ModelConfig
from r2led_model.models.inputs import Batch, FeatureSpec, pool_column, within_vocab
from r2led_model.models.item_lookup import ItemLookup

GATE_MODES: tuple[str, ...] = get_args(GateMode)

# Small init keeps the first attention logits near uniform and the first logits near 0 (loss ≈ log 2).
EMBEDDING_INIT_STD = 0.1
# Item ID rows start ten times smaller: most items are seen in few batches (long tail), and a row that has not
# trained yet should add little noise to h(v), so that an unseen item is scored by its category and SIDs.
ITEM_INIT_STD = 0.01


# --------------------------------------------------------------------------------------
# What the interest modules see
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """The candidate item: representation h (B, d) and category index cat (B,)."""

    h: Tensor  # (B, d)
    cat: Tensor  # (B,)
    sid: Tensor | None = None  # (B, L) SID codes, 0 = padding / unknown
    warmth: Tensor | None = None  # (B,) warmth bucket of the item's training impressions (warmth gate only)
    item: Tensor | None = None  # (B,) item index within the model's tables (0: indexed after it was trained)


class ItemViews(NamedTuple):
    """What `ItemEmbedding.lookup` reads for items (B, *n)."""

    e_id: Tensor | None  # (B, *n, d); None without an ID table
    e_sid: Tensor | None  # (B, *n, d), or (B, *n, L, d) per level; None without SID tables
    warmth: Tensor | None  # (B, *n) the warmth gate's bucket, 0 where the ID reads the OOV row; else None


@dataclass(frozen=True)
class Behaviours:
    """One behaviour group (a route, the short window or the long history), embedded.

    h (B, n, d); mask (B, n) bool, True for a real behaviour; recency (B, n) bucket, 0 for padding;
    cat (B, n) category index, 0 for padding. Slot order is the group's order (best or most recent first).
    """

    h: Tensor  # (B, n, d)
    mask: Tensor  # (B, n) bool
    recency: Tensor  # (B, n)
    cat: Tensor  # (B, n)
    sid: Tensor | None = None  # (B, n, L) SID codes, 0 = padding / unknown
    pool: Tensor | None = None  # (B,) a route's matches over the whole stored history (r_<route>_pool), if read

    def take(self, idx: Tensor, selected: Tensor) -> Behaviours:
        """The slots at idx (B, k), with mask `selected` (B, k) (a gathered padded slot stays masked)."""
        d = self.h.shape[-1]
        h = self.h.gather(1, idx[:, :, None].expand(-1, -1, d))  # (B, k, d)
        sid = None
        if self.sid is not None:
            sid = self.sid.gather(1, idx[:, :, None].expand(-1, -1, self.sid.shape[-1]))  # (B, k, L)
            sid = sid * selected[:, :, None]
        return Behaviours(h=h, mask=selected, recency=self.recency.gather(1, idx) * selected,
                          cat=self.cat.gather(1, idx) * selected, sid=sid)


# --------------------------------------------------------------------------------------
# Masked primitives
# --------------------------------------------------------------------------------------


def per_slot(context: Tensor, like: Tensor) -> Tensor:
    """A row's context (B, c) repeated for every slot of `like` (B, *n, d) → (B, *n, c); (B, c) for targets."""
    ctx = context.reshape(context.shape[0], *([1] * (like.dim() - 2)), context.shape[-1])  # (B, 1, …, 1, c)
    return ctx.expand(*like.shape[:-1], ctx.shape[-1])


def masked_softmax(scores: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """Softmax over `dim` restricted to mask True; a row with no True entry gives all zeros (not NaN)."""
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    # An all-masked row is uniform here and zeroed by the mask below; elsewhere masked entries underflow to 0.
    return torch.softmax(scores, dim=dim) * mask


def top_k_slots(scores: Tensor, eligible: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k best eligible slots per row, ties broken by slot order (most recent / best first).

    scores (B, n) float, eligible (B, n) bool → idx (B, min(k, n)) int64 and selected (B, min(k, n)) bool.
    Ineligible slots (padding included) are never selected: when a row has fewer than k eligible slots,
    the tail of idx points at arbitrary slots and `selected` is False there.
    """
    k = min(k, scores.shape[1])
    ranked = scores.masked_fill(~eligible, float("-inf"))  # (B, n)
    order = torch.sort(ranked, dim=1, descending=True, stable=True).indices  # (B, n); stable: earlier slot wins ties
    idx = order[:, :k]  # (B, k)
    return idx, eligible.gather(1, idx)


# --------------------------------------------------------------------------------------
# Item representation (design.md §4, "Refinement": SID-level fusion)
# --------------------------------------------------------------------------------------


class SidGate(nn.Module):
    """SID-level fusion of an item's ID and SID embeddings (design.md §4, "Refinement").

    gate:        h = g ⊙ e_id + (1 − g) ⊙ P·e_sid,  g = σ(W[e_id; e_sid])
    target_gate: as gate with g = σ(W[e_id; e_sid; e_id(t); e_sid(t)]) (the gate also sees the target)
    sum:         h = e_id + P·e_sid
    id_only:     h = e_id          (what the baselines use: they have no SIDs)
    sid_only:    h = P·e_sid

    e_id, e_sid: (..., d); context (B, 2d) for target_gate, broadcast over the middle dims → h (..., d).
    P has no bias, so an all-padding item (e_id = e_sid = 0) maps to h = 0.
    """

    per_level = False
    uses_warmth = False  # reads the items' warmth buckets (WarmthGate)

    def __init__(self, *, dim: int, mode: GateMode) -> None:
        super().__init__()
        if mode not in GATE_MODES:
            raise ValueError(f"unknown gate {mode!r}; expected one of {', '.join(GATE_MODES)}")
        self.mode = mode
        self.dim = dim
        self.project = nn.Linear(dim, dim, bias=False) if self.uses_sid else None  # P
        if mode == "warmth":
            raise ValueError("the warmth gate is WarmthGate (item_embedding builds it)")
        gate_inputs = {"gate": 2 * dim, "target_gate": 4 * dim}.get(mode)
        self.gate = nn.Linear(gate_inputs, dim) if gate_inputs else None  # W
        # A counterfactual (`r2led_model.evaluation.counterfactuals`): a fixed g for every item instead of σ(W[...]).
        self.frozen: Tensor | None = None

    @property
    def uses_id(self) -> bool:
        return self.mode != "sid_only"

    @property
    def uses_sid(self) -> bool:
        return self.mode != "id_only"

    def context(self, e_id: Tensor | None, e_sid: Tensor | None) -> Tensor | None:
        """The target context the target-aware gate reads: [e_id(t); e_sid(t)] (B, 2d), else None."""
        if self.mode != "target_gate":
            return None
        return torch.cat([e_id, e_sid], dim=-1)  # (B, 2d)

    def forward(self, e_id: Tensor | None, e_sid: Tensor | None, context: Tensor | None = None,
                warmth: Tensor | None = None) -> Tensor:
        if self.mode == "id_only":
            return e_id
        p_sid = self.project(e_sid)  # (..., d)
        if self.mode == "sid_only":
            return p_sid
        if self.mode == "sum":
            return e_id + p_sid
        gate_in = [e_id, e_sid]
        if self.mode == "target_gate":
            gate_in.append(per_slot(context, e_id))  # the same target context for every slot of the row
        g = torch.sigmoid(self.gate(torch.cat(gate_in, dim=-1))) if self.frozen is None else self.frozen  # (..., d)
        return g * e_id + (1 - g) * p_sid

    def weights(self, e_id: Tensor, e_sid: Tensor, context: Tensor | None = None,
                warmth: Tensor | None = None) -> Tensor:
        """The gate g (..., d) the fusion would apply (gate / target_gate modes)."""
        gate_in = [e_id, e_sid] + ([context] if context is not None else [])
        return torch.sigmoid(self.gate(torch.cat(gate_in, dim=-1)))


class LevelGate(SidGate):
    """SID-level fusion with one component per SID level (`model.r2led.sid_fusion: per_level`).

    gate / target_gate: h = g_0 ⊙ e_id + Σ_l g_l ⊙ P_l e_l, with (g_0, …, g_L) = softmax over the 1 + L
                 components, per dimension, of W[e_id; e_1; …; e_L] (target_gate: also the target's);
    sum:         h = e_id + Σ_l P_l e_l;   sid_only: h = Σ_l P_l e_l;   id_only: h = e_id.

    So the gate can trust a coarse level for one item and a fine level or the ID for another, instead of
    weighing the ID against one summed SID vector. e_sid here is (..., L, d), one row per level.
    """

    per_level = True

    def __init__(self, *, dim: int, mode: GateMode, levels: int) -> None:
        nn.Module.__init__(self)
        if mode not in GATE_MODES:
            raise ValueError(f"unknown gate {mode!r}; expected one of {', '.join(GATE_MODES)}")
        self.mode, self.dim, self.levels = mode, dim, levels
        self.project = nn.ModuleList(nn.Linear(dim, dim, bias=False) for _ in range(levels)) if self.uses_sid else None
        components = (1 + levels) * dim
        gate_inputs = {"gate": components, "target_gate": 2 * components}.get(mode)
        self.gate = nn.Linear(gate_inputs, components) if gate_inputs else None
        self.frozen: Tensor | None = None  # a fixed (1+L, d) share of each component (counterfactual)

    def context(self, e_id: Tensor | None, e_sid: Tensor | None) -> Tensor | None:
        if self.mode != "target_gate":
            return None
        return torch.cat([e_id, e_sid.flatten(-2)], dim=-1)  # (B, d) + (B, L, d) → (B, (1+L)·d)

    def forward(self, e_id: Tensor | None, e_sid: Tensor | None, context: Tensor | None = None,
                warmth: Tensor | None = None) -> Tensor:
        if self.mode == "id_only":
            return e_id
        projected = torch.stack([p(e_sid[..., level, :]) for level, p in enumerate(self.project)], dim=-2)  # (..., L, d)
        if self.mode == "sid_only":
            return projected.sum(dim=-2)
        if self.mode == "sum":
            return e_id + projected.sum(dim=-2)
        components = torch.cat([e_id.unsqueeze(-2), projected], dim=-2)  # (..., 1+L, d)
        gate_in = [e_id, e_sid.flatten(-2)]  # (..., d), (..., L·d)
        if self.mode == "target_gate":
            gate_in.append(per_slot(context, e_id))
        if self.frozen is not None:
            return (self.frozen * components).sum(dim=-2)  # (1+L, d) broadcast over (..., 1+L, d) → (..., d)
        logits = self.gate(torch.cat(gate_in, dim=-1))  # (..., (1+L)·d)
        g = torch.softmax(logits.reshape(*components.shape), dim=-2)  # (..., (1+L)·d) → (..., 1+L, d)
        return (g * components).sum(dim=-2)  # (..., d)

    def weights(self, e_id: Tensor, e_sid: Tensor, context: Tensor | None = None,
                warmth: Tensor | None = None) -> Tensor:
        """The components' shares (..., 1+L, d): ID first, then each SID level."""
        gate_in = [e_id, e_sid.flatten(-2)] + ([context] if context is not None else [])
        logits = self.gate(torch.cat(gate_in, dim=-1))  # (..., (1+L)·d)
        return torch.softmax(logits.reshape(*e_id.shape[:-1], -1, e_id.shape[-1]), dim=-2)  # (..., 1+L, d)


# The warmth gate's prior at initialisation: the logit of its ID weight runs from −WARMTH_PRIOR_LOGIT
# for never-seen items to +WARMTH_PRIOR_LOGIT for the warmest bucket (σ(±1.5) ≈ 0.18 / 0.82).
WARMTH_PRIOR_LOGIT = 1.5


def log2_bucket(count: Tensor, buckets: int) -> Tensor:
    """count (...) int → log2 bucket (...): 0 for 0, 1 for 1, 2 for 2–3, 3 for 4–7, …, buckets − 1 and up
    (an item's warmth here, a route pool's occupancy in `r2led`)."""
    bucket = torch.floor(torch.log2(count.clamp(min=1).to(torch.float32))).long() + 1
    return torch.where(count > 0, bucket, torch.zeros_like(bucket)).clamp(max=buckets - 1)


class WarmthGate(SidGate):
    """SID-level fusion with one ID weight per item, chosen by how well the item's ID can be trained
    (`model.r2led.gate: warmth`).

    h = g · e_id + (1 − g) · P·e_sid,  g = σ(u · [n(e_id); n(e_sid)] + b[warmth])
    (with `target`: g = σ(u · [n(e_id); n(e_sid); n(t_id); n(t_sid)] + b[warmth]), t the target's views)

    warmth: the item's log2 bucket of training impressions (`log2_bucket`); b: one bias per bucket,
    starting at the prior "SIDs for cold, ID for warm" (a logit ramp, WARMTH_PRIOR_LOGIT); n: layer norm
    without affine parameters, so the gate reads what the embeddings say, not their scale (a rarely
    updated ID row is small); u starts at 0, so g starts at the prior. One scalar per item keeps it
    readable: `weights` is the ID's share. Items too rare to own an ID, and dropped IDs while training,
    read a shared out-of-vocabulary row (`ItemEmbedding`).
    """

    uses_warmth = True

    def __init__(self, *, dim: int, buckets: int, target: bool = False) -> None:
        nn.Module.__init__(self)
        self.mode, self.dim, self.buckets, self.target = "warmth", dim, buckets, target
        self.project = nn.Linear(dim, dim, bias=False)  # P
        self.gate = nn.Linear((4 if target else 2) * dim, 1, bias=False)  # u
        nn.init.zeros_(self.gate.weight)
        self.warmth_bias = nn.Parameter(torch.linspace(-WARMTH_PRIOR_LOGIT, WARMTH_PRIOR_LOGIT, buckets))  # b
        self.frozen: Tensor | None = None  # a fixed (1,) ID weight for every item (counterfactual)

    def _normed(self, e_id: Tensor, e_sid: Tensor) -> Tensor:
        return torch.cat([nn.functional.layer_norm(e_id, (self.dim,)),
                          nn.functional.layer_norm(e_sid, (self.dim,))], dim=-1)  # (..., 2d)

    def context(self, e_id: Tensor | None, e_sid: Tensor | None) -> Tensor | None:
        """The target's normalised views (B, 2d) for the gate of every slot, when it reads the target."""
        return self._normed(e_id, e_sid) if self.target else None

    def forward(self, e_id: Tensor | None, e_sid: Tensor | None, context: Tensor | None = None,
                warmth: Tensor | None = None) -> Tensor:
        g = self.weights(e_id, e_sid, context, warmth=warmth) if self.frozen is None else self.frozen  # (..., 1)
        return g * e_id + (1 - g) * self.project(e_sid)  # (..., d)

    def weights(self, e_id: Tensor, e_sid: Tensor, context: Tensor | None = None,
                warmth: Tensor | None = None) -> Tensor:
        """The ID weight g (..., 1); warmth (...) buckets; context (B, 2d) the target's, with `target`."""
        gate_in = self._normed(e_id, e_sid)  # (..., 2d)
        if self.target:
            gate_in = torch.cat([gate_in, per_slot(context, e_id)], dim=-1)  # (..., 4d): the row's target per slot
        return torch.sigmoid(self.gate(gate_in) + self.warmth_bias[warmth][..., None])  # (..., 1)


class ItemEmbedding(nn.Module):
    """h(v) = fusion(e_id(v), e_sid(v)) + e_cat(v), for targets (B,) and behaviour slots (B, n).

    e_id: num_items × d; e_sid: the sum over the L levels of that level's code embedding (sid_vocab × d each);
    e_cat: num_categories × d. Every table has padding row 0 (a zero vector). The category embedding is
    *added* after fusion (one more field of the item, kept out of the ID/SID gate so the gate only weighs
    ID against SID). Tables the fusion does not read (SID tables for id_only, the ID table for sid_only)
    are not created. The ID table starts at std ITEM_INIT_STD, the others at EMBEDDING_INIT_STD.

    With the warmth gate the embedding also holds each item's training impressions (`impressions`, a
    buffer the trainer fills: `set_item_impressions`; saved with the weights) and one shared
    out-of-vocabulary ID row: an item with fewer than `id_min_count` impressions reads it instead of its
    own row, and so does a share `id_dropout` of ID lookups while training.
    """

    def __init__(self, *, num_items: int, num_categories: int, sid_levels: int, sid_vocab: int, dim: int,
                 fusion: SidGate, id_min_count: int = 1, id_dropout: float = 0.0) -> None:
        super().__init__()
        self.dim = dim
        self.num_items = num_items  # rows of the ID table (padding 0 included), also without one (sid_only)
        self.sid_levels = sid_levels
        self.fusion = fusion
        self.item = nn.Embedding(num_items, dim, padding_idx=0) if fusion.uses_id else None
        self.category = nn.Embedding(num_categories, dim, padding_idx=0)
        self.sid = (nn.ModuleList(nn.Embedding(sid_vocab, dim, padding_idx=0) for _ in range(sid_levels))
                    if fusion.uses_sid else None)
        for table in self.tables():
            nn.init.normal_(table.weight, std=ITEM_INIT_STD if table is self.item else EMBEDDING_INIT_STD)
            with torch.no_grad():
                table.weight[0].zero_()
        self.id_min_count, self.id_dropout = id_min_count, id_dropout
        self.oov: nn.Parameter | None = None
        if fusion.uses_warmth:
            self.oov = nn.Parameter(torch.randn(dim) * ITEM_INIT_STD)  # (d,)
            self.register_buffer("impressions", torch.zeros(num_items, dtype=torch.long))  # (num_items,)

    def tables(self) -> list[nn.Embedding]:
        return [t for t in [self.item, self.category, *(self.sid or [])] if t is not None]

    def set_item_impressions(self, counts: Tensor) -> None:
        """Each item's training impressions (num_items,) as the warmth gate reads them; a no-op without one."""
        if self.oov is not None:
            if counts.shape != self.impressions.shape:
                raise ValueError(f"impressions for {tuple(counts.shape)} items; the ID table has "
                                 f"{tuple(self.impressions.shape)}")
            self.impressions.copy_(counts)

    def lookup(self, item: Tensor, sid: Tensor, real: Tensor | None = None) -> ItemViews:
        """item (B, *n), sid (B, *n, L) → the item's ID and SID views and, with the warmth gate, its warmth.

        real (B, *n) bool, where known: the slots that hold an item. With the warmth gate a real slot whose
        index is 0 (an item indexed after the model was trained, `inputs.within_vocab`) reads the OOV row,
        as an item too rare to own an ID does; elsewhere index 0 is padding. An ID that reads the OOV row
        (rare, unknown, or dropped while training) is seen as cold, warmth bucket 0: so training's dropped
        IDs teach the gate and the route fusion what to do with a never-seen target, which no training
        target is (each has at least its own impression)."""
        e_id, warmth = None, None
        if self.item is not None:
            if self.oov is None:
                e_id = self.item(item)
            else:
                impressions = self.impressions[item]  # (B, *n)
                oov = (impressions < self.id_min_count) & (item > 0)  # (B, *n)
                if real is not None:
                    oov |= real & (item == 0)
                if self.training and self.id_dropout > 0:
                    oov |= (torch.rand(item.shape, device=item.device) < self.id_dropout) & (item > 0)
                # Row 0 (padding, never updated) in place of an OOV item: its own row is neither read nor touched.
                e_id = torch.where(oov[..., None], self.oov, self.item(item.masked_fill(oov, 0)))  # (B, *n, d)
                warmth = log2_bucket(impressions, self.fusion.buckets).masked_fill(oov, 0)  # (B, *n)
        e_sid = None
        if self.sid is not None:
            levels = [table(sid[..., level]) for level, table in enumerate(self.sid)]  # L × (B, *n, d)
            # per-level fusion keeps the levels apart: (B, *n, L, d); otherwise their sum (B, *n, d)
            e_sid = torch.stack(levels, dim=-2) if self.fusion.per_level else sum(levels)
        return ItemViews(e_id=e_id, e_sid=e_sid, warmth=warmth)

    def gate_weights(self, item: Tensor, sid: Tensor) -> Tensor | None:
        """The gate's weights for targets item (B,), sid (B, L): (B, d) gate / target_gate, (B, 1+L, d)
        per level, (B, 1) warmth; None for a fusion without a gate."""
        if self.fusion.mode not in ("gate", "target_gate", "warmth"):
            return None
        views = self.lookup(item, sid, real=torch.ones_like(item, dtype=torch.bool))
        return self.fusion.weights(views.e_id, views.e_sid, self.fusion.context(views.e_id, views.e_sid),
                                   warmth=views.warmth)

    def embed_target(self, item: Tensor, cat: Tensor, sid: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """item (B,), cat (B,), sid (B, L) → h_t (B, d), the gate context (B, 2d) or None, and the warmth
        (B,) the gate saw or None."""
        views = self.lookup(item, sid, real=torch.ones_like(item, dtype=torch.bool))  # every target is an item
        context = self.fusion.context(views.e_id, views.e_sid)
        h = self.fusion(views.e_id, views.e_sid, context, warmth=views.warmth) + self.category(cat)
        return h, context, views.warmth

    def forward(self, item: Tensor, cat: Tensor, sid: Tensor, context: Tensor | None = None,
                real: Tensor | None = None) -> Tensor:
        """item (B, n), cat (B, n), sid (B, n, L), context (B, 2d) or None, real (B, n) bool (the mask) or
        None → h (B, n, d)."""
        views = self.lookup(item, sid, real)
        return self.fusion(views.e_id, views.e_sid, context, warmth=views.warmth) + self.category(cat)


def item_embedding(*, spec: FeatureSpec, dim: int, gate: GateMode, per_level: bool = False,
                   warmth_buckets: int = 8, id_min_count: int = 1, id_dropout: float = 0.0,
                   warmth_target: bool = False) -> ItemEmbedding:
    """The ItemEmbedding of a FeatureSpec with the given SID fusion (baselines: gate="id_only")."""
    if gate == "warmth":
        fusion: SidGate = WarmthGate(dim=dim, buckets=warmth_buckets, target=warmth_target)
    elif per_level:
        fusion = LevelGate(dim=dim, mode=gate, levels=spec.sid_levels)
    else:
        fusion = SidGate(dim=dim, mode=gate)
    return ItemEmbedding(num_items=spec.num_items, num_categories=spec.num_categories, sid_levels=spec.sid_levels,
                         sid_vocab=spec.sid_vocab, dim=dim, fusion=fusion, id_min_count=id_min_count,
                         id_dropout=id_dropout)


# --------------------------------------------------------------------------------------
# Attention units
# --------------------------------------------------------------------------------------


class TargetAttention(nn.Module):
    """Multi-head target attention: the target queries n behaviours (Vaswani et al. 2017 scaled dot product).

    keys = values = h_j + e_rec(recency_j) (recency embedding, padding row 0, when recency_buckets is given).
    forward(target (B, d), behaviours) → (B, d); a row with no real behaviour gives 0.
    `scores` exposes the pre-softmax logits averaged over heads (B, n), which TWIN's GSU ranks by.
    """

    def __init__(self, *, dim: int, heads: int, recency_buckets: int | None = None) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention heads ({heads}) must divide the embedding dim ({dim})")
        self.heads = heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.recency = None
        if recency_buckets is not None:
            self.recency = nn.Embedding(recency_buckets, dim, padding_idx=0)
            nn.init.normal_(self.recency.weight, std=EMBEDDING_INIT_STD)
            with torch.no_grad():
                self.recency.weight[0].zero_()

    def _heads(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        return x.reshape(b, n, self.heads, d // self.heads).transpose(1, 2)  # (B, n, d) → (B, H, n, d/H)

    def _keys(self, behaviours: Behaviours) -> Tensor:
        h = behaviours.h
        if self.recency is not None:
            h = h + self.recency(behaviours.recency)  # (B, n, d)
        return h

    def _logits(self, target: Tensor, keys: Tensor) -> Tensor:
        b, d = target.shape
        q = self.query(target).reshape(b, self.heads, 1, d // self.heads)  # (B, d) → (B, H, 1, d/H)
        k = self._heads(self.key(keys))  # (B, H, n, d/H)
        return (q @ k.transpose(-1, -2)).squeeze(2) / math.sqrt(d // self.heads)  # (B, H, n)

    def scores(self, target: Tensor, behaviours: Behaviours) -> Tensor:
        """Pre-softmax attention logits, mean over heads: (B, n)."""
        return self._logits(target, self._keys(behaviours)).mean(dim=1)

    def weights(self, target: Tensor, behaviours: Behaviours) -> Tensor:
        """The attention weights (B, H, n) of every head over the behaviours (0 on padding)."""
        return masked_softmax(self._logits(target, self._keys(behaviours)), behaviours.mask[:, None, :])

    def forward(self, target: Tensor, behaviours: Behaviours,
                reweight: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """`reweight` (a counterfactual) maps the weights (B, H, n) to the ones pooled instead."""
        keys = self._keys(behaviours)  # (B, n, d)
        b, _, d = keys.shape
        weights = masked_softmax(self._logits(target, keys), behaviours.mask[:, None, :])  # (B, H, n)
        if reweight is not None:
            weights = reweight(weights)
        v = self._heads(self.value(keys))  # (B, H, n, d/H)
        pooled = (weights[:, :, None, :] @ v).reshape(b, d)  # (B, H, 1, d/H) → (B, d)
        return self.out(pooled)


class DinAttention(nn.Module):
    """DIN's local activation unit (Zhou et al., KDD 2018, §4.3): weighted sum pooling.

    w_j = MLP([q, k_j, q − k_j, q ⊙ k_j]) (PReLU hidden layers, one linear output), u = Σ_j mask_j · w_j · k_j.
    As in the paper the weights are *not* softmax-normalised, so the pooled vector keeps the intensity of
    the user's interest; padded slots get weight 0 and an empty group gives u = 0.
    forward(target (B, d), behaviours) → (B, d).
    """

    def __init__(self, *, dim: int, hidden: Sequence[int] = (36,)) -> None:
        # (36,) is DIN's activation-unit width in the paper's experiments.
        super().__init__()
        layers: list[nn.Module] = []
        width = 4 * dim
        for size in hidden:
            layers += [nn.Linear(width, size), nn.PReLU()]  # one shared slope: PReLU channels are dim 1
            width = size
        layers.append(nn.Linear(width, 1))
        self.unit = nn.Sequential(*layers)

    def forward(self, target: Tensor, behaviours: Behaviours) -> Tensor:
        keys = behaviours.h  # (B, n, d)
        q = target[:, None, :].expand_as(keys)  # (B, d) → (B, n, d)
        weights = self.unit(torch.cat([q, keys, q - keys, q * keys], dim=-1)).squeeze(-1)  # (B, n)
        weights = weights * behaviours.mask
        return (weights[:, :, None] * keys).sum(dim=1)  # (B, d)


class RetrieveThenAttend(nn.Module):
    """Two-stage long-term interest: a retriever (GSU) scores the group's behaviours, the top k eligible ones
    go to target attention (ESU). Used by SIM (hard, soft), ETA and TWIN; each supplies its retriever.

    A retriever is a module `retriever(target, behaviours) → (scores (B, n), eligible (B, n) bool)`.
    """

    def __init__(self, *, retriever: nn.Module, attention: TargetAttention, k: int, group: str = "long") -> None:
        super().__init__()
        self.retriever = retriever
        self.attention = attention
        self.k = k
        self.groups = (group,)

    def select(self, target: Target, behaviours: Behaviours) -> tuple[Tensor, Tensor]:
        """The retrieved slots: idx (B, k') and selected (B, k') bool, k' = min(k, n); padding never selected."""
        with torch.no_grad():  # selection is a hard choice: no gradient flows through the ranking
            scores, eligible = self.retriever(target, behaviours)
        return top_k_slots(scores, eligible & behaviours.mask, self.k)

    def forward(self, target: Target, behaviours: Mapping[str, Behaviours]) -> Tensor:
        group = behaviours[self.groups[0]]
        idx, selected = self.select(target, group)
        return self.attention(target.h, group.take(idx, selected))  # (B, d)


# --------------------------------------------------------------------------------------
# Head and model shell
# --------------------------------------------------------------------------------------


class MLPHead(nn.Module):
    """MLP(dims, PReLU, dropout) → one logit: x (B, in_dim) → (B,).

    PReLU as in DIN's MLP (Zhou et al., KDD 2018, §4.3): a plain ReLU head can collapse (every hidden unit
    dead for a whole class of rows), which stalls training at a high learning rate.
    """

    def __init__(self, *, in_dim: int, dims: Sequence[int], dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for size in dims:
            layers += [nn.Linear(width, size), nn.PReLU(size), nn.Dropout(dropout)]  # (B, size)
            width = size
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(x).squeeze(-1)  # (B, 1) → (B,)


class InterestCTR(nn.Module):
    """The shell every model shares: embed, pool long- and short-term interest, score.

    logit = head([h_t, u_long, u_short, h_t ⊙ u_long]) + b(t); without a long-term module (DIN) the head reads
    [h_t, u_short]. b(t) is a per-item bias (a num_items × 1 table, zero at the start and for padding): an
    item's own click rate, which the head need not encode in h_t. The short-term module is a DinAttention
    over `short` in every model, so models differ only in `long_interest`. forward(batch) → logits (B,); the
    batch's `label` is never read. State dicts saved before the bias existed load with b = 0.

    A batch may be narrow (per slot only `<group>_item` and `_recency`, input layout 2): `item_lookup` adds
    each slot's category, SID codes and mask from the item index (`inputs`), then ids beyond the model's
    tables (items indexed after training) map to padding / the unknown category.
    """

    def __init__(self, *, embedding: ItemEmbedding, long_interest: nn.Module | None, short_interest: DinAttention,
                 head: MLPHead) -> None:
        super().__init__()
        self.embedding = embedding
        self.long_interest = long_interest
        self.short_interest = short_interest
        self.head = head
        # from_pretrained: zeros without a random draw, so the other parameters keep their seeded values.
        self.item_bias = nn.Embedding.from_pretrained(torch.zeros(embedding.num_items, 1), freeze=False,
                                                      padding_idx=0)  # (num_items, 1)
        self.item_lookup = ItemLookup(levels=embedding.sid_levels)

    def inputs(self, batch: Batch) -> dict[str, Tensor]:
        """What the model reads of a batch, narrow or wide: every slot's category, SID codes and mask (looked
        up for a narrow batch), with ids beyond the model's tables mapped to padding / unknown. Integer
        inputs of any width (training_examples stores items as int32, recency as int8) are read as int64."""
        wide = {key: value.long() if not value.is_floating_point() and value.dtype != torch.long else value
                for key, value in batch.items()}
        return within_vocab(self.item_lookup.widen(wide), num_items=self.embedding.num_items,
                            num_categories=self.embedding.category.num_embeddings)

    def gate_weights(self, batch: Batch) -> Tensor | None:
        """The SID-level gate's weights for the batch's targets (`ItemEmbedding.gate_weights`)."""
        inputs = self.inputs(batch)
        return self.embedding.gate_weights(inputs["target_item"], inputs["target_sid"])

    def item_parameters(self) -> list[nn.Parameter]:
        """The parameters with one row per item (ID table, unless sid_only, and the bias): the optimizer gives
        them `training.item_learning_rate` (r2led_model.training.optim)."""
        table = self.embedding.item
        return [*([table.weight] if table is not None else []), self.item_bias.weight]

    @property
    def reads_item_impressions(self) -> bool:
        """Whether the item representation reads each item's training impressions (the warmth gate)."""
        return self.embedding.oov is not None

    def set_item_impressions(self, counts: Tensor) -> None:
        """Each item's training impressions (num_items,), for an item representation that reads them (the
        warmth gate); the trainer calls it before training, and a saved model keeps them."""
        self.embedding.set_item_impressions(counts)

    @property
    def extra_input_columns(self) -> tuple[str, ...]:
        """Input columns beyond its groups' slot columns (`inputs.columns_for`) that the model reads: R2LED's
        route pools (`r_<route>_pool`) when its occupancy counts the whole history; none otherwise."""
        return ()

    @property
    def input_groups(self) -> tuple[str, ...]:
        """The behaviour groups this model reads (r_<route>, short, long)."""
        long_groups = tuple(self.long_interest.groups) if self.long_interest is not None else ()
        return (*long_groups, "short")

    @staticmethod
    def head_inputs(dim: int, *, with_long: bool) -> int:
        return 4 * dim if with_long else 2 * dim

    def encode(self, batch: Batch) -> tuple[Target, dict[str, Behaviours]]:
        """Embed the target and every group in input_groups (of the batch's `inputs`)."""
        batch = self.inputs(batch)
        levels = self.embedding.sid_levels
        h_t, context, warmth = self.embedding.embed_target(batch["target_item"], batch["target_cat"],
                                                           batch["target_sid"])
        groups = {}
        for group in self.input_groups:
            item = batch[f"{group}_item"]  # (B, n)
            b, n = item.shape
            sid = batch[f"{group}_sid"].reshape(b, n, levels)  # (B, n·L) → (B, n, L)
            cat = batch[f"{group}_cat"]
            mask = batch[f"{group}_mask"].bool()
            groups[group] = Behaviours(h=self.embedding(item, cat, sid, context, real=mask), mask=mask,
                                       recency=batch[f"{group}_recency"], cat=cat, sid=sid,
                                       pool=batch.get(pool_column(group)))
        return Target(h=h_t, cat=batch["target_cat"], sid=batch["target_sid"],
                      warmth=warmth, item=batch["target_item"]), groups

    def forward(self, batch: Batch) -> Tensor:
        target, groups = self.encode(batch)
        bias = self.item_bias(target.item).squeeze(-1)  # (B, 1) → (B,)
        u_short = self.short_interest(target.h, groups["short"])  # (B, d)
        if self.long_interest is None:
            return self.head(torch.cat([target.h, u_short], dim=-1)) + bias  # (B, 2d) → (B,)
        u_long = self.long_interest(target, groups)  # (B, d)
        features = torch.cat([target.h, u_long, u_short, target.h * u_long], dim=-1)  # (B, 4d)
        return self.head(features) + bias  # (B,)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        missing_item_bias(state_dict, prefix, lambda: torch.zeros_like(self.item_bias.weight))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)


def shell_parts(*, spec: FeatureSpec, config: ModelConfig, gate: GateMode | None = None,
                with_long: bool = True, per_level: bool | None = None) -> dict[str, nn.Module]:
    """The embedding, short-term module and head of a model built from (spec, config).

    R2LED passes its own gate and per_level. Baselines leave them None: their items are ID-only, or, with
    `model.item_sids` (the "+SID" controls), fused with the SIDs exactly as R2LED's default fuses them
    (`model.r2led`'s gate and sid_fusion, which a baseline's config keeps at their defaults).
    """
    if gate is None:
        gate = config.r2led.gate if config.item_sids else "id_only"
    if per_level is None:
        per_level = config.item_sids and config.r2led.sid_fusion == "per_level"
    dim = config.embedding_dim
    return {
        "embedding": item_embedding(spec=spec, dim=dim, gate=gate, per_level=per_level,
                                    warmth_buckets=config.r2led.warmth_buckets,
                                    id_min_count=config.r2led.id_min_count, id_dropout=config.r2led.id_dropout,
                                    warmth_target=config.r2led.warmth_target),
        "short_interest": DinAttention(dim=dim),
        "head": MLPHead(in_dim=InterestCTR.head_inputs(dim, with_long=with_long), dims=config.mlp_dims,
                        dropout=config.dropout),
    }


def random_hyperplanes(*, dim: int, count: int, seed: int) -> Tensor:
    """(dim, count) standard-normal projection columns, a pure function of (dim, count, seed)."""
    return torch.randn(dim, count, generator=torch.Generator().manual_seed(seed))
