"""SDIM (Cao et al., "Sampling Is All You Need on Modeling Long-Term User Behaviors for CTR Prediction",
CIKM 2022): hash the target and every long-history behaviour with m random-projection hashes (τ bits each);
per hash, the behaviours in the target's bucket are summed and L2-normalised; the m results are averaged
(§3.2–3.3). No attention: the bucket collision probability plays the role of the attention weight."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from r2led_model.config import ModelConfig
from r2led_model.models.inputs import FeatureSpec
from r2led_model.models.layers import Behaviours, InterestCTR, Target, random_hyperplanes, shell_parts


class HashBucketInterest(nn.Module):
    """u_long = mean over m hashes of normalize(Σ_j [bucket_i(h_j) = bucket_i(h_t)] · mask_j · h_j): (B, d).

    A hash is τ sign bits of fixed Gaussian projections (a buffer seeded by `seed`); a hash with no
    matching behaviour contributes 0.
    """

    groups = ("long",)

    def __init__(self, *, dim: int, hashes: int, bits: int, seed: int) -> None:
        super().__init__()
        self.hashes = hashes
        self.bits = bits
        projections = random_hyperplanes(dim=dim, count=hashes * bits, seed=seed)  # (d, m·τ)
        self.register_buffer("projections", projections)

    def signature(self, h: Tensor) -> Tensor:
        """h (..., d) → (..., m, τ) bool."""
        bits = (h @ self.projections) > 0  # (..., m·τ)
        return bits.reshape(*h.shape[:-1], self.hashes, self.bits)  # (..., m·τ) → (..., m, τ)

    def forward(self, target: Target, behaviours: Mapping[str, Behaviours]) -> Tensor:
        long = behaviours["long"]
        same = (self.signature(long.h) == self.signature(target.h)[:, None]).all(-1)  # (B, n, m, τ) → (B, n, m)
        same = same & long.mask[:, :, None]  # (B, n, m)
        pooled = torch.einsum("bnm,bnd->bmd", same.to(long.h.dtype), long.h)  # (B, m, d)
        return F.normalize(pooled, dim=-1).mean(dim=1)  # (B, m, d) → (B, d)


class SDIM(InterestCTR):
    """SDIM (Cao et al., CIKM 2022): retrieves the `long` behaviours sharing the target's bucket under each of
    model.sdim.hashes random-projection hashes (model.sdim.hash_bits bits each, seeded by model.sdim.seed_hash),
    pools them per hash (normalised sum) and averages over hashes. forward(batch) → logits (B,).
    """

    def __init__(self, *, spec: FeatureSpec, config: ModelConfig) -> None:
        options = config.sdim
        long_interest = HashBucketInterest(dim=config.embedding_dim, hashes=options.hashes, bits=options.hash_bits,
                                           seed=options.seed_hash)
        super().__init__(long_interest=long_interest, **shell_parts(spec=spec, config=config))
