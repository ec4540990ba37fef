"""Which config keys fingerprint each stage, what a change needs (--retrain, --rebuild, or a new
workspace), and the training fingerprint that keys the reuse of a trained model."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from jobs.orchestration.config_drift import ConfigDriftError, drift, stage_config, stages_to_rebuild
from jobs.orchestration.ledger import LedgerRecord
from jobs.runtime.config_values import training_fingerprint
from r2led_model.config import load_config, with_values
from r2led_model.sequences.sample_kernel import SAMPLE_ID_SCHEME


@pytest.fixture(scope="module")
def config():
    return load_config("tiny")


def ledger_of(config, *stages):
    return [LedgerRecord(run_date="2024-01-18", stage=stage, status="done", detail={"config": stage_config(config, stage)})
            for stage in stages]


def with_config(record: LedgerRecord, edit) -> LedgerRecord:
    """`record` with its recorded config edited in place by `edit(config)`."""
    recorded = json.loads(json.dumps(record.detail["config"]))
    edit(recorded)
    return replace(record, detail={**record.detail, "config": recorded})


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


def test_a_ledger_without_recorded_config_is_checked_only_for_the_release_rules(config):
    old = [LedgerRecord(run_date="2024-01-18", stage=s, status="done", table_versions={"t": 3}) for s in ALL]
    found = drift(old, with_values(config, {"retrieval.k": 5}))
    # Its values are unknown; the sample id scheme it was built with is not (there was only one).
    assert {stage: [str(c) for c in cs] for stage, cs in found.items()} == {
        stage: ["sequences.sample_id_scheme: 1 -> 2"] for stage in ("sequences", "retrieve", "build-training-set")}
    assert drift([], config) == {}  # nothing built yet: nothing to compare
    # A day recorded as done without running (it wrote no table) says nothing about how tables were built.
    skipped = [replace(row, detail={"skipped_day": True}, table_versions={}) for row in old]
    assert drift(skipped, config) == {}


def test_tables_built_with_the_old_sample_id_scheme_are_refused_before_new_ids_join_them(config):
    # Recorded by the release whose sample ids left the label out: its records lack the key.
    ledger = [with_config(row, lambda c: c.pop("sequences.sample_id_scheme", None)) for row in ledger_of(config, *ALL)]
    assert stage_config(config, "sequences")["sequences.sample_id_scheme"] == SAMPLE_ID_SCHEME == 2
    assert "sequences.sample_id_scheme" in stage_config(config, "build-training-set")
    assert "sequences.sample_id_scheme" not in stage_config(config, "train-codebook")
    for retrain in (False, True):
        with pytest.raises(ConfigDriftError, match=r"sequences\.sample_id_scheme: 1 -> 2\. .*include the label.*"
                                                   r"`r2led pipeline --date D --rebuild` rebuilds them in full"):
            stages_to_rebuild(ledger, config, retrain=retrain, rebuild=False)
    assert stages_to_rebuild(ledger, config, retrain=False, rebuild=True) == {
        "sequences", "retrieve", "build-training-set"}
    # What the rebuild records is the current scheme: the next night runs as usual.
    assert drift(ledger_of(config, *ALL), config) == {}


def test_the_latest_finished_run_is_the_reference(config):
    k5 = with_values(config, {"retrieval.k": 5})
    ledger = ledger_of(config, "retrieve") + [replace(row, run_date="2024-01-19") for row in ledger_of(k5, "retrieve")]
    ledger.append(LedgerRecord(run_date="2024-01-20", stage="retrieve", status="failed",
                               detail={"config": stage_config(config, "retrieve")}))
    assert drift(ledger, k5) == {}
    assert [str(c) for c in drift(ledger, config)["retrieve"]] == ["retrieval.k: 5 -> 20"]


def test_the_training_fingerprint_follows_the_model_and_training_but_not_where_checkpoints_go(config):
    base = training_fingerprint(config)
    assert training_fingerprint(with_values(config, {"model.embedding_dim": 4})) != base
    assert training_fingerprint(with_values(config, {"training.learning_rate": 0.5})) != base
    assert training_fingerprint(with_values(config, {"training.checkpoint_dir": "/x", "retrieval.k": 5})) == base


def test_a_key_a_later_release_added_is_drift_only_when_set_away_from_its_default(config):
    # Tables built by a release without sequences.samples_from: the record lacks the key.
    def older(recorded: dict) -> None:
        recorded.pop("sequences.samples_from", None)
        recorded["sequences.a_removed_key"] = 3  # and one key this release no longer has

    ledger = [with_config(row, older) for row in ledger_of(config, *ALL)]
    assert drift(ledger, config) == {}
    assert stages_to_rebuild(ledger, config, retrain=False, rebuild=False) == frozenset()
    windowed = with_values(config, {"sequences.samples_from": "2024-01-10"})
    with pytest.raises(ConfigDriftError, match=r'sequences\.samples_from: null -> "2024-01-10"'):
        stages_to_rebuild(ledger, windowed, retrain=False, rebuild=False)


def test_a_dated_run_on_tables_of_the_old_sample_id_scheme_writes_nothing(spark, make_config):
    from jobs.orchestration.ledger import RunLedger
    from jobs.orchestration.nightly import run_date
    from jobs.runtime.tables import TableStore

    config = make_config()
    store = TableStore(spark, config.tables)
    ledger = RunLedger(store)
    for stage in ALL:  # a night of the release before the scheme was recorded
        recorded = {k: v for k, v in stage_config(config, stage).items() if k != "sequences.sample_id_scheme"}
        ledger.record(LedgerRecord(run_date="2024-01-18", stage=stage, status="done", rows_in=1, rows_out=1,
                                   seconds=1.0, detail={"config": recorded}))
    with pytest.raises(ConfigDriftError, match=r"sample_id_scheme: 1 -> 2.*pipeline --date D --rebuild"):
        run_date(spark, config, "2024-01-19")
    assert [name for name in ("events", "samples", "route_candidates") if store.exists(name)] == []
    assert len(ledger.state()) == len(ALL)
