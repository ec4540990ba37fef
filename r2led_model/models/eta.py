"""ETA (Chen et al., "End-to-End User Behavior Retrieval in Click-Through Rate Prediction Model", 2021):
SimHash signatures of the item embeddings, top-k of the long history by Hamming distance to the target's
signature, then target attention (§3, "ETA")."""

from __future__ import annotations

from torch import Tensor, nn

from r2led_model.config import ModelConfig
from r2led_model.models.inputs import FeatureSpec
from r2led_model.models.layers import (
    Behaviours,
    InterestCTR,
    RetrieveThenAttend,
    Target,
    TargetAttention,
    random_hyperplanes,
    shell_parts,
)


class SimHashRetriever(nn.Module):
    """score_j = −Hamming(sign(h_j P), sign(h_t P)) with P (d, bits) fixed Gaussian hyperplanes from `seed`.

    The hyperplanes are a buffer (saved with the model, never trained); the embeddings they hash are the
    model's own, so the retrieval follows the embeddings as they train (ETA's end-to-end point).
    Ties (many at integer distances) go to the more recent behaviour.
    """

    def __init__(self, *, dim: int, bits: int, seed: int) -> None:
        super().__init__()
        self.register_buffer("hyperplanes", random_hyperplanes(dim=dim, count=bits, seed=seed))  # (d, bits)

    def signature(self, h: Tensor) -> Tensor:
        """h (..., d) → (..., bits) bool."""
        return (h @ self.hyperplanes) > 0

    def forward(self, target: Target, behaviours: Behaviours) -> tuple[Tensor, Tensor]:
        sig_t = self.signature(target.h)[:, None, :]  # (B, d) → (B, 1, bits)
        hamming = (self.signature(behaviours.h) != sig_t).sum(-1)  # (B, n, bits) → (B, n)
        return -hamming.float(), behaviours.mask


class ETA(InterestCTR):
    """ETA (Chen et al., 2021): retrieves the model.eta.retrieve_k `long` behaviours nearest the target in
    SimHash Hamming distance (model.eta.hash_bits bits, hyperplanes seeded by model.eta.seed_hash), then target
    attention with a recency embedding. forward(batch) → logits (B,).
    """

    def __init__(self, *, spec: FeatureSpec, config: ModelConfig) -> None:
        dim, options = config.embedding_dim, config.eta
        retriever = SimHashRetriever(dim=dim, bits=options.hash_bits, seed=options.seed_hash)
        attention = TargetAttention(dim=dim, heads=config.attention_heads, recency_buckets=spec.recency_buckets)
        long_interest = RetrieveThenAttend(retriever=retriever, attention=attention, k=options.retrieve_k)
        super().__init__(long_interest=long_interest, **shell_parts(spec=spec, config=config))
