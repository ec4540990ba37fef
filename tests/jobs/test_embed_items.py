"""embed-items: text through the sentence encoder inside Spark; items without text get ALS vectors
mapped into the text space; items with neither are rejected with a reason."""

from __future__ import annotations

import numpy as np
import pytest

from jobs.sids.embed_items import build_item_embeddings
from r2led_model.config import EmbeddingConfig
from r2led_model.sids.text_encoder import load_text_encoder

KITCHEN = ["kitchen chef knife steel", "kitchen frying pan nonstick", "kitchen cutting board bamboo",
           "kitchen measuring cups set", "kitchen whisk balloon", "kitchen pasta pot large",
           "kitchen spatula silicone", "kitchen mixing bowl glass", "kitchen pepper grinder",
           "kitchen baking tray", "kitchen chef knife ceramic", "kitchen sauce pan copper",
           "kitchen ladle stainless", "kitchen grater box", "kitchen colander metal"]
GARDEN = ["garden hose expandable", "garden rake leaf", "garden shovel steel", "garden pruning shears",
          "garden watering can", "garden wheelbarrow", "garden gloves leather", "garden hoe weeding",
          "garden sprinkler lawn", "garden seed tray", "garden hose reel", "garden trowel hand",
          "garden compost bin", "garden fork digging", "garden lawn mower"]


@pytest.fixture(scope="module")
def embedded(spark):
    # Items 0-19 kitchen (15-19 without text), 20-39 garden (35-38 without text), 39 has nothing.
    items = [(i, None, KITCHEN[i] if i < 15 else None) for i in range(20)]
    items += [(20 + i, None, GARDEN[i] if i < 15 else None) for i in range(20)]
    items_df = spark.createDataFrame(items, "item_id BIGINT, category_id BIGINT, text STRING")
    # Users 0-9 touch kitchen items, users 10-19 garden items (never item 39).
    events = [(u, item, 1000 + t) for u in range(20) for t, item in
              enumerate(range(0, 20) if u < 10 else range(20, 39))]
    events_df = spark.createDataFrame(events, "user_id BIGINT, item_id BIGINT, ts BIGINT")
    config = EmbeddingConfig(als_rank=4, als_iterations=8, batch_size=8)
    embeddings, rejected, stats = build_item_embeddings(spark, items_df, events_df, config, until_ts=None)
    vectors = {r["item_id"]: (np.array(r["vector"]), r["encoder"]) for r in embeddings.collect()}
    return vectors, rejected.collect(), stats


def test_text_items_match_the_encoder_run_outside_spark(embedded):
    vectors, _, stats = embedded
    assert stats["from_text"] == 30
    local = load_text_encoder("all-minilm-l6-v2").encode(KITCHEN[:2])
    assert np.allclose(vectors[0][0], local[0], atol=1e-5) and np.allclose(vectors[1][0], local[1], atol=1e-5)
    assert vectors[0][1] == "all-minilm-l6-v2" and vectors[0][0].shape == (384,)


def test_items_without_text_are_imputed_into_the_text_space_near_their_kind(embedded):
    vectors, _, _ = embedded
    imputed = [i for i, (_, enc) in vectors.items() if enc == "all-minilm-l6-v2<-als"]
    assert sorted(imputed) == [15, 16, 17, 18, 19, 35, 36, 37, 38]
    kitchen = np.mean([vectors[i][0] for i in range(15)], axis=0)
    garden = np.mean([vectors[i][0] for i in range(20, 35)], axis=0)
    for item in imputed:
        vector = vectors[item][0]
        assert abs(np.linalg.norm(vector) - 1) < 1e-4
        nearer_kitchen = vector @ kitchen > vector @ garden
        assert nearer_kitchen == (item < 20), f"item {item} imputed on the wrong side"


def test_an_item_with_neither_text_nor_interactions_is_rejected(embedded):
    vectors, rejected, _ = embedded
    assert 39 not in vectors
    assert [(r["item_id"], r["stage"], r["reason"]) for r in rejected] == [
        (39, "embed-items", "no_text_and_no_training_interactions")]


def test_encoder_refuses_empty_text():
    with pytest.raises(ValueError, match="non-empty"):
        load_text_encoder("all-minilm-l6-v2").encode(["fine", "  "])
