"""Reference LR: exact point-in-time features of a 3-user hand-made log, agreement with a brute-force count,
no leak of valid/test labels, and a fit that finds the one feature the clicks depend on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from r2led_model.evaluation.metrics import auc
from r2led_model.worlds.reference_lr import (build_reference_features, feature_names, fit_reference,
                                             sid_prefix_topics)

ITEM_TOPICS = pd.DataFrame({
    "item_id": [1, 2, 3, 4, 5, 6],
    "topic_l1": [0, 0, 0, 1, 0, 1],
    "topic_l2": [0, 0, 1, 2, 0, 2],
    "topic_l3": [0, 1, 2, 3, 0, 4],
})
HISTORY = pd.DataFrame({
    "user_id": [10, 10, 10, 10, 10, 20, 20, 30],
    "item_id": [1, 2, 3, 4, 5, 4, 6, 1],
    "ts": [1, 2, 3, 5, 7, 1, 2, 4],
})
SAMPLES = pd.DataFrame({
    "sample_id": [100, 101, 102, 103, 104, 105, 106, 107],
    "user_id": [10, 10, 10, 20, 20, 30, 30, 10],
    "item_id": [5, 1, 6, 4, 4, 1, 1, 5],
    "ts": [5, 8, 9, 2, 6, 4, 10, 12],
    "label": [1, 0, 1, 0, 1, 1, 0, 0],
    "split": ["train", "train", "test", "train", "train", "valid", "test", "test"],
})
PRIOR = 0.5  # training labels 1, 0, 0, 1


def _features(samples=SAMPLES) -> pd.DataFrame:
    return build_reference_features(history=HISTORY, samples=samples, item_topics=ITEM_TOPICS,
                                     with_item_encoding=True).set_index("sample_id")


def test_hand_made_log_gives_exact_point_in_time_features():
    f = _features()
    assert list(f.columns) == list(feature_names(with_item_encoding=True))
    counts = {  # (same l1, same l2, same l3, all views) strictly before the sample's ts
        100: (3, 2, 1, 3),  # views 1, 2, 3; item 4 is viewed at ts 5, the sample's own time: not counted
        101: (4, 3, 2, 5),  # views 1, 2, 3, 4, 5 at ts 1..7 < 8; target item 1 = (0, 0, 0)
        102: (1, 1, 0, 5),  # target item 6 = (1, 2, 4): only item 4 = (1, 2, 3) shares l1 and l2
        103: (1, 1, 1, 1),  # user 20 at ts 2: item 4 at ts 1; item 6 at ts 2 is not before
        104: (2, 2, 1, 2),  # items 4 and 6 share (1, 2); only item 4 shares l3 = 3
        105: (0, 0, 0, 0),  # user 30's view of item 1 is at ts 4, the sample's own time
        106: (1, 1, 1, 1),
        107: (4, 3, 2, 5),
    }
    for sample_id, (l1, l2, l3, total) in counts.items():
        row = f.loc[sample_id]
        assert [row.log1p_same_l1, row.log1p_same_l2, row.log1p_same_l3, row.log1p_history] == pytest.approx(
            np.log1p([l1, l2, l3, total])), sample_id
    user_ctr = {  # (clicks + 10 · 0.5) / (impressions + 10) over the user's *training* samples before ts
        100: PRIOR,  # nothing before
        101: (1 + 5) / 11,  # sample 100 (click)
        102: (1 + 5) / 12,  # 100, 101
        103: PRIOR,  # the click of the later training sample 104 does not enter
        104: (0 + 5) / 11,  # sample 103 (no click)
        105: PRIOR,
        106: PRIOR,  # 105 is a valid sample: its label is not used
        107: (1 + 5) / 12,  # 100, 101; the test click of 102 is not used
    }
    assert f.user_ctr.to_dict() == pytest.approx(user_ctr)
    item = {  # (item_ctr, training impressions) from the item's training samples before ts
        100: (PRIOR, 0), 101: (PRIOR, 0), 102: (PRIOR, 0), 103: (PRIOR, 0), 104: (5 / 11, 1),
        105: (PRIOR, 0), 106: (5 / 11, 1), 107: (6 / 11, 1),
    }
    assert f.item_ctr.to_dict() == pytest.approx({k: v[0] for k, v in item.items()})
    assert f.log1p_item_impressions.to_dict() == pytest.approx({k: np.log1p(v[1]) for k, v in item.items()})


def test_valid_and_test_labels_never_enter_any_feature():
    flipped = SAMPLES.copy()
    scored = flipped.split != "train"
    flipped.loc[scored, "label"] = 1 - flipped.loc[scored, "label"]
    pd.testing.assert_frame_equal(_features(flipped), _features())


def test_without_item_encoding_and_bad_input():
    f = build_reference_features(history=HISTORY, samples=SAMPLES, item_topics=ITEM_TOPICS, with_item_encoding=False)
    assert list(f.columns) == ["sample_id", "log1p_same_l1", "log1p_same_l2", "log1p_same_l3", "log1p_history",
                               "user_ctr"]
    with pytest.raises(ValueError, match=r"samples lacks columns \['split'\]"):
        build_reference_features(history=HISTORY, samples=SAMPLES.drop(columns="split"), item_topics=ITEM_TOPICS,
                                 with_item_encoding=False)
    with pytest.raises(ValueError, match="'holdout'"):
        build_reference_features(history=HISTORY, samples=SAMPLES.assign(split="holdout"), item_topics=ITEM_TOPICS,
                                 with_item_encoding=False)


def _brute_force_same_topic(history, samples, item_topics, level):
    """Per sample, the user's views strictly before ts sharing the target's topic at `level` (a plain join)."""
    topic = f"topic_{level}"
    h = history.merge(item_topics[["item_id", topic]], on="item_id")
    s = samples[["sample_id", "user_id", "item_id", "ts"]].merge(item_topics[["item_id", topic]], on="item_id")
    pairs = s.merge(h, on=["user_id", topic], suffixes=("", "_h"))
    counts = pairs[pairs.ts_h < pairs.ts].groupby("sample_id").size()
    return counts.reindex(samples.sample_id, fill_value=0).to_numpy()


@pytest.fixture(scope="module")
def synthetic():
    """2 l1 × 3 l2 × 3 l3 topics, 10 items a leaf; users favour two l2 topics; clicks depend on the same-l2
    count only."""
    rng = np.random.default_rng(0)
    leaves = np.arange(18)
    items = pd.DataFrame({"item_id": np.arange(180), "topic_l3": np.repeat(leaves, 10)})
    items["topic_l2"] = items.topic_l3 // 3
    items["topic_l1"] = items.topic_l2 // 3
    n_users, views, impressions = 300, 40, 20
    favourite = rng.integers(0, 6, (n_users, 2))
    parts = []
    for user in range(n_users):
        on_favourite = rng.random(views) < 0.6
        l2 = np.where(on_favourite, favourite[user, rng.integers(0, 2, views)], rng.integers(0, 6, views))
        item = l2 * 30 + rng.integers(0, 30, views)  # any leaf of the l2 topic, any item of the leaf
        parts.append(pd.DataFrame({"user_id": user, "item_id": item, "ts": rng.integers(0, 1000, views)}))
    history = pd.concat(parts, ignore_index=True)
    n = n_users * impressions
    ts = rng.integers(0, 1000, n)
    samples = pd.DataFrame({"sample_id": np.arange(n), "user_id": np.repeat(np.arange(n_users), impressions),
                            "item_id": rng.integers(0, 180, n), "ts": ts,
                            "split": np.where(ts < 700, "train", np.where(ts < 850, "valid", "test"))})
    same_l2 = _brute_force_same_topic(history, samples, items, "l2")
    logit = -3.0 + 1.5 * np.log1p(same_l2)
    samples["label"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return dict(history=history, samples=samples, items=items)


def test_counts_agree_with_a_brute_force_join(synthetic):
    f = build_reference_features(history=synthetic["history"], samples=synthetic["samples"],
                                 item_topics=synthetic["items"], with_item_encoding=False)
    for level in ("l1", "l2", "l3"):
        expected = _brute_force_same_topic(synthetic["history"], synthetic["samples"], synthetic["items"], level)
        np.testing.assert_allclose(f[f"log1p_same_{level}"].to_numpy(), np.log1p(expected))


@pytest.mark.parametrize("with_item_encoding", [False, True])
def test_fit_finds_the_same_l2_count(synthetic, with_item_encoding):
    samples = synthetic["samples"]
    result = fit_reference(history=synthetic["history"], samples=samples, item_topics=synthetic["items"],
                           with_item_encoding=with_item_encoding)
    scored = samples[samples.split != "train"]
    assert result.sample_ids.tolist() == scored.sample_id.tolist()
    assert result.split.tolist() == scored.split.tolist()
    assert ((result.scores > 0) & (result.scores < 1)).all()
    test = result.split == "test"
    test_auc = auc(scored.label.to_numpy()[test], result.scores[test])
    assert test_auc > 0.7, test_auc
    weights = result.coefficients
    assert set(weights) == set(result.feature_names) == set(feature_names(with_item_encoding=with_item_encoding))
    assert max(weights, key=weights.get) == "log1p_same_l2" and weights["log1p_same_l2"] > 0, weights


def test_datetime_timestamps_give_the_same_features():
    as_time = {"history": HISTORY.assign(ts=pd.to_datetime(HISTORY.ts, unit="s")),
               "samples": SAMPLES.assign(ts=pd.to_datetime(SAMPLES.ts, unit="s"))}
    f = build_reference_features(**as_time, item_topics=ITEM_TOPICS, with_item_encoding=True).set_index("sample_id")
    pd.testing.assert_frame_equal(f, _features())
    with pytest.raises(ValueError, match="both be datetimes"):
        build_reference_features(history=as_time["history"], samples=SAMPLES, item_topics=ITEM_TOPICS,
                                 with_item_encoding=False)


def test_sid_prefix_topics_match_where_the_sid_routes_match():
    codes = np.array([[3, 1, 4], [3, 1, 5], [3, 2, 4], [1, 1, 4]])
    topics = sid_prefix_topics(item_ids=np.array([10, 11, 12, 13]), codes=codes).set_index("item_id")
    for a in topics.index:
        for b in topics.index:
            for j, level in enumerate(("l1", "l2", "l3")):
                same_prefix = bool((codes[a - 10, :j + 1] == codes[b - 10, :j + 1]).all())
                same_topic = topics.loc[a, f"topic_{level}"] == topics.loc[b, f"topic_{level}"]
                assert same_topic == same_prefix, (a, b, level)
    # Two SID levels: the third topic level repeats the whole code.
    short = sid_prefix_topics(item_ids=np.array([1, 2]), codes=np.array([[3, 1], [3, 2]]))
    assert (short["topic_l3"] == short["topic_l2"]).all() and short["topic_l1"].nunique() == 1
    with pytest.raises(ValueError, match="2\\^20"):
        sid_prefix_topics(item_ids=np.array([1]), codes=np.array([[1 << 20, 0, 0]]))
    with pytest.raises(ValueError, match="codes must be"):
        sid_prefix_topics(item_ids=np.array([1, 2]), codes=np.array([[1, 2, 3]]))
