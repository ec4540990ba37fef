"""The CTR task: owns the loss around a model that only returns logits (torchrec's DLRMTrain split)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from r2led_model.models.inputs import Batch


class CTRTask(nn.Module):
    """Binary click prediction around `model` (batch → logits (B,)).

    forward(batch) → logits (B,); loss(batch) → scalar mean BCE-with-logits against batch["label"];
    predict_proba(batch) → (B,) click probabilities, without autograd (the caller sets eval mode).
    The model itself maps ids beyond its tables to padding / unknown (`InterestCTR.inputs`), so a trained
    model can score items indexed after it.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    @property
    def input_groups(self) -> tuple[str, ...]:
        return self.model.input_groups

    def forward(self, batch: Batch) -> Tensor:
        return self.model(batch)

    def loss(self, batch: Batch) -> Tensor:
        return F.binary_cross_entropy_with_logits(self(batch), batch["label"].float())

    @torch.no_grad()
    def predict_proba(self, batch: Batch) -> Tensor:
        return torch.sigmoid(self(batch))
