"""The numpy sample kernel on hand-made sorted behaviours."""

from __future__ import annotations

import numpy as np
import pandas as pd

from r2led_model.sequences.sample_kernel import (NegativeRule, SplitRule, assign_split, build_samples_sorted,
                                                 draw_negatives, hist_len_sorted, uniform_draws)


def test_hist_len_excludes_same_second_and_other_users():
    users = np.array([1, 1, 1, 1, 1, 2, 2])
    ts = np.array([10, 20, 20, 30, 40, 5, 5])
    in_history = np.array([True, True, False, True, True, True, True])
    # user 1: @10 → 0; both @20 → 1; @30 → 2 (the non-history row @20 is not counted); @40 → 3.
    assert hist_len_sorted(users, ts, in_history).tolist() == [0, 1, 1, 2, 3, 0, 0]


def test_last_n_split_counts_from_each_users_newest():
    users = np.array([1, 1, 1, 1, 2])
    split = assign_split(users, np.arange(5), SplitRule(mode="last_n", last_n_valid=2, last_n_test=1))
    assert split.tolist() == ["train", "valid", "valid", "test", "test"]


def test_time_split_cutoffs_are_inclusive():
    split = assign_split(np.zeros(4), np.array([9, 10, 19, 20]), SplitRule(mode="time", valid_from=10, test_from=20))
    assert split.tolist() == ["train", "valid", "valid", "test"]


def test_uniform_draws_are_a_pure_function_of_seed_and_sample():
    ids = np.array([5, 6, 7], dtype=np.int64)
    draws = uniform_draws(3, ids, 4)
    assert draws.shape == (3, 4) and (draws >= 0).all() and (draws < 1).all()
    assert np.array_equal(uniform_draws(3, ids[::-1], 4), draws[::-1])  # order of rows does not matter
    assert not np.array_equal(uniform_draws(4, ids, 4), draws)
    many = uniform_draws(1, np.arange(20000, dtype=np.int64), 1).ravel()
    assert abs(many.mean() - 0.5) < 0.01 and abs((many < 0.1).mean() - 0.1) < 0.01


def test_negatives_skip_touched_and_repeated_items():
    # Two items only: user 1 touched item 100, so every kept negative must be 200, once per positive.
    rule = NegativeRule(ratio=2, oversample=8, seed=1, item_ids=np.array([100, 200]), cdf=np.array([0.5, 1.0]))
    rows, items, ranks = draw_negatives(np.array([11, 12]), np.array([1, 1]), np.array([1]), np.array([100]), rule)
    assert sorted(rows.tolist()) == [0, 1] and items.tolist() == [200, 200] and ranks.tolist() == [0, 0]


def test_build_samples_labels_and_inherits_context():
    events = pd.DataFrame({"sample_id": [1, 2, 3], "user_id": [7, 7, 7], "item_id": [100, 101, 102],
                           "ts": [10, 20, 30], "label": [None, None, None]})
    rule = NegativeRule(ratio=1, oversample=8, seed=0, item_ids=np.arange(100, 200), cdf=np.linspace(0.01, 1, 100))
    out = build_samples_sorted(events, in_history=np.ones(3, bool), is_sample=np.ones(3, bool), min_hist_len=1,
                               split=SplitRule(mode="time", valid_from=20, test_from=30), negatives=rule)
    positives = out[~out["is_sampled_negative"]]
    negatives = out[out["is_sampled_negative"]]
    assert positives[["item_id", "hist_len", "split", "label"]].values.tolist() == [[101, 1, "valid", 1], [102, 2, "test", 1]]
    assert len(negatives) == 2 and (negatives["label"] == 0).all()
    assert negatives[["ts", "hist_len", "split"]].values.tolist() == positives[["ts", "hist_len", "split"]].values.tolist()
    assert not set(negatives["item_id"]) & {100, 101, 102}
    assert negatives["sample_id"].min() >= 0 and not set(negatives["sample_id"]) & set(positives["sample_id"])
