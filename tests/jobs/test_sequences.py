"""Sequences and samples on hand-made events with hand-computed answers."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest

from jobs.sequences.sequences import build_samples, build_user_sequences
from tests.helpers import rows

BASE = int(dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc).timestamp())
EVENT_SCHEMA = ("user_id BIGINT, item_id BIGINT, ts BIGINT, behavior STRING, label INT, value DOUBLE, "
                "source STRING, ingest_run_id STRING, event_date DATE")


def day(d: int, seconds: int = 0) -> int:
    return BASE + d * 86400 + seconds


def events_frame(spark, records):
    """records: (user, item, ts, behavior, label)."""
    data = [(u, i, t, b, l, None, "test", "run", dt.datetime.fromtimestamp(t, dt.timezone.utc).date())
            for u, i, t, b, l in records]
    return spark.createDataFrame(data, EVENT_SCHEMA)


ITEMS = [(100, 1, "a"), (101, 1, "b"), (102, 2, "c")]  # item 103 has no items row
LABELLED = [
    (1, 100, day(2), "rating", 1),
    (1, 101, day(16), "rating", 0),
    (1, 102, day(16), "rating", 1),  # same second as the one above: neither sees the other
    (1, 100, day(19), "rating", 1),
    (1, 103, day(20), "rating", 0),
    (2, 101, day(3), "rating", 1),
]


@pytest.fixture
def items(spark):
    return spark.createDataFrame(ITEMS, "item_id BIGINT, category_id BIGINT, text STRING")


def test_sequences_are_ascending_and_keep_the_newest(spark, make_config, items):
    config = make_config("sequences.max_stored=3").sequences
    seqs = {r["user_id"]: r for r in build_user_sequences(events_frame(spark, LABELLED), items, config).collect()}
    u1 = seqs[1]
    # Ascending (ts, item_id): 100@d2, 101@d16, 102@d16, 100@d19, 103@d20 → newest three.
    assert u1["item_ids"] == [102, 100, 103]
    assert u1["ts"] == [day(16), day(19), day(20)]
    assert u1["category_ids"] == [2, 1, None]
    assert (u1["length"], u1["dropped"]) == (3, 2)
    assert (seqs[2]["item_ids"], seqs[2]["dropped"]) == ([101], 0)


def test_hist_len_counts_only_strictly_earlier_behaviours_and_time_split(spark, make_config):
    config = make_config("sequences.split.valid_from=2024-01-15", "sequences.split.test_from=2024-01-19").sequences
    samples = build_samples(spark, events_frame(spark, LABELLED), config)
    got = rows(samples.select("user_id", "item_id", "ts", "label", "hist_len", "split"), "user_id", "ts", "item_id")
    assert got == [
        (1, 100, day(2), 1, 0, "train"),
        (1, 101, day(16), 0, 1, "valid"),
        (1, 102, day(16), 1, 1, "valid"),
        (1, 100, day(19), 1, 3, "test"),  # test_from is inclusive
        (1, 103, day(20), 0, 4, "test"),
        (2, 101, day(3), 1, 0, "train"),
    ]
    assert samples.where("is_sampled_negative").count() == 0  # labelled source: no sampling
    assert samples.select("sample_id").distinct().count() == len(LABELLED)


def test_behaviour_filters_and_min_hist_len(spark, make_config):
    records = [(1, 100, day(1), "pv", None), (1, 101, day(2), "buy", None), (1, 102, day(3), "pv", None),
               (1, 103, day(4), "pv", None)]
    config = make_config("sequences.history_behaviors=[pv]", "sequences.sample_behaviors=[pv]",
                         "sequences.min_hist_len=1", "sequences.negatives.enabled=never").sequences
    got = rows(build_samples(spark, events_frame(spark, records), config).select("item_id", "hist_len", "label"))
    # The buy is neither a sample nor history; the first pv has no history and is dropped.
    assert got == [(102, 1, 1), (103, 2, 1)]


def test_last_n_split_per_user(spark, make_config):
    config = make_config("sequences.split.mode=last_n", "sequences.split.last_n_test=1",
                         "sequences.split.last_n_valid=2").sequences
    got = rows(build_samples(spark, events_frame(spark, LABELLED), config).select("user_id", "ts", "item_id", "split"))
    assert [(u, i, s) for u, _, i, s in got] == [
        # Newest first, ties by item id descending: 103 test; 100@d19 and 102@d16 valid.
        (1, 100, "train"), (1, 101, "train"), (1, 102, "valid"), (1, 100, "valid"), (1, 103, "test"),
        (2, 101, "test"),
    ]


def _positive_only(n_by_item: dict[int, int], first_user: int = 0, on_day: int = 2):
    records, user = [], first_user
    for item, n in n_by_item.items():
        for _ in range(n):
            records.append((user, item, day(on_day, user % 3600), "pv", None))
            user += 1
    return records


def test_negatives_follow_training_popularity_and_skip_touched_items(spark, make_config):
    train = _positive_only({100: 1000, 101: 600, 102: 300, 103: 100})
    # Item 104 is popular only after the training window: it must never be drawn.
    late = _positive_only({104: 500}, first_user=5000, on_day=20)
    config = make_config("sequences.negatives.ratio=1").sequences
    samples = build_samples(spark, events_frame(spark, train + late), config)
    negatives = samples.where("is_sampled_negative")
    positives = samples.where("not is_sampled_negative")
    assert positives.count() == len(train) + len(late)
    assert negatives.where("label != 0").count() == 0

    pairs = negatives.alias("n").join(positives.alias("p"), ["user_id", "ts", "hist_len", "split"])
    # Each negative shares one positive's context; a positive goes without only when all
    # `oversample` draws hit its own item (here item 100 holds half of all draws: 0.5^8).
    assert pairs.count() == negatives.count()
    assert negatives.count() >= 0.99 * positives.count()
    assert pairs.where("n.item_id = p.item_id").count() == 0  # never an item the user touched
    drawn_for_100 = Counter(r[0] for r in pairs.where("p.item_id = 100").select("n.item_id").collect())
    assert 104 not in drawn_for_100
    total = sum(drawn_for_100.values())
    # Without item 100 itself: 101:102:103 = 600:300:100 → 0.6 / 0.3 / 0.1.
    assert abs(drawn_for_100[101] / total - 0.6) < 0.05
    assert abs(drawn_for_100[102] / total - 0.3) < 0.05
    assert abs(drawn_for_100[103] / total - 0.1) < 0.04


def test_negative_sampling_is_deterministic_and_seeded(spark, make_config):
    records = _positive_only({100: 50, 101: 40, 102: 30, 103: 20})
    events = events_frame(spark, records)
    config = make_config("sequences.negatives.ratio=2").sequences
    first = rows(build_samples(spark, events, config))
    assert rows(build_samples(spark, events.repartition(3), config)) == first
    other_seed = make_config("sequences.negatives.ratio=2", "sequences.negatives.seed=99").sequences
    assert rows(build_samples(spark, events, other_seed)) != first
    negatives = sum(1 for r in first if r[6])  # column 6: is_sampled_negative
    assert negatives >= 0.95 * 2 * len(records)


def test_every_unsampled_batch_is_sampled_and_a_late_behaviour_recounts_later_samples(spark, make_config, items):
    from pyspark.sql import functions as F

    from jobs.runtime.tables import TableStore
    from jobs.sequences import sequences

    config = make_config("sequences.split.valid_from=2024-01-15", "sequences.split.test_from=2024-01-19")
    store = TableStore(spark, config.tables)
    store.overwrite("items", items.withColumn("source", F.lit("test")))
    late = (1, 101, day(16), "rating", 0)
    store.insert_new("events", events_frame(spark, [r for r in LABELLED if r != late]).withColumn(
        "ingest_run_id", F.lit("a")))
    assert sequences.update(spark, config).samples_inserted == 5
    # Batch "b" arrives later (a missed night's ingest, a re-run, a late file): a behaviour dated
    # before two stored samples of user 1, and a new impression of user 2.
    store.insert_new("events", events_frame(spark, [late, (2, 102, day(21), "rating", 1)]).withColumn(
        "ingest_run_id", F.lit("b")))
    result = sequences.update(spark, config)
    assert (result.batches, result.samples_inserted, result.samples_recounted) == (["b"], 2, 2)
    got = rows(store.read("samples").select("user_id", "item_id", "ts", "label", "hist_len", "split"),
               "user_id", "ts", "item_id")
    assert got == [
        (1, 100, day(2), 1, 0, "train"),
        (1, 101, day(16), 0, 1, "valid"),  # the late one, sampled like any other
        (1, 102, day(16), 1, 1, "valid"),  # same second: unchanged
        (1, 100, day(19), 1, 3, "test"),  # was 2 before the late behaviour
        (1, 103, day(20), 0, 4, "test"),  # was 3
        (2, 101, day(3), 1, 0, "train"),
        (2, 102, day(21), 1, 1, "test"),
    ]
    assert rows(store.read("sampled_batches")) == [("a", 5), ("b", 2)]
    # Nothing left to sample: nothing is written.
    version = store.version("samples")
    assert sequences.update(spark, config).batches == []
    assert store.version("samples") == version


def test_samples_from_keeps_earlier_events_as_history_only(spark, make_config):
    config = make_config("sequences.samples_from=2024-01-18", "sequences.split.valid_from=2024-01-19",
                         "sequences.split.test_from=2024-01-21").sequences
    samples = build_samples(spark, events_frame(spark, LABELLED), config)
    got = rows(samples.select("user_id", "item_id", "ts", "hist_len", "split"), "user_id", "ts", "item_id")
    # No sample before 2024-01-18 (day 17); the behaviours before it still count in hist_len.
    assert got == [
        (1, 100, day(19), 3, "valid"),
        (1, 103, day(20), 4, "test"),
    ]
    # Every event is still history.
    items = spark.createDataFrame(ITEMS, "item_id BIGINT, category_id BIGINT, text STRING")
    sequence = build_user_sequences(events_frame(spark, LABELLED), items, config).where("user_id = 1").first()
    assert sequence["item_ids"] == [100, 101, 102, 100, 103]


def test_samples_from_draws_negatives_only_for_samples_in_the_window(spark, make_config):
    records = [(1, 100 + d, day(d), "pv", None) for d in range(1, 13)]
    records += [(2, 200 + d, day(d), "pv", None) for d in range(1, 7)]  # items user 1 never touched
    config = make_config("sequences.samples_from=2024-01-08", "sequences.split.valid_from=2024-01-11",
                         "sequences.split.test_from=2024-01-12", "sequences.negatives.enabled=always").sequences
    samples = build_samples(spark, events_frame(spark, records), config)
    assert samples.where(f"ts < {day(7)}").count() == 0 and samples.where("is_sampled_negative").count() > 0
    positives = samples.where("NOT is_sampled_negative AND user_id = 1")
    assert sorted(r[0] for r in positives.select("hist_len").collect()) == list(range(6, 12))  # days 7..12
    assert samples.where("user_id = 2").count() == 0  # all of user 2's events are before the window


def test_samples_from_after_the_validation_start_is_refused_naming_the_key(make_config):
    from r2led_model.config import ConfigError

    with pytest.raises(ConfigError, match=r"sequences\.samples_from: 2024-01-20 leaves no training samples"):
        make_config("sequences.samples_from=2024-01-20")


# An explicit-label source logging a click and a non-click of one item in one second: the events key
# (label included) keeps both, and so must the samples.
CLICK_AND_NON_CLICK = [(1, 100, day(5), "rating", 1, 4.0), (1, 100, day(5), "rating", 0, 4.0)]


def _valued(spark, records, run_id: str = "run"):
    """records: (user, item, ts, behavior, label, value)."""
    data = [(u, i, t, b, l, v, "test", run_id, dt.datetime.fromtimestamp(t, dt.timezone.utc).date())
            for u, i, t, b, l, v in records]
    return spark.createDataFrame(data, EVENT_SCHEMA)


def test_two_events_differing_only_in_label_are_two_samples_with_their_own_ids(spark, make_config):
    config = make_config().sequences
    earlier = [(1, 101, day(2), "rating", 1, 3.0)]
    samples = build_samples(spark, _valued(spark, earlier + CLICK_AND_NON_CLICK), config)
    got = rows(samples.where(f"ts = {day(5)}").select("sample_id", "item_id", "label", "hist_len"), "label")
    assert [(item, label, hist_len) for _, item, label, hist_len in got] == [(100, 0, 1), (100, 1, 1)]
    assert got[0][0] != got[1][0]
    assert samples.select("sample_id").distinct().count() == samples.count() == 3
    # The id is a pure function of the event's key: the same pair gives the same two ids again.
    again = build_samples(spark, _valued(spark, CLICK_AND_NON_CLICK).repartition(2), config)
    assert sorted(r[0] for r in again.select("sample_id").collect()) == sorted(r[0] for r in got)


def test_the_nightly_path_stores_both_and_never_samples_either_twice(spark, make_config, items):
    from pyspark.sql import functions as F

    from jobs.runtime.tables import TableStore
    from jobs.sequences import sequences

    config = make_config()
    store = TableStore(spark, config.tables)
    store.overwrite("items", items.withColumn("source", F.lit("test")))
    store.insert_new("events", _valued(spark, CLICK_AND_NON_CLICK, "a"))
    assert sequences.update(spark, config).samples_inserted == 2
    first = rows(store.read("samples").select("sample_id", "label"), "label")
    # A late behaviour before the pair: both are recounted in place, neither is sampled again.
    store.insert_new("events", _valued(spark, [(1, 101, day(2), "rating", 1, 3.0)], "b"))
    result = sequences.update(spark, config)
    assert (result.samples_inserted, result.samples_recounted) == (1, 2)
    got = rows(store.read("samples").where(f"ts = {day(5)}").select("sample_id", "label", "hist_len"), "label")
    assert got == [(first[0][0], 0, 1), (first[1][0], 1, 1)] and first[0][0] != first[1][0]
