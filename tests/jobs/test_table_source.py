"""`source.kind: table` on hand-made Delta, Parquet and CSV tables whose columns have their own names.

Each test builds a few rows by hand and checks the parsed events (ids, epoch seconds, labels, reject
reasons) against values computed here; one runs the whole `ingest.run` so that rejects land in
`events_rejected` and `rows read = accepted + rejected`; the daily-read tests check that only the
day's partition is read, or without a partition column that the files after the day are skipped.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from jobs.ingest import ingest
from jobs.ingest.sources import SourceError, load_source
from jobs.runtime.tables import TableStore
from r2led_model.config import ConfigError
from tests.helpers import config_in, rows, write_lines

UTC = dt.timezone.utc
LENIENT = "ingest.max_reject_share=1.0"  # the hand-made tables are mostly bad rows on purpose


def at(day: str, hms: str = "00:00:00") -> int:
    """Epoch seconds of a UTC day and time."""
    return int(dt.datetime.fromisoformat(f"{day}T{hms}").replace(tzinfo=UTC).timestamp())


def table_source(**table) -> str:
    """A `--set` override for the whole `source.table` section (YAML reads JSON)."""
    return f"source.table={json.dumps(table)}"


def _string_ids(spark, *keys: str) -> dict[str, int]:
    from jobs.ingest.sources.common import string_id

    df = spark.createDataFrame([(k,) for k in keys], "k string")
    return {r["k"]: r["id"] for r in df.select("k", string_id(F.col("k")).alias("id")).collect()}


def _parsed(parsed, *columns: str) -> list[tuple]:
    """The parsed event rows' `columns`, sorted by their text (so rows with nulls sort too)."""
    return sorted((tuple(r) for r in parsed.events.select(*columns).collect()), key=repr)


# ------------------------------------------------------------------------------------------------
# Delta impressions (string ids, milliseconds, a label column) + a Parquet items table, through ingest
# ------------------------------------------------------------------------------------------------

MS = 1000
DELTA_ROWS = [
    # customer, sku, event_ms, action, clicked, rating
    ("c1", "SKU-1", at("2024-01-19", "10:00:00") * MS, "Click", 1, 5.0),
    ("c1", "SKU-2", at("2024-01-19", "11:00:00") * MS + 999, "click", 0, None),  # ms truncate to the second
    ("c2", "SKU-1", at("2024-01-20", "08:30:00") * MS, "click", 1, 2.0),
    (None, "SKU-1", at("2024-01-19") * MS, "click", 1, None),
    ("c3", "  ", at("2024-01-19") * MS, "click", 1, None),
    ("c3", "SKU-1", None, "click", 1, None),
    ("c3", "SKU-1", at("2024-01-19") * MS, "click", 2, None),
    ("c3", "SKU-1", at("2024-01-19") * MS, "click", None, None),
    ("c3", "SKU-1", at("2024-01-19") * MS, "view", 0, None),
    ("c3", "SKU-1", 0, "click", 0, None),  # 1970: before ingest.min_date
]
DELTA_REASONS = {3: "missing_user_id", 4: "missing_item_id", 5: "missing_timestamp", 6: "bad_label",
                 7: "missing_label", 8: "unknown_behavior", 9: "impossible_timestamp"}
ITEM_ROWS = [
    # sku, title, brand, cat_path: two paths share the leaf "Accessories"
    ("SKU-1", "Lantern", "Acme", ["Electronics", "Computers", "Accessories"]),
    ("SKU-2", "Lens cap", "Kappa", ["Camera & Photo", "Accessories"]),
    ("SKU-3", None, None, None),
    (None, "Orphan", "Acme", ["Electronics"]),
]
DELTA_TABLE = dict(
    format="delta", ids="string", labels="column",
    columns=dict(user="customer", item="sku", timestamp="event_ms", timestamp_unit="milliseconds",
                 behavior="action", label="clicked", value="rating"),
    items=dict(format="parquet", item="sku", category="cat_path", text="{title}. {brand}. Category: {cat_path}"),
)


@pytest.fixture(scope="module")
def delta_ingest(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("table-delta")
    spark.createDataFrame(DELTA_ROWS, "customer string, sku string, event_ms long, action string, clicked int, "
                                      "rating double").write.format("delta").save(str(root / "impressions"))
    spark.createDataFrame(ITEM_ROWS, "sku string, title string, brand string, cat_path array<string>") \
        .coalesce(1).write.parquet(str(root / "products"))
    table = {**DELTA_TABLE, "path": str(root / "impressions"),
             "items": {**DELTA_TABLE["items"], "path": str(root / "products")}}
    config = config_in(root, "source.kind=table", table_source(**table), LENIENT)
    return config, ingest.run(spark, config)


def test_delta_table_with_renamed_columns_ingests_events_items_and_rejects(spark, delta_ingest):
    config, result = delta_ingest
    store = TableStore(spark, config.tables)
    ids = _string_ids(spark, "c1", "c2", "SKU-1", "SKU-2", "SKU-3", "Electronics > Computers > Accessories",
                      "Camera & Photo > Accessories")

    events = rows(store.read("events").select("user_id", "item_id", "ts", "behavior", "label", "value", "source",
                                              F.col("event_date").cast("string")))
    assert events == sorted([
        (ids["c1"], ids["SKU-1"], at("2024-01-19", "10:00:00"), "click", 1, 5.0, "table", "2024-01-19"),
        (ids["c1"], ids["SKU-2"], at("2024-01-19", "11:00:00"), "click", 0, None, "table", "2024-01-19"),
        (ids["c2"], ids["SKU-1"], at("2024-01-20", "08:30:00"), "click", 1, 2.0, "table", "2024-01-20"),
    ])

    # Distinct paths are distinct categories, though both end in "Accessories"; the text names the path.
    items = rows(store.read("items").select("item_key", "item_id", "category_id", "text"))
    assert items == [
        ("SKU-1", ids["SKU-1"], ids["Electronics > Computers > Accessories"],
         "Lantern. Acme. Category: Electronics > Computers > Accessories"),
        ("SKU-2", ids["SKU-2"], ids["Camera & Photo > Accessories"],
         "Lens cap. Kappa. Category: Camera & Photo > Accessories"),
        ("SKU-3", ids["SKU-3"], None, None),
    ]

    rejected = store.read("events_rejected").collect()
    by_reason = {r["reason"]: json.loads(r["raw"]) for r in rejected}
    names = ("customer", "sku", "event_ms", "action", "clicked", "rating")
    expected = {reason: dict(zip(names, DELTA_ROWS[i])) for i, reason in DELTA_REASONS.items()}
    expected["item_missing_item_id"] = dict(zip(("sku", "title", "brand", "cat_path"), ITEM_ROWS[3]))
    assert by_reason == expected  # raw is the row as JSON, nulls kept
    assert all(Path(r["source_file"].removeprefix("file:")).suffix == ".parquet" for r in rejected)

    assert result.rows_read == len(DELTA_ROWS) == result.rows_accepted + result.event_rows_rejected
    assert result.rows_accepted == 3 and result.events_inserted == 3 and result.items_inserted == 3
    assert result.rejected_by_reason == {**{r: 1 for r in DELTA_REASONS.values()}, "item_missing_item_id": 1}


# ------------------------------------------------------------------------------------------------
# Parquet (integer ids, seconds, labels by a value threshold) and CSV (text columns, implicit labels)
# ------------------------------------------------------------------------------------------------


def test_parquet_table_labels_by_value_threshold(spark, make_config, tmp_path):
    t = at("2024-01-19", "09:00:00")
    spark.createDataFrame([
        (7, 70, t, "4.5"), (7, 71, t + 1, "4"), (8, 70, t + 2, "3"),  # 4 is at the threshold: a click
        (8, 71, t + 3, ""), (8, 72, t + 4, "great"), (-1, 70, t, "5"), (None, 70, t, "5"), (9, None, t, "5"),
    ], "uid long, iid long, ts_s long, stars string").write.parquet(str(tmp_path / "ratings"))
    config = make_config("source.kind=table", table_source(
        path=str(tmp_path / "ratings"), format="parquet", labels="threshold", click_threshold=4,
        behavior="rating", columns=dict(user="uid", item="iid", timestamp="ts_s", value="stars")))
    parsed = load_source(spark, config)
    assert _parsed(parsed, "user_id", "item_id", "ts", "behavior", "label", "value", "reason") == sorted([
        (7, 70, t, "rating", 1, 4.5, None), (7, 71, t + 1, "rating", 1, 4.0, None),
        (8, 70, t + 2, "rating", 0, 3.0, None),
        (8, 71, t + 3, "rating", None, None, "missing_value"), (8, 72, t + 4, "rating", None, None, "bad_value"),
        (-1, 70, t, "rating", 1, 5.0, "bad_user_id"), (None, 70, t, "rating", 1, 5.0, "missing_user_id"),
        (9, None, t, "rating", 1, 5.0, "missing_item_id"),
    ], key=repr)
    assert parsed.items is None  # items come from the events


CSV_LINES = [
    "member,product,seen_at,kind,shelf",
    "7,70,2024-01-19T10:00:00Z,PV,Books",
    "8,70,2024-01-19,buy,Books",  # a date alone is midnight UTC
    "8,71,2024-01-19 12:00:00,cart,",
    "u8,70,2024-01-19T10:00:00Z,pv,Books",
    "9,71,yesterday,pv,Books",
    "9,71,,pv,Books",
    "9,71,2024-01-19T10:00:00Z,,Books",
]


def test_csv_table_with_header_text_timestamps_and_implicit_labels(spark, make_config, tmp_path):
    write_lines(tmp_path / "log" / "part-0.csv", CSV_LINES)
    config = make_config("source.kind=table", table_source(
        path=str(tmp_path / "log"), format="csv", options={"header": True},
        columns=dict(user="member", item="product", timestamp="seen_at", timestamp_unit="timestamp",
                     behavior="kind", category="shelf")))
    parsed = load_source(spark, config)
    books = _string_ids(spark, "Books")["Books"]
    assert _parsed(parsed, "user_id", "item_id", "ts", "behavior", "label", "category_id", "reason") == sorted([
        (7, 70, at("2024-01-19", "10:00:00"), "pv", None, books, None),
        (8, 70, at("2024-01-19"), "buy", None, books, None),
        (8, 71, at("2024-01-19", "12:00:00"), "cart", None, None, None),
        (None, 70, at("2024-01-19", "10:00:00"), "pv", None, books, "bad_user_id"),
        (9, 71, None, "pv", None, books, "bad_timestamp"),
        (9, 71, None, "pv", None, books, "missing_timestamp"),
        (9, 71, at("2024-01-19", "10:00:00"), None, None, books, "missing_behavior"),
    ], key=repr)
    raw = {r["reason"]: json.loads(r["raw"]) for r in parsed.events.where("reason is not null").collect()}
    assert raw["bad_user_id"] == {"member": "u8", "product": "70", "seen_at": "2024-01-19T10:00:00Z",
                                  "kind": "pv", "shelf": "Books"}


# ------------------------------------------------------------------------------------------------
# Every timestamp form names the same instant
# ------------------------------------------------------------------------------------------------

INSTANT = at("2024-01-19", "10:30:15")
FORMS = [  # (column, timestamp_unit, timestamp_format, expected epoch seconds)
    ("s", "seconds", None, INSTANT),
    ("s_text", "seconds", None, INSTANT),
    ("ms", "milliseconds", None, INSTANT),
    ("ms_text", "milliseconds", None, INSTANT),
    ("moment", "timestamp", None, INSTANT),
    ("moment_ntz", "timestamp", None, INSTANT),
    ("iso", "timestamp", None, INSTANT),
    ("custom", "timestamp", "dd/MM/yyyy HH:mm:ss", INSTANT),
    ("day", "timestamp", None, at("2024-01-19")),
]


@pytest.fixture(scope="module")
def timestamp_forms(spark, tmp_path_factory):
    path = tmp_path_factory.mktemp("table-ts") / "forms"
    moment = dt.datetime.fromtimestamp(INSTANT, UTC)
    spark.createDataFrame(
        [(1, 10, INSTANT, str(INSTANT), INSTANT * MS + 250, str(INSTANT * MS + 250), moment,
          moment.replace(tzinfo=None), "2024-01-19T11:30:15+01:00", "19/01/2024 10:30:15", moment.date())],
        "u long, i long, s long, s_text string, ms long, ms_text string, moment timestamp, "
        "moment_ntz timestamp_ntz, iso string, custom string, day date").write.parquet(str(path))
    return path


@pytest.mark.parametrize("column, unit, fmt, expected", FORMS, ids=[f[0] for f in FORMS])
def test_each_timestamp_form_gives_epoch_seconds(spark, make_config, timestamp_forms, column, unit, fmt, expected):
    columns = dict(user="u", item="i", timestamp=column, timestamp_unit=unit, timestamp_format=fmt)
    config = make_config("source.kind=table", table_source(path=str(timestamp_forms), format="parquet",
                                                           columns=columns))
    assert _parsed(load_source(spark, config), "ts", "reason") == [(expected, None)]


def test_a_timestamp_unit_that_cannot_be_the_column_type_names_the_key(spark, make_config, timestamp_forms):
    config = make_config("source.kind=table", table_source(
        path=str(timestamp_forms), format="parquet", columns=dict(user="u", item="i", timestamp="moment")))
    with pytest.raises(SourceError,
                       match="source.table.columns.timestamp_unit: 'seconds'.*set timestamp_unit: timestamp"):
        load_source(spark, config)


def test_a_mapped_column_missing_from_the_table_lists_its_columns(spark, make_config, timestamp_forms):
    config = make_config("source.kind=table", table_source(
        path=str(timestamp_forms), format="parquet", columns=dict(user="user_id", item="i", timestamp="s")))
    with pytest.raises(SourceError, match=r"source.table.columns.user = 'user_id' \(its columns: u, i, s, s_text"):
        load_source(spark, config)


def test_a_table_that_is_not_there_is_a_clear_error_and_writes_nothing(spark, make_config, tmp_path):
    missing = tmp_path / "nowhere"
    config = make_config("source.kind=table", table_source(path=str(missing), columns=dict(user="u", item="i",
                                                                                         timestamp="s")))
    with pytest.raises(SourceError, match="source.table: cannot read") as error:
        ingest.run(spark, config)
    assert str(missing) in str(error.value)
    assert not Path(config.tables.root).exists()


def test_a_catalog_table_by_name_is_read_and_its_version_is_its_identity(spark, make_config):
    name = "r2led_test_table_source_events"
    spark.createDataFrame([(1, 10, INSTANT)], "u long, i long, s long").write.format("delta").saveAsTable(name)
    try:
        config = make_config("source.kind=table",
                             table_source(name=name, columns=dict(user="u", item="i", timestamp="s")))
        parsed = load_source(spark, config)
        assert _parsed(parsed, "user_id", "item_id", "ts", "reason") == [(1, 10, INSTANT, None)]
        assert parsed.files == (f"{name}@v0",)
        assert ingest.ingest_run_id("table", parsed.files) == ingest.ingest_run_id("table", (f"{name}@v0",))
        assert ingest.ingest_run_id("table", parsed.files) != ingest.ingest_run_id("table", (f"{name}@v1",))
    finally:
        spark.sql(f"DROP TABLE IF EXISTS {name}")


# ------------------------------------------------------------------------------------------------
# A daily run reads only the day
# ------------------------------------------------------------------------------------------------

DAYS = ["2024-01-18", "2024-01-19", "2024-01-20"]


def _daily_rows() -> list[tuple]:
    """Two events per day partition; partition 19 also holds a row dated the 20th (a future event there)."""
    out = [(u, 100 + u, at(day, f"1{u}:00:00"), day) for day in DAYS for u in (1, 2)]
    return out + [(3, 103, at("2024-01-20", "01:00:00"), "2024-01-19")]


def test_partitioned_delta_table_daily_ingest_reads_one_partition(spark, make_config, tmp_path):
    path = tmp_path / "by_day"
    by_day = spark.createDataFrame(_daily_rows(), "u long, i long, t long, event_date string")
    by_day.withColumn("event_date", F.to_date("event_date")).write.format("delta").partitionBy("event_date") \
        .save(str(path))
    config = make_config("source.kind=table", LENIENT, table_source(
        path=str(path), partition_column="event_date", columns=dict(user="u", item="i", timestamp="t")))

    parsed = load_source(spark, config, day="2024-01-19")
    # Delta pruned the other partitions: every file the read touches is one of the day's.
    assert {Path(f).parent.name for f in parsed.events.inputFiles()} == {"event_date=2024-01-19"}
    assert parsed.read_by_day

    result = ingest.ingest_day(spark, config, "2024-01-19")
    store = TableStore(spark, config.tables)
    assert rows(store.read("events").select("user_id", "ts")) == [(1, at("2024-01-19", "11:00:00")),
                                                                 (2, at("2024-01-19", "12:00:00"))]
    assert [r["reason"] for r in store.read("events_rejected").collect()] == ["future_event"]
    assert result.rows_read == 3 == result.rows_accepted + result.rows_rejected


def test_partitioned_parquet_daily_read_pushes_the_partition_filter(spark, make_config, tmp_path):
    path = tmp_path / "by_day"
    spark.createDataFrame(_daily_rows(), "u long, i long, t long, event_date string") \
        .write.partitionBy("event_date").parquet(str(path))
    config = make_config("source.kind=table", table_source(
        path=str(path), format="parquet", partition_column="event_date",
        columns=dict(user="u", item="i", timestamp="t")))
    events = load_source(spark, config, day="2024-01-19").events
    plan = events._jdf.queryExecution().executedPlan().toString()
    assert "PartitionFilters: [isnotnull(event_date" in plan and "= 2024-01-19)]" in plan

    # The 20th's files are no longer Parquet: a read that touched them would fail. (The 18th stays
    # valid: Spark infers the schema from the first file.)
    for part in (path / "event_date=2024-01-20").glob("*.parquet"):
        part.write_bytes(b"not parquet")
    assert _parsed(load_source(spark, config, day="2024-01-19"), "user_id", "ts") == [
        (1, at("2024-01-19", "11:00:00")), (2, at("2024-01-19", "12:00:00")), (3, at("2024-01-20", "01:00:00"))]
    with pytest.raises(Exception, match="FAILED_READ_FILE"):
        load_source(spark, config).events.collect()


def test_unpartitioned_delta_daily_read_takes_rows_up_to_the_day_and_skips_later_files(spark, make_config, tmp_path):
    path = tmp_path / "appended"
    for day in DAYS:  # one commit, hence one file, per day: its min/max statistics cover that day only
        day_rows = [(u, 100 + u, at(day, f"1{u}:00:00") * MS) for u in (1, 2)]
        spark.createDataFrame(day_rows, "u long, i long, t_ms long").coalesce(1).write.format("delta") \
            .mode("append").save(str(path))
    config = make_config("source.kind=table", table_source(
        path=str(path), columns=dict(user="u", item="i", timestamp="t_ms", timestamp_unit="milliseconds")))
    parsed = load_source(spark, config, day="2024-01-19")
    # The 20th's file is skipped; the 18th's is read, so that ingest can account for its rows (stored or late).
    assert len(parsed.events.inputFiles()) == 2
    assert _parsed(parsed, "user_id", "ts") == sorted(
        [(u, at(day, f"1{u}:00:00")) for day in DAYS[:2] for u in (1, 2)])
    assert parsed.reads_until_day and not parsed.read_by_day
    assert load_source(spark, config).events.count() == 6


# ------------------------------------------------------------------------------------------------
# Config checks name the key
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("table, message", [
    (dict(path="/t", columns=dict(item="i", timestamp="t")), "source.table.columns.user: required"),
    (dict(columns=dict(user="u", item="i", timestamp="t")), "source.table: set exactly one of source.table.path"),
    (dict(path="/t", name="db.t", columns=dict(user="u", item="i", timestamp="t")), "set exactly one"),
    (dict(path="/t", labels="column", columns=dict(user="u", item="i", timestamp="t")),
     "source.table.columns.label: required with source.table.labels 'column'"),
    (dict(path="/t", columns=dict(user="u", item="i", timestamp="t", label="y")),
     "source.table.labels: is 'implicit' but columns.label is set"),
    (dict(path="/t", labels="threshold", columns=dict(user="u", item="i", timestamp="t", value="v")),
     "source.table.labels: 'threshold' needs"),
    (dict(path="/t", behavior="impression", columns=dict(user="u", item="i", timestamp="t")),
     "source.table.behavior: 'impression' is not in ingest.behaviors"),
    (dict(path="/t", columns=dict(user="u", item="i", timestamp="t"), items=dict(path="/i", text="{title:>9}")),
     "source.table.items.text: '{title:>9}': each"),
    (dict(path="/t", columns=dict(user="u", item="i", timestamp="t"), items=dict(text="{title}")),
     "source.table.items: set exactly one"),
    (dict(path="/t", columns=dict(user="u", item="i", timestamp="t", timestamp_format="yyyy")),
     "source.table.columns.timestamp_format: only with timestamp_unit 'timestamp'"),
])
def test_table_source_config_errors_name_the_key(make_config, table, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("{", r"\{").replace("}", r"\}")):
        make_config("source.kind=table", table_source(**table))


def test_table_source_settings_are_not_checked_for_other_kinds(make_config):
    assert make_config("source.table.labels=column").source.kind == "synthetic"


def test_the_documented_table_example_is_a_valid_config_naming_every_key(make_config):
    import dataclasses

    import yaml

    from r2led_model.config import TableColumnsConfig, TableItemsConfig, TableSourceConfig, with_values

    readme = (Path(__file__).resolve().parents[2] / "docs" / "your-own-data.md").read_text(encoding="utf-8")
    section = readme.split("### `source.kind: table`", 1)[1]
    block = yaml.safe_load(section.split("```yaml\n", 1)[1].split("```", 1)[0])
    config = with_values(make_config(), {"source": block["source"]})
    table = config.source.table
    assert (config.source.kind, table.ids, table.labels, table.columns.user, table.items.item) == (
        "table", "string", "column", "customer_id", "sku")

    def names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    documented = block["source"]["table"]
    assert set(documented) | {"name"} == names(TableSourceConfig)  # `name` is the commented alternative
    assert set(documented["columns"]) == names(TableColumnsConfig)
    assert set(documented["items"]) | {"name", "options"} == names(TableItemsConfig)  # "as above"
