"""The registered CTR models, by the name `model.name` uses."""

from __future__ import annotations

import typing

from torch import nn

from r2led_model.config import ModelConfig
from r2led_model.models.din import DIN
from r2led_model.models.din_long import DINLong
from r2led_model.models.eta import ETA
from r2led_model.models.inputs import FeatureSpec
from r2led_model.models.r2led import R2LED
from r2led_model.models.sdim import SDIM
from r2led_model.models.sim import SIMHard, SIMSoft
from r2led_model.models.twin import TWIN

MODELS: dict[str, type[nn.Module]] = {
    "r2led": R2LED,
    "din": DIN,
    "din_long": DINLong,
    "sim_hard": SIMHard,
    "sim_soft": SIMSoft,
    "eta": ETA,
    "sdim": SDIM,
    "twin": TWIN,
}
assert set(MODELS) == set(typing.get_args(typing.get_type_hints(ModelConfig)["name"])), \
    "model.name's allowed values in the config schema are exactly the registered models"


def build_model(name: str, *, spec: FeatureSpec, config: ModelConfig) -> nn.Module:
    """The model registered as `name`, built for `spec` with `config` (a ModelConfig; config.name is not read).

    Parameters are drawn from torch's global RNG: seed it first for a reproducible model.
    """
    try:
        model_class = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODELS)}") from None
    return model_class(spec=spec, config=config)
