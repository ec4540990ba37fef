"""DIN baseline: short-term interest only (Zhou et al., "Deep Interest Network for Click-Through Rate
Prediction", KDD 2018)."""

from __future__ import annotations

from r2led_model.config import ModelConfig
from r2led_model.models.inputs import FeatureSpec
from r2led_model.models.layers import InterestCTR, shell_parts


class DIN(InterestCTR):
    """DIN (Zhou et al., KDD 2018): the local activation unit over the `short` window; retrieves nothing.

    No long-term module: logit = MLP([h_t, u_short]). Items are ID + category embeddings (no SIDs).
    forward(batch) → logits (B,).
    """

    def __init__(self, *, spec: FeatureSpec, config: ModelConfig) -> None:
        super().__init__(long_interest=None, **shell_parts(spec=spec, config=config, with_long=False))
