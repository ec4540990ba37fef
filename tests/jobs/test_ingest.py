"""Ingest on hand-made UserBehavior logs: every bad row is rejected with its reason, nothing valid
is lost, exact duplicates are dropped, and re-running or adding a day behaves idempotently."""

from __future__ import annotations

from jobs import ingest
from jobs.tables import TableStore
from tests.helpers import rows, write_lines

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


def _config(make_config, tmp_path, *files):
    paths = ", ".join(f'"{f}"' for f in files)
    return make_config("source.kind=taobao", f"source.taobao.paths=[{paths}]")


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
