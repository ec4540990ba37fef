"""Ingest on hand-made UserBehavior logs: every bad row is rejected with its reason, nothing valid
is lost, exact duplicates are dropped, and re-running or adding a day behaves idempotently; a
dated run accounts for every row it reads (accepted + rejected + deferred), and a log that is
empty, all bad, or too bad fails at ingest with its rejects kept."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from jobs.ingest import ingest
from jobs.runtime.tables import TableStore
from tests.helpers import IVY_DIR, rows, write_lines

DAY1 = [
    "1,100,10,pv,1700000000",  # 2023-11-14T22:13:20Z
    "1,101,10,cart,1700000100",
    "1,100,10,pv,1700000000",  # exact duplicate of line 1: dropped, not rejected
    "2,100,10,buy,1700000200",
    "2,102,11,fav,1700000300",
    ",100,10,pv,1700000000",
    "u7,100,10,pv,1700000000",
    "3,,10,pv,1700000000",
    "3,100,10,pv,",
    "3,100,10,pv,soon",
    "3,100,10,pv,5",
    "3,100,10,like,1700000000",
    "3,100,10,pv",
    "this is not a log line",
    "3,-4,10,pv,1700000000",
    "3,100,ten,pv,1700000000",
]
EXPECTED_REJECTS = {
    ",100,10,pv,1700000000": "missing_user_id",
    "u7,100,10,pv,1700000000": "bad_user_id",
    "3,,10,pv,1700000000": "missing_item_id",
    "3,100,10,pv,": "missing_timestamp",
    "3,100,10,pv,soon": "bad_timestamp",
    "3,100,10,pv,5": "impossible_timestamp",
    "3,100,10,like,1700000000": "unknown_behavior",
    "3,100,10,pv": "wrong_field_count",
    "this is not a log line": "wrong_field_count",
    "3,-4,10,pv,1700000000": "bad_item_id",
    "3,100,ten,pv,1700000000": "bad_category_id",
}
DAY2 = ["1,103,12,pv,1700090000", "4,100,10,pv,1700090500", "1,100,10,pv,1700000000"]


def _config(make_config, tmp_path, *files, lenient: bool = True):
    paths = ", ".join(f'"{f}"' for f in files)
    # DAY1 is mostly bad lines on purpose: these tests lift the reject-share limit unless told not to.
    return make_config("source.kind=taobao", f"source.taobao.paths=[{paths}]",
                       *(["ingest.max_reject_share=1.0"] if lenient else []))


def test_bad_rows_land_in_rejects_with_reasons_and_valid_rows_survive(spark, make_config, tmp_path):
    day1 = write_lines(tmp_path / "logs" / "day1.csv", DAY1)
    config = _config(make_config, tmp_path, day1)
    result = ingest.run(spark, config)

    store = TableStore(spark, config.tables)
    rejected = {r["raw"]: r["reason"] for r in store.read("events_rejected").collect()}
    assert rejected == EXPECTED_REJECTS
    assert all(r["source_file"].endswith("day1.csv") for r in store.read("events_rejected").collect())

    events = rows(store.read("events").select("user_id", "item_id", "ts", "behavior", "label"))
    assert events == [(1, 100, 1700000000, "pv", None), (1, 101, 1700000100, "cart", None),
                      (2, 100, 1700000200, "buy", None), (2, 102, 1700000300, "fav", None)]
    assert {str(r["event_date"]) for r in store.read("events").collect()} == {"2023-11-14"}
    items = rows(store.read("items").select("item_id", "category_id", "text"))
    assert items == [(100, 10, None), (101, 10, None), (102, 11, None)]

    assert result.rows_read == len(DAY1)
    assert result.rows_accepted == 5 and result.duplicates_dropped == 1 and result.events_inserted == 4
    assert result.rows_rejected == len(EXPECTED_REJECTS)
    assert result.rejected_by_reason["wrong_field_count"] == 2


def test_ingesting_twice_changes_nothing_and_a_new_day_adds_only_that_day(spark, make_config, tmp_path):
    day1 = write_lines(tmp_path / "logs" / "day1.csv", DAY1)
    config = _config(make_config, tmp_path, day1)
    store = TableStore(spark, config.tables)
    ingest.run(spark, config)
    snapshot = {t: rows(store.read(t)) for t in ("events", "events_rejected", "items")}

    again = ingest.run(spark, config)
    assert again.events_inserted == 0 and again.items_inserted == 0
    assert {t: rows(store.read(t)) for t in snapshot} == snapshot

    day2 = write_lines(tmp_path / "logs" / "day2.csv", DAY2)
    added = ingest.run(spark, _config(make_config, tmp_path, day2))
    # The third DAY2 line repeats a day-1 event: an exact duplicate across days is not re-added.
    assert added.events_inserted == 2 and added.items_inserted == 1
    after = rows(store.read("events"))
    assert len(after) == len(snapshot["events"]) + 2
    assert set(snapshot["events"]) <= set(after)
    new_dates = {str(r["event_date"]) for r in store.read("events").where("item_id = 103 or user_id = 4").collect()}
    assert new_dates == {"2023-11-15"}


def at(day: str, hour: int = 12) -> int:
    """Epoch seconds of `hour`:00 UTC on `day`."""
    return int(dt.datetime.fromisoformat(f"{day}T{hour:02d}:00:00+00:00").timestamp())


D = "2023-11-14"
WHOLE_FILE = [
    f"1,100,10,pv,{at(D, 1)}",
    f"1,101,10,pv,{at(D, 2)}",
    f"1,101,10,pv,{at(D, 2)}",  # exact duplicate: accepted, dropped
    f"2,100,10,pv,{at('2023-11-13')}",  # an earlier day: offered to events, stored once
    f"3,100,10,pv,{at('2023-11-15')}",  # a later day of the same file: deferred to its own run
    f"3,101,10,pv,{at('2023-11-16')}",
    f"4,100,10,pv,{at('2023-10-20')}",  # before ingest.min_date: impossible, even though not dated D
    f"4,101,10,pv,{at('2024-03-01')}",  # after ingest.max_date
    f"5,100,10,like,{at(D)}",
]
WINDOW = ("ingest.min_date=2023-11-01", "ingest.max_date=2023-12-01")


def test_a_dated_run_of_a_whole_file_accounts_for_every_row(spark, make_config, tmp_path):
    logs = write_lines(tmp_path / "logs" / "UserBehavior.csv", WHOLE_FILE)
    config = make_config("source.kind=taobao", f'source.taobao.paths=["{logs}"]', *WINDOW,
                         "ingest.max_reject_share=0.5")
    store = TableStore(spark, config.tables)
    result = ingest.ingest_day(spark, config, D)
    # Validation before any date rule: out-of-window rows are rejects with a reason, whatever their day.
    assert {r["raw"]: r["reason"] for r in store.read("events_rejected").collect()} == {
        WHOLE_FILE[6]: "impossible_timestamp", WHOLE_FILE[7]: "impossible_timestamp", WHOLE_FILE[8]: "unknown_behavior"}
    assert result.rejected_by_reason == {"impossible_timestamp": 2, "unknown_behavior": 1}
    assert (result.rows_read, result.rows_accepted, result.event_rows_rejected, result.rows_deferred) == (9, 4, 3, 2)
    assert result.rows_read == result.rows_accepted + result.event_rows_rejected + result.rows_deferred
    assert (result.duplicates_dropped, result.events_inserted, result.already_present) == (1, 3, 0)
    assert rows(store.read("events").select("user_id", "item_id")) == [(1, 100), (1, 101), (2, 100)]

    # The next day's run takes its own rows; the earlier ones are already present, not added again.
    nxt = ingest.ingest_day(spark, config, "2023-11-15")
    assert (nxt.rows_read, nxt.rows_accepted, nxt.rows_deferred, nxt.events_inserted) == (9, 5, 1, 1)
    assert (nxt.duplicates_dropped, nxt.already_present) == (1, 3)
    assert store.read("events").count() == 4 and store.read("events_rejected").count() == 3


def _synthetic(root, day: str, lines: list[str]) -> str:
    """A hand-made drop folder in the synthetic layout: events/event_date=<day>/ and items/."""
    write_lines(root / "events" / f"event_date={day}" / "part-0.csv", lines)
    write_lines(root / "items" / "part-0.json", ['{"item_id": 100, "category_id": 10, "text": "a"}'])
    return str(root)


def test_a_row_in_the_days_folder_dated_after_the_day_is_a_future_event(spark, make_config, tmp_path):
    folder = _synthetic(tmp_path / "raw", D, [f"1,100,10,pv,{at(D)}", f"2,100,10,pv,{at(D, 23)}",
                                              f"3,100,10,pv,{at('2023-11-15', 0)}", f"4,100,10,pv,{at('2023-11-13')}"])
    config = make_config("source.kind=synthetic", f"source.synthetic.path={folder}", "ingest.max_reject_share=0.3")
    store = TableStore(spark, config.tables)
    result = ingest.ingest_day(spark, config, D)
    assert result.rejected_by_reason == {"future_event": 1} and result.rows_deferred == 0
    assert [r["reason"] for r in store.read("events_rejected").collect()] == ["future_event"]
    # A late row of the day before, found in D's folder, is kept: it arrived with D's batch.
    assert rows(store.read("events").select("user_id")) == [(1,), (2,), (4,)]
    assert result.rows_read == result.rows_accepted + result.event_rows_rejected == 4


@pytest.mark.parametrize("lines, message", [
    ([], r"no valid rows: 0 of 0 rows read"),
    (["3,100,10,like,1700000000", "this is not a log line", "3,100,10,pv,5"], r"no valid rows: 3 of 3 rows read"),
    (["1,100,10,pv,1700000000", "3,100,10,like,1700000000"],
     r"1 of 2 rows rejected \(50\.0%\), more than ingest\.max_reject_share 10\.0%"),
], ids=["empty", "all-bad", "too-bad"])
def test_an_empty_all_bad_or_too_bad_log_fails_at_ingest_and_keeps_its_rejects(spark, make_config, tmp_path,
                                                                                 lines, message):
    logs = write_lines(tmp_path / "logs" / "day.csv", lines)
    config = _config(make_config, tmp_path, logs, lenient=False)
    store = TableStore(spark, config.tables)
    with pytest.raises(ingest.IngestRejectedError, match=message) as failed:
        ingest.run(spark, config)
    assert f"events_rejected ({store.location('events_rejected')}" in str(failed.value)
    assert "nothing was added to events or items" in str(failed.value)
    bad = [line for line in lines if "pv,1700000000" not in line]
    assert sorted(r["raw"] for r in store.read("events_rejected").collect()) == sorted(bad)
    assert not store.exists("events") and not store.exists("items")


def test_the_command_exits_1_naming_the_rejects_table(spark, make_config, tmp_path, capsys):
    logs = write_lines(tmp_path / "logs" / "day.csv", ["this is not a log line"])
    argv = ["--env", "tiny", "--set", f"workspace.root={tmp_path}", "--set", f"spark.ivy_dir={IVY_DIR}",
            "--set", "source.kind=taobao", "--set", f'source.taobao.paths=["{logs}"]']
    assert ingest.main(argv) == 1
    err = capsys.readouterr().err
    assert re.search(r"IngestRejectedError: ingest ingest-\w+: no valid rows: 1 of 1 rows read", err)
    assert "The rejected rows are in the table events_rejected" in err
    assert TableStore(spark, make_config().tables).read("events_rejected").count() == 1
