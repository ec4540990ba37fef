"""DIN over the whole truncated lifelong history (Zhou et al., KDD 2018, applied to `long`)."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from r2led_model.config import ModelConfig
from r2led_model.models.inputs import FeatureSpec
from r2led_model.models.layers import Behaviours, DinAttention, InterestCTR, Target, shell_parts


class LongDinInterest(nn.Module):
    """u_long = DIN activation-unit pooling over every slot of `long` (no retrieval): (B, d)."""

    groups = ("long",)

    def __init__(self, *, attention: DinAttention) -> None:
        super().__init__()
        self.attention = attention

    def forward(self, target: Target, behaviours: Mapping[str, Behaviours]) -> Tensor:
        return self.attention(target.h, behaviours["long"])


class DINLong(InterestCTR):
    """DIN (Zhou et al., KDD 2018) over the whole truncated `long` history (the no-retrieval upper bound on
    what the long history holds, at the cost of attending over every slot); its own activation unit for
    `long`, plus the shared short-term DIN module. forward(batch) → logits (B,).
    """

    def __init__(self, *, spec: FeatureSpec, config: ModelConfig) -> None:
        long_interest = LongDinInterest(attention=DinAttention(dim=config.embedding_dim))
        super().__init__(long_interest=long_interest, **shell_parts(spec=spec, config=config))
