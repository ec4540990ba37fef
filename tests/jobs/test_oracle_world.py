"""An oracle-scored world through the real pipeline: impressions become labelled samples, the oracle is
scored on a model's exact test rows, `r2led tune` beats a bad start, and tuned parameters reach `train`."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.sql import functions as F

from jobs.ingest import generate
from jobs.ingest.oracle_truth import load_oracle_truth
from jobs.ingest.sources.synthetic import read_truth
from jobs.orchestration.stages import DATA_STAGES, stages
from jobs.runtime.tables import TableStore
from jobs.training import report_oracle, train, tune
from r2led_model.tracking.runs import child_runs, run_data
from r2led_model.training.tuning import TunedParams, tuned_path
from tests.helpers import config_in

ORACLE = ("synthetic.num_users=150", "synthetic.impressions.enabled=true", "synthetic.impressions.per_user=60",
          "synthetic.catalogue.category_level=1", "synthetic.catalogue.mislabel_share=0.1",
          "synthetic.catalogue.text_noise_share=0.3", "synthetic.dormant_share=0.25", "ingest.behaviors=[pv,imp]",
          "sequences.history_behaviors=[pv]", "sequences.sample_behaviors=[imp]", "sequences.negatives.enabled=never",
          "codebook.codebook_size=16", "codebook.epochs=20")
FAST = ("training.batch_size=128", "model.mlp_dims=[16]", "tuning.epochs_per_trial=2", "tuning.startup_trials=2")
# A deliberately bad start: the smallest learning rate for two epochs barely moves the weights.
BAD = ("training.learning_rate=0.0001", "training.weight_decay=0.001", "model.dropout=0.5", "model.embedding_dim=8")


@pytest.fixture(scope="module")
def world(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("oracle")
    config = config_in(root, *ORACLE)
    generate.run(spark, config)
    for stage in stages(DATA_STAGES):
        stage.run(spark, config)
    return root


def configured(root, *overrides):
    return config_in(root, *ORACLE, *FAST, *overrides)


def test_every_impression_becomes_a_sample_with_its_drawn_click(spark, world):
    config = configured(world)
    store = TableStore(spark, config.tables)
    truth = read_truth(spark, config, "impressions")
    events = store.read("events")
    assert events.where("behavior = 'imp'").count() == truth.count()
    joined = events.where("behavior = 'imp'").join(truth.select("user_id", "item_id", "ts", F.col("label").alias("drawn")),
                                                   ["user_id", "item_id", "ts"])
    assert joined.count() == truth.count() and joined.where("label != drawn").count() == 0
    samples = store.read("samples")
    assert samples.where("is_sampled_negative").count() == 0  # explicit feedback: nothing sampled
    # Samples are impressions only; page views are history only.
    assert samples.join(events.where("behavior = 'pv'"), ["user_id", "item_id", "ts"]).count() == 0
    oracle = load_oracle_truth(spark, config)
    assert oracle.sample_ids.size == samples.count()
    labels = samples.select("sample_id", "label").toPandas().sort_values("sample_id")
    probs = oracle.lookup(labels["sample_id"].to_numpy())
    # The labels follow the truth: five standard deviations of the mean of Bernoulli(p) draws.
    assert abs(labels["label"].mean() - probs.mean()) < 5 * np.sqrt(np.sum(probs * (1 - probs))) / probs.size


def test_train_reports_the_oracle_on_the_same_test_rows(spark, world):
    config = configured(world, "model.name=din", "training.epochs=2", "registry.model_name=oracle_check")
    result = train.run(spark, config)
    store = TableStore(spark, config.tables)
    assert result.test["n"] == store.read("training_examples").where("split = 'test'").count()
    assert 0.6 < result.test["oracle_auc"] < 1.0
    assert result.test["lift_share"] == pytest.approx((result.test["auc"] - 0.5) / (result.test["oracle_auc"] - 0.5))
    _, metrics, _ = run_data(config.mlflow, result.run_id)
    assert metrics["test_oracle_auc"] == pytest.approx(result.test["oracle_auc"])


def test_the_learnable_ceiling_learns_quality_only_from_training_clicks(spark, world):
    config = configured(world)
    store = TableStore(spark, config.tables)
    samples = store.read("samples").select("sample_id", "item_id", "split").toPandas()
    truth = load_oracle_truth(spark, config)
    trained_items = set(samples.loc[samples["split"] == "train", "item_id"])
    relation = truth.lookup(samples["sample_id"].to_numpy(), "relation")
    learned = truth.lookup(samples["sample_id"].to_numpy(), "relation_clicks_quality")
    unseen = ~samples["item_id"].isin(trained_items).to_numpy()
    # An item never shown in training keeps the prior's quality 0; one that was has moved off it.
    assert unseen.any() and np.array_equal(learned[unseen], relation[unseen])
    assert (learned[~unseen] != relation[~unseen]).mean() > 0.9

    report = report_oracle.run(spark, config)
    examples = store.read("training_examples")
    assert report["test"]["n"] == examples.where("split = 'test'").count()
    per_item = report["train_impressions_per_item"]
    assert per_item["mean"] * per_item["items"] == pytest.approx(examples.where("split = 'train'").count())
    for split in ("valid", "test"):
        m = report[split]
        assert m["relation_lift"] == pytest.approx((m["relation_auc"] - 0.5) / (m["auc"] - 0.5))
        assert "relation_community_auc" not in m  # a world without communities has no such partial oracle
    # The world's shape: no communities here, so that share is 0; every test row has a hist_len.
    shape = report["shape"]
    assert shape["test_rows"] == report["test"]["n"] and shape["community_target_share"] == 0
    assert shape["hist_len_median"] >= config.sequences.min_hist_len and shape["oracle_vs_relation"]["se"] > 0


def test_tune_beats_a_bad_start_and_its_parameters_reach_train(spark, world):
    config = configured(world, *BAD, "model.name=din", "registry.model_name=tuned_check")
    tuned = tune.tune_model(spark, config, model="din", trials=4, start_from_config=True)
    trials = child_runs(config.mlflow, tuned.study_run_id)
    assert len(trials) == 4  # nested runs, one per trial
    first = trials[0][2]["best_valid_auc"] if "best_valid_auc" in trials[0][2] else None
    assert trials[0][1]["training.learning_rate"] == "0.0001"  # trial 0 is the bad start
    assert first is not None and tuned.best_valid_auc > first + 0.01
    assert tuned.params != {k: v for k, v in zip(
        ("training.learning_rate", "training.weight_decay", "model.dropout", "model.embedding_dim"),
        (0.0001, 0.001, 0.5, 8))}
    saved = TunedParams.load(tuned_path(config.tuning.output_dir, "din"))
    assert saved == tuned
    # `train --tuned` applies exactly the saved values.
    result = train.run(spark, config, tuned=True)
    params, _, _ = run_data(config.mlflow, result.run_id)
    assert params["model.embedding_dim"] == str(tuned.params["model.embedding_dim"])
    assert float(params["training.learning_rate"]) == pytest.approx(tuned.params["training.learning_rate"])
    assert float(params["model.dropout"]) == pytest.approx(tuned.params["model.dropout"])


def test_train_tuned_without_a_study_names_the_missing_file(spark, world):
    config = configured(world, "model.name=sdim")
    with pytest.raises(FileNotFoundError, match="r2led tune --model"):
        train.run(spark, config, tuned=True)
