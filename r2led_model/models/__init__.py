"""CTR models: R2LED and the long-history baselines, on one batch contract (`inputs.py`).

Shape glossary (used in every shape comment of this package):
  B  batch size
  T  history length (the user's lifelong sequence; `long` keeps its most recent T = long_history)
  L  SID levels
  R  routes (r_<route> groups R2LED reads)
  k  candidates per route (or behaviours kept by an in-model retrieval)
  d  embedding dim
  n  slots of a behaviour group (k for a route, short_window for `short`, long_history for `long`)
  H  attention heads

Every model maps a batch to logits (B,) and names the groups it reads in `input_groups`;
`CTRTask` owns the loss. Build one with `build_model(name, spec=..., config=...)`.
"""

from r2led_model.models.inputs import FeatureSpec
from r2led_model.models.registry import MODELS, build_model
from r2led_model.models.task import CTRTask

__all__ = ["MODELS", "CTRTask", "FeatureSpec", "build_model"]
