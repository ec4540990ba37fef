"""The one statement of a training example's columns: what build-training-set writes is what the feature
spec reads back and what every model's input groups name."""

import dataclasses

import numpy as np
import pytest

from r2led_model.config import ModelConfig
from r2led_model.models import MODELS, build_model
from r2led_model.models.inputs import (INPUT_LAYOUT, WIDE_LAYOUT, ExampleLayout, FeatureSpec, columns_for,
                                       random_batch)

SPEC = FeatureSpec(num_items=30, num_categories=6, sid_levels=3, sid_vocab=9, routes=("sid1", "sid2", "collab"),
                   route_k=(4, 4, 5), short_window=3, long_history=7, recency_buckets=8)


def types_of(layout: ExampleLayout) -> dict[str, str]:
    return dict(layout.stored_columns())


def test_the_stored_columns_read_back_as_the_same_layout_in_the_same_group_order():
    layout = ExampleLayout(("sid2", "collab", "sid1"))
    stored = [name for name, _ in layout.stored_columns()]
    assert layout.groups == ("r_sid2", "r_collab", "r_sid1", "short", "long")
    assert ExampleLayout.of_columns(stored) == layout
    # Per slot only the item and its recency (the rest follows from the item inside the model), and per
    # route the count of its matches over the whole history.
    assert [n for n in stored if n.startswith("r_collab")] == [
        "r_collab_item", "r_collab_recency", "r_collab_pool"]
    assert types_of(layout)["r_sid1_pool"] == "INT" and "short_pool" not in stored
    assert stored[:7] == ["sample_id", "user_id", "ts", "label", "split", "hist_len", "target_item"]
    assert set(layout.input_columns()) <= set(stored)
    types = dict(layout.stored_columns())
    assert types["long_item"] == "ARRAY<INT>" and types["short_recency"] == "ARRAY<TINYINT>"
    assert ExampleLayout.stored_dtype("r_sid1_item") == np.int32 and ExampleLayout.stored_dtype("long_recency") == np.int8


def test_only_the_current_layout_is_written_and_the_wide_one_names_the_derived_parts():
    with pytest.raises(ValueError, match=f"only layout {INPUT_LAYOUT} is written"):
        ExampleLayout(("sid1",), WIDE_LAYOUT).stored_columns()
    wide = ExampleLayout(("sid1",), WIDE_LAYOUT).input_columns()
    assert {"target_cat", "target_sid", "r_sid1_mask", "long_sid"} <= set(wide)


@pytest.mark.parametrize("name", MODELS)
def test_every_models_input_columns_are_columns_of_the_layout_its_data_has(name):
    model = build_model(name, spec=SPEC, config=dataclasses.replace(ModelConfig(embedding_dim=8), name=name))
    layout = ExampleLayout(SPEC.routes)
    assert set(model.input_groups) <= set(layout.groups)
    assert set(columns_for(model.input_groups)) <= set(layout.input_columns())
    assert set(ExampleLayout(SPEC.routes, WIDE_LAYOUT).input_columns()) <= set(random_batch(SPEC, 2))
