"""The CTR task: owns the loss around a model that only returns logits (torchrec's DLRMTrain split)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from r2led_model.models.inputs import Batch, FeatureSpec, within_vocab


class CTRTask(nn.Module):
    """Binary click prediction around `model` (batch → logits (B,)).

    forward(batch) → logits (B,); loss(batch) → scalar mean BCE-with-logits against batch["label"];
    predict_proba(batch) → (B,) click probabilities, without autograd (the caller sets eval mode).
    With `vocab` (the spec the model was trained with), ids beyond its tables are mapped to
    padding / unknown first: a trained model can score items indexed after it.
    """

    def __init__(self, model: nn.Module, vocab: FeatureSpec | None = None) -> None:
        super().__init__()
        self.model = model
        self.vocab = vocab

    @property
    def input_groups(self) -> tuple[str, ...]:
        return self.model.input_groups

    def _inputs(self, batch: Batch) -> Batch:
        return batch if self.vocab is None else within_vocab(batch, self.vocab)

    def forward(self, batch: Batch) -> Tensor:
        return self.model(self._inputs(batch))

    def loss(self, batch: Batch) -> Tensor:
        return F.binary_cross_entropy_with_logits(self(batch), batch["label"].float())

    @torch.no_grad()
    def predict_proba(self, batch: Batch) -> Tensor:
        return torch.sigmoid(self(batch))
