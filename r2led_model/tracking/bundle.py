"""A trained CTR model as one portable value: which model, its config, its feature spec, its weights,
and the versions of the data it was trained on.

The MLflow pyfunc, the Spark scorer and promotion all rebuild the model from a bundle, so there is
one way to turn stored weights back into a model.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from r2led_model.compat import sectioned_model_values
from r2led_model.config import ModelConfig, build_section
from r2led_model.models import CTRTask, FeatureSpec, build_model
from r2led_model.models.inputs import INPUT_LAYOUT, WIDE_LAYOUT, columns_for
from r2led_model.models.item_lookup import lookup_disagreements

LOOKUP_KEY = "item_lookup"  # the state dict prefix of a model's item lookups (`InterestCTR.item_lookup`)


@dataclass(frozen=True)
class DataVersions:
    """What a model's inputs were built from; scoring and promotion refuse a mismatch."""

    codebook_version: str
    collab_version: str
    training_examples_version: int = -1
    item_index_version: int = -1

    def compatible_with(self, other: "DataVersions") -> list[str]:
        """The feature versions that differ (empty when the two can share inputs)."""
        return [f"{name}: {getattr(self, name)} != {getattr(other, name)}"
                for name in ("codebook_version", "collab_version") if getattr(self, name) != getattr(other, name)]


@dataclass
class ModelBundle:
    model_config: ModelConfig
    spec: FeatureSpec
    versions: DataVersions
    state_dict: dict[str, torch.Tensor] = field(repr=False)

    def build(self) -> CTRTask:
        """The task wrapper around a freshly built model with these weights, in eval mode, on CPU."""
        model = build_model(self.model_config.name, spec=self.spec, config=self.model_config)
        model.load_state_dict(self.state_dict)
        return CTRTask(model).eval()

    @property
    def input_layout(self) -> int:
        """The input contract the model reads: 2 (item indices and recency per slot; it holds its item
        lookups) or 1 (saved before them: every slot's category, SID codes and mask as inputs)."""
        lookup = self.state_dict.get(f"{LOOKUP_KEY}.category")
        return INPUT_LAYOUT if lookup is not None and len(lookup) else WIDE_LAYOUT

    @functools.cached_property
    def input_columns(self) -> list[str]:
        """The columns a caller passes (the pyfunc's signature): those of the model's input layout."""
        model = build_model(self.model_config.name, spec=self.spec, config=self.model_config)
        return columns_for(model.input_groups, self.input_layout) + list(model.extra_input_columns)

    @functools.cached_property
    def narrow_columns(self) -> list[str]:
        """The layout-2 columns `training_examples` holds, which the scorer passes once the model holds
        lookups (`with_item_lookup`), whatever layout it was saved with."""
        model = build_model(self.model_config.name, spec=self.spec, config=self.model_config)
        return columns_for(model.input_groups, INPUT_LAYOUT) + list(model.extra_input_columns)

    def incompatibilities(self, spec: FeatureSpec, versions: DataVersions,
                          lookups: tuple[np.ndarray, np.ndarray] | None = None) -> list[str]:
        """Why this model cannot score inputs built with `spec` and `versions`, and with the current item
        `lookups` (category, sid) where given (empty: it can)."""
        problems = self.versions.compatible_with(versions)
        if lookups is not None:
            problems += self.lookup_incompatibilities(*lookups)
        # Indices are append-only, so a model can score items and categories indexed after it
        # (`CTRTask` maps them to padding/unknown); fewer indices than it knows means another index.
        for name in ("num_items", "num_categories"):
            if getattr(self.spec, name) > getattr(spec, name):
                problems.append(f"feature spec {name}: model has {getattr(self.spec, name)}, current index only "
                                f"{getattr(spec, name)}")
        for name in ("sid_levels", "routes", "route_k", "short_window", "long_history"):
            mine, theirs = getattr(self.spec, name), getattr(spec, name)
            if mine != theirs:
                problems.append(f"feature spec {name}: {mine} != current {theirs}")
        return problems

    def lookup_incompatibilities(self, category: np.ndarray, sid: np.ndarray) -> list[str]:
        """Why the current item lookups (`lookup_arrays` of today's item_index) cannot extend the model's
        (empty: they can). A model saved without lookups (input layout 1) takes them from the tables."""
        if self.input_layout != INPUT_LAYOUT:
            return []
        mine = (self.state_dict[f"{LOOKUP_KEY}.category"].numpy(), self.state_dict[f"{LOOKUP_KEY}.sid"].numpy())
        problems = lookup_disagreements(mine, (category, sid))
        return [f"item lookups differ from item_index ({'; '.join(problems)}): the index or the SIDs changed "
                "since the model was trained; retrain it on the current tables"] if problems else []

    def with_item_lookup(self, category: np.ndarray, sid: np.ndarray) -> "ModelBundle":
        """This bundle holding the current item lookups (items indexed after training included), as the
        scorer runs it; check `lookup_incompatibilities` first."""
        state = {**self.state_dict, f"{LOOKUP_KEY}.category": torch.as_tensor(category, dtype=torch.long),
                 f"{LOOKUP_KEY}.sid": torch.as_tensor(sid, dtype=torch.long)}
        return dataclasses.replace(self, state_dict=state)

    def meta(self) -> dict:
        return {"model": dataclasses.asdict(self.model_config), "spec": self.spec.to_dict(),
                "versions": dataclasses.asdict(self.versions), "input_layout": self.input_layout}

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        torch.save({"meta": json.dumps(self.meta()), "state_dict": self.state_dict}, buffer)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "ModelBundle":
        stored = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        meta = json.loads(stored["meta"])
        return cls(model_config=build_section(ModelConfig, sectioned_model_values(meta["model"]), "model"),
                   spec=FeatureSpec.from_dict(meta["spec"]), versions=DataVersions(**meta["versions"]),
                   state_dict=stored["state_dict"])


def frame_arrays(frame: pd.DataFrame, columns: Sequence[str]) -> dict[str, np.ndarray]:
    """DataFrame columns as arrays: list cells stacked to (N, n), scalars as (N,)."""
    return {c: np.stack(frame[c].to_numpy()) if frame[c].dtype == object else frame[c].to_numpy() for c in columns}


def predict_arrays(task: CTRTask, inputs: Mapping[str, np.ndarray], batch_size: int = 4096) -> np.ndarray:
    """Click probabilities (N,) for column arrays (N,) / (N, n), in chunks."""
    n = len(next(iter(inputs.values())))
    out = np.empty(n, dtype=np.float64)
    with torch.no_grad():
        for start in range(0, n, batch_size):
            batch = {k: torch.as_tensor(np.asarray(v[start:start + batch_size], dtype=np.int64))
                     for k, v in inputs.items()}
            out[start:start + batch_size] = task.predict_proba(batch).double().numpy()
    return out
