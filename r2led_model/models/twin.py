"""TWIN (Chang et al., "TWIN: TWo-stage Interest Network for Lifelong User Behavior Modeling in CTR
Prediction at Kuaishou", KDD 2023): the General Search Unit ranks the long history with the *same*
target-attention scores the Exact Search Unit uses (§3, "consistency-preserved GSU"), keeps the top k,
and the ESU attends over them."""

from __future__ import annotations

from torch import Tensor, nn

from r2led_model.config import ModelConfig
from r2led_model.models.inputs import FeatureSpec
from r2led_model.models.layers import Behaviours, InterestCTR, RetrieveThenAttend, Target, TargetAttention, shell_parts


class AttentionScoreRetriever(nn.Module):
    """score_j = the ESU's pre-softmax attention logit for slot j (mean over heads); parameters shared."""

    def __init__(self, *, attention: TargetAttention) -> None:
        super().__init__()
        self.attention = attention  # the ESU's own module, not a copy

    def forward(self, target: Target, behaviours: Behaviours) -> tuple[Tensor, Tensor]:
        return self.attention.scores(target.h, behaviours), behaviours.mask  # (B, n), (B, n)


class TWIN(InterestCTR):
    """TWIN (Chang et al., KDD 2023): retrieves the model.twin.retrieve_k `long` behaviours with the highest ESU
    target-attention logits (GSU and ESU share one TargetAttention), then ESU attention over them.
    forward(batch) → logits (B,).
    """

    def __init__(self, *, spec: FeatureSpec, config: ModelConfig) -> None:
        attention = TargetAttention(dim=config.embedding_dim, heads=config.attention_heads,
                                    recency_buckets=spec.recency_buckets)
        long_interest = RetrieveThenAttend(retriever=AttentionScoreRetriever(attention=attention),
                                           attention=attention, k=config.twin.retrieve_k)
        super().__init__(long_interest=long_interest, **shell_parts(spec=spec, config=config))
