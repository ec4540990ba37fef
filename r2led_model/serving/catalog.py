"""What a served model looks raw item ids up in, and the settings it assembles examples with.

A registered model that takes raw ids carries this catalogue as an artifact (`serving_catalog.npz`),
written at training time from the tables the model was trained on:
  * raw item id → SID codes, SimHash words and category, for the retrieval kernel
    (`ItemFeatureLookup`, the arrays `retrieve` looks behaviours up in);
  * raw item id → item index (`ItemIndexLookup` of `item_index`), which the network's embeddings and
    item lookups read;
  * the route plan, the short and long windows, the recency buckets and the stored-sequence cap.
So a request needs nothing but ids and times, and the served model runs the same kernel and example
assembly as the pipeline. An item indexed after training is unknown to the catalogue (the next
registered model knows it). Cost: about 52 bytes per item for 3-level SIDs and 64-bit SimHash.
"""

from __future__ import annotations

import dataclasses
import io
import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from r2led_model.retrieval.item_feature_lookup import ItemFeatureLookup
from r2led_model.retrieval.multi_route import RoutePlan, RouteSpec
from r2led_model.training.item_index_lookup import ItemIndexLookup

CATALOG_ARTIFACT = "serving_catalog"  # the artifact key (and file stem) of the catalogue in a model's folder
CATALOG_FORMAT = 1  # bumped when the stored arrays change meaning


@dataclass(frozen=True)
class ExampleSettings:
    """How the pipeline built the examples the model was trained on (config values at training time)."""

    plan: RoutePlan
    short_window: int  # training_set.short_window
    long_history: int  # training_set.long_history
    recency_buckets: int  # training_set.recency_buckets
    max_stored: int  # sequences.max_stored: a history keeps its newest behaviours, as user_sequences does

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ExampleSettings":
        plan = dict(values["plan"])
        plan["routes"] = tuple(RouteSpec(**route) for route in plan["routes"])
        return cls(**{**values, "plan": RoutePlan(**plan)})


@dataclass(frozen=True)
class ServingCatalog:
    features: ItemFeatureLookup  # raw id → SID codes, SimHash words, category (the retrieval kernel's view)
    index: ItemIndexLookup  # raw id → item index (item_id and item_idx only)
    settings: ExampleSettings
    codebook_version: str
    collab_version: str

    @property
    def nbytes(self) -> int:
        return self.features.nbytes + self.index.item_ids.nbytes + self.index.item_idx.nbytes

    def to_bytes(self) -> bytes:
        meta = {"format": CATALOG_FORMAT, "settings": self.settings.to_dict(),
                "codebook_version": self.codebook_version, "collab_version": self.collab_version}
        buffer = io.BytesIO()
        np.savez(buffer, meta=np.array(json.dumps(meta)), feature_item_ids=self.features.item_ids,
                 codes=self.features.codes, signatures=self.features.signatures,
                 categories=self.features.categories, index_item_ids=self.index.item_ids,
                 index_item_idx=self.index.item_idx)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "ServingCatalog":
        with np.load(io.BytesIO(data), allow_pickle=False) as stored:
            meta = json.loads(str(stored["meta"]))
            if meta.get("format") != CATALOG_FORMAT:
                raise ValueError(f"serving catalogue format {meta.get('format')}; this release reads "
                                 f"{CATALOG_FORMAT}")
            features = ItemFeatureLookup(item_ids=stored["feature_item_ids"], codes=stored["codes"],
                                         signatures=stored["signatures"], categories=stored["categories"])
            index = ItemIndexLookup.from_arrow(pa.table({"item_id": stored["index_item_ids"],
                                                         "item_idx": stored["index_item_idx"]}))
            return cls(features=features, index=index, settings=ExampleSettings.from_dict(meta["settings"]),
                       codebook_version=meta["codebook_version"], collab_version=meta["collab_version"])
