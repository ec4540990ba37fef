"""A click and a non-click of one item in one second (an explicit-label source): two samples with
their own ids, and two training examples with their own labels, from sequences to the training set."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import functions as F

from jobs.retrieval import retrieve
from jobs.runtime.tables import TableStore
from jobs.sequences import sequences
from jobs.training import build_training_set
from tests.helpers import rows

BASE = int(dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc).timestamp())
DAY = 86400
# (user, item, ts, label, value): one earlier behaviour, then the pair at the same second.
EVENTS = [(1, 10, BASE + 2 * DAY, 1, 5.0), (1, 11, BASE + 3 * DAY, 1, 4.0), (1, 11, BASE + 3 * DAY, 0, 4.0)]


def test_a_click_and_a_non_click_in_one_second_are_two_training_examples(spark, tmp_path):
    from tests.helpers import config_in

    config = config_in(tmp_path, "retrieval.routes=[sid1, collab]", "retrieval.k=2", "retrieval.simhash_bits=4",
                       "sequences.split.valid_from=2024-01-03", "sequences.split.test_from=2024-01-04")
    store = TableStore(spark, config.tables)
    store.overwrite("events", spark.createDataFrame(
        [(u, i, t, "rating", label, value, "test", "run", dt.datetime.fromtimestamp(t, dt.timezone.utc).date())
         for u, i, t, label, value in EVENTS],
        "user_id BIGINT, item_id BIGINT, ts BIGINT, behavior STRING, label INT, value DOUBLE, source STRING, "
        "ingest_run_id STRING, event_date DATE"))
    store.overwrite("items", spark.createDataFrame([(10, 1, None, "test"), (11, 1, None, "test")],
                                                   "item_id BIGINT, category_id BIGINT, text STRING, source STRING"))
    store.overwrite("item_sids", spark.createDataFrame(
        [(10, [0, 0], [0, 0], 0, "cb-test"), (11, [0, 1], [0, 1], 0, "cb-test")],
        "item_id BIGINT, codes ARRAY<INT>, semantic_codes ARRAY<INT>, dedup_digit INT, codebook_version STRING"))
    store.overwrite("item_collab_vectors", spark.createDataFrame(
        [(10, [0.0], [0b0000], "test", "cv-test"), (11, [0.0], [0b0001], "test", "cv-test")],
        "item_id BIGINT, vector ARRAY<FLOAT>, signature ARRAY<BIGINT>, source STRING, version STRING"))

    sequences.run(spark, config)
    retrieve.run(spark, config)
    build_training_set.run(spark, config)

    samples = rows(store.read("samples").select("sample_id", "ts", "label"), "ts", "label")
    assert [(ts - BASE, label) for _, ts, label in samples] == [(2 * DAY, 1), (3 * DAY, 0), (3 * DAY, 1)]
    assert len({sample_id for sample_id, _, _ in samples}) == 3
    examples = rows(store.read("training_examples").select(
        "sample_id", "label", "ts", "hist_len", F.transform("r_collab_item", lambda i: (i != 0).cast("int"))),
        "sample_id")  # a slot is real iff its item is not padding
    # One example per sample, each with its sample's label.
    assert [(s, label) for s, label, _, _, _ in examples] == sorted((s, label) for s, _, label in samples)
    # Both of the pair see the earlier behaviour and not each other.
    assert [(hist_len, mask) for _, _, ts, hist_len, mask in examples if ts == BASE + 3 * DAY] == [(1, [1, 0])] * 2
