"""Each source loader on tiny hand-made files in its real on-disk format, run through `ingest.run`:
valid rows land in `events`/`items` with hand-computed values, every bad row lands in
`events_rejected` with its reason, and a missing input fails before anything is written.

Spark work is kept small (2-core machines): one ingest per source, shared by that source's tests
through a module-scoped fixture.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from jobs.ingest import ingest
from jobs.ingest.sources import SourceError, load_source
from jobs.ingest.sources.amazon import string_id
from jobs.ingest.sources.movielens import embedded_dataset_dir
from jobs.runtime.tables import TableStore
from tests.helpers import config_in, rows, write_lines

UTC = dt.timezone.utc
# The hand-made files below are mostly bad lines on purpose: lift the reject-share limit of a real feed.
LENIENT = "ingest.max_reject_share=1.0"


def epoch(year: int, month: int, day: int) -> int:
    """Midnight UTC of a day, as epoch seconds."""
    return int(dt.datetime(year, month, day, tzinfo=UTC).timestamp())


def utc_date(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, UTC).date().isoformat()


# ------------------------------------------------------------------------------------------------
# MovieLens-100K (recbole atomic files: tab-separated, typed header line)
# ------------------------------------------------------------------------------------------------

ML_INTER = [
    "user_id:token\titem_id:token\trating:float\ttimestamp:float",
    "1\t10\t5\t881250949",  # 1997-12-04T15:55:49Z; 5 >= 4: click
    "1\t11\t4\t881250950",  # exactly at the threshold: click
    "2\t10\t3.5\t881250951",  # below: non-click
    "2\t12\t1\t881250952",
    "3\t10\tgreat\t881250953",
    "\t10\t4\t881250954",
    "3\t10\t4",
    "3\t11\t6\t881250955",  # ratings are 0..5
]
ML_INTER_REJECTS = {
    "3\t10\tgreat\t881250953": "bad_value",
    "\t10\t4\t881250954": "missing_user_id",
    "3\t10\t4": "wrong_field_count",
    "3\t11\t6\t881250955": "bad_value",
}
ML_ITEM = [
    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq",
    "10\tToy Story\t1995\tAnimation Children's Comedy",
    "11\tGoldenEye\t1995\tAction Adventure Thriller",
    "12\tOdd One\t1996\tNoir-ish Drama",  # first genre is not one of the 19
    "13\tunknown\tunknown\tunknown",  # the shape of the real item 267: genre 'unknown' is index 0
    "16\tNo Year\t\tDrama",  # empty year: no "()" and no stray space before the dot
    "x14\tBroken\t1990\tDrama",
    "15\tNo Genres",
]
ML_ITEM_REJECTS = {
    "x14\tBroken\t1990\tDrama": "bad_item_id",
    "15\tNo Genres": "item_wrong_field_count",
}
# GENRES order: unknown 0, Action 1, Adventure 2, Animation 3, ...
ML_ITEMS = [
    (10, 3, "Toy Story (1995). Genres: Animation, Children's, Comedy."),
    (11, 1, "GoldenEye (1995). Genres: Action, Adventure, Thriller."),
    (12, None, "Odd One (1996). Genres: Noir-ish, Drama."),
    (13, 0, "unknown (unknown). Genres: unknown."),
    (16, 8, "No Year. Genres: Drama."),
]


def _movielens_folder(root: Path, inter: list[str] = ML_INTER, item: list[str] = ML_ITEM) -> str:
    write_lines(root / "ml-100k.inter", inter)
    write_lines(root / "ml-100k.item", item)
    return str(root)


@pytest.fixture(scope="module")
def movielens(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("movielens")
    folder = _movielens_folder(root / "raw")
    config = config_in(root, "source.kind=movielens100k", f"source.movielens100k.path={folder}", LENIENT)
    return config, ingest.run(spark, config)


def test_movielens_rows_become_rating_events_with_threshold_labels(spark, movielens):
    config, result = movielens
    store = TableStore(spark, config.tables)

    events = rows(store.read("events").select("user_id", "item_id", "ts", "behavior", "label", "value",
                                              "source", F.col("event_date").cast("string")))
    day = utc_date(881250949)
    assert day == "1997-12-04"
    assert events == [
        (1, 10, 881250949, "rating", 1, 5.0, "movielens100k", day),
        (1, 11, 881250950, "rating", 1, 4.0, "movielens100k", day),
        (2, 10, 881250951, "rating", 0, 3.5, "movielens100k", day),
        (2, 12, 881250952, "rating", 0, 1.0, "movielens100k", day),
    ]
    assert rows(store.read("items").select("item_id", "category_id", "text")) == ML_ITEMS

    rejected = store.read("events_rejected").collect()
    assert {r["raw"]: r["reason"] for r in rejected} == {**ML_INTER_REJECTS, **ML_ITEM_REJECTS}
    files = {r["raw"]: Path(r["source_file"].removeprefix("file:")).name for r in rejected}
    assert {raw for raw, name in files.items() if name == "ml-100k.item"} == set(ML_ITEM_REJECTS)
    assert {raw for raw, name in files.items() if name == "ml-100k.inter"} == set(ML_INTER_REJECTS)

    data_lines = len(ML_INTER) - 1  # the header is not a row
    assert result.rows_read == data_lines and result.rows_accepted == 4 and result.events_inserted == 4
    assert result.items_inserted == 5 and result.duplicates_dropped == 0
    assert result.rejected_by_reason == {"bad_value": 2, "missing_user_id": 1, "wrong_field_count": 1,
                                         "bad_item_id": 1, "item_wrong_field_count": 1}


def test_movielens_click_threshold_is_configurable(spark, make_config, tmp_path):
    folder = _movielens_folder(tmp_path / "raw")
    config = make_config("source.kind=movielens100k", f"source.movielens100k.path={folder}",
                         "source.movielens100k.click_threshold=5")
    parsed = load_source(spark, config)
    labels = {r["value"]: r["label"] for r in parsed.events.where("reason is null").select("value", "label").collect()}
    assert labels == {5.0: 1, 4.0: 0, 3.5: 0, 1.0: 0}


def test_movielens_reject_counts_add_up_when_events_and_items_share_a_reason(spark, make_config, tmp_path):
    # One event line and one item line, both with a non-numeric item id: both are 'bad_item_id'.
    folder = _movielens_folder(tmp_path / "raw",
                               inter=[ML_INTER[0], "1\t10\t5\t881250949", "1\tx10\t5\t881250949"],
                               item=[ML_ITEM[0], ML_ITEM[1], "x14\tBroken\t1990\tDrama"])
    config = make_config("source.kind=movielens100k", f"source.movielens100k.path={folder}", LENIENT)
    result = ingest.run(spark, config)
    assert result.rejected_by_reason == {"bad_item_id": 2}


def test_movielens_non_finite_timestamp_is_rejected_not_fatal(spark, make_config, tmp_path):
    folder = _movielens_folder(tmp_path / "raw", inter=[ML_INTER[0], "1\t10\t5\t881250949", "1\t11\t4\tNaN"])
    config = make_config("source.kind=movielens100k", f"source.movielens100k.path={folder}")
    reasons = [r["reason"] for r in load_source(spark, config).events.select("reason").collect()]
    assert sorted(reasons, key=str) == [None, "bad_timestamp"]  # str(None) sorts first


@pytest.mark.slow
def test_embedded_movielens_100k_ingests_completely(spark, make_config):
    # Independent count, in plain Python, from the same file the loader reads.
    inter = (embedded_dataset_dir() / "ml-100k.inter").read_text(encoding="utf-8").splitlines()
    assert inter[0] == ML_INTER[0]
    ratings = [float(line.split("\t")[2]) for line in inter[1:] if line.strip()]
    users = {line.split("\t")[0] for line in inter[1:] if line.strip()}
    assert len(ratings) == 100_000 and len(users) == 943

    config = make_config("source.kind=movielens100k")  # no path: the copy inside the recbole wheel
    result = ingest.run(spark, config)
    assert result.rows_read == 100_000 and result.rows_rejected == 0
    assert result.events_inserted == 100_000 and result.items_inserted == 1_682

    totals = TableStore(spark, config.tables).read("events").agg(
        F.count("*").alias("events"), F.countDistinct("user_id").alias("users"),
        F.sum("label").alias("clicks")).first()
    assert totals["events"] == 100_000 and totals["users"] == 943
    assert totals["clicks"] == sum(1 for r in ratings if r >= 4.0)


# ------------------------------------------------------------------------------------------------
# Tmall user_log_format1.csv
# ------------------------------------------------------------------------------------------------

TMALL_HEADER = "user_id,item_id,cat_id,seller_id,brand_id,time_stamp,action_type"
TMALL_PART1 = [
    TMALL_HEADER,
    "328862,323294,833,2882,2661,829,0",  # mmdd without its leading zero, as in the real file
    "328862,844400,1271,2882,,0829,2",  # empty brand is fine
    "234512,323294,833,3969,1183,1111,1",
    "234512,575153,662,2326,1096,0511,3",
    "328862,323294,833,2882,2661,1340,0",  # month 13
    "328862,323294,833,2882,2661,0230,0",  # 30 February
    "328862,323294,833,2882,2661,0829,7",
    "328862,,833,2882,2661,0829,0",
    "328862,323294,833,2882,0829,0",
]
TMALL_PART2 = [TMALL_HEADER, "400,323294,833,1,1,1231,0"]  # every part file may repeat the header
TMALL_REJECTS = {
    "328862,323294,833,2882,2661,1340,0": "bad_timestamp",
    "328862,323294,833,2882,2661,0230,0": "bad_timestamp",
    "328862,323294,833,2882,2661,0829,7": "unknown_behavior",
    "328862,,833,2882,2661,0829,0": "missing_item_id",
    "328862,323294,833,2882,0829,0": "wrong_field_count",
}


def test_tmall_log_gives_dated_behaviours_and_items_from_events(spark, make_config, tmp_path):
    part1 = write_lines(tmp_path / "raw" / "user_log_format1.csv", TMALL_PART1)
    part2 = write_lines(tmp_path / "raw" / "user_log_format1_part2.csv", TMALL_PART2)
    config = make_config("source.kind=tmall", f'source.tmall.paths=["{part1}", "{part2}"]', LENIENT)
    result = ingest.run(spark, config)
    store = TableStore(spark, config.tables)

    events = rows(store.read("events").select("user_id", "item_id", "ts", "behavior", "label", "value",
                                              F.col("event_date").cast("string")))
    assert events == [
        (400, 323294, epoch(2015, 12, 31), "click", None, None, "2015-12-31"),
        (234512, 323294, epoch(2015, 11, 11), "cart", None, None, "2015-11-11"),
        (234512, 575153, epoch(2015, 5, 11), "fav", None, None, "2015-05-11"),
        (328862, 323294, epoch(2015, 8, 29), "click", None, None, "2015-08-29"),
        (328862, 844400, epoch(2015, 8, 29), "buy", None, None, "2015-08-29"),
    ]
    assert epoch(2015, 8, 29) == 1440806400  # sanity of the helper: 2015-08-29T00:00:00Z
    assert rows(store.read("items").select("item_id", "category_id", "text")) == [
        (323294, 833, None), (575153, 662, None), (844400, 1271, None)]
    assert {r["raw"]: r["reason"] for r in store.read("events_rejected").collect()} == TMALL_REJECTS
    assert result.rows_read == len(TMALL_PART1) - 1 + len(TMALL_PART2) - 1
    assert result.events_inserted == 5 and result.rows_rejected == 5
    assert result.rejected_by_reason["bad_timestamp"] == 2


# ------------------------------------------------------------------------------------------------
# Amazon reviews + metadata (JSON lines, 2018 and 2023 layouts)
# ------------------------------------------------------------------------------------------------

AMAZON_REVIEWS = [
    # 2018 layout
    '{"overall": 5.0, "verified": true, "reviewTime": "10 17, 2015", "reviewerID": "A1", "asin": "B001", '
    '"reviewerName": "Ann", "reviewText": "Bright.", "summary": "Great", "unixReviewTime": 1445040000}',
    '{"overall": 2.0, "reviewerID": "U9", "asin": "B001", "unixReviewTime": 1445126400}',
    # 2023 layout: timestamp in milliseconds
    '{"rating": 4.0, "title": "Roomy", "text": "Fits four.", "images": [], "parent_asin": "B002", '
    '"user_id": "U9", "timestamp": 1588687728923, "helpful_vote": 0, "verified_purchase": true}',
    '{"overall": 5.0, "reviewerID": "A3", "asin": "B001", ',
    '{"overall": 5.0, "reviewerID": "A2", "unixReviewTime": 1445040000}',
    '{"overall": 9.0, "reviewerID": "A4", "asin": "B001", "unixReviewTime": 1445040000}',
]
AMAZON_REVIEW_REJECTS = {
    AMAZON_REVIEWS[3]: "unparseable_json",
    AMAZON_REVIEWS[4]: "missing_item_id",
    AMAZON_REVIEWS[5]: "bad_value",
}
AMAZON_META = [
    '{"asin": "B001", "title": "Lantern", "category": ["Sports", "Camping"], "price": "$9.99"}',
    '{"parent_asin": "B002", "title": "Tent", "main_category": "Outdoors", '
    '"categories": ["Sports & Outdoors", "Camping & Hiking", "Tents"]}',
    '{"parent_asin": "B003", "title": "Stove", "main_category": "Outdoors"}',
    '{"parent_asin": "B009", "title": "Cut off',
    '{"title": "No id at all"}',
]
AMAZON_META_REJECTS = {AMAZON_META[3]: "item_unparseable_json", AMAZON_META[4]: "item_missing_item_id"}


def _string_ids(spark, *keys: str) -> dict[str, int]:
    """The loader's own id function applied to plain strings (one small Spark job)."""
    df = spark.createDataFrame([(k,) for k in keys], "k string")
    return {r["k"]: r["id"] for r in df.select("k", string_id(F.col("k")).alias("id")).collect()}


def _amazon_config(root: Path, reviews: list[str], meta: list[str], *extra: str):
    review_file = write_lines(root / "raw" / "reviews.jsonl", reviews)
    meta_file = write_lines(root / "raw" / "meta.jsonl", meta)
    return config_in(root, "source.kind=amazon", LENIENT, f'source.amazon.reviews_paths=["{review_file}"]',
                     f'source.amazon.metadata_paths=["{meta_file}"]', *extra)


@pytest.fixture(scope="module")
def amazon(spark, tmp_path_factory):
    config = _amazon_config(tmp_path_factory.mktemp("amazon"), AMAZON_REVIEWS, AMAZON_META)
    return config, ingest.run(spark, config)


def test_amazon_reviews_and_metadata_of_both_layouts(spark, amazon):
    config, result = amazon
    store = TableStore(spark, config.tables)
    ids = _string_ids(spark, "A1", "U9", "B001", "B002", "B003", "Sports > Camping",
                      "Sports & Outdoors > Camping & Hiking > Tents", "Outdoors")
    assert all(0 <= v < 2**63 for v in ids.values()) and len(set(ids.values())) == len(ids)

    events = rows(store.read("events").select("user_id", "item_id", "ts", "behavior", "label", "value"))
    assert events == sorted([
        (ids["A1"], ids["B001"], 1445040000, "review", None, 5.0),
        (ids["U9"], ids["B001"], 1445126400, "review", None, 2.0),
        (ids["U9"], ids["B002"], 1588687728, "review", None, 4.0),  # 1588687728923 ms, truncated
    ], key=lambda t: (t[0], t[1], t[2]))

    items = rows(store.read("items").select("item_key", "item_id", "category_id", "text"))
    assert items == [
        # The category is the whole path; without a list, main_category (a one-level path).
        ("B001", ids["B001"], ids["Sports > Camping"], "Lantern Category: Sports > Camping."),
        ("B002", ids["B002"], ids["Sports & Outdoors > Camping & Hiking > Tents"],
         "Tent Category: Sports & Outdoors > Camping & Hiking > Tents."),
        ("B003", ids["B003"], ids["Outdoors"], "Stove"),
    ]
    # A review's item id is the id its metadata row got, so events join to items on item_id.
    joined = store.read("events").join(store.read("items"), "item_id").select("item_key", "value").collect()
    assert sorted((r["item_key"], r["value"]) for r in joined) == [("B001", 2.0), ("B001", 5.0), ("B002", 4.0)]

    rejected = {r["raw"]: r["reason"] for r in store.read("events_rejected").collect()}
    assert rejected == {**AMAZON_REVIEW_REJECTS, **AMAZON_META_REJECTS}
    assert result.rows_read == len(AMAZON_REVIEWS) and result.events_inserted == 3 and result.items_inserted == 3
    assert result.rejected_by_reason == {"unparseable_json": 1, "missing_item_id": 1, "bad_value": 1,
                                         "item_unparseable_json": 1, "item_missing_item_id": 1}


def test_amazon_click_threshold_labels_reviews_by_rating_and_needs_no_negatives(spark, tmp_path):
    from jobs.sequences.sequences import needs_negatives

    reviews = [
        '{"overall": 5.0, "reviewerID": "A1", "asin": "B001", "unixReviewTime": 1445040000}',
        '{"overall": 4.0, "reviewerID": "A2", "asin": "B001", "unixReviewTime": 1445040001}',  # at t: a click
        '{"rating": 3.5, "user_id": "A3", "parent_asin": "B002", "timestamp": 1588687728923}',
        '{"overall": 1.0, "reviewerID": "A4", "asin": "B002", "unixReviewTime": 1445040002}',
        '{"reviewerID": "A5", "asin": "B002", "unixReviewTime": 1445040003}',  # no rating: no label to read
    ]
    explicit = _amazon_config(tmp_path / "explicit", reviews, AMAZON_META[:2], "source.amazon.click_threshold=4")
    result = ingest.run(spark, explicit)
    events = TableStore(spark, explicit.tables).read("events")
    assert rows(events.select("value", "label")) == [(1.0, 0), (3.5, 0), (4.0, 1), (5.0, 1)]
    assert result.rejected_by_reason == {"missing_value": 1}
    assert result.rows_read == len(reviews) == result.rows_accepted + result.rows_rejected
    assert not needs_negatives(events, explicit.sequences.negatives)  # negatives.enabled: auto

    implicit = _amazon_config(tmp_path / "implicit", reviews, AMAZON_META[:2])
    parsed = load_source(spark, implicit).events.where("reason is null")
    assert [r["label"] for r in parsed.select("label").collect()] == [None] * 5  # a review without rating is fine
    assert needs_negatives(parsed, implicit.sequences.negatives)


def test_amazon_click_threshold_outside_the_rating_scale_names_the_key(make_config):
    from r2led_model.config import ConfigError

    with pytest.raises(ConfigError, match=r"source.amazon.click_threshold: must be in \[0, 5\]"):
        make_config("source.kind=amazon", "source.amazon.click_threshold=40")


def test_amazon_paths_sharing_a_leaf_name_are_distinct_categories(spark, tmp_path):
    meta = ['{"asin": "B001", "title": "Mouse pad", "category": ["Electronics", "Computers", "Accessories"]}',
            '{"asin": "B002", "title": "Lens cap", "category": ["Camera & Photo", "Accessories"]}',
            '{"asin": "B003", "title": "Sleeve", "category": ["Electronics", "Computers", "Accessories"]}']
    config = _amazon_config(tmp_path, AMAZON_REVIEWS[:1], meta)
    items = {r["item_key"]: (r["category_id"], r["text"])
             for r in load_source(spark, config).items.select("item_key", "category_id", "text").collect()}
    computers, camera = "Electronics > Computers > Accessories", "Camera & Photo > Accessories"
    ids = _string_ids(spark, computers, camera)
    assert items == {
        "B001": (ids[computers], f"Mouse pad Category: {computers}."),
        "B002": (ids[camera], f"Lens cap Category: {camera}."),
        "B003": (ids[computers], f"Sleeve Category: {computers}."),
    }
    assert len(set(ids.values())) == 2  # the leaf name alone would have made them one category


def test_amazon_metadata_with_an_empty_category_list(spark, tmp_path):
    meta = ['{"parent_asin": "B002", "title": "Tent", "main_category": "Outdoors", "categories": []}',
            '{"asin": "B001", "title": "Lantern", "category": []}']
    config = _amazon_config(tmp_path, AMAZON_REVIEWS[:1], meta)
    items = load_source(spark, config).items.select("item_key", "category_id", "text").collect()
    ids = _string_ids(spark, "Outdoors")
    assert sorted(tuple(r) for r in items) == [("B001", None, "Lantern"), ("B002", ids["Outdoors"], "Tent")]


def test_amazon_2023_review_of_a_variant_joins_its_parent_metadata(spark, tmp_path):
    # 2023 reviews carry both the variant's asin and the parent_asin that keys the metadata.
    review = ('{"rating": 4.0, "asin": "B002-RED", "parent_asin": "B002", "user_id": "U9", '
              '"timestamp": 1588687728923}')
    config = _amazon_config(tmp_path, [review], [AMAZON_META[1]])
    parsed = load_source(spark, config)
    review_item = parsed.events.select("item_id").first()["item_id"]
    meta_item = parsed.items.select("item_id").first()["item_id"]
    assert review_item == meta_item


# ------------------------------------------------------------------------------------------------
# Missing input
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["tmall", "amazon", "movielens100k"])
def test_missing_input_is_a_clear_error_and_writes_nothing(spark, make_config, tmp_path, kind):
    missing = tmp_path / "nowhere" / "user_log_format1.csv"
    if kind == "tmall":
        config = make_config("source.kind=tmall", f'source.tmall.paths=["{missing}"]')
    elif kind == "amazon":
        present = write_lines(tmp_path / "raw" / "reviews.jsonl", AMAZON_REVIEWS[:1])
        config = make_config("source.kind=amazon", f'source.amazon.reviews_paths=["{present}"]',
                             f'source.amazon.metadata_paths=["{missing}"]')
    else:
        write_lines(tmp_path / "nowhere" / "ml-100k.inter", ML_INTER)  # the .item file is missing
        missing = tmp_path / "nowhere" / "ml-100k.item"
        config = make_config("source.kind=movielens100k", f"source.movielens100k.path={missing.parent}")

    with pytest.raises(SourceError, match="not found") as error:
        ingest.run(spark, config)
    assert str(missing) in str(error.value)
    assert not Path(config.tables.root).exists()
