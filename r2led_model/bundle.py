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
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from r2led_model.config import LEGACY_MODEL_KEYS, ModelConfig, build_section, legacy_model_key
from r2led_model.models import CTRTask, FeatureSpec, build_model
from r2led_model.models.inputs import columns_for


# Options added after the first bundles were written, with the value those bundles were built with
# (flat keys: every bundle written before them stored a flat model dict).
LEGACY_MODEL_OPTIONS = {"sid_fusion": "sum", "route_occupancy": False}


def sectioned_model_values(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A bundle's stored model dict in today's layout. Earlier releases stored it flat (`gate`,
    `retrieve_k`, `eta_hash_bits`, ... beside `name`): those keys move into the section of the bundle's
    own model; the ones it never read (another model's options) are dropped, so its sections are those
    of the model that was built. A dict with sections is returned as it is."""
    if not any(key in LEGACY_MODEL_KEYS for key in stored):
        return dict(stored)
    flat = {**LEGACY_MODEL_OPTIONS, **stored}
    name = flat["name"]
    values: dict[str, Any] = {k: v for k, v in flat.items() if k not in LEGACY_MODEL_KEYS}
    for key, value in flat.items():
        moved = legacy_model_key(key, name)
        if moved is not None:
            section, option = moved.split(".")
            values.setdefault(section, {})[option] = value
    return values


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
        return CTRTask(model, vocab=self.spec).eval()

    @functools.cached_property
    def input_columns(self) -> list[str]:
        model = build_model(self.model_config.name, spec=self.spec, config=self.model_config)
        return columns_for(model.input_groups)

    def incompatibilities(self, spec: FeatureSpec, versions: DataVersions) -> list[str]:
        """Why this model cannot score inputs built with `spec` and `versions` (empty: it can)."""
        problems = self.versions.compatible_with(versions)
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

    def meta(self) -> dict:
        return {"model": dataclasses.asdict(self.model_config), "spec": self.spec.to_dict(),
                "versions": dataclasses.asdict(self.versions)}

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
