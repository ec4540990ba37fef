"""The oracle-scored world: click probabilities from the seed, labels that follow them, and a catalogue
whose category level, mislabel share and text noise are what the config says."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from r2led_model.config import CatalogueNoiseConfig, ImpressionConfig, SyntheticConfig, parse_utc_timestamp
from r2led_model.worlds.impressions import (EXPOSURES, RELATIONS, click_probability, generate_user_impressions,
                                            relation_of, user_bias)
from r2led_model.worlds.synthetic import (COLOUR_WORDS, COMMUNITY_INTEREST, L1_WORDS, L2_WORDS, L3_WORDS, STYLE_WORDS,
                                          SYNONYMS, build_world, dormant_from, generate_user_events, item_frame,
                                          user_communities, user_interest_frame, user_profile)

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


# --------------------------------------------------------------------------------------------------
# The lifelong world's plants: latent communities, late launches with a new-arrivals slot, text noise
# by top topic, impressions from a given day, and the per-impression truth that segments them.
# --------------------------------------------------------------------------------------------------

LIFELONG = SyntheticConfig(
    seed=9, num_users=300, events_per_user=150, num_items=3000, taxonomy=(6, 4, 5), interests_per_user=5,
    start_date="2024-01-01", days=60, dormant_share=0.4, dormant_after=0.3,
    communities=10, community_size=60, communities_per_user=2, community_share=0.2,
    launch_share=0.3, launch_days=20,
    catalogue=CatalogueNoiseConfig(category_level=1, text_noise_share=0.1, noisy_top_share=0.5,
                                   noisy_top_text_noise_share=0.7),
    impressions=ImpressionConfig(enabled=True, per_user=100, from_day=30, community_share=0.2,
                                 community_affinity=1.0, fresh_share=0.15, fresh_days=5))
LIFELONG_USERS = np.arange(LIFELONG.num_users)


@pytest.fixture(scope="module")
def lifelong_world():
    return build_world(LIFELONG)


@pytest.fixture(scope="module")
def lifelong_events(lifelong_world):
    return generate_user_events(lifelong_world, LIFELONG, LIFELONG_USERS)


@pytest.fixture(scope="module")
def lifelong_shown(lifelong_world):
    return generate_user_impressions(lifelong_world, LIFELONG, LIFELONG_USERS)


def _within(observed: float, expected: float, n: int, sds: float = 4.0) -> bool:
    """`observed` share of n Bernoulli(expected) draws lies within `sds` binomial standard errors."""
    return abs(observed - expected) < sds * math.sqrt(expected * (1 - expected) / n)


def test_communities_are_disjoint_popularity_drawn_sets_across_topics(lifelong_world):
    items = item_frame(lifelong_world)
    member = items[items["community_id"] >= 0]
    assert member.groupby("community_id").size().tolist() == [60] * 10  # disjoint: each item in one
    # Across the taxonomy: every community spans several top topics.
    assert member.groupby("community_id")["topic_l1"].nunique().min() >= 3
    # Drawn by popularity: community items hold far more popularity than as many random items would.
    assert member["popularity"].sum() > 3 * len(member) / len(items)
    memberships = [user_communities(LIFELONG, u) for u in range(200)]
    assert all(m.size == 2 and np.unique(m).size == 2 and m.max() < 10 for m in memberships)
    assert len({tuple(m) for m in memberships}) > 20  # users differ in their communities


def test_a_community_share_of_page_views_visits_the_users_communities(lifelong_world, lifelong_events):
    events = lifelong_events
    visit = (events["interest"] == COMMUNITY_INTEREST).to_numpy()
    assert _within(visit.mean(), LIFELONG.community_share, len(events))
    item_community = lifelong_world.item_community[events["item_id"].to_numpy()]
    member_of = {u: set(user_communities(LIFELONG, u).tolist()) for u in LIFELONG_USERS.tolist()}
    assert all(c in member_of[u] for u, c in zip(events["user_id"].to_numpy()[visit], item_community[visit]))
    # Co-visitation shows the communities: a member views a community's items far more than a non-member.
    in_community = item_community >= 0
    rows = pd.DataFrame({"user_id": events["user_id"].to_numpy()[in_community], "community": item_community[in_community]})
    rows["member"] = [c in member_of[u] for u, c in zip(rows["user_id"], rows["community"])]
    per_pair = rows.groupby(["user_id", "community", "member"]).size().reset_index(name="views")
    members = per_pair[per_pair["member"]]["views"].sum() / (LIFELONG.num_users * 2)
    others = per_pair[~per_pair["member"]]["views"].sum() / (LIFELONG.num_users * 8)
    assert members > 2 * others  # ~3x here: community items are the head, which everyone views too


def test_community_impressions_and_their_click_lift(lifelong_world, lifelong_shown):
    shown = lifelong_shown
    community_slot = (shown["exposure"] == EXPOSURES.index("community")).to_numpy()
    # The new-arrivals slots early in the window keep their item, so only the community share is exact.
    assert _within(community_slot.mean(), LIFELONG.impressions.community_share, len(shown))
    for user in (0, 41, 299):
        rows = shown[shown["user_id"] == user]
        member = np.isin(lifelong_world.item_community[rows["item_id"]], user_communities(LIFELONG, user))
        np.testing.assert_array_equal(rows["community"], member)
        prob, relation = click_probability(lifelong_world, LIFELONG, user, rows["item_id"].to_numpy())
        cfg = LIFELONG.impressions
        logit = (cfg.base_logit + np.r_[cfg.affinity, 0.0][relation] + cfg.community_affinity * member
                 + cfg.quality_std * lifelong_world.item_quality[rows["item_id"]] + user_bias(LIFELONG, user))
        np.testing.assert_allclose(rows["click_prob"], 1 / (1 + np.exp(-logit)), rtol=1e-12)
    assert shown.loc[community_slot, "community"].all()


def test_no_item_is_seen_before_its_launch(lifelong_world, lifelong_events, lifelong_shown):
    items = item_frame(lifelong_world)
    t0, t1 = parse_utc_timestamp(LIFELONG.start_date), parse_utc_timestamp(LIFELONG.start_date) + 60 * 86_400
    late = (items["launch_ts"] > t0).to_numpy()
    assert _within(late.mean(), LIFELONG.launch_share, len(items))
    assert items.loc[late, "launch_ts"].between(t1 - LIFELONG.launch_days * 86_400, t1 - 1).all()
    assert (items.loc[~late, "launch_ts"] == t0).all()
    launch = items["launch_ts"].to_numpy()
    for frame in (lifelong_events, lifelong_shown):
        assert (frame["ts"].to_numpy() >= launch[frame["item_id"].to_numpy()]).all()
    # Late items are seen once launched: their share of the page views grows as more of them are out.
    ts, of_late = lifelong_events["ts"].to_numpy(), late[lifelong_events["item_id"].to_numpy()]
    window = t1 - LIFELONG.launch_days * 86_400
    early, final = (ts >= window) & (ts < window + 5 * 86_400), ts >= t1 - 5 * 86_400
    assert of_late[final].mean() > 2 * of_late[early].mean() > 0


def test_new_arrival_slots_show_items_launched_within_fresh_days(lifelong_world, lifelong_shown):
    shown = lifelong_shown
    fresh = shown[shown["exposure"] == EXPOSURES.index("new")]
    age = fresh["ts"].to_numpy() - lifelong_world.item_launch[fresh["item_id"].to_numpy()]
    assert len(fresh) > 1000 and (age >= 0).all() and (age <= LIFELONG.impressions.fresh_days * 86_400).all()
    # Late in the window every new-arrival slot finds a fresh item, so there its share is exact.
    t1 = parse_utc_timestamp(LIFELONG.start_date) + LIFELONG.days * 86_400
    last_days = shown[shown["ts"] >= t1 - 10 * 86_400]
    assert _within((last_days["exposure"] == EXPOSURES.index("new")).mean(), LIFELONG.impressions.fresh_share,
                   len(last_days))


def test_impressions_fall_from_from_day_on(lifelong_shown):
    t0 = parse_utc_timestamp(LIFELONG.start_date)
    assert lifelong_shown["ts"].min() >= t0 + LIFELONG.impressions.from_day * 86_400
    assert len(lifelong_shown) == pytest.approx(LIFELONG.num_users * LIFELONG.impressions.per_user, rel=0.05)


def test_text_noise_differs_by_top_topic(lifelong_world):
    items = item_frame(lifelong_world)
    by_top = items.groupby("topic_l1")["top_text_noise"].first()
    assert sorted(by_top.tolist()) == [0.1] * 3 + [0.7] * 3  # round(0.5 · 6) noisy top topics
    assert (items.groupby("topic_l1")["top_text_noise"].nunique() == 1).all()
    for level, share in ((0.7, 0.7), (0.1, 0.1)):
        part = items[items["top_text_noise"] == level]
        assert _within(part["text_noisy"].mean(), share, len(part))


def test_dormant_target_marks_relations_only_a_dormant_interest_gives(lifelong_world, lifelong_shown):
    shown = lifelong_shown
    assert 0.02 < shown["dormant_target"].mean() < 0.5
    for user in range(0, 300, 37):
        rows = shown[shown["user_id"] == user]
        profile = user_profile(lifelong_world, LIFELONG, user)
        active = relation_of(lifelong_world, profile, rows["item_id"].to_numpy(), ~profile.dormant)
        np.testing.assert_array_equal(rows["dormant_target"], active > rows["relation"].to_numpy())
        if not profile.dormant.any():
            assert not rows["dormant_target"].any()
    # A dormant target's topic is one of the user's dormant interests' (or under one's top topic).
    truth = user_interest_frame(lifelong_world, LIFELONG, LIFELONG_USERS)
    dormant = set(zip(truth.loc[truth["dormant"], "user_id"], truth.loc[truth["dormant"], "topic_l2"]))
    close = shown[shown["dormant_target"] & shown["relation"].isin([0, 1])]
    topics = lifelong_world.leaf_path[lifelong_world.item_leaf[close["item_id"].to_numpy()], 1]
    assert all((u, t) in dormant for u, t in zip(close["user_id"], topics))
