"""`r2led pipeline --date D`: two consecutive synthetic dates, the second incremental; re-runs that
skip or are forced; a crash at every commit point of every stage (and of a --retrain), each followed
by a re-run, compared table by table with a clean run; a new item scored by a model trained before
it existed; a skipped night; config drift; a codebook trained by hand between nights."""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow import MlflowClient
from pyspark.sql import functions as F

from jobs.ingest.ingest import dated_run_id
from jobs.orchestration import pipeline
from jobs.orchestration.config_drift import ConfigDriftError
from jobs.orchestration.ledger import LEDGER, RunLedger
from jobs.orchestration.nightly import run_date
from jobs.orchestration.nightly_report import summary_table
from jobs.orchestration.stages import DATA_STAGES, STAGE_NAMES
from jobs.runtime.faults import InjectedFailure
from jobs.runtime.run_lock import LOCK_TABLE, LockHeldError, RunLock
from jobs.runtime.tables import TABLES, TableStore
from jobs.sequences.sequences import build_user_sequences
from jobs.sequences.splits import split_column
from jobs.sids import assign_sids, embed_items
from jobs.training.build_training_set import extend_item_index
from jobs.training.training_data import data_versions, feature_spec, item_lookup_arrays
from r2led_model.config import Config, split_as_of
from r2led_model.sids import codebook_store
from r2led_model.sids.codebook import Codebook
from r2led_model.sids.codebook_store import CodebookVersionError
from r2led_model.tracking.bundle import frame_arrays
from r2led_model.tracking.mlflow_model import load_bundle
from r2led_model.tracking.runs import configure
from tests.helpers import IVY_DIR, NIGHTLY_DAY1, NIGHTLY_FAST, config_in, table_snapshot

FAST = NIGHTLY_FAST
DAY1, DAY2, DAY3 = NIGHTLY_DAY1, "2024-01-19", "2024-01-20"
# candidate_scores: written only by `score --candidates`, never by the pipeline.
DATA_TABLES = sorted(name for name in TABLES if name not in (LEDGER, LOCK_TABLE, "candidate_scores"))


@dataclass
class Workspace:
    root: Path
    config: Config
    day1: dict[str, list]  # table → rows after DAY1
    day1_versions: dict[str, int | None]
    reports: list


def versions(store: TableStore) -> dict[str, int | None]:
    return {t: store.version(t) for t in DATA_TABLES}


@pytest.fixture(scope="module")
def clean(spark, nightly_day1, tmp_path_factory):
    """A clean run of DAY1 (a first run: catch-up) then DAY2; a copy of the workspace after DAY1."""
    base = tmp_path_factory.mktemp("nightly")
    shutil.copytree(nightly_day1, base / "clean")
    config = config_in(base / "clean", *FAST)
    store = TableStore(spark, config.tables)
    day1 = {t: table_snapshot(store, t) for t in ("samples", "route_candidates", "training_examples", "predictions")}
    day1_versions = versions(store)
    shutil.copytree(base / "clean", base / "after_day1")
    shutil.copytree(base / "clean", base / "gap")  # DAY2 is skipped here: the next run is DAY3's
    reports = run_date(spark, config, DAY2)
    shutil.copytree(base / "clean", base / "after_day2")
    shutil.copytree(base / "clean", base / "drift")
    return Workspace(base / "clean", config, day1, day1_versions, reports)


def by_stage(reports) -> dict:
    return {r.stage: r for r in reports}


def test_the_second_date_is_incremental_and_point_in_time(spark, clean):
    store = TableStore(spark, clean.config.tables)
    reports = by_stage(clean.reports)
    assert [r.status for r in clean.reports] == ["ran"] * len(STAGE_NAMES)
    assert reports["ingest"].detail["catch_up"] is False
    # That day's folder and nothing else was ingested.
    day_lines = sum(len(p.read_text().splitlines())
                    for p in (clean.root / "raw/synthetic/events" / f"event_date={DAY2}").glob("*.csv"))
    assert reports["ingest"].rows_out == day_lines > 0
    # Every row read is accounted for, in the ledger and in the printed summary.
    ingested = reports["ingest"].detail
    assert reports["ingest"].rows_in == ingested["accepted"] + ingested["rejected"] + ingested["deferred"] == day_lines
    assert f"read = {day_lines:,} accepted + 0 rejected" in summary_table(DAY2, clean.reports)
    assert store.read("events").where(F.col("event_date") > F.lit(DAY2).cast("date")).count() == 0
    # Codebook and collaborative vectors were kept; candidates and examples were only added to.
    assert reports["train-codebook"].detail["action"] == "kept"
    assert reports["collab-vectors"].detail["action"] == "kept"
    assert reports["retrieve"].detail["full_rebuild"] is False
    assert reports["build-training-set"].detail["full_rebuild"] is False
    new_samples = reports["sequences"].rows_out
    assert new_samples > 0 and reports["retrieve"].rows_out == reports["build-training-set"].rows_out == new_samples
    for table in ("samples", "route_candidates", "training_examples"):
        operations = [r[0] for r in store.delta(table).history().where(
            F.col("version") > clean.day1_versions[table]).select("operation").collect()]
        assert operations and set(operations) <= {"MERGE", "UPDATE"}, (table, operations)

    # Stored rows never change except for their split, which rolls with the date.
    samples = store.read("samples")
    day2_only = samples.where(F.to_date(F.timestamp_seconds("ts")) == F.lit(DAY2).cast("date"))
    assert day2_only.count() == new_samples == samples.count() - len(clean.day1["samples"])
    columns = sorted(samples.columns)
    split_at = columns.index("split")
    before = {tuple(v for i, v in enumerate(r) if i != split_at) for r in clean.day1["samples"]}
    after = {tuple(v for i, v in enumerate(r) if i != split_at) for r in table_snapshot(store, "samples")}
    assert before <= after
    rolled = split_as_of(clean.config, DAY2).sequences.split
    for table in ("samples", "route_candidates", "training_examples"):
        df = store.read(table)
        assert df.where(F.col("split") != split_column(rolled)).count() == 0, table
        assert df.count() == df.select("sample_id").distinct().count(), table
    assert {r[0] for r in samples.where(F.col("split") == "test").select(
        F.to_date(F.timestamp_seconds("ts"))).distinct().collect()} == {np.datetime64(DAY2).astype(object)}

    # The MERGEd sequences are exactly what a full rebuild from every event gives.
    full = build_user_sequences(store.read("events"), store.read("items"), clean.config.sequences)
    incremental = store.read("user_sequences")
    assert full.exceptAll(incremental).count() == 0 and incremental.exceptAll(full).count() == 0

    # The day's predictions come from the model trained that night; the previous day's stay.
    predictions = store.read("predictions")
    assert {r[0] for r in predictions.select("score_date").distinct().collect()} == {DAY1, DAY2}
    assert predictions.where(F.col("score_date") == DAY2).count() == day2_only.count()
    promotion = reports["promote"].detail
    champion = promotion["challenger"] if promotion["promoted"] else promotion["champion_before"]
    assert reports["score"].detail["model_version"] == champion


def test_rerunning_a_finished_date_skips_every_stage_and_commits_nothing(spark, clean):
    store = TableStore(spark, clean.config.tables)
    before = versions(store)
    ledger_version = store.version(LEDGER)
    argv = ["--env", "tiny", "--set", f"workspace.root={clean.root}", "--set", f"spark.ivy_dir={IVY_DIR}",
            *[a for o in FAST for a in ("--set", o)], "--date", DAY2]
    assert pipeline.main(argv) == 0
    assert versions(store) == before
    assert store.version(LEDGER) == ledger_version
    # An older date than one already run would roll the split back: refused without --force.
    assert pipeline.main(argv[:-1] + [DAY1]) == 1


def cli(root: Path, day: str) -> list[str]:
    return ["--env", "tiny", "--set", f"workspace.root={root}", "--set", f"spark.ivy_dir={IVY_DIR}",
            *[a for o in FAST for a in ("--set", o)], "--date", day]


def test_a_held_lock_refuses_another_run_and_a_stale_one_is_taken_over(spark, clean, capsys):
    store = TableStore(spark, clean.config.tables)
    other = RunLock(store, run_date=DAY2, timeout_minutes=180, owner="etl-7:4242:1f2e3d4c")
    assert other.acquire() is None
    before, ledger_version = versions(store), store.version(LEDGER)
    try:
        for day in (DAY2, DAY3):  # the date the holder runs, and another
            assert pipeline.main(cli(clean.root, day)) == 1
            assert (f"pipeline --date {day}: the workspace is locked by etl-7:4242:1f2e3d4c (pipeline --date {DAY2}"
                    in capsys.readouterr().err)
        assert versions(store) == before and store.version(LEDGER) == ledger_version
        # The holder died: no heartbeat for longer than pipeline.lock_timeout_minutes.
        store.update_where(LOCK_TABLE, F.col("owner").isNotNull(),
                           {"heartbeat_at": F.lit(int(time.time()) - 181 * 60)})
        assert pipeline.main(cli(clean.root, DAY2)) == 0  # DAY2 is done: every stage skipped
        assert "took over the stale lock of etl-7:4242:1f2e3d4c" in capsys.readouterr().err
        assert other.holder() is None  # and freed at the end of the run
        assert versions(store) == before
    finally:
        other.release()


def test_two_concurrent_runs_of_one_date_one_refuses_and_the_tables_equal_one_run(spark, clean):
    store = TableStore(spark, clean.config.tables)
    before = {t: table_snapshot(store, t) for t in DATA_TABLES}
    outcome: dict[str, object] = {}

    def first() -> None:
        try:
            outcome["reports"] = run_date(spark, clean.config, DAY2, force_stages=("retrieve",), until="retrieve")
        except Exception as exc:  # surfaced by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=first)
    thread.start()
    lock = RunLock(store, run_date=DAY2, timeout_minutes=180)
    while lock.holder() is None and thread.is_alive():
        time.sleep(0.2)
    try:
        assert thread.is_alive(), "the first run ended before its lock was seen"
        with pytest.raises(LockHeldError, match=f"pipeline --date {DAY2}: the workspace is locked by"):
            run_date(spark, clean.config, DAY2)
    finally:
        thread.join()
    assert "error" not in outcome and [r.status for r in outcome["reports"]].count("ran") == 1
    assert {t: table_snapshot(store, t) for t in DATA_TABLES} == before


def test_forced_stages_run_again_and_leave_the_same_rows(spark, clean):
    store = TableStore(spark, clean.config.tables)
    before = {t: table_snapshot(store, t) for t in ("user_sequences", "samples", "route_candidates")}
    reports = run_date(spark, clean.config, DAY2, force_stages=("sequences", "retrieve"), until="retrieve")
    statuses = {r.stage: r.status for r in reports}
    assert statuses == {**{s: "skipped" for s in STAGE_NAMES[:STAGE_NAMES.index("retrieve") + 1]},
                        "sequences": "ran", "retrieve": "ran"}
    assert by_stage(reports)["sequences"].rows_out == 0  # every sample of the day was already there
    assert {t: table_snapshot(store, t) for t in before} == before


def crash_at_every_commit_point(spark, config: Config, day: str, stages, **flags) -> dict[str, int]:
    """Fail the run of `day` at commit point 1, 2, ... of each stage in turn, each re-run resuming
    where the last one failed, until the stage finishes; returns the crashes per stage."""
    store = TableStore(spark, config.tables)
    crashes = {}
    for stage in stages:
        crashes[stage] = 0
        while True:
            summaries: list[str] = []
            try:
                run_date(spark, config, day, until=stage, inject_failure=(stage, crashes[stage] + 1),
                         on_summary=summaries.append, **flags)
            except InjectedFailure:
                crashes[stage] += 1
                # The failed run still hands over its summary, the failed stage and its error on its line.
                failed_line = next(line for line in summaries[0].splitlines() if line.startswith(f"{stage} "))
                assert "failed" in failed_line and "InjectedFailure" in failed_line, summaries
                ledger = {r.stage: r.status for r in RunLedger(store).state() if r.run_date == day}
                assert ledger[stage] == "failed"
                assert RunLock(store, run_date=day, timeout_minutes=180).holder() is None  # freed by the failed run
                continue
            break
    return crashes


def test_a_crash_at_every_commit_point_of_every_stage_then_a_rerun_leaves_the_tables_of_a_clean_run(spark, clean):
    root = clean.root.parent / "after_day1"
    config = config_in(root, *FAST)
    store = TableStore(spark, config.tables)
    crashes = crash_at_every_commit_point(spark, config, DAY2, STAGE_NAMES)
    # Every stage commits at least once (its end, before the ledger records it); most several times.
    assert min(crashes.values()) >= 1 and sum(crashes.values()) > len(STAGE_NAMES), crashes
    assert all(r.status == "skipped" for r in run_date(spark, config, DAY2))

    clean_store = TableStore(spark, clean.config.tables)
    for table in DATA_TABLES:
        assert table_snapshot(store, table) == table_snapshot(clean_store, table), table
    def where_each_stage_stands(store):
        return sorted((r.run_date, r.stage, r.status) for r in RunLedger(store).state())
    assert where_each_stage_stands(store) == where_each_stage_stands(clean_store)
    # The log keeps every attempt: each crash is a failed record before the stage's done one.
    assert store.read(LEDGER).where(F.col("status") == "failed").count() == sum(crashes.values())
    # One model version per date, however often training was interrupted.
    configure(config.mlflow)
    name = config.registry.model_name
    assert len(MlflowClient().search_model_versions(f"name='{name}'")) == 2
    assert str(MlflowClient().get_model_version_by_alias(name, "champion").version) == \
        by_stage(clean.reports)["score"].detail["model_version"]


def test_a_crash_at_every_commit_point_of_a_retrain_then_a_rerun_equals_a_clean_retrain(spark, clean):
    """--retrain with another codebook and ALS seed: the stages a retrain refits (the codebook, every
    SID, the collaborative vectors). The full rebuilds of retrieve and build-training-set that follow
    are left out for the suite's time; the test above crashes their incremental path."""
    for name in ("retrain_clean", "retrain_crash"):
        shutil.copytree(clean.root.parent / "after_day2", clean.root.parent / name)
    retrained = ("codebook.seed=1", "collab.seed=6")
    steady = config_in(clean.root.parent / "retrain_clean", *FAST, *retrained)
    crashed = config_in(clean.root.parent / "retrain_crash", *FAST, *retrained)
    until = "collab-vectors"
    run_date(spark, steady, DAY2, retrain=True, until=until)
    rebuilt = STAGE_NAMES[STAGE_NAMES.index("train-codebook"):STAGE_NAMES.index(until) + 1]
    crashes = crash_at_every_commit_point(spark, crashed, DAY2, rebuilt, retrain=True)
    assert min(crashes.values()) >= 1, crashes

    steady_store, crashed_store = TableStore(spark, steady.tables), TableStore(spark, crashed.tables)
    for table in DATA_TABLES:
        if table != "predictions":
            assert table_snapshot(crashed_store, table) == table_snapshot(steady_store, table), table
    def codebooks(store):
        return {r[0] for r in store.read("item_sids").select("codebook_version").distinct().collect()}
    assert codebooks(crashed_store) == codebooks(steady_store) != codebooks(TableStore(spark, clean.config.tables))
    # The same --retrain again is done for the date: it resumes past every stage instead of retraining.
    assert {r.status for r in run_date(spark, crashed, DAY2, retrain=True, until=until)} == {"skipped"}


def test_a_new_item_gets_an_index_after_the_others_and_the_champion_scores_it(spark, clean):
    config = split_as_of(clean.config, DAY2)
    store = TableStore(spark, config.tables)
    index_before = table_snapshot(store, "item_index")
    top = max(r for r in store.read("item_index").select("item_idx").toPandas()["item_idx"])
    new = spark.createDataFrame([(10_000_001, 999, "a brand new item in a brand new category", "synthetic")],
                                "item_id BIGINT, category_id BIGINT, text STRING, source STRING")
    store.insert_new("items", new)
    assert embed_items.update(spark, config).embedded == 1
    assert assign_sids.run(spark, config).assigned_now == 1
    levels = len(store.read("item_sids").first()["semantic_codes"])
    assert extend_item_index(store, levels) == 1
    index = store.read("item_index")
    added = index.where(F.col("item_id") == 10_000_001).first()
    assert added["item_idx"] == top + 1 and min(added["sid"]) >= 1
    assert added["category_idx"] == index.agg(F.max("category_idx")).first()[0]
    assert set(index_before) <= set(table_snapshot(store, "item_index"))

    # The champion has no embedding row for it: the item maps to padding, its SID (looked up in today's
    # item_index, which extends the champion's lookups) still counts.
    bundle = load_bundle(config.mlflow, f"models:/{config.registry.model_name}@champion")
    assert added["item_idx"] >= bundle.spec.num_items
    lookups = item_lookup_arrays(store)
    assert not bundle.incompatibilities(feature_spec(store, config), data_versions(store), lookups)
    examples = store.read("training_examples").where(F.col("split") == "test").limit(8).toPandas()
    arrays = {k: torch.as_tensor(v) for k, v in frame_arrays(examples, bundle.narrow_columns).items()}
    task = bundle.with_item_lookup(*lookups).build()
    known = task.predict_proba(arrays)
    arrays["target_item"] = torch.full_like(arrays["target_item"], int(added["item_idx"]))
    wide = task.model.item_lookup.widen(arrays)
    assert wide["target_cat"].tolist() == [added["category_idx"]] * len(examples)
    assert wide["target_sid"].tolist() == [list(added["sid"])] * len(examples)
    unseen = task.predict_proba(arrays)
    assert torch.isfinite(unseen).all() and not torch.equal(unseen, known)


def test_a_skipped_night_is_caught_up_and_the_tables_equal_a_run_without_the_gap(spark, clean):
    # Neither workspace keeps a champion, so DAY3's model is promoted in both: each scores DAY3 with a
    # model trained on the same rows (the champions before differ: the gap run trained none on DAY2).
    promote_any = ("registry.min_first_metric=0.0",)
    gap = config_in(clean.root.parent / "gap", *FAST, *promote_any)  # DAY1, then DAY3
    steady = config_in(clean.root.parent / "after_day2", *FAST, *promote_any)  # DAY1, DAY2, then DAY3
    for config in (gap, steady):
        configure(config.mlflow)
        client, name = MlflowClient(), config.registry.model_name
        if "champion" in client.get_registered_model(name).aliases:
            client.delete_registered_model_alias(name, "champion")
    reports = run_date(spark, gap, DAY3)
    assert [(r.day, r.stage, r.status) for r in reports] == (
        [(DAY2, s, "ran") for s in DATA_STAGES] + [(DAY3, s, "ran") for s in STAGE_NAMES])
    assert by_stage(reports)["ingest"].detail["catch_up"] is False
    assert f"(days processed: {DAY2}, {DAY3})" in summary_table(DAY3, reports)
    assert [r.day for r in run_date(spark, steady, DAY3)] == [DAY3] * len(STAGE_NAMES)

    gap_store, steady_store = TableStore(spark, gap.tables), TableStore(spark, steady.tables)
    for table in DATA_TABLES:
        if table != "predictions":
            assert table_snapshot(gap_store, table) == table_snapshot(steady_store, table), table
    # Each day's events carry that day's dated ingest run id, however the day was reached.
    assert {r[0] for r in gap_store.read("events").where(F.col("event_date") == F.lit(DAY2).cast("date"))
            .select("ingest_run_id").distinct().collect()} == {dated_run_id("synthetic", DAY2)}
    # DAY3's predictions are the same rows and scores; only the registry's version number differs
    # (the gap run registered no model for DAY2). The missed day itself is not scored.
    def scored(store):
        df = store.read("predictions").drop("model_version")
        return sorted(tuple(r) for r in df.select(*sorted(df.columns)).where(F.col("score_date") == DAY3).collect())
    assert scored(gap_store) == scored(steady_store) and scored(gap_store)
    assert gap_store.read("predictions").where(F.col("score_date") == DAY2).count() == 0
    # The missed day is processed: the next run does not catch up on it again.
    assert [r.status for r in run_date(spark, gap, DAY3)] == ["skipped"] * len(STAGE_NAMES)


def test_a_changed_config_is_refused_naming_the_keys_and_rebuilt_only_on_request(spark, clean, capsys):
    root = clean.root.parent / "drift"  # DAY1 and DAY2 ran with retrieval.k = 20
    changed = config_in(root, *FAST, "retrieval.k=5")
    store = TableStore(spark, changed.tables)
    before, ledger_version = versions(store), store.version(LEDGER)
    with pytest.raises(ConfigDriftError, match=r"retrieval\.k: 20 -> 5\. .*retrieve, build-training-set.*--rebuild"):
        run_date(spark, changed, DAY3)
    assert pipeline.main(cli(root, DAY3) + ["--set", "retrieval.k=5"]) == 1
    assert "retrieval.k: 20 -> 5" in capsys.readouterr().err
    assert versions(store) == before and store.version(LEDGER) == ledger_version  # nothing written
    assert RunLock(store, run_date=DAY3, timeout_minutes=180).holder() is None
    # The source's own rules are never absorbed: the stored events follow the old ones.
    with pytest.raises(ConfigDriftError, match=r"ingest\.behaviors: .*new workspace"):
        run_date(spark, config_in(root, *FAST, "ingest.behaviors=[pv]"), DAY3, rebuild=True)

    reports = run_date(spark, changed, DAY3, rebuild=True, until="build-training-set")
    assert {r.stage: r.detail.get("action") for r in reports if r.stage in ("retrieve", "build-training-set")} == {
        "retrieve": "rebuilt", "build-training-set": "rebuilt"}
    assert by_stage(reports)["sequences"].detail.get("action") is None  # unchanged config: incremental
    # Every row now has the new shape, and every sample has exactly one row.
    examples = store.read("training_examples")
    routes = [c for c in examples.columns if c.startswith("r_") and c.endswith("_item")]
    assert routes and examples.select(*[F.size(c).alias(c) for c in routes]).distinct().collect() == [
        tuple([5] * len(routes))]
    samples = {r[0] for r in store.read("samples").select("sample_id").collect()}
    for table in ("route_candidates", "training_examples"):
        ids = [r[0] for r in store.read(table).select("sample_id").collect()]
        assert len(ids) == len(set(ids)) and set(ids) == samples, table
    # The new values are recorded: the same config runs on, the old one is now the drift.
    assert {r.status for r in run_date(spark, changed, DAY3, until="build-training-set")} == {"skipped"}
    with pytest.raises(ConfigDriftError, match=r"retrieval\.k: 5 -> 20"):
        run_date(spark, config_in(root, *FAST), DAY3)


def test_a_codebook_trained_by_hand_between_nights_stays_out_of_the_next_one(spark, clean):
    store = TableStore(spark, clean.config.tables)
    store_dir = Path(clean.config.codebook.store_dir)
    used = codebook_store.current_version(store_dir)
    ours = codebook_store.load(store_dir, used)
    other = Codebook(encoder_weights=ours.encoder_weights, codebooks=ours.codebooks[:, ::-1].copy(),
                     input_dim=ours.input_dim)
    codebook_store.publish(other, store_dir)  # `r2led train-codebook` by hand: current.json moves
    assert codebook_store.current_version(store_dir) == other.version != used
    sids = table_snapshot(store, "item_sids")
    forced = ("train-codebook", "assign-sids")
    reports = run_date(spark, clean.config, DAY2, force_stages=forced, until="assign-sids")
    assert by_stage(reports)["train-codebook"].detail == {"codebook_version": used, "action": "kept"}
    assert by_stage(reports)["assign-sids"].detail["codebook_version"] == used
    assert table_snapshot(store, "item_sids") == sids
    # The ledger's codebook, damaged on disk, stops the run before any SID is written.
    path = store_dir / f"{used}.npz"
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    try:
        with pytest.raises(CodebookVersionError, match="not a readable codebook"):
            run_date(spark, clean.config, DAY2, force_stages=forced, until="assign-sids")
        assert table_snapshot(store, "item_sids") == sids
    finally:
        path.write_bytes(whole)
