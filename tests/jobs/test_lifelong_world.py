"""The tiny twin of the lifelong world (conf/lifelong_tiny.yaml) through generate, every data stage and
`r2led report oracle`: the plants survive ingest, the report prints the world's shape, and the content-feature
references score the benchmark's own test rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pyspark.sql import functions as F

from jobs.benchmarks.content_references import run_references
from jobs.benchmarks.paired_evaluation import load_seed_scores, paired_comparisons
from jobs.benchmarks.residual_rows import FEATURE_SETS, residual_rows
from jobs.benchmarks.row_segments import segments_of_test_rows
from jobs.ingest import generate
from jobs.ingest.sources.synthetic import read_truth
from jobs.orchestration.stages import DATA_STAGES, stages
from jobs.runtime.tables import TableStore
from jobs.training import report_oracle
from jobs.training.training_data import item_lookup_arrays, training_data, user_sample
from r2led_model.config import parse_utc_timestamp
from tests.helpers import config_in

SHAPE_KEYS = {"test_rows", "test_users", "long_history", "hist_len_median", "hist_len_p90", "beyond_window_share",
              "cold_target_share", "dormant_target_share", "dormant_beyond_window_share", "community_target_share",
              "noisy_text_target_share", "oracle_vs_relation"}


@pytest.fixture(scope="module")
def world(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("lifelong")
    config = config_in(root, env="lifelong_tiny")
    generate.run(spark, config)
    for stage in stages(DATA_STAGES):
        stage.run(spark, config)
    return config


def test_launches_and_the_impression_window_survive_ingest(spark, world):
    store = TableStore(spark, world.tables)
    events = store.read("events")
    launch = read_truth(spark, world, "items").select("item_id", "launch_ts")
    assert events.join(launch, "item_id").where(F.col("ts") < F.col("launch_ts")).count() == 0
    start = parse_utc_timestamp(world.synthetic.start_date)
    assert read_truth(spark, world, "items").where(F.col("launch_ts") > start).count() > 0  # some launch late
    first_impression = start + world.synthetic.impressions.from_day * 86_400
    assert events.where("behavior = 'imp'").agg(F.min("ts")).first()[0] >= first_impression
    truth = read_truth(spark, world, "impressions")
    assert {"community", "dormant_target"} <= set(truth.columns)
    assert truth.where("community").count() > 0 and truth.where("dormant_target").count() > 0
    samples = store.read("samples")
    assert samples.agg(F.min("ts")).first()[0] >= parse_utc_timestamp(world.sequences.samples_from)


def test_report_oracle_prints_the_world_shape(spark, world, capsys):
    report = report_oracle.run(spark, world)
    printed = capsys.readouterr().out
    shape = report["shape"]
    assert set(shape) == SHAPE_KEYS
    examples = TableStore(spark, world.tables).read("training_examples")
    test = examples.where("split = 'test'")
    assert shape["test_rows"] == test.count() == report["test"]["n"]
    assert shape["test_users"] == test.select("user_id").distinct().count()
    assert shape["long_history"] == world.training_set.long_history
    # Histories run past the baselines' window; every segment the world plants shows up in the test rows.
    assert shape["hist_len_median"] > world.training_set.long_history
    assert shape["hist_len_p90"] >= shape["hist_len_median"]
    for key in ("cold_target_share", "dormant_target_share", "community_target_share", "noisy_text_target_share"):
        assert 0 < shape[key] < 1, key
    assert 0 <= shape["dormant_beyond_window_share"] <= 1
    paired = shape["oracle_vs_relation"]
    assert paired["se"] > 0 and paired["low"] <= paired["difference"] <= paired["high"]
    assert "relation_community_auc" in report["test"]
    for text in ("world shape (test)", "history length: median", "cold targets", "dormant-interest targets",
                 "community targets", "paired scale", "relation + community membership"):
        assert text in printed, text
    saved = json.loads((Path(world.workspace.root) / "reports" / "oracle" / "report.json").read_text())
    assert saved["shape"]["test_rows"] == shape["test_rows"]
    # Content features alone, on the very rows the oracle is scored on.
    references = report["references"]
    assert set(references) == {"topic_counts", "topic_counts_item_encoding", "sid_counts", "sid_counts_item_encoding"}
    for by_split in references.values():
        assert by_split["test"]["n"] == report["test"]["n"] and by_split["valid"]["n"] == report["valid"]["n"]
        assert 0 < by_split["test"]["auc"] < 1
    assert "content features alone" in printed and "SID-prefix counts" in printed


def test_every_test_row_gets_its_segments(spark, world):
    segments = segments_of_test_rows(spark, world)
    test_ids = np.sort(TableStore(spark, world.tables).read("training_examples").where("split = 'test'")
                       .select("sample_id").toPandas()["sample_id"].to_numpy())
    assert np.array_equal(segments["sample_id"], test_ids)
    assert set(segments) == {"sample_id", "warmth", "dormant", "relevance", "text"}
    assert set(segments["warmth"]) <= {"0", "1-4", "5-19", "20+"} and "0" in set(segments["warmth"])
    assert set(segments["dormant"]) == {"yes", "no"} and set(segments["text"]) <= {"noisy", "clean"}
    assert set(segments["relevance"]) <= {"community", "taxonomy", "both", "none"}
    assert len(set(segments["relevance"])) >= 2  # both planted forces show up in the tiny world's test rows


def test_the_offline_category_route_holds_only_the_targets_category(spark, world):
    store = TableStore(spark, world.tables)
    rows = store.read("training_examples").select("target_item", "r_category_item").toPandas()
    category, _ = item_lookup_arrays(store)  # the category the model looks each item index up in
    items = np.stack(rows["r_category_item"].to_numpy())  # (S, k)
    mask = items != 0  # (S, k)
    assert mask.any()
    assert (category[items[mask]] == np.repeat(category[rows["target_item"].to_numpy()], mask.sum(axis=1))).all()


def test_tuning_reads_the_same_share_of_users_for_every_model(spark, world, tmp_path):
    store = TableStore(spark, world.tables)
    data = training_data(store, world)
    sample = user_sample(store, data, share=0.5, seed=3, folder=str(tmp_path))
    again = user_sample(store, data, share=0.5, seed=3, folder=str(tmp_path))  # reused, not drawn again
    assert sample.files == again.files and sample.files["test"] == data.files["test"]
    examples = store.read("training_examples")
    for split in ("train", "valid"):
        rows = spark.read.parquet(*sample.files[split]).select("user_id", "sample_id").toPandas()
        assert 0 < len(rows) == sample.rows[split] < data.rows[split]
        users = set(rows["user_id"])
        every = examples.where(F.col("split") == split).select("user_id", "sample_id").toPandas()
        # Every row of a chosen user, and only chosen users.
        assert sorted(every[every["user_id"].isin(users)]["sample_id"]) == sorted(rows["sample_id"])
    assert user_sample(store, data, share=1.0, seed=3, folder=str(tmp_path)) is data


def test_references_are_saved_like_a_variant_and_feed_the_residual_check(spark, world, tmp_path):
    runs = run_references(spark, world, tmp_path, seeds=[0, 1])
    assert {r.reference.variant for r in runs} == {"lr planted", "lr planted+te", "lr sid", "lr sid+te"}
    test_ids = np.sort(TableStore(spark, world.tables).read("training_examples").where(F.col("split") == "test")
                       .select("sample_id").toPandas()["sample_id"].to_numpy())
    for run in runs:
        saved = load_seed_scores(tmp_path, run.reference.variant, [0, 1])
        assert np.array_equal(saved.sample_ids, test_ids)  # the very rows every model is scored on
        assert np.array_equal(saved.probs[0], saved.probs[1]) and ((saved.probs > 0) & (saved.probs < 1)).all()
        assert 0 < run.valid["auc"] < 1
    [pair] = paired_comparisons(tmp_path, [("lr sid+te", "lr sid")], [0, 1], reps=50)
    assert pair["delta_low"] <= pair["delta"] <= pair["delta_high"]
    residuals = residual_rows(tmp_path, ["lr sid", "lr planted+te"], [0, 1], reps=50)
    assert [(r["variant"], r["features"]) for r in residuals] == [
        (label, name) for label in ("lr sid", "lr planted+te") for name in FEATURE_SETS]
    for r in residuals:
        assert np.isfinite(r["delta"]) and r["delta_low"] <= r["delta"] <= r["delta_high"]
