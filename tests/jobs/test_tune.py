"""A study's trial configs (no Spark needed): the tuned model's own section takes the trial's values, and
the options of the model the config was written for do not follow it."""

from __future__ import annotations

from jobs.training.tune import current_values, trial_config
from r2led_model.config import R2LEDConfig, for_model, load_config
from r2led_model.training.tuning import search_space


def test_a_trial_sets_the_tuned_models_own_k_and_leaves_r2leds_options_behind():
    config = load_config("tiny", ["model.r2led.route_fusion=mean", "tuning.epochs_per_trial=2"])
    trial = trial_config(config, "twin", {"model.twin.retrieve_k": 30, "model.dropout": 0.1})
    assert (trial.model.name, trial.model.twin.retrieve_k, trial.model.dropout) == ("twin", 30, 0.1)
    assert trial.model.r2led == R2LEDConfig() and trial.model.sim_hard.retrieve_k == 20
    assert trial.training.epochs == 2 and trial.training.num_processes == 1


def test_a_study_can_start_from_the_configs_own_values_of_a_sectioned_key():
    config = load_config("tiny", ["model.name=eta", "model.eta.retrieve_k=40", "training.weight_decay=0"])
    values = current_values(for_model(config, "eta"), search_space("eta"))
    assert values["model.eta.retrieve_k"] == 40
    assert values["training.weight_decay"] == 1e-8  # 0 sits below the log range: its edge
