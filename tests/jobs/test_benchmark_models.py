"""The models benchmark's sweep settings, tuned variant configs and its oracle table (no Spark needed)."""

from __future__ import annotations

import argparse

import pytest

from jobs.benchmarks.models import ABLATIONS, CatalogueSetting, Variant, format_table, variant_config
from r2led_model.config import load_config
from r2led_model.tuning import TunedParams


def test_catalogue_settings_parse_and_refuse_what_the_world_cannot_be():
    setting = CatalogueSetting.parse("2:0.15")
    assert setting == CatalogueSetting(2, 0.15)
    assert setting.overrides() == ["synthetic.catalogue.category_level=2", "synthetic.catalogue.mislabel_share=0.15"]
    assert CatalogueSetting.parse("3") == CatalogueSetting(3, 0.0)
    for bad in ("4:0.1", "2:1.5", "x:0.1", "2:y"):
        with pytest.raises(argparse.ArgumentTypeError):
            CatalogueSetting.parse(bad)


def test_variant_config_applies_tuned_values_then_the_ablation():
    config = load_config("oracle")
    tuned = TunedParams(model="r2led", params={"training.learning_rate": 0.003, "model.embedding_dim": 32,
                                               "model.dropout": 0.2}, best_valid_auc=0.7, trials=10, completed=9,
                        pruned=1, epochs_per_trial=4, seed=0)
    ablation = next(v for v in ABLATIONS if v.label == "r2led routes=collab")
    out = variant_config(config, ablation, tuned)
    assert out.training.learning_rate == 0.003 and out.model.embedding_dim == 32 and out.model.dropout == 0.2
    assert out.model.routes == ("collab",) and out.model.name == "r2led"
    plain = variant_config(config, Variant("din", "din"), None)
    assert plain.training.learning_rate == config.training.learning_rate and plain.model.name == "din"


def test_the_table_shows_the_oracle_and_each_models_share_of_its_lift():
    row = {"bench": "models_quality", "env": "oracle", "train_rows": 10, "test_rows": 5, "seeds": [0, 1, 2],
           "device": "cpu", "variant": "r2led", "auc": 0.74, "auc_std": 0.01, "gauc": 0.7, "gauc_std": 0.0,
           "logloss": 0.5, "logloss_std": 0.0, "train_s": 1.0, "train_samples_per_s": 100.0, "oracle_auc": 0.8,
           "oracle_gauc": 0.79, "oracle_logloss": 0.45, "lift_share": 0.8}
    table = format_table([row])
    assert "oracle on the same test rows: AUC 0.8000" in table
    assert " 0.800 " in table  # the lift column
