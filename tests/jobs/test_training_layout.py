"""A training_examples table written in the wide layout (input layout 1, before models looked up categories
and SID codes), or one without the route pools stored since, is refused by training with the fix named, and the next
build-training-set rebuilds it; route candidates written before they carried each sample's item and label give the
same examples."""

from __future__ import annotations

import shutil

import pytest
import torch
from pyspark.sql import functions as F

from jobs.runtime.tables import TableStore
from jobs.training import build_training_set
from jobs.training.training_data import TrainingDataError, feature_spec, item_lookup_arrays
from r2led_model.models.item_lookup import ItemLookup
from tests.helpers import config_in, rows


def widened_table(spark, store: TableStore):
    """training_examples as the wide layout stored it: every slot's category, SID codes and mask, no layout."""
    examples = store.read("training_examples").toPandas()
    category, sid = item_lookup_arrays(store)
    lookup = ItemLookup(levels=sid.shape[1])
    lookup.set(category, sid)
    items = [c for c in examples.columns if c.endswith("_item")]
    wide = lookup.widen({c: torch.tensor(list(examples[c])) for c in items})
    for key, value in wide.items():
        if key not in examples.columns:
            examples[key] = value.tolist()
    return spark.createDataFrame(examples.drop(columns=["input_layout"]))


def test_a_wide_table_is_refused_by_training_and_rebuilt_narrow_by_build_training_set(spark, tiny_tables, tmp_path):
    shutil.copytree(tiny_tables, tmp_path / "ws")
    config = config_in(tmp_path / "ws")
    store = TableStore(spark, config.tables)
    narrow = rows(store.read("training_examples"), "sample_id")
    store.overwrite("training_examples", widened_table(spark, store))
    assert "short_cat" in store.read("training_examples").columns

    with pytest.raises(TrainingDataError, match="input layout 1.*re-run build-training-set"):
        feature_spec(store, config)

    result = build_training_set.update(spark, config)
    assert result.full_rebuild
    examples = store.read("training_examples")
    assert "short_cat" not in examples.columns
    assert examples.select("input_layout").distinct().collect() == [(2,)]
    assert rows(examples, "sample_id") == narrow
    assert feature_spec(store, config).num_items > 1
    assert examples.where(F.col("split") == "test").count() > 0


def test_a_table_built_before_route_pools_is_refused_and_rebuilt_with_them(spark, tiny_tables, tmp_path):
    shutil.copytree(tiny_tables, tmp_path / "ws")
    config = config_in(tmp_path / "ws")
    store = TableStore(spark, config.tables)
    current = rows(store.read("training_examples"), "sample_id")
    pools = [c for c in store.read("training_examples").columns if c.endswith("_pool")]
    assert pools == ["r_sid1_pool", "r_sid2_pool", "r_sid3_pool", "r_collab_pool"][:len(pools)] and pools
    store.overwrite("training_examples", store.read("training_examples").drop(*pools))

    with pytest.raises(TrainingDataError, match="lacks .*r_sid1_pool.*re-run build-training-set"):
        feature_spec(store, config)

    result = build_training_set.update(spark, config)
    assert result.full_rebuild
    assert rows(store.read("training_examples"), "sample_id") == current


def test_candidates_without_the_samples_item_and_label_give_the_same_examples(spark, tiny_tables, tmp_path):
    shutil.copytree(tiny_tables, tmp_path / "ws")
    config = config_in(tmp_path / "ws")
    store = TableStore(spark, config.tables)
    current = rows(store.read("training_examples").drop("input_layout"), "sample_id")
    assert {"item_id", "label"} <= set(store.read("route_candidates").columns)
    store.overwrite("route_candidates", store.read("route_candidates").drop("item_id", "label"))

    build_training_set.run(spark, config)
    assert rows(store.read("training_examples").drop("input_layout"), "sample_id") == current
