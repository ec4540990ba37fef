"""The pipeline ledger as an append-only log on a real Delta table: the latest record of a
(date, stage) is where it stands, records stay ordered when the clock runs back, and a ledger
written before `recorded_at` existed is upgraded in place."""

from __future__ import annotations

from jobs.orchestration import ledger as ledger_module
from jobs.orchestration.ledger import LEDGER, LedgerRecord, RunLedger
from jobs.runtime.tables import TableStore

OLD_SCHEMA = ("run_date STRING, stage STRING, status STRING, rows_in BIGINT, rows_out BIGINT, seconds DOUBLE, "
              "table_versions STRING, detail STRING")


def attempt(day: str, stage: str, status: str) -> LedgerRecord:
    return LedgerRecord(run_date=day, stage=stage, status=status, rows_in=1, rows_out=1, seconds=0.5)


def test_the_latest_record_is_where_a_stage_stands_even_when_the_clock_runs_back(spark, make_config, monkeypatch):
    store = TableStore(spark, make_config().tables)
    first = RunLedger(store)
    assert first.state() == []
    first.record(attempt("2024-01-19", "ingest", "failed"))
    # The next run's host is an hour behind: its records still come after the ones it read.
    now = ledger_module.time.time()
    monkeypatch.setattr(ledger_module.time, "time", lambda: now - 3600)
    second = RunLedger(store)
    assert [r.status for r in second.state()] == ["failed"]
    second.record(attempt("2024-01-19", "ingest", "done"))
    second.record(attempt("2024-01-19", "sequences", "failed"))
    stands = {(r.run_date, r.stage): r.status for r in RunLedger(store).state()}
    assert stands == {("2024-01-19", "ingest"): "done", ("2024-01-19", "sequences"): "failed"}
    stamps = [r["recorded_at"] for r in store.read(LEDGER).orderBy("recorded_at").collect()]
    assert len(stamps) == 3 == len(set(stamps))
    assert [r["status"] for r in store.read(LEDGER).orderBy("recorded_at").collect()] == ["failed", "done", "failed"]


def test_a_ledger_from_before_recorded_at_gains_the_column_and_keeps_its_rows(spark, make_config):
    store = TableStore(spark, make_config().tables)
    old = [tuple(attempt("2024-01-18", stage, "done").to_row().values())[:-1] for stage in ("ingest", "sequences")]
    spark.createDataFrame(old, OLD_SCHEMA).write.format("delta").save(store.location(LEDGER))
    run_ledger = RunLedger(store)
    assert run_ledger.upgrade() == ["recorded_at"]
    assert run_ledger.upgrade() == []  # once
    run_ledger.record(attempt("2024-01-18", "sequences", "failed"))  # a later attempt of an old record
    stands = {r.stage: (r.status, r.recorded_at is None) for r in run_ledger.state()}
    assert stands == {"ingest": ("done", True), "sequences": ("failed", False)}


def test_a_record_reads_back_as_written_with_its_json_parsed_once(spark, make_config):
    store = TableStore(spark, make_config().tables)
    written = LedgerRecord(run_date="2024-01-19", stage="backfill/retrieve", status="done", rows_in=5, rows_out=4,
                           seconds=1.25, table_versions={"route_candidates": 3},
                           detail={"moved": 2, "config": {"retrieval.k": 20}})
    stored = RunLedger(store).record(written)
    (read,) = RunLedger(store).state()
    assert read == stored and read.recorded_at == stored.recorded_at > 0
    assert read.detail["config"] == {"retrieval.k": 20} and read.table_versions == {"route_candidates": 3}
    assert (read.stage_name, read.done) == ("retrieve", True)
