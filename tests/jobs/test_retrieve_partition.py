"""The retrieval partition function without Spark: item feature lookups (unknown items, missing
vectors and categories) and users whose samples have no stored sequence."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from jobs.retrieval.retrieve import candidates_for_partition
from r2led_model.arrow_arrays import list_column
from r2led_model.config import RetrievalConfig
from r2led_model.retrieval.item_feature_lookup import ItemFeatureLookup
from r2led_model.retrieval.multi_route import RoutePlan

# item → (SID codes, SimHash word or None, category or None); listed out of id order on purpose.
ITEMS = {30: ([1, 2], 0b0011, 5), 10: ([1, 1], 0b0001, None), 20: ([2, 1], None, 7)}


def features_table() -> pa.Table:
    ids = list(ITEMS)
    return pa.table({
        "item_id": pa.array(ids, pa.int64()),
        "semantic_codes": list_column(np.array([ITEMS[i][0] for i in ids], dtype=np.int32)),
        "signature": pa.array([None if ITEMS[i][1] is None else [ITEMS[i][1]] for i in ids], pa.list_(pa.int64())),
        "category_id": pa.array([ITEMS[i][2] for i in ids], pa.int64())})


def test_lookup_fills_unknown_items_missing_vectors_and_categories():
    lookup = ItemFeatureLookup.from_arrow(features_table(), levels=2, words=1)
    codes, words, categories = lookup.features(np.array([20, 99, 30, 10]))
    assert codes.tolist() == [[2, 1], [-1, -1], [1, 2], [1, 1]]  # 99 is unknown: matches no prefix
    assert words[:, 0].tolist() == [0, 0, 0b0011, 0b0001]  # 20 has no vector, 99 is unknown
    assert categories.tolist() == [7, -1, 5, -1]
    assert words.dtype == np.uint64


def test_lookup_refuses_a_repeated_item():
    table = pa.concat_tables([features_table(), features_table().slice(0, 1)])
    with pytest.raises(ValueError, match="more than once"):
        ItemFeatureLookup.from_arrow(table, levels=2, words=1)


def _samples(rows: list[tuple[int, int, int, int]]) -> pa.Table:
    sample_id, user_id, item_id, hist_len = (list(c) for c in zip(*rows))
    return pa.table({"sample_id": pa.array(sample_id, pa.int64()), "user_id": pa.array(user_id, pa.int64()),
                     "item_id": pa.array(item_id, pa.int64()), "ts": pa.array([1000] * len(rows), pa.int64()),
                     "hist_len": pa.array(hist_len, pa.int64()), "split": pa.array(["train"] * len(rows))})


def _sequences(users: list[tuple[int, list[int], int]]) -> pa.Table:
    return pa.table({"user_id": pa.array([u for u, _, _ in users], pa.int64()),
                     "item_ids": pa.array([items for _, items, _ in users], pa.list_(pa.int64())),
                     "history_ts": pa.array([list(range(100, 100 + len(items))) for _, items, _ in users],
                                    pa.list_(pa.int64())),
                     "dropped": pa.array([d for _, _, d in users], pa.int64())})


def test_partition_keeps_sample_order_and_handles_users_without_a_sequence():
    lookup = ItemFeatureLookup.from_arrow(features_table(), levels=2, words=1)
    plan = RoutePlan.from_config(RetrievalConfig(routes=("sid1", "collab"), k=2, simhash_bits=4), levels=2)
    # User 7's sequence: 10, 20, 30, 99 (99 unknown), 1 behaviour dropped before it; user 8 has none.
    sequences = _sequences([(7, [10, 20, 30, 99], 1)])
    samples = _samples([(3, 7, 30, 5), (1, 8, 10, 0), (2, 7, 10, 2)])
    out = pa.Table.from_batches([candidates_for_partition(sequences, samples, lookup, plan)]).to_pydict()
    assert out["sample_id"] == [3, 1, 2]
    # Sample 3 (target 30: codes [1, 2], word 0011) sees positions 0..3. sid1 keeps code 1 (10 at 0,
    # 30 at 2); Hamming 10→1, 30→0. collab ranks all: 30 (0), 10 (1); 20 and 99 have no word (2).
    assert out["cand_sid1_pos"][0] == [2, 0] and out["cand_sid1_item"][0] == [30, 10]
    assert out["cand_collab_pos"][0] == [2, 0] and out["cand_collab_pool"][0] == 4
    # Sample 1: user 8 has no stored sequence and hist_len 0: nothing to retrieve.
    assert out["cand_collab_mask"][1] == [False, False] and out["cand_collab_item"][1] == [-1, -1]
    # Sample 2 (target 10: codes [1, 1]) sees position 0 only (hist_len 2 − dropped 1).
    assert out["cand_sid1_pos"][2] == [0, -1] and out["cand_sid1_mask"][2] == [True, False]


def test_partition_refuses_a_user_with_two_sequences():
    lookup = ItemFeatureLookup.from_arrow(features_table(), levels=2, words=1)
    plan = RoutePlan.from_config(RetrievalConfig(routes=("collab",), k=2, simhash_bits=4), levels=2)
    sequences = _sequences([(7, [10], 0), (7, [20], 0)])
    with pytest.raises(ValueError, match="more than one row"):
        candidates_for_partition(sequences, _samples([(1, 7, 10, 1)]), lookup, plan)
