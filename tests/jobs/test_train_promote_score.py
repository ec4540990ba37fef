"""train → MLflow run and registered version → promote (champion/challenger) → score, on a tiny
synthetic world built by the real pipeline; plus a 2-process TorchDistributor run."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
import torch
from mlflow import MlflowClient
from pyspark.sql import functions as F

import r2led_model.tracking.mlflow_model as mlflow_model
from jobs.orchestration import pipeline
from jobs.orchestration.stages import stage
from jobs.registry import promote, score
from jobs.registry.local_server import served_model
from jobs.runtime import spark_progress
from jobs.runtime.tables import TableStore
from jobs.training import train, worker
from jobs.training.training_data import training_data
from r2led_model.serving.requests import REQUEST_COLUMNS
from r2led_model.tracking.bundle import DataVersions, ModelBundle
from r2led_model.tracking.mlflow_model import load_bundle, log_ctr_model, model_version
from r2led_model.tracking.runs import configure, run_data, tracked_run
from tests.helpers import IVY_DIR, config_in, rows, trained_world

FAST = ("training.epochs=3", "training.batch_size=128", "training.reader_workers=1", "model.embedding_dim=8",
        "model.mlp_dims=[16]")


@pytest.fixture(scope="module")
def world(spark, tiny_tables, tmp_path_factory):
    return trained_world(spark, tiny_tables, tmp_path_factory.mktemp("train") / "workspace", *FAST)


def configured(root, *overrides):
    return config_in(root, *FAST, *overrides)


def aliases(config) -> dict[str, str]:
    configure(config.mlflow)
    return {k: str(v) for k, v in MlflowClient().get_registered_model(config.registry.model_name).aliases.items()}


def test_training_run_holds_the_promised_params_metrics_artifacts_and_model(spark, world, tmp_path):
    config = configured(world, "registry.model_name=run_check")
    result = train.run(spark, config)
    params, metrics, artifacts = run_data(config.mlflow, result.run_id)
    store = TableStore(spark, config.tables)
    assert params["model.name"] == "r2led"
    assert params["input.training_examples_version"] == str(store.version("training_examples"))
    assert params["input.codebook_version"].startswith("cb-")
    assert params["input.collab_version"].startswith("cv-")
    assert {"test_auc", "test_gauc", "test_logloss", "valid_auc", "best_valid_auc", "best_epoch"} <= set(metrics)
    assert 0.0 <= metrics["test_auc"] <= 1.0 and metrics["test_logloss"] > 0
    history = MlflowClient().get_metric_history(result.run_id, "valid_auc")
    assert [m.step for m in history] == list(range(len(history))) and len(history) >= 2
    assert {"config.yaml", "history.json", "plots/roc.png", "plots/calibration.png",
            "plots/loss_curves.png", "diagnostics.json", "plots/refinement.png"} <= set(artifacts)
    # R2LED's refinement diagnostics: every test row, split by its target's train-split impressions.
    diagnostics = result.diagnostics
    assert diagnostics["rows"] == result.test["n"]
    assert sum(v["rows"] for v in diagnostics["by_segment"]["warmth"].values()) == result.test["n"]
    assert 0.0 < sum(diagnostics["route_weight"].values()) <= 1.0 + 1e-3  # rounded; rows without a candidate weigh none
    assert metrics["diag_route_entropy"] == pytest.approx(diagnostics["route_entropy"])
    # Lineage: the Delta tables it read, at the versions it read, as the run's input datasets.
    inputs = {i.dataset.name: (json.loads(i.dataset.source), {t.key: t.value for t in i.tags})
              for i in MlflowClient().get_run(result.run_id).inputs.dataset_inputs}
    assert set(inputs) == {"training_examples", "item_index"}
    for table, (source, tags) in inputs.items():
        assert source == {"path": store.location(table)}
        assert tags == {"mlflow.data.context": "training", "delta_version": str(store.version(table))}
    # The registered version: tagged with its inputs, with a signature and pinned requirements.
    version = MlflowClient().get_model_version(config.registry.model_name, result.version)
    assert version.tags["codebook_version"] == params["input.codebook_version"]
    # The logged model behind the version carries the run's test metrics (the oracle's too, where a world has one).
    test_metrics = {k: v for k, v in metrics.items() if k.startswith("test_")}
    assert {"test_auc", "test_gauc", "test_logloss", "test_n"} <= set(test_metrics)
    logged = mlflow.models.get_model_info(f"models:/{config.registry.model_name}/{result.version}").model_id
    on_model = [(m.key, m.value) for m in mlflow.get_logged_model(logged).metrics if m.key.startswith("test_")]
    assert sorted(on_model) == sorted(test_metrics.items())  # each once
    assert test_metrics["test_auc"] == pytest.approx(result.test["auc"])
    assert version.tags["architecture"] == "r2led"
    info = mlflow.models.get_model_info(f"models:/{config.registry.model_name}/{result.version}")
    # The served contract: raw ids and times (docs/serving.md), with the serving catalogue beside the weights.
    assert info.signature.inputs.input_names() == list(REQUEST_COLUMNS)
    assert set(info.flavors["python_function"]["artifacts"]) == {"bundle", "serving_catalog"}
    requirements = mlflow.pyfunc.get_model_dependencies(f"models:/{config.registry.model_name}/{result.version}")
    with open(requirements) as handle:
        pinned = handle.read()
    assert "torch==" in pinned and "+cpu" not in pinned
    # Logged as code (models from code): no pickle in the model's folder, and promotion and scoring read
    # the same weights (tests/r2led_model/test_mlflow_model.py loads such a folder in a bare process).
    assert info.flavors["python_function"]["loader_module"] == "mlflow.pyfunc.loaders.code_model"
    folder = Path(mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{config.registry.model_name}/{result.version}", dst_path=str(tmp_path)))
    assert (folder / "pyfunc_model.py").is_file() and [p.name for p in folder.rglob("*.pkl")] == []
    served = mlflow.pyfunc.load_model(f"models:/{config.registry.model_name}/{result.version}").unwrap_python_model()
    bundle = load_bundle(config.mlflow, f"models:/{config.registry.model_name}/{result.version}")
    assert all(torch.equal(bundle.state_dict[k], v) for k, v in served.bundle.state_dict.items())
    # The pyfunc loads and reproduces the run's test metric from the table rows.
    assert result.test["n"] == training_data(store, config).rows["test"]


def test_promotion_accepts_better_refuses_worse_and_refuses_a_version_mismatch(spark, world):
    base = ("registry.model_name=promo",)
    # An untrained-looking first model (tiny learning rate, one epoch): with no champion it must still
    # reach registry.min_first_metric (set out of reach here), so it is refused and nothing is served.
    weak = train.run(spark, configured(world, *base, "training.epochs=1", "training.learning_rate=1e-7"))
    config = configured(world, *base)
    refused = promote.run(spark, configured(world, *base, "registry.min_first_metric=1.0"))
    assert not refused.promoted and refused.champion_version is None
    assert "below registry.min_first_metric 1.0" in refused.reason
    assert aliases(config) == {"challenger": weak.version}
    assert MlflowClient().get_model_version("promo", weak.version).tags["promotion"] == "refused"
    # `r2led promote --force` is the one override: the operator makes it the first champion.
    argv = ["--env", "tiny", "--set", f"workspace.root={world}", "--set", f"spark.ivy_dir={IVY_DIR}",
            *[a for o in (*FAST, *base, "registry.min_first_metric=1.0") for a in ("--set", o)], "--force"]
    assert promote.main(argv) == 0
    assert aliases(config) == {"champion": weak.version, "challenger": weak.version}
    assert MlflowClient().get_model_version("promo", weak.version).tags["promotion_reason"].startswith(
        "forced by the operator")

    strong = train.run(spark, configured(world, *base, "training.epochs=6", "training.learning_rate=1e-2"))
    second = promote.run(spark, configured(world, *base))
    assert second.promoted, second.reason
    assert second.metrics["challenger_test_auc"] > second.metrics["champion_test_auc"]
    assert aliases(config)["champion"] == strong.version
    assert aliases(config)["previous_champion"] == weak.version

    worse = train.run(spark, configured(world, *base, "training.epochs=1", "training.learning_rate=1e-7"))
    third = promote.run(spark, configured(world, *base))
    assert not third.promoted and "strictly better" in third.reason
    assert aliases(config)["champion"] == strong.version and aliases(config)["challenger"] == worse.version
    tags = MlflowClient().get_model_version("promo", worse.version).tags
    assert tags["promotion"] == "refused"

    # A better-trained model, but built on another codebook: refused, whatever its numbers.
    good = load_bundle(config.mlflow, f"models:/promo/{strong.version}")
    alien = dataclasses.replace(good, versions=dataclasses.replace(good.versions, codebook_version="cb-other"))
    job = worker.TrainJob(good.model_config, config.training, training_data(TableStore(spark, config.tables), config), "")
    example = next(iter(worker.make_feed(job, "test", shuffle=False).batches(0)))
    with tracked_run(config, "alien"):
        registered = log_ctr_model(alien, {k: v[:4].numpy() for k, v in example.items()}, "promo", tags={})
    fourth = promote.run(spark, configured(world, *base))
    assert not fourth.promoted and "codebook_version" in fourth.reason
    assert fourth.challenger_version == registered.version
    assert aliases(config)["champion"] == strong.version


def test_a_pipeline_without_a_date_never_forwards_force_to_promote(spark, world, monkeypatch):
    base = ("registry.model_name=no_force",)
    config = configured(world, *base)
    strong = train.run(spark, configured(world, *base, "training.epochs=6", "training.learning_rate=1e-2"))
    assert promote.run(spark, config).promoted
    worse = train.run(spark, configured(world, *base, "training.epochs=1", "training.learning_rate=1e-7"))
    # Only the promote stage, reached through the real command line of `r2led pipeline --force`.
    monkeypatch.setattr(pipeline, "STAGES", (stage("promote"),))
    argv = ["--env", "tiny", "--set", f"workspace.root={world}", "--set", f"spark.ivy_dir={IVY_DIR}",
            *[a for o in (*FAST, *base) for a in ("--set", o)], "--force"]
    assert pipeline.main(argv) == 0
    assert aliases(config)["champion"] == strong.version
    tags = MlflowClient().get_model_version("no_force", worse.version).tags
    assert tags["promotion"] == "refused" and "forced" not in tags["promotion_reason"]


def test_the_champion_alias_moves_only_if_nobody_moved_it_meanwhile(spark, world, monkeypatch):
    base = ("registry.model_name=cas",)
    config = configured(world, *base)
    first = train.run(spark, configured(world, *base, "training.epochs=1"))
    assert promote.promote(spark, config, force=True).promoted
    other = train.run(spark, configured(world, *base, "training.epochs=1", "training.learning_rate=1e-7"))
    mine = train.run(spark, configured(world, *base, "training.epochs=1"))
    real_decide = promote.decide

    def decide_while_another_run_promotes(*args, **kwargs):
        decision = real_decide(*args, **kwargs)
        # Another promote (a second run, an operator) moves the champion while this one was scoring.
        MlflowClient().set_registered_model_alias("cas", "champion", other.version)
        return decision

    monkeypatch.setattr(promote, "decide", decide_while_another_run_promotes)
    with pytest.raises(promote.ChampionChangedError,
                       match=f"changed from version {first.version} to {other.version}.*no alias was moved"):
        promote.promote(spark, config, version=mine.version, force=True)
    assert aliases(config)["champion"] == other.version
    assert "previous_champion" not in aliases(config)
    assert "promotion" not in MlflowClient().get_model_version("cas", mine.version).tags


def test_scoring_writes_a_days_predictions_idempotently_and_refuses_a_mismatch(spark, world, monkeypatch, caplog):
    base = ("registry.model_name=scored",)
    trained = train.run(spark, configured(world, *base))
    promote.run(spark, configured(world, *base))
    config = configured(world, *base)
    store = TableStore(spark, config.tables)
    monkeypatch.setattr(spark_progress, "STAGE_LOG_SECONDS", 0.05)  # 30 s in a job
    with caplog.at_level(logging.INFO, logger=spark_progress.__name__):
        result = score.run(spark, config)
    # While the predictions were written, the log showed the running stages' tasks.
    assert [r for r in caplog.records if re.fullmatch(r"score, \d+s: stage \d+ \(.+?\): \d+/\d+ tasks(; .*)?",
                                                       r.getMessage())]
    day = result.score_date
    expected = store.read("training_examples").where(F.to_date(F.from_unixtime("ts")) == F.lit(day).cast("date"))
    predictions = store.read("predictions").where(F.col("score_date") == day)
    assert result.rows == predictions.count() == expected.count() > 0
    assert predictions.where((F.col("score") <= 0) | (F.col("score") >= 1)).count() == 0
    assert {r["model_version"] for r in predictions.select("model_version").distinct().collect()} == {trained.version}
    # (The served model's scores against these: the raw-id test below.)
    joined = predictions.join(expected, "sample_id").limit(50).toPandas()
    bundle = load_bundle(config.mlflow, f"models:/scored/{trained.version}")
    columns = bundle.input_columns
    before = rows(predictions)
    score.run(spark, config)
    assert rows(store.read("predictions").where(F.col("score_date") == day)) == before

    # The alias is read once: if promote moves it while score loads the model, every row still names
    # (and was computed by) the version resolved at the start.
    assert score.resolve_model(config) == ("scored", trained.version)
    assert score.resolve_model(config, "models:/scored@champion") == ("scored", trained.version)
    with pytest.raises(ValueError, match="expected models:/NAME/VERSION"):
        score.resolve_model(config, "runs:/abc/model")
    other = train.run(spark, configured(world, *base, "training.epochs=1", "training.learning_rate=1e-7"))
    loaded = []

    def load_after_the_alias_moved(mlflow_config, uri):
        MlflowClient().set_registered_model_alias("scored", "champion", other.version)
        loaded.append(uri)
        return real_load(mlflow_config, uri)

    real_load = mlflow_model.load_bundle
    monkeypatch.setattr(mlflow_model, "load_bundle", load_after_the_alias_moved)
    raced = score.score(spark, config, date=day)
    monkeypatch.undo()
    MlflowClient().set_registered_model_alias("scored", "champion", trained.version)
    assert loaded == [f"models:/scored/{trained.version}"] and raced.model_version == trained.version
    assert rows(store.read("predictions").where(F.col("score_date") == day)) == before

    # A model trained on other SIDs is refused before anything is written.
    alien = ModelBundle(bundle.model_config, bundle.spec, DataVersions("cb-other", bundle.versions.collab_version),
                        bundle.state_dict)
    with tracked_run(config, "alien"):
        registered = log_ctr_model(alien, {c: joined[c].to_list()[:2] for c in columns}, "scored", tags={})
    with pytest.raises(score.ScoreVersionError, match="codebook_version"):
        score.score(spark, config, model_uri=f"models:/scored/{registered.version}")
    assert rows(store.read("predictions").where(F.col("score_date") == day)) == before


def raw_requests(samples: pd.DataFrame, sequences: dict[int, dict]) -> pd.DataFrame:
    """Each sample (user_id, item_id, ts) as a raw-id request: the user's stored behaviours up to and
    including the sample's second (the served model must leave the same-second ones out itself)."""
    out = []
    for r in samples.itertuples():
        stored = sequences.get(r.user_id, {"item_ids": [], "ts": []})
        upto = int(np.searchsorted(np.asarray(stored["ts"], dtype=np.int64), r.ts, side="right"))
        out.append({"item_id": int(r.item_id), "request_ts": int(r.ts),
                    "history_item_ids": [int(i) for i in stored["item_ids"][:upto]],
                    "history_ts": [int(t) for t in stored["ts"][:upto]]})
    return pd.DataFrame(out)


def test_every_sample_scores_as_predictions_holds_through_candidates_rest_and_spark_udf(spark, world, tmp_path):
    """Deliver 3 of serving: the score `predictions` holds for each sample, through `score --candidates`,
    the raw-id model over REST (`mlflow models serve`) and as a Spark UDF; and no candidate pair is lost."""
    from jobs.registry.score_candidates import CandidateSource, score_candidates

    base = ("registry.model_name=candidates",)
    trained = train.run(spark, configured(world, *base))
    promote.run(spark, configured(world, *base))
    config = configured(world, *base)
    store = TableStore(spark, config.tables)
    days = sorted(r[0] for r in store.read("training_examples").select(
        F.date_format(F.from_unixtime("ts"), "yyyy-MM-dd")).distinct().collect())
    for day in days:
        score.score(spark, config, date=day)
    logged = (store.read("predictions").where(F.col("model_name") == "candidates")
              .select("sample_id", "user_id", "item_id", "ts", "score").toPandas())
    assert len(logged) == store.read("training_examples").count() > 1000
    sequences = {r["user_id"]: r.asDict() for r in store.read("user_sequences").collect()}

    # The raw-id model: loaded, over REST and as a Spark UDF, every sample as a request.
    uri = f"models:/candidates/{trained.version}"
    requests_frame = raw_requests(logged, sequences)
    loaded = mlflow.pyfunc.load_model(uri).predict(requests_frame)
    assert loaded["score"].to_numpy() == pytest.approx(logged["score"].to_numpy(), abs=1e-6)
    assert loaded["known_item"].all() and (loaded["history_length"] < requests_frame["history_item_ids"].map(len)).any()
    udf = mlflow.pyfunc.spark_udf(spark, uri, result_type="double", env_manager="local")
    request_rows = spark.createDataFrame(
        requests_frame.assign(sample_id=logged["sample_id"]),
        "item_id BIGINT, request_ts BIGINT, history_item_ids ARRAY<BIGINT>, history_ts ARRAY<BIGINT>, sample_id BIGINT")
    by_udf = (request_rows.select("sample_id", udf(*[F.col(c) for c in REQUEST_COLUMNS]).alias("score"))
              .toPandas().set_index("sample_id")["score"])
    assert by_udf.loc[logged["sample_id"]].to_numpy() == pytest.approx(logged["score"].to_numpy(), abs=1e-6)
    with served_model(uri, tracking_uri=mlflow.get_tracking_uri(), registry_uri=mlflow.get_registry_uri(),
                      log_path=tmp_path / "serve.log") as base_url:
        answer = requests.post(f"{base_url}/invocations", json={"dataframe_records": requests_frame.to_dict("records")},
                               timeout=300)
        assert answer.status_code == 200, answer.text[:2000]
        over_rest = pd.DataFrame(answer.json()["predictions"])
        assert over_rest["score"].to_numpy() == pytest.approx(logged["score"].to_numpy(), abs=1e-6)
        one = requests_frame.iloc[:1].to_dict("records")[0]
        malformed = {"a string id": {**one, "item_id": "sku-1"},
                     "lengths that disagree": {**one, "history_ts": one["history_ts"][:-1]},
                     "a future behaviour": {**one, "history_ts": [*one["history_ts"][:-1], one["request_ts"] + 60]}}
        for what, body in malformed.items():
            refused = requests.post(f"{base_url}/invocations", json={"dataframe_records": [body]}, timeout=60)
            assert refused.status_code == 400 and "predictions" not in refused.json(), (what, refused.text[:500])
            assert refused.json()["message"], what
        assert "after request_ts" in refused.json()["message"]

    # `score --candidates`: every sample as a (user, item, ts) pair, plus pairs that test each treatment.
    some_user = next(iter(sequences))
    first_ts = min(sequences[some_user]["ts"])
    extra = [(None, 5, 1_700_000_000, "a"), (some_user, 987_654_321, 1_700_000_000, "b"),  # no user; unknown item
             (777_777_777, int(logged["item_id"][0]), 1_700_000_000, "c"),  # a user without any history
             (some_user, int(logged["item_id"][0]), first_ts, "d")]  # as of the user's first behaviour
    pairs = [(int(r.user_id), int(r.item_id), int(r.ts), "logged") for r in logged.itertuples()]
    unique_pairs = len(set(pairs))
    frame = spark.createDataFrame(pairs + extra + pairs[:3], "uid BIGINT, sku BIGINT, at BIGINT, note STRING")
    frame.write.parquet(str(tmp_path / "candidates"))
    source = CandidateSource(path=str(tmp_path / "candidates"), format="parquet", user_column="uid",
                             item_column="sku", ts_column="at")

    result = score_candidates(spark, config, source, run_id="check-1")
    assert (result.pairs, result.rejected) == (unique_pairs + 4, 1)
    assert result.duplicates == len(pairs) + 3 - unique_pairs
    assert result.scored == unique_pairs + 3 and result.unknown_items == 1 and result.without_history >= 2
    written = store.read("candidate_scores").where(F.col("run_id") == "check-1")
    before = rows(written)
    scored = written.toPandas()
    by_pair = {(r.user_id, r.item_id, r.ts): r for r in scored.itertuples()}
    # Each logged sample sent as a candidate at its own time: the score predictions holds for it. (Two
    # samples of one pair, a click and a non-click in one second, share their inputs and their score.)
    for r in logged.itertuples():
        assert by_pair[(r.user_id, r.item_id, r.ts)].score == pytest.approx(r.score, abs=1e-6)
    rejected = scored[scored["rejected"].notna()]
    assert len(rejected) == 1 and rejected["score"].isna().all() and "uid" in rejected["rejected"].iloc[0]
    unknown = by_pair[(some_user, 987_654_321, 1_700_000_000)]
    assert not unknown.known_item and not unknown.has_sids and 0 < unknown.score < 1
    assert not by_pair[(777_777_777, int(logged["item_id"][0]), 1_700_000_000)].has_history
    # As of the user's first behaviour: that behaviour and every later one are not history yet.
    assert not by_pair[(some_user, int(logged["item_id"][0]), first_ts)].has_history

    again = score_candidates(spark, config, source, run_id="check-1")  # a re-run replaces the run's rows
    assert again.pairs == result.pairs
    assert rows(store.read("candidate_scores").where(F.col("run_id") == "check-1")) == before


def test_two_process_torch_distributor_training_learns_what_one_process_does(spark, world):
    # Two ranks of half a batch each average their gradients: the same number and size of steps as one
    # process (the loop's learning-rate cuts and evaluations count steps and epochs, not rows); one
    # evaluation an epoch in both, as distributed training evaluates at epoch ends only.
    one_process = configured(world, "registry.model_name=single", "training.epochs=2", "training.evals_per_epoch=1")
    half_batch = one_process.training.batch_size // 2
    config = configured(world, "registry.model_name=distributed", "training.num_processes=2", "training.epochs=2",
                        f"training.batch_size={half_batch}", "training.evals_per_epoch=1")
    result = train.run(spark, config)
    params, metrics, _ = run_data(config.mlflow, result.run_id)
    assert params["training.num_processes"] == "2"
    assert metrics["best_valid_auc"] == pytest.approx(result.valid["auc"])
    assert model_version(config.mlflow, "distributed", version=result.version) is not None
    # Each rank takes half of every epoch's shuffled rows, so the steps see other rows in another order than
    # one process: not the same weights; the model quality must stay within 0.03 AUC.
    single = train.run(spark, one_process)
    assert abs(result.test["auc"] - single.test["auc"]) <= 0.03, (result.test, single.test)
    assert result.test["auc"] > 0.6 and single.test["auc"] > 0.6


def test_the_warmth_gate_is_trained_with_each_items_train_split_impressions_and_keeps_them(spark, world):
    config = configured(world, "model.r2led.gate=warmth", "training.epochs=1")
    store = TableStore(spark, config.tables)
    data = training_data(store, config)
    job = worker.TrainJob(model=config.model, training=config.training, data=data, checkpoint_dir="")
    result = worker.train_worker(job)
    # Counted again by Spark from the table: only train rows, by target item.
    counted = (store.read("training_examples").where(F.col("split") == "train")
               .groupBy("target_item").count().collect())
    expected = torch.zeros(data.spec.num_items, dtype=torch.long)
    for row in counted:
        expected[row["target_item"]] = row["count"]
    assert torch.equal(result.state_dict["embedding.impressions"], expected)
    assert expected.sum() == data.rows["train"]
