"""The synthetic generator plants what later benchmarks rely on; these tests check each plant."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pandas as pd
import pytest

from r2led_model.config import CatalogueNoiseConfig, ImpressionConfig, SyntheticConfig, parse_utc_timestamp
from r2led_model.worlds.impressions import generate_user_impressions
from r2led_model.worlds.synthetic import (COLOUR_WORDS, L1_WORDS, L2_WORDS, L3_WORDS, STYLE_WORDS, build_world,
                                          generate_user_events, item_frame, user_interest_frame)

CONFIG = SyntheticConfig(seed=11, num_users=800, events_per_user=100, num_items=3000,
                         taxonomy=(8, 6, 5), zipf_exponent=1.1, interests_per_user=6,
                         session_length=6.0, noise_share=0.15, start_date="2024-01-01", days=60)
USERS = np.arange(CONFIG.num_users)


@pytest.fixture(scope="module")
def world():
    return build_world(CONFIG)


@pytest.fixture(scope="module")
def items(world):
    return item_frame(world)


@pytest.fixture(scope="module")
def events(world):
    return generate_user_events(world, CONFIG, USERS)


def _runs(interest: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(interest, length) of each run of equal interest among the on-topic events."""
    values = interest[interest >= 0]
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    return values[starts], np.diff(np.r_[starts, values.size])


def test_vocabulary_pools_are_disjoint_and_large():
    pools = [L1_WORDS, L2_WORDS, L3_WORDS, STYLE_WORDS, COLOUR_WORDS]
    words = [w for pool in pools for w in pool]
    assert len(words) == len(set(words))
    assert len(L1_WORDS) >= 16 and len(L2_WORDS) >= 120 and len(L3_WORDS) >= 120


def test_same_config_gives_identical_frames(world, items, events):
    again = build_world(CONFIG)
    pd.testing.assert_frame_equal(item_frame(again), items)
    pd.testing.assert_frame_equal(generate_user_events(again, CONFIG, USERS), events)
    pd.testing.assert_frame_equal(user_interest_frame(again, CONFIG, USERS[:50]),
                                  user_interest_frame(world, CONFIG, USERS[:50]))


def test_other_seed_gives_another_world(items):
    other = item_frame(build_world(dataclasses.replace(CONFIG, seed=12)))
    assert not other["category_id"].equals(items["category_id"])
    assert not other["text"].equals(items["text"])


def test_user_events_do_not_depend_on_batch(world, events):
    alone = generate_user_events(world, CONFIG, np.array([37]))
    batch = generate_user_events(world, CONFIG, np.array([901, 37, 5, 12]))  # unsorted on purpose
    in_batch = batch[batch["user_id"] == 37].reset_index(drop=True)
    in_full = events[events["user_id"] == 37].reset_index(drop=True)
    assert len(alone) >= 2
    pd.testing.assert_frame_equal(alone, in_batch)
    pd.testing.assert_frame_equal(alone, in_full)
    assert batch["user_id"].is_monotonic_increasing


def test_taxonomy_paths_and_every_leaf_has_items(world, items):
    n1, n2, n3 = CONFIG.taxonomy
    path = world.leaf_path
    assert path.shape == (n1 * n2 * n3, 3)
    np.testing.assert_array_equal(path[:, 2], np.arange(n1 * n2 * n3))
    np.testing.assert_array_equal(path[:, 1] // n2, path[:, 0])  # each l2 under its l1
    np.testing.assert_array_equal(path[:, 2] // n3, path[:, 1])  # each leaf under its l2
    assert np.bincount(world.item_leaf, minlength=n1 * n2 * n3).min() >= 1
    assert (items["category_id"] == items["topic_l3"]).all()
    assert items["item_id"].tolist() == list(range(CONFIG.num_items))


def test_fewer_items_than_leaves_are_round_robin():
    small = dataclasses.replace(CONFIG, num_items=7, interests_per_user=6)
    tiny_world = build_world(small)
    assert len(set(tiny_world.item_leaf.tolist())) == 7  # seven distinct leaves, one item each
    # At most 7 topics have items, so interests shrink to those; events still come out.
    truth = user_interest_frame(tiny_world, small, np.arange(20))
    nonempty = set(np.flatnonzero(tiny_world.topic_popularity > 0).tolist())
    assert set(truth["topic_l2"]) <= nonempty
    ev = generate_user_events(tiny_world, small, np.arange(20))
    assert ev["item_id"].between(0, 6).all()


def test_popularity_is_normalised_zipf(items):
    pop = items["popularity"].to_numpy()
    assert pop.sum() == pytest.approx(1.0, abs=1e-12)
    ranked = np.sort(pop)[::-1]
    assert ranked[0] / np.median(ranked) > 100
    slope = np.polyfit(np.log(np.arange(1, ranked.size + 1)), np.log(ranked), 1)[0]
    assert slope == pytest.approx(-CONFIG.zipf_exponent, abs=0.05)
    flat = item_frame(build_world(dataclasses.replace(CONFIG, zipf_exponent=0.6)))["popularity"]
    slope = np.polyfit(np.log(np.arange(1, flat.size + 1)), np.log(np.sort(flat)[::-1]), 1)[0]
    assert slope == pytest.approx(-0.6, abs=0.05)


def test_item_text_follows_taxonomy(world, items):
    padded = " " + items["text"].str.replace(",", "") + " "
    for l1, name in enumerate(world.l1_names):
        has_word = padded.str.contains(f" {name} ", regex=False)
        np.testing.assert_array_equal(has_word.to_numpy(), (items["topic_l1"] == l1).to_numpy())
    # Items of one leaf share all three taxonomy words; the rest is noise adjectives.
    heads = items["text"].str.split(",").str[0]
    assert heads.groupby(items["category_id"]).nunique().max() == 1
    assert heads.nunique() == len(world.leaf_path)
    first = items.iloc[0]
    assert first["text"].startswith(" ".join([world.l1_names[first["topic_l1"]],
                                              world.l2_names[first["topic_l2"]],
                                              world.l3_names[first["topic_l3"]]]))


def test_event_columns_and_order(events, items):
    assert list(events.columns) == ["user_id", "item_id", "category_id", "behavior", "ts", "interest"]
    for col in ("user_id", "item_id", "category_id", "ts", "interest"):
        assert events[col].dtype == np.int64
    assert (events["behavior"] == "pv").all()
    assert set(events["user_id"]) == set(USERS.tolist())
    np.testing.assert_array_equal(events["category_id"], items["category_id"].to_numpy()[events["item_id"]])
    assert events.equals(events.sort_values(["user_id", "ts"], kind="stable").reset_index(drop=True))


def test_timestamps_within_window_and_non_decreasing(events):
    t0 = parse_utc_timestamp(CONFIG.start_date)
    assert events["ts"].min() >= t0
    assert events["ts"].max() < t0 + CONFIG.days * 86_400
    assert (events.groupby("user_id")["ts"].diff().dropna() >= 0).all()
    # Histories span the window rather than one burst.
    span = events.groupby("user_id")["ts"].agg(lambda t: t.max() - t.min())
    assert span.median() > CONFIG.days * 86_400 / 2


def test_on_topic_events_come_from_a_planted_interest(world, events, items):
    on_topic = events[events["interest"] >= 0]
    np.testing.assert_array_equal(items["topic_l2"].to_numpy()[on_topic["item_id"]], on_topic["interest"])
    truth = user_interest_frame(world, CONFIG, USERS)
    assert (truth.groupby("user_id")["topic_l2"].nunique() == CONFIG.interests_per_user).all()
    assert truth.groupby("user_id")["weight"].sum().to_numpy() == pytest.approx(1.0)
    planted = set(zip(truth["user_id"], truth["topic_l2"]))
    assert set(zip(on_topic["user_id"], on_topic["interest"])) <= planted


def test_noise_share_and_events_per_user(events):
    assert (events["interest"] == -1).mean() == pytest.approx(CONFIG.noise_share, abs=0.02)
    per_user = events.groupby("user_id").size()
    assert per_user.mean() == pytest.approx(CONFIG.events_per_user, rel=0.08)
    assert per_user.min() >= 2
    assert per_user.max() > 3 * CONFIG.events_per_user  # log-normal: some heavy users


def test_sessions_switch_interest_and_interests_return(events):
    lengths, returns = [], []
    for _, interest in events.groupby("user_id")["interest"]:
        values, runs = _runs(interest.to_numpy())
        lengths.append(runs)
        # A session never repeats the previous one's interest, so each on-topic run is one session:
        # if repeats were allowed, runs would merge and be much longer than session_length.
        if values.size > 2 * CONFIG.interests_per_user:
            returns.append(np.bincount(values).max() >= 2)
    assert np.concatenate(lengths).mean() == pytest.approx(CONFIG.session_length, rel=0.15)
    assert np.mean(returns) > 0.95


def test_long_range_signal_at_session_starts(events):
    # Where a session starts, its interest is mostly absent from the last 5 events but present
    # in the longer past: recency misses it, lifelong retrieval finds it.
    hits = total = 0
    for _, interest in events.groupby("user_id")["interest"]:
        it = interest.to_numpy()
        on = np.flatnonzero(it >= 0)
        for i in on[1:][it[on[1:]] != it[on[:-1]]]:
            if i < 10:
                continue
            total += 1
            hits += it[i] not in it[i - 5:i] and it[i] in it[:i - 5]
    assert total > 1000
    assert hits / total > 0.4


def test_empty_batch_has_the_schema(world):
    empty = generate_user_events(world, CONFIG, np.array([], dtype=np.int64))
    assert empty.empty and list(empty.columns) == ["user_id", "item_id", "category_id", "behavior", "ts", "interest"]
    assert empty["ts"].dtype == np.int64
    assert user_interest_frame(world, CONFIG, np.array([], dtype=np.int64)).empty


# --------------------------------------------------------------------------------------------------
# Older worlds are pinned: the new knobs (communities, launches, noisy top topics, impressions from a
# day, community and new-arrival slots) draw from their own streams, so with them off a world is
# byte-identical to one generated before they existed.
# --------------------------------------------------------------------------------------------------

PINNED_ITEM_COLUMNS = ("item_id", "category_id", "text", "topic_l1", "topic_l2", "topic_l3", "popularity", "quality",
                       "mislabelled", "text_noisy")
PINNED_EVENT_COLUMNS = ("user_id", "item_id", "category_id", "behavior", "ts", "interest")
PINNED_INTEREST_COLUMNS = ("user_id", "interest_rank", "topic_l2", "weight", "dormant")
PINNED_IMPRESSION_COLUMNS = ("user_id", "item_id", "category_id", "behavior", "ts", "label", "click_prob", "relation",
                             "exposure")
# SHA-256 of those columns (names, then raw values; text joined by \x1f) for two older worlds, computed with
# the generator as it was before communities, launches and noisy top topics were added.
PINNED_WORLDS = (
    (SyntheticConfig(seed=11, num_users=30, num_items=600, taxonomy=(4, 3, 3)),
     "5648de2745abb4a24c40181bfea309dea7424cd17fd670992b6cd737093babe0"),
    (SyntheticConfig(seed=5, num_users=40, events_per_user=80, num_items=4000, taxonomy=(6, 4, 5),
                     interests_per_user=5, days=30, dormant_share=0.4, dormant_after=0.5,
                     catalogue=CatalogueNoiseConfig(category_level=2, mislabel_share=0.2, text_noise_share=0.4),
                     impressions=ImpressionConfig(enabled=True, per_user=60)),
     "01fc8015195eac9b536266271ab19ac0ae255f83451018403313559c4cfd7b4f"),
)


def _digest(frames) -> str:
    digest = hashlib.sha256()
    for frame, columns in frames:
        for column in columns:
            values = frame[column]
            digest.update(column.encode())
            if values.dtype == object:
                digest.update("\x1f".join(map(str, values)).encode())
            else:
                digest.update(np.ascontiguousarray(values.to_numpy()).tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("config, expected", PINNED_WORLDS, ids=["plain", "oracle-like"])
def test_worlds_with_the_new_knobs_off_are_the_older_worlds(config, expected):
    world = build_world(config)
    users = np.arange(config.num_users)
    assert _digest([(item_frame(world), PINNED_ITEM_COLUMNS),
                    (generate_user_events(world, config, users), PINNED_EVENT_COLUMNS),
                    (user_interest_frame(world, config, users), PINNED_INTEREST_COLUMNS),
                    (generate_user_impressions(world, config, users), PINNED_IMPRESSION_COLUMNS)]) == expected
