"""What the nightly run promises when the world misbehaves: a quiet day or a missing day folder is a
normal day and the next night runs; an operator can skip a broken day; a table whose Delta log went
missing, or whose newest commit was deleted, stops the run before anything is written, and
`--rebuild-from` rebuilds it from the logs without deleting what was there."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from jobs.ingest.ingest import EmptyDayError
from jobs.orchestration import pipeline
from jobs.orchestration.ledger import LedgerRecord, RunLedger
from jobs.orchestration.nightly import run_date
from jobs.orchestration.nightly_report import summary_table
from jobs.orchestration.stages import DATA_STAGES, STAGE_NAMES
from jobs.orchestration.table_guard import TableStateError, recorded_versions
from jobs.runtime.tables import DamagedTableError, TableStore
from tests.helpers import IVY_DIR, NIGHTLY_DAY1, NIGHTLY_FAST, config_in, table_snapshot

DAY1, DAY2, DAY3 = NIGHTLY_DAY1, "2024-01-19", "2024-01-20"


def day_folder(root: Path, day: str) -> Path:
    return root / "raw/synthetic/events" / f"event_date={day}"


def empty_the_files(folder: Path) -> int:
    """Truncate every file of a day folder (a quiet day upstream); returns how many there were."""
    files = [p for p in folder.iterdir() if p.is_file()]
    for path in files:
        path.write_text("")
    return len(files)


def ledger_of(store: TableStore, day: str) -> dict[str, LedgerRecord]:
    return {r.stage: r for r in RunLedger(store).state() if r.run_date == day}


@pytest.fixture
def workspace(nightly_day1, tmp_path) -> Path:
    """A copy of the tiny world after a clean first night (DAY1)."""
    root = tmp_path / "workspace"
    shutil.copytree(nightly_day1, root)
    return root


def test_a_quiet_day_and_a_missing_day_folder_are_normal_days_and_the_next_night_runs(spark, workspace):
    config = config_in(workspace, *NIGHTLY_FAST)
    store = TableStore(spark, config.tables)
    assert empty_the_files(day_folder(workspace, DAY2)) > 0
    shutil.rmtree(day_folder(workspace, DAY3))
    events_before = store.read("events").count()

    # DAY2 is missed, then DAY3's run catches up on it: neither day has input, and both go through.
    reports = run_date(spark, config, DAY3)
    by_day = {(r.day, r.stage): r for r in reports}
    assert [r.status for r in reports] == ["ran"] * (len(DATA_STAGES) + len(STAGE_NAMES))
    for day in (DAY2, DAY3):
        ingest = by_day[(day, "ingest")]
        assert ingest.detail["empty_day"] is True and ingest.rows_in == ingest.rows_out == 0
        assert ledger_of(store, day)["ingest"].status == "done"
    assert store.read("events").count() == events_before
    # No examples in the test window: no challenger tonight, the champion stays and scores the day (nothing).
    assert by_day[(DAY3, "train")].detail == {"action": "not trained", "empty_splits": ["test"]}
    assert by_day[(DAY3, "promote")].detail["action"] == "no challenger"
    assert by_day[(DAY3, "score")].rows_out == 0
    assert "empty day: no input for the date, nothing ingested" in summary_table(DAY3, reports)

    # The next night is not wedged: re-running the date skips every stage.
    again = run_date(spark, config, DAY3)
    assert {r.status for r in again} == {"skipped"}


def test_an_empty_day_set_to_fail_stops_the_run_until_the_operator_skips_the_day(spark, workspace):
    config = config_in(workspace, *NIGHTLY_FAST, "ingest.empty_day=fail")
    store = TableStore(spark, config.tables)
    empty_the_files(day_folder(workspace, DAY2))
    with pytest.raises(EmptyDayError, match="ingest.empty_day"):
        run_date(spark, config, DAY2)
    with pytest.raises(EmptyDayError):
        run_date(spark, config, DAY3, until="ingest")  # every later night re-runs the failed day first
    with pytest.raises(ValueError, match=r"--skip-day 2024-01-20: only a missed day"):
        run_date(spark, config, DAY3, skip_days=(DAY3,))

    # The operator gives the day up: recorded in the ledger, and the night runs.
    argv = ["--env", "tiny", "--set", f"workspace.root={workspace}", "--set", f"spark.ivy_dir={IVY_DIR}",
            *[a for o in (*NIGHTLY_FAST, "ingest.empty_day=fail") for a in ("--set", o)],
            "--date", DAY3, "--skip-day", DAY2, "--until", "build-training-set"]
    assert pipeline.main(argv) == 0
    skipped = ledger_of(store, DAY2)
    assert set(skipped) == set(DATA_STAGES) and all(r.status == "done" for r in skipped.values())
    assert skipped["ingest"].detail["skipped_day"] is True
    assert ledger_of(store, DAY3)["ingest"].rows_out > 0


def test_a_table_without_its_delta_log_stops_the_run_and_is_never_overwritten(spark, workspace):
    config = config_in(workspace, *NIGHTLY_FAST)
    store = TableStore(spark, config.tables)
    events_before = table_snapshot(store, "events")
    events_dir = Path(store.location("events"))
    shutil.rmtree(events_dir / "_delta_log")
    data_files = sorted(p.relative_to(events_dir) for p in events_dir.rglob("*.parquet"))

    with pytest.raises(TableStateError, match=r"events: the ledger records version \d+ \(stage ingest of "
                                              rf"{DAY1}\), found data files but no Delta log") as refused:
        run_date(spark, config, DAY2)
    assert f"r2led pipeline --date {DAY2} --rebuild-from ingest" in str(refused.value)
    assert sorted(p.relative_to(events_dir) for p in events_dir.rglob("*.parquet")) == data_files
    assert not (events_dir / "_delta_log").exists()
    # A stage run on its own is refused too: the folder is never taken for a new table.
    with pytest.raises(DamagedTableError, match="no Delta log"):
        store.read("events")

    # Rebuilt on request from the raw logs: the folder is moved aside, events hold every row again.
    reports = run_date(spark, config, DAY1, rebuild_from="ingest", until="build-training-set")
    assert {r.stage: r.status for r in reports} == {s: "ran" for s in DATA_STAGES}
    assert table_snapshot(store, "events") == events_before
    moved = list((Path(config.tables.root) / "_damaged").iterdir())
    assert len(moved) == 1 and moved[0].name.startswith("events-")
    assert sorted(p.relative_to(moved[0]) for p in moved[0].rglob("*.parquet")) == data_files
    run_date(spark, config, DAY2, until="sequences")  # and the next night passes the check


def test_a_table_whose_newest_commit_was_deleted_stops_the_run_naming_both_versions(spark, workspace):
    config = config_in(workspace, *NIGHTLY_FAST)
    store = TableStore(spark, config.tables)
    run_date(spark, config, DAY2, until="sequences")
    # A table two nights committed to: its newest commit can go while the table stays readable.
    table, recorded, stage = next((r.table, r.version, r.stage) for r in sorted(recorded_versions(
        RunLedger(store).state()).values(), key=lambda r: r.table) if r.version >= 1)
    log_dir = Path(store.location(table)) / "_delta_log"
    (log_dir / f"{recorded:020d}.json").unlink()
    for crc in log_dir.glob(f"{recorded:020d}.*crc"):
        crc.unlink()
    assert store.version(table) == recorded - 1
    ledger_version = store.version("pipeline_runs")
    with pytest.raises(TableStateError, match=rf"{table}: the ledger records version {recorded} \(stage "
                                              rf"{stage} of {DAY2}\), found version {recorded - 1}"):
        run_date(spark, config, DAY3)
    assert store.version(table) == recorded - 1 and store.version("pipeline_runs") == ledger_version

    # Every commit of a table gone (an empty _delta_log) is a damaged table too, never a new one.
    for commit in log_dir.iterdir():
        if commit.is_file():
            commit.unlink()
    with pytest.raises(TableStateError, match=rf"{table}: the ledger records .* found data files but no Delta log"):
        run_date(spark, config, DAY3)
