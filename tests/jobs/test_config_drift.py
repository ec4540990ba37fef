"""Which config keys fingerprint each stage, what a change needs (--retrain, --rebuild, or a new
workspace), and the training fingerprint that keys the reuse of a trained model."""

from __future__ import annotations

import json

import pytest

from jobs.orchestration.config_drift import (ConfigDriftError, drift, stage_config, stages_to_rebuild,
                                             training_fingerprint)
from r2led_model.config import load_config, with_values


@pytest.fixture(scope="module")
def config():
    return load_config("tiny")


def ledger_of(config, *stages):
    return [{"run_date": "2024-01-18", "stage": stage, "status": "done",
             "detail": json.dumps({"config": stage_config(config, stage)})} for stage in stages]


ALL = ("ingest", "sequences", "embed-items", "train-codebook", "assign-sids", "collab-vectors", "retrieve",
       "build-training-set")


def test_a_stage_is_fingerprinted_by_its_own_keys_and_its_inputs_but_not_paths_or_the_split(config):
    retrieve = stage_config(config, "retrieve")
    assert {"retrieval.k", "sequences.min_hist_len", "codebook.levels", "collab.rank", "source.kind"} <= set(retrieve)
    assert not [k for k in retrieve if k.startswith(("training_set.", "model.", "sequences.split", "spark."))]
    assert "codebook.store_dir" not in stage_config(config, "train-codebook")
    assert not [k for k in stage_config(config, "ingest") if k.startswith("source.") and k != "source.kind"
                and not k.startswith(f"source.{config.source.kind}")]
    assert "retrieval.k" not in stage_config(config, "sequences")


def test_an_unchanged_config_or_a_moved_split_or_workspace_is_no_drift(config):
    ledger = ledger_of(config, *ALL)
    moved = with_values(config, {"sequences.split.valid_from": "2024-01-02", "codebook.store_dir": "/elsewhere",
                                 "training_set.files_per_split": 3})
    assert drift(ledger, config) == {} and drift(ledger, moved) == {}
    assert stages_to_rebuild(ledger, moved, retrain=False, rebuild=False) == frozenset()


def test_each_change_names_its_keys_and_the_flag_that_accepts_it(config):
    ledger = ledger_of(config, *ALL)
    k = with_values(config, {"retrieval.k": 5})
    assert set(drift(ledger, k)) == {"retrieve", "build-training-set"}
    for retrain in (False, True):
        with pytest.raises(ConfigDriftError, match=r"retrieval\.k: 20 -> 5\. .*--rebuild"):
            stages_to_rebuild(ledger, k, retrain=retrain, rebuild=False)
    assert stages_to_rebuild(ledger, k, retrain=False, rebuild=True) == {"retrieve", "build-training-set"}

    codebook = with_values(config, {"codebook.epochs": 3})
    with pytest.raises(ConfigDriftError, match=r"codebook\.epochs: \d+ -> 3\. .*--retrain"):
        stages_to_rebuild(ledger, codebook, retrain=False, rebuild=False)
    assert stages_to_rebuild(ledger, codebook, retrain=True, rebuild=False) == frozenset()  # retrain rebuilds
    assert stages_to_rebuild(ledger, codebook, retrain=False, rebuild=True) == {
        "train-codebook", "assign-sids", "retrieve", "build-training-set"}

    window = with_values(config, {"sequences.min_hist_len": 7})
    assert set(drift(ledger, window)) == {"sequences", "retrieve", "build-training-set"}

    for source in ({"ingest.behaviors": ["pv"]}, {"source.kind": "movielens100k"}):
        with pytest.raises(ConfigDriftError, match="new workspace"):
            stages_to_rebuild(ledger, with_values(config, source), retrain=True, rebuild=True)


def test_a_ledger_without_recorded_config_is_not_checked(config):
    old = [{"run_date": "2024-01-18", "stage": s, "status": "done", "detail": "{}"} for s in ALL]
    assert drift(old, with_values(config, {"retrieval.k": 5})) == {}


def test_the_latest_finished_run_is_the_reference(config):
    k5 = with_values(config, {"retrieval.k": 5})
    ledger = ledger_of(config, "retrieve") + [{**row, "run_date": "2024-01-19"} for row in ledger_of(k5, "retrieve")]
    ledger.append({"run_date": "2024-01-20", "stage": "retrieve", "status": "failed",
                   "detail": json.dumps({"config": stage_config(config, "retrieve")})})
    assert drift(ledger, k5) == {}
    assert [str(c) for c in drift(ledger, config)["retrieve"]] == ["retrieval.k: 5 -> 20"]


def test_the_training_fingerprint_follows_the_model_and_training_but_not_where_checkpoints_go(config):
    base = training_fingerprint(config)
    assert training_fingerprint(with_values(config, {"model.embedding_dim": 4})) != base
    assert training_fingerprint(with_values(config, {"training.learning_rate": 0.5})) != base
    assert training_fingerprint(with_values(config, {"training.checkpoint_dir": "/x", "retrieval.k": 5})) == base


def test_a_key_a_later_release_added_is_drift_only_when_set_away_from_its_default(config):
    # Tables built by a release without sequences.samples_from: the record lacks the key.
    ledger = ledger_of(config, *ALL)
    for row in ledger:
        recorded = json.loads(row["detail"])
        recorded["config"].pop("sequences.samples_from", None)
        recorded["config"]["sequences.a_removed_key"] = 3  # and one key this release no longer has
        row["detail"] = json.dumps(recorded)
    assert drift(ledger, config) == {}
    assert stages_to_rebuild(ledger, config, retrain=False, rebuild=False) == frozenset()
    windowed = with_values(config, {"sequences.samples_from": "2024-01-10"})
    with pytest.raises(ConfigDriftError, match=r'sequences\.samples_from: null -> "2024-01-10"'):
        stages_to_rebuild(ledger, windowed, retrain=False, rebuild=False)
