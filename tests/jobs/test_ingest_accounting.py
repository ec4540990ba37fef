"""Nothing lost, nothing wedged: every row an ingest reads is accepted, rejected with a reason,
deferred, late (counted, left for a backfill) or stored by an earlier run, and the counts add up.

Hand-made drop folders, CSV logs and Delta / Parquet tables, each with rows whose fate is worked
out here: empty days, a table without a partition column read by timestamp, unknown and
conflicting catalogue items, identical bad lines, NaN / Infinity values and integral float ids.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

import pytest
from jobs.ingest import ingest
from jobs.ingest.sources import load_source
from jobs.runtime.tables import TableStore
from tests.helpers import config_in, rows, write_lines

LENIENT = "ingest.max_reject_share=1.0"
D, BEFORE, AFTER = "2024-01-19", "2024-01-18", "2024-01-20"
TABLES = ("events", "items", "events_rejected")


def at(day: str, hour: int = 12) -> int:
    """Epoch seconds of `hour`:00 UTC on `day`."""
    return int(dt.datetime.fromisoformat(f"{day}T{hour:02d}:00:00+00:00").timestamp())


def table_source(**table) -> str:
    return f"source.table={json.dumps(table)}"


def accounted(result: ingest.IngestResult) -> int:
    """What the result says became of the rows read: each row in exactly one place."""
    return (result.rows_accepted + result.event_rows_rejected + result.rows_deferred
            + result.late_rows_not_ingested + result.rows_stored_earlier)


def warnings_of(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


# ------------------------------------------------------------------------------------------------
# a. Empty days
# ------------------------------------------------------------------------------------------------


def _synthetic_root(root, days: dict[str, list[str] | None]) -> str:
    """A drop folder in the synthetic layout; a day mapped to None has no folder at all."""
    for day, lines in days.items():
        if lines is not None:
            write_lines(root / "events" / f"event_date={day}" / "part-0.csv", lines)
    write_lines(root / "items" / "part-0.json", ['{"item_id": 100, "category_id": 10, "text": "a"}'])
    return str(root)


@pytest.mark.parametrize("folder", ["empty file", "missing folder"])
def test_an_empty_or_missing_day_folder_is_an_empty_day_that_writes_nothing(spark, tmp_path, caplog, folder):
    root = _synthetic_root(tmp_path / "raw", {BEFORE: [f"1,100,10,pv,{at(BEFORE)}"],
                                               D: [] if folder == "empty file" else None})
    config = config_in(tmp_path, "source.kind=synthetic", f"source.synthetic.path={root}")
    with caplog.at_level(logging.WARNING):
        result = ingest.ingest_day(spark, config, D)
    assert result.empty_day and (result.rows_read, result.rows_accepted, result.rows_rejected) == (0, 0, 0)
    assert "empty day" in result.summary()
    assert f"{D} is an empty day" in warnings_of(caplog) and f"event_date={D}" in warnings_of(caplog)
    store = TableStore(spark, config.tables)
    assert not any(store.exists(t) for t in TABLES)  # no commit at all

    strict = config_in(tmp_path, "source.kind=synthetic", f"source.synthetic.path={root}", "ingest.empty_day=fail")
    with pytest.raises(ingest.EmptyDayError, match=rf"{D} is an empty day: the day's input .*event_date={D}.*"
                                                   r"ingest\.empty_day is 'fail'"):
        ingest.ingest_day(spark, strict, D)
    assert not any(store.exists(t) for t in TABLES)


def test_a_day_folder_of_bad_rows_only_still_fails(spark, make_config, tmp_path):
    root = _synthetic_root(tmp_path / "raw", {D: ["not a log line", "1,100,10,like,1705665600"]})
    config = make_config("source.kind=synthetic", f"source.synthetic.path={root}")
    with pytest.raises(ingest.IngestRejectedError, match="no valid rows: 2 of 2 rows read"):
        ingest.ingest_day(spark, config, D)


def test_a_missing_partition_and_a_whole_file_without_the_day_are_empty_days(spark, tmp_path):
    table = tmp_path / "by_day"
    spark.createDataFrame([(1, 10, at(BEFORE), BEFORE)], "u long, i long, t long, day string") \
        .write.format("delta").partitionBy("day").save(str(table))
    partitioned = config_in(tmp_path / "a", "source.kind=table", table_source(
        path=str(table), partition_column="day", columns=dict(user="u", item="i", timestamp="t")))
    result = ingest.ingest_day(spark, partitioned, D)
    assert result.empty_day and result.rows_read == 0
    assert not TableStore(spark, partitioned.tables).exists("events")

    # A file read whole whose rows are all of later days: nothing of D, the rows wait for their own runs.
    logs = write_lines(tmp_path / "logs" / "UserBehavior.csv", [f"1,100,10,pv,{at(AFTER)}", f"2,100,10,pv,{at(AFTER)}"])
    whole = config_in(tmp_path / "b", "source.kind=taobao", f'source.taobao.paths=["{logs}"]')
    result = ingest.ingest_day(spark, whole, D)
    assert result.empty_day and (result.rows_read, result.rows_deferred, result.rows_accepted) == (2, 2, 0)
    assert not any(TableStore(spark, whole.tables).exists(t) for t in TABLES)
    with pytest.raises(ingest.EmptyDayError, match=rf"no row of .*UserBehavior.csv is dated {D}.*ingest.empty_day"):
        ingest.ingest_day(spark, config_in(tmp_path / "b", "source.kind=taobao", f'source.taobao.paths=["{logs}"]',
                                           "ingest.empty_day=fail"), D)


# ------------------------------------------------------------------------------------------------
# b. A table without a partition column, read by timestamp
# ------------------------------------------------------------------------------------------------

SCHEMA = "u long, i long, t long"
DAY_ROWS = [(u, 10, at(D, u)) for u in range(1, 7)]  # six good rows of D
# Rows no day's read would reach: missing or bad timestamps, and one after ingest.max_date (2100-01-01).
UNUSABLE = [(7, 10, None), (8, 10, None), (9, 10, 10**14), (10, 10, 10**14 + 1), (13, 10, at("2101-01-01"))]
LATE = [(11, 10, at(BEFORE, 20))]  # a row of the day before, appended with D's rows
NEXT = [(12, 10, at(AFTER))]


def test_a_table_without_partition_column_accounts_for_every_row_and_reports_late_rows(spark, tmp_path, caplog):
    path = str(tmp_path / "appended")

    def append(data):
        spark.createDataFrame(data, SCHEMA).coalesce(1).write.format("delta").mode("append").save(path)

    def config(*extra):
        return config_in(tmp_path, "source.kind=table", *extra,
                         table_source(path=path, columns=dict(user="u", item="i", timestamp="t")))

    store = TableStore(spark, config().tables)
    append([(21, 10, at(BEFORE, 1)), (22, 10, at(BEFORE, 2))])
    assert ingest.ingest_day(spark, config(), BEFORE).events_inserted == 2
    append(DAY_ROWS + UNUSABLE + LATE + NEXT)

    # Five of the eleven rows D's read owns are unusable: 45% rejected, more than a feed may break (10%).
    with pytest.raises(ingest.IngestRejectedError, match=r"5 of 11 rows rejected \(45\.5%\)"):
        ingest.ingest_day(spark, config(), D)
    assert sorted(r["reason"] for r in store.read("events_rejected").collect()) == (
        ["bad_timestamp"] * 2 + ["impossible_timestamp"] + ["missing_timestamp"] * 2)

    with caplog.at_level(logging.WARNING):
        result = ingest.ingest_day(spark, config(LENIENT), D)
    # A re-run of D: the rejects D's run recorded are still D's.
    assert result.rejected_by_reason == {"missing_timestamp": 2, "bad_timestamp": 2, "impossible_timestamp": 1}
    assert (result.rows_accepted, result.events_inserted, result.rows_deferred) == (6, 6, 0)
    assert result.late_rows_by_day == {BEFORE: 1} and result.late_rows_not_ingested == 1
    assert result.rows_stored_earlier == 2  # the day before's two events
    assert result.rows_read == 14 == accounted(result)  # every row but the 20th's
    assert f"late rows of {BEFORE} (1)" in warnings_of(caplog) and "--backfill" in warnings_of(caplog)
    assert "late, not ingested" in result.summary() and "stored earlier" in result.summary()

    # The next day meets the same rejects: recorded by D's run, they count there, so this day is clean.
    nxt = ingest.ingest_day(spark, config(), AFTER)
    assert (nxt.rows_accepted, nxt.events_inserted, nxt.rows_rejected) == (1, 1, 0)
    assert nxt.rows_stored_earlier == 2 + 6 + 5 and nxt.late_rows_by_day == {BEFORE: 1}
    assert nxt.rows_read == 15 == accounted(nxt)

    # A backfill of the late row's day takes it; then nothing is late any more.
    back = ingest.ingest_day(spark, config(), BEFORE)
    assert (back.events_inserted, back.already_present, back.late_rows_by_day) == (1, 2, {})
    assert store.read("events").count() == 2 + 6 + 1 + 1
    assert ingest.ingest_day(spark, config(), AFTER).late_rows_by_day == {}

    # A day without a row of its own is an empty day, though every earlier row is read and counted.
    quiet = ingest.ingest_day(spark, config(), "2024-01-21")
    assert quiet.empty_day and (quiet.rows_accepted, quiet.rows_rejected, quiet.late_rows_not_ingested) == (0, 0, 0)
    assert quiet.rows_read == quiet.rows_stored_earlier == 3 + 6 + 5 + 1


# ------------------------------------------------------------------------------------------------
# c, d. Unknown items and a catalogue that lists an item twice
# ------------------------------------------------------------------------------------------------

CATALOGUE = [  # item, title, category
    (70, "B lamp", 1), (70, "A lamp", 2),  # a conflict: the smallest text wins
    (71, None, 5), (71, "Tent", None),  # a conflict: the row with text wins
    (72, "Stove", 3), (72, "Stove", 3),  # an exact repeat: no conflict
]
EVENTS = [(1, 70, at(D), 9), (1, 71, at(D, 13), 9), (2, 72, at(D, 14), 9), (2, 99, at(D, 15), 4)]


def _catalogued(spark, root, events, *extra: str):
    spark.createDataFrame(events, "u long, i long, t long, cat long").coalesce(1).write.mode("overwrite") \
        .parquet(str(root / "events"))
    spark.createDataFrame(CATALOGUE, "sku long, title string, cat long").write.mode("overwrite") \
        .parquet(str(root / "products"))
    return config_in(root, "source.kind=table", LENIENT, *extra, table_source(
        path=str(root / "events"), format="parquet", columns=dict(user="u", item="i", timestamp="t", category="cat"),
        items=dict(path=str(root / "products"), format="parquet", item="sku", category="cat", text="{title}")))


def test_an_event_of_an_item_the_catalogue_lacks_is_rejected_and_conflicts_are_counted(spark, tmp_path, caplog):
    config = _catalogued(spark, tmp_path, EVENTS)
    with caplog.at_level(logging.WARNING):
        result = ingest.run(spark, config)
    store = TableStore(spark, config.tables)
    assert result.rejected_by_reason == {"unknown_item": 1} and result.rows_accepted == 3
    assert [json.loads(r["raw"])["i"] for r in store.read("events_rejected").collect()] == [99]
    assert rows(store.read("events").select("item_id")) == [(70,), (71,), (72,)]
    # One row per item, by the stated rule whatever the read order; the two conflicts are counted and named.
    assert rows(store.read("items").select("item_id", "category_id", "text")) == [
        (70, 2, "A lamp"), (71, None, "Tent"), (72, 3, "Stove")]
    assert result.conflicting_items == 2 and "catalogue conflicts" in result.summary()
    assert "2 items are listed more than once" in warnings_of(caplog) and "70, 71" in warnings_of(caplog)


def test_unknown_items_create_makes_the_item_and_a_stored_item_is_known(spark, tmp_path):
    config = _catalogued(spark, tmp_path, EVENTS, "ingest.unknown_items=create")
    result = ingest.run(spark, config)
    store = TableStore(spark, config.tables)
    assert result.items_created == 1 and result.rows_rejected == 0 and result.events_inserted == 4
    assert store.read("items").where("item_id = 99").select("category_id", "text").collect()[0] == (4, None)
    assert "created" in result.summary()

    # 99 is stored now: a later log's event of 99 is known; 98 is in neither the catalogue nor items.
    later = _catalogued(spark, tmp_path, [(3, 99, at(AFTER), 4), (3, 98, at(AFTER, 13), 4)])
    again = ingest.run(spark, later)
    assert again.rejected_by_reason == {"unknown_item": 1} and again.events_inserted == 1
    assert rows(store.read("events").where("user_id = 3").select("item_id")) == [(99,)]


# ------------------------------------------------------------------------------------------------
# e. Identical bad lines are each stored
# ------------------------------------------------------------------------------------------------


def test_identical_bad_lines_are_each_stored_once_and_a_rerun_adds_nothing(spark, make_config, tmp_path):
    bad = "3,100,10,like,1700000000"
    logs = write_lines(tmp_path / "logs" / "day.csv", ["1,100,10,pv,1700000000"] * 2 + [bad] * 15)
    config = make_config("source.kind=taobao", f'source.taobao.paths=["{logs}"]', LENIENT)
    store = TableStore(spark, config.tables)
    source_file = load_source(spark, config).events.first()["source_file"]
    # A rejects table written before `occurrence` existed, holding this file's bad line once.
    spark.createDataFrame([(bad, "unknown_behavior", source_file, "ingest-old")],
                          "raw string, reason string, source_file string, ingest_run_id string") \
        .write.format("delta").save(store.location("events_rejected"))

    result = ingest.run(spark, config)
    assert result.rejected_by_reason == {"unknown_behavior": 15}
    stored = store.read("events_rejected")
    assert stored.count() == 15 and sorted(r["occurrence"] for r in stored.collect()) == list(range(1, 16))
    assert stored.where("ingest_run_id = 'ingest-old'").select("occurrence").collect() == [(1,)]  # copy 1

    again = ingest.run(spark, config)
    assert again.rejected_by_reason == {"unknown_behavior": 15} and store.read("events_rejected").count() == 15


# ------------------------------------------------------------------------------------------------
# f, g. NaN / Infinity values; integer ids written as floats
# ------------------------------------------------------------------------------------------------


def test_nan_and_infinite_values_are_bad_values_not_clicks(spark, make_config, tmp_path):
    t = at(D)
    spark.createDataFrame([(1, 10, t, 4.5), (2, 10, t, float("nan")), (3, 10, t, float("inf")),
                           (4, 10, t, float("-inf")), (5, 10, t, 1.0)], "u long, i long, t long, stars double") \
        .write.parquet(str(tmp_path / "ratings"))
    config = make_config("source.kind=table", table_source(
        path=str(tmp_path / "ratings"), format="parquet", labels="threshold", click_threshold=4, behavior="rating",
        columns=dict(user="u", item="i", timestamp="t", value="stars")))
    parsed = {r["user_id"]: (r["label"], r["reason"]) for r in load_source(spark, config).events.collect()}
    assert {u: reason for u, (_, reason) in parsed.items()} == {1: None, 2: "bad_value", 3: "bad_value",
                                                                4: "bad_value", 5: None}
    assert parsed[1][0] == 1 and parsed[5][0] == 0

    inter = ["user_id:token\titem_id:token\trating:float\ttimestamp:float", "1\t10\t5\t881250949",
             "2\t10\tNaN\t881250949", "3\t10\tInfinity\t881250949", "4\t10\t-Infinity\t881250949"]
    write_lines(tmp_path / "ml" / "ml-100k.inter", inter)
    write_lines(tmp_path / "ml" / "ml-100k.item",
                ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq", "10\tA\t1995\tDrama"])
    ml = make_config("source.kind=movielens100k", f"source.movielens100k.path={tmp_path / 'ml'}")
    assert {r["user_id"]: r["reason"] for r in load_source(spark, ml).events.collect()} == {
        1: None, 2: "bad_value", 3: "bad_value", 4: "bad_value"}

    reviews = write_lines(tmp_path / "amazon" / "reviews.jsonl", [
        '{"overall": 5.0, "reviewerID": "A1", "asin": "B1", "unixReviewTime": 1445040000}',
        '{"overall": "NaN", "reviewerID": "A2", "asin": "B1", "unixReviewTime": 1445040000}',
        '{"overall": "-Infinity", "reviewerID": "A3", "asin": "B1", "unixReviewTime": 1445040000}'])
    meta = write_lines(tmp_path / "amazon" / "meta.jsonl", ['{"asin": "B1", "title": "Lamp"}'])
    amazon = make_config("source.kind=amazon", f'source.amazon.reviews_paths=["{reviews}"]',
                         f'source.amazon.metadata_paths=["{meta}"]')
    assert sorted(r["reason"] or "" for r in load_source(spark, amazon).events.collect()) == [
        "", "bad_value", "bad_value"]


def test_integer_ids_written_as_floats_are_accepted_when_whole(spark, make_config, tmp_path):
    t = at(D)
    spark.createDataFrame([(123.0, 70.0, t), (123.5, 70.0, t), (124.0, 70.25, t), (float("nan"), 70.0, t)],
                          "u double, i double, t long").write.parquet(str(tmp_path / "floats"))
    config = make_config("source.kind=table", table_source(
        path=str(tmp_path / "floats"), format="parquet", columns=dict(user="u", item="i", timestamp="t")))
    assert sorted((tuple(r) for r in load_source(spark, config).events.select("user_id", "item_id", "reason")
                   .collect()), key=repr) == sorted([
        (123, 70, None), (None, 70, "bad_user_id"), (124, None, "bad_item_id"), (None, 70, "bad_user_id")], key=repr)

    logs = write_lines(tmp_path / "logs" / "ub.csv", ["7.0,100.0,10.0,pv,1700000000", "7.5,100,10,pv,1700000000",
                                                      "7,100.00,10,pv,1700000000", "7,1e2,10,pv,1700000000"])
    taobao = make_config("source.kind=taobao", f'source.taobao.paths=["{logs}"]')
    parsed = load_source(spark, taobao).events.select("raw", "user_id", "item_id", "category_id", "reason")
    assert {r["raw"]: tuple(r)[1:] for r in parsed.collect()} == {
        "7.0,100.0,10.0,pv,1700000000": (7, 100, 10, None),
        "7.5,100,10,pv,1700000000": (None, 100, 10, "bad_user_id"),
        "7,100.00,10,pv,1700000000": (7, 100, 10, None),
        "7,1e2,10,pv,1700000000": (7, None, 10, "bad_item_id"),
    }
