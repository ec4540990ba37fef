"""The oracle-scored world: click probabilities from the seed, labels that follow them, and a catalogue
whose category level, mislabel share and text noise are what the config says."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from r2led_model.config import CatalogueNoiseConfig, ImpressionConfig, SyntheticConfig, parse_utc_timestamp
from r2led_model.impressions import RELATIONS, click_probability, generate_user_impressions, relation_of, user_bias
from r2led_model.synthetic import (
    COLOUR_WORDS,
    L1_WORDS,
    L2_WORDS,
    L3_WORDS,
    STYLE_WORDS,
    SYNONYMS,
    build_world,
    dormant_from,
    generate_user_events,
    item_frame,
    user_interest_frame,
    user_profile,
)

CONFIG = SyntheticConfig(
    seed=5, num_users=400, events_per_user=80, num_items=4000, taxonomy=(6, 4, 5), interests_per_user=5,
    start_date="2024-01-01", days=30, dormant_share=0.4, dormant_after=0.5,
    catalogue=CatalogueNoiseConfig(category_level=2, mislabel_share=0.2, text_noise_share=0.4),
    impressions=ImpressionConfig(enabled=True, per_user=120))
USERS = np.arange(CONFIG.num_users)


@pytest.fixture(scope="module")
def world():
    return build_world(CONFIG)


@pytest.fixture(scope="module")
def shown(world):
    return generate_user_impressions(world, CONFIG, USERS)


def _binomial_slack(p: np.ndarray) -> float:
    """Five standard deviations of the mean of Bernoulli(p_i) draws: a false alarm ~1 in 10^6."""
    return 5.0 * math.sqrt(float(np.sum(p * (1 - p)))) / p.size


def test_click_probabilities_are_reproduced_from_the_seed(world, shown):
    again = generate_user_impressions(build_world(CONFIG), CONFIG, USERS[::-1])  # other order, fresh world
    np.testing.assert_array_equal(again.to_numpy(), shown.to_numpy())
    split = generate_user_impressions(world, CONFIG, USERS[:150])  # any batching of users: the same rows
    np.testing.assert_array_equal(split.to_numpy(), shown[shown["user_id"] < 150].to_numpy())
    # The written probability is the documented formula, recomputed from the profile and quality.
    cfg = CONFIG.impressions
    for user in (0, 17, 399):
        rows = shown[shown["user_id"] == user]
        prob, relation = click_probability(world, CONFIG, user, rows["item_id"].to_numpy())
        affinity = np.r_[cfg.affinity, 0.0][relation]
        logit = cfg.base_logit + affinity + cfg.quality_std * world.item_quality[rows["item_id"]] + user_bias(CONFIG, user)
        np.testing.assert_allclose(prob, 1 / (1 + np.exp(-logit)), rtol=1e-12)
        np.testing.assert_allclose(rows["click_prob"], prob, rtol=1e-12)
        np.testing.assert_array_equal(rows["relation"], relation)
    other = generate_user_impressions(world, dataclasses.replace(CONFIG, seed=6), USERS[:20])
    assert not np.array_equal(other["click_prob"].to_numpy()[:50], shown["click_prob"].to_numpy()[:50])


def test_labels_follow_the_probabilities(shown):
    p, y = shown["click_prob"].to_numpy(), shown["label"].to_numpy()
    assert len(shown) > 40_000
    assert abs(y.mean() - p.mean()) < _binomial_slack(p)
    for code in range(len(RELATIONS)):
        part = shown["relation"] == code
        if part.sum() > 500:
            pp = p[part]
            assert abs(y[part].mean() - pp.mean()) < _binomial_slack(pp), RELATIONS[code]
    # Closer relations click more: the affinities are ordered.
    ctr = shown.groupby("relation")["click_prob"].mean()
    assert list(ctr.sort_values(ascending=False).index) == sorted(ctr.index)


def test_relations_are_the_closest_granularity_of_any_interest(world):
    profile = user_profile(world, CONFIG, 3)
    m = world.leaves_per_l2
    topic = int(profile.topics[0])
    leaves = topic * m + np.arange(m)
    items_by_leaf = [np.flatnonzero(world.item_leaf == leaf)[0] for leaf in leaves]
    relation = relation_of(world, profile, np.array(items_by_leaf))
    favourite = (profile.leaf_share[0] >= 1 / m) | (profile.leaf_share[0] == profile.leaf_share[0].max())
    # A leaf of an interest's topic is "leaf" when it is a favourite of some interest, else "topic".
    assert all(r == 0 for r, f in zip(relation, favourite) if f)
    assert all(r in (0, 1) for r in relation)
    top = world.leaf_path[leaves[0], 0]
    interest_tops = set(world.leaf_path[profile.topics * m, 0].tolist())
    outside = np.flatnonzero(~np.isin(world.leaf_path[world.item_leaf, 0], list(interest_tops)))
    if outside.size:
        assert (relation_of(world, profile, outside[:20]) == 3).all()
    assert top in interest_tops


def test_impressions_hold_distinct_seconds_inside_the_world(shown):
    t0 = parse_utc_timestamp(CONFIG.start_date)
    assert shown["ts"].between(t0, t0 + CONFIG.days * 86_400 - 1).all()
    assert not shown.duplicated(["user_id", "ts"]).any()
    assert set(shown["behavior"]) == {"imp"} and set(shown["label"]) == {0, 1}


def test_exposure_mixes_popularity_and_interest(shown):
    share = (shown["exposure"] == 0).mean()
    assert abs(share - CONFIG.impressions.popularity_share) < 5 * math.sqrt(0.25 / len(shown))
    # Interest-driven exposures land on the user's interests far more often than popularity ones.
    near = shown["relation"] <= 1
    assert near[shown["exposure"] == 1].mean() > near[shown["exposure"] == 0].mean() + 0.3


def test_category_level_and_mislabel_share_are_what_the_config_says(world):
    items = item_frame(world)
    own = items["topic_l2"]  # category_level 2
    wrong = items["mislabelled"]
    assert (items.loc[~wrong, "category_id"] == own[~wrong]).all()
    assert (items.loc[wrong, "category_id"] != own[wrong]).all()
    assert items["category_id"].between(0, 6 * 4 - 1).all()
    n = len(items)
    assert abs(wrong.mean() - 0.2) < 5 * math.sqrt(0.2 * 0.8 / n)
    for level, column, nodes in ((1, "topic_l1", 6), (3, "topic_l3", 6 * 4 * 5)):
        other = item_frame(build_world(dataclasses.replace(
            CONFIG, catalogue=CatalogueNoiseConfig(category_level=level, mislabel_share=0.0))))
        assert (other["category_id"] == other[column]).all() and other["category_id"].max() < nodes


def test_noisy_texts_drop_or_swap_taxonomy_words_and_clean_texts_name_every_level(world):
    items = item_frame(world)
    noisy = items["text_noisy"]
    assert abs(noisy.mean() - 0.4) < 5 * math.sqrt(0.24 / len(items))
    for _, row in items[~noisy].head(200).iterrows():
        words = row["text"].replace(",", "").split()
        assert words[0] in L1_WORDS and words[1] in L2_WORDS and words[2] in L3_WORDS
    degraded = items[noisy]["text"].str.replace(",", "").str.split()
    taxonomy_words = set(L1_WORDS) | set(L2_WORDS) | set(L3_WORDS)
    counts = degraded.map(lambda ws: sum(w in taxonomy_words for w in ws))
    assert counts.mean() < 2.5  # words are missing
    assert any(any(w in set(SYNONYMS.values()) for w in ws) for ws in degraded)  # and some are synonyms
    assert set(SYNONYMS.values()).isdisjoint(taxonomy_words | set(STYLE_WORDS) | set(COLOUR_WORDS))


def test_dormant_interests_fall_silent_in_the_page_views_but_still_drive_clicks(world, shown):
    events = generate_user_events(world, CONFIG, USERS)
    truth = user_interest_frame(world, CONFIG, USERS)
    assert abs(truth.groupby("user_id")["dormant"].sum().mean() - round(0.4 * 5)) < 1e-9
    dormant = truth[truth["dormant"]].set_index(["user_id", "topic_l2"]).index
    late = events[events["ts"] >= dormant_from(CONFIG)]
    assert not late.set_index(["user_id", "interest"]).index.isin(dormant).any()
    early = events[events["ts"] < dormant_from(CONFIG)]
    assert early.set_index(["user_id", "interest"]).index.isin(dormant).any()
    # Late impressions of a dormant interest's topic still click like any interest's.
    path = world.leaf_path[world.item_leaf[shown["item_id"].to_numpy()]]
    late_imp = shown[(shown["ts"] >= dormant_from(CONFIG)).to_numpy()
                     & pd.MultiIndex.from_arrays([shown["user_id"].to_numpy(), path[:, 1]]).isin(dormant)]
    assert len(late_imp) > 200 and late_imp["relation"].isin([0, 1]).all()


def test_worlds_without_the_new_knobs_are_unchanged():
    """Catalogue noise, dormancy and impressions draw from their own streams: the older worlds stay."""
    plain = SyntheticConfig(seed=11, num_users=50, num_items=600, taxonomy=(4, 3, 3))
    world = build_world(plain)
    items = item_frame(world)
    assert (items["category_id"] == items["topic_l3"]).all() and not items["text_noisy"].any()
    noisy_world = build_world(dataclasses.replace(plain, catalogue=CatalogueNoiseConfig(text_noise_share=0.5)))
    np.testing.assert_array_equal(noisy_world.item_leaf, world.item_leaf)
    np.testing.assert_array_equal(noisy_world.item_popularity, world.item_popularity)
    events = generate_user_events(world, plain, np.arange(50))
    again = generate_user_events(noisy_world, plain, np.arange(50))
    np.testing.assert_array_equal(events.to_numpy(), again.to_numpy())
