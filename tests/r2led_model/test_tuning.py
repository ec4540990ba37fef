"""Tuned parameters: each retrieving model searches the k of its own section, and a file saved when the
model options were flat (`model.retrieve_k`) still applies, to the model's section."""

from __future__ import annotations

import json

import pytest

from r2led_model.config import ConfigError, load_config, with_values
from r2led_model.training.tuning import SHARED_SPACE, TunedParams, search_space, tuned_config, tuned_path


def test_each_retrieving_model_searches_its_own_sections_k():
    for model in ("sim_hard", "sim_soft", "eta", "twin"):
        assert [p.key for p in search_space(model)] == [p.key for p in SHARED_SPACE] + [f"model.{model}.retrieve_k"]
    for model in ("r2led", "din", "din_long", "sdim"):
        assert search_space(model) == SHARED_SPACE


def saved(folder, model: str, params: dict) -> None:
    tuned_path(folder, model).write_text(json.dumps({
        "model": model, "params": params, "best_valid_auc": 0.7, "trials": 4, "completed": 4, "pruned": 0,
        "epochs_per_trial": 2, "seed": 0}), encoding="utf-8")


def test_an_old_tuned_file_with_a_flat_retrieve_k_applies_to_the_models_section(tmp_path):
    saved(tmp_path, "sim_hard", {"model.retrieve_k": 40, "model.dropout": 0.25, "training.learning_rate": 0.002})
    assert TunedParams.load(tuned_path(tmp_path, "sim_hard")).params == {
        "model.sim_hard.retrieve_k": 40, "model.dropout": 0.25, "training.learning_rate": 0.002}
    config, _ = tuned_config(load_config("tiny", ["model.name=sim_hard"]), folder=tmp_path)
    assert (config.model.sim_hard.retrieve_k, config.model.dropout, config.training.learning_rate) == (40, 0.25, 0.002)
    assert config.model.twin.retrieve_k == 20  # another model's section is untouched


def test_a_new_tuned_file_applies_as_saved_and_a_key_the_model_never_read_is_refused(tmp_path):
    saved(tmp_path, "eta", {"model.eta.retrieve_k": 30})
    config, _ = tuned_config(load_config("tiny", ["model.name=eta"]), folder=tmp_path)
    assert config.model.eta.retrieve_k == 30
    saved(tmp_path, "din", {"model.retrieve_k": 30})  # din never had a k: left for the config to name
    with pytest.raises(ConfigError, match=r"model\.retrieve_k moved to"):
        tuned_config(load_config("tiny", ["model.name=din"]), folder=tmp_path)


def test_with_values_refuses_another_models_key():
    with pytest.raises(ConfigError, match=r"^model\.twin\.retrieve_k: model\.name is sim_soft"):
        with_values(load_config("tiny", ["model.name=sim_soft"]), {"model.twin.retrieve_k": 30})
