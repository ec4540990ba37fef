"""The serving catalogue a registered model carries (`r2led_model.serving.catalog`), read from the tables
the model was trained on: the item features retrieval looks up, `item_index`, and the config values
the examples were built with."""

from __future__ import annotations

import logging

from jobs.retrieval import retrieve
from jobs.runtime.tables import TableStore
from r2led_model.config import Config
from r2led_model.retrieval.item_feature_lookup import ItemFeatureLookup
from r2led_model.serving.catalog import ExampleSettings, ServingCatalog
from r2led_model.training.item_index_lookup import ItemIndexLookup

log = logging.getLogger(__name__)


def serving_catalog(store: TableStore, config: Config) -> ServingCatalog:
    inputs = retrieve.retrieval_inputs(store, config)
    features = ItemFeatureLookup.from_arrow(retrieve.item_features(store).toArrow(), inputs.levels, inputs.words)
    index = ItemIndexLookup.from_arrow(store.read("item_index").select("item_id", "item_idx").toArrow())
    settings = ExampleSettings(plan=inputs.plan, short_window=config.training_set.short_window,
                               long_history=config.training_set.long_history,
                               recency_buckets=config.training_set.recency_buckets,
                               max_stored=config.sequences.max_stored)
    catalog = ServingCatalog(features=features, index=index, settings=settings,
                             codebook_version=inputs.codebook_version, collab_version=inputs.collab_version)
    log.info("serving catalogue: %d items (%.1f MB)", len(index.item_ids), catalog.nbytes / 1e6)
    return catalog
