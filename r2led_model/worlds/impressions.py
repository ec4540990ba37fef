"""Impressions with a known click probability: the oracle-scored part of the synthetic world.

The page-view log (`r2led_model.worlds.synthetic`) is what a user did of their own accord; impressions are
what a recommender showed them and whether they clicked. Each impression's click is drawn from a
probability that is written beside it, so every model can be compared with the oracle that knows it.

Exposure (what is shown) mixes the two forces of a production feed:

* popularity: with probability `popularity_share`, an item drawn from catalogue popularity (the Zipf
  skew that floods a popularity-driven feed, and a lifelong history, with head items);
* interest: otherwise one of the user's interests (by weight, dormant ones included, since a
  production recommender remembers them) and, by `interest_mix`, one of its favourite leaves,
  another leaf of its topic, or another topic under the same top topic; then an item of that leaf
  by popularity;
* community (`community_share`): an item of one of the user's latent communities, by popularity;
* new arrivals (`fresh_share`): an item launched within the last `fresh_days`, by popularity.

An item not launched yet at the impression's second is drawn again from where it came
(`synthetic.redraw_unlaunched`). Impressions fall on the days from `from_day` on.

The click probability depends on how the item relates to the user's interests, at the closest
granularity any interest reaches (a favourite leaf, the same mid-level topic, the same top topic,
none), on whether it is in one of the user's communities, plus the item's quality and the user's own
propensity to click:

    p = sigmoid(base_logit + affinity[relation] + community_affinity · [item in a user's community]
                + quality_std · q_item + b_user),  affinity[none] = 0

Dormant interests (silent in the page views after `synthetic.dormant_after`) count like any other:
only a model that reads the lifelong history can see them; `dormant_target` marks the impressions
whose relation only a dormant interest gives. Every draw comes from the user's own streams (the
community, new-arrival and launch draws each from their own, so a world without them is unchanged),
so any batching of users gives the same rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from r2led_model.config import SyntheticConfig, parse_utc_timestamp
from r2led_model.worlds.synthetic import (DrawSource, SyntheticWorld, UserProfile, community_pick, redraw_unlaunched,
                                          user_communities, user_profile)

RELATIONS = ("leaf", "topic", "top", "none")  # relation codes 0..3, closest first
EXPOSURES = ("popularity", "interest", "community", "new")
IMPRESSION_BEHAVIOR = "imp"
IMPRESSION_COLUMNS = ("user_id", "item_id", "category_id", "behavior", "ts", "label", "click_prob", "relation",
                      "exposure", "community", "dormant_target")
_COLUMN_TYPES = ("int64", "int64", "int64", "object", "int64", "int32", "float64", "int64", "int64", "bool", "bool")

_IMPRESSION_STREAM = 3  # after synthetic's world (0), user (1), catalogue (2) streams
# Sub-streams: the impressions' draws, the user's click propensity, community and new-arrival slots,
# redraws of items not launched yet.
_DRAWS, _BIAS, _SLOTS, _LAUNCH = 0, 1, 2, 3
_SECONDS_PER_DAY = 86_400


def favourite_leaves(world: SyntheticWorld, profile: UserProfile) -> np.ndarray:
    """(k, m) bool: the leaves of each interest's topic that get at least an even share of its visits
    (and always its most visited one)."""
    share = profile.leaf_share
    return (share >= 1.0 / share.shape[1]) | (share == share.max(axis=1, keepdims=True))


def relation_of(world: SyntheticWorld, profile: UserProfile, item_ids: np.ndarray,
                interests: np.ndarray | None = None) -> np.ndarray:
    """(n,) relation code (index into RELATIONS) of each item to the user's closest interest; with
    `interests` (k,) bool, to the closest of those interests only (none: 3)."""
    m = world.leaves_per_l2
    path = world.leaf_path[world.item_leaf[np.asarray(item_ids, dtype=np.int64)]]  # (n, 3)
    among = np.ones(profile.topics.size, dtype=bool) if interests is None else np.asarray(interests, dtype=bool)
    rows, cols = np.nonzero(favourite_leaves(world, profile) & among[:, None])
    favourite = profile.topics[rows] * m + cols
    interest_tops = world.leaf_path[profile.topics[among] * m, 0]
    return np.select([np.isin(path[:, 2], favourite), np.isin(path[:, 1], profile.topics[among]),
                      np.isin(path[:, 0], interest_tops)], [0, 1, 2], default=3).astype(np.int64)


def dormant_target(world: SyntheticWorld, profile: UserProfile, item_ids: np.ndarray,
                   relation: np.ndarray) -> np.ndarray:
    """(n,) bool: the item's relation comes from a dormant interest only (without the dormant
    interests it would be farther, e.g. "topic" becomes "none")."""
    if not profile.dormant.any():
        return np.zeros(np.asarray(item_ids).size, dtype=bool)
    return relation_of(world, profile, item_ids, ~profile.dormant) > relation


def user_bias(config: SyntheticConfig, user_id: int) -> float:
    """The user's own click propensity in logits, N(0, user_bias_std²), from its own stream."""
    rng = np.random.default_rng([config.seed, _IMPRESSION_STREAM, int(user_id), _BIAS])
    return float(config.impressions.user_bias_std * rng.standard_normal())


def in_user_communities(world: SyntheticWorld, config: SyntheticConfig, user_id: int,
                        item_ids: np.ndarray) -> np.ndarray:
    """(n,) bool: the item is in one of the user's communities."""
    return np.isin(world.item_community[np.asarray(item_ids, dtype=np.int64)], user_communities(config, user_id))


def click_probability(world: SyntheticWorld, config: SyntheticConfig, user_id: int,
                      item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (n,), relation codes (n,)) of the user clicking each item when shown it."""
    cfg = config.impressions
    profile = user_profile(world, config, user_id)
    relation = relation_of(world, profile, item_ids)
    affinity = np.r_[np.asarray(cfg.affinity, dtype=np.float64), 0.0][relation]
    logit = (cfg.base_logit + affinity + cfg.quality_std * world.item_quality[np.asarray(item_ids, np.int64)]
             + user_bias(config, user_id))
    if cfg.community_affinity:
        logit = logit + cfg.community_affinity * in_user_communities(world, config, user_id, item_ids)
    return 1.0 / (1.0 + np.exp(-logit)), relation


def _offset_pick(weights: np.ndarray, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Column index drawn from row `rows[i]` of the non-negative `weights` (k, m) with uniforms u (n,).

    Each row's CDF is offset by its row index, so one searchsorted serves every row.
    """
    k, m = weights.shape
    cdf = np.cumsum(weights, axis=1) / weights.sum(axis=1, keepdims=True)  # (k, m)
    cdf[:, -1] = 1.0
    flat = (cdf + np.arange(k)[:, None]).ravel()
    return np.clip(np.searchsorted(flat, rows + u, side="right") - rows * m, 0, m - 1)


def _shown_items(world: SyntheticWorld, config: SyntheticConfig, profile: UserProfile, count: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(item ids (count,), exposure codes (count,)): what the feed showed, in draw order."""
    cfg = config.impressions
    m = world.leaves_per_l2
    n1 = len(world.l1_names)
    n2 = world.topic_popularity.size // n1
    from_popularity = rng.random(count) < cfg.popularity_share
    items = np.empty(count, dtype=np.int64)
    n_pop = int(from_popularity.sum())
    items[from_popularity] = np.minimum(np.searchsorted(world.item_cdf, rng.random(n_pop), side="right"),
                                        world.item_cdf.size - 1)

    n_int = count - n_pop
    interest = np.minimum(np.searchsorted(np.cumsum(profile.weights), rng.random(n_int), side="right"),
                          profile.topics.size - 1)
    mix = np.cumsum(np.asarray(cfg.interest_mix, dtype=np.float64))
    target = np.minimum(np.searchsorted(mix / mix[-1], rng.random(n_int), side="right"), 2)  # 0 leaf, 1 topic, 2 top
    favourite = favourite_leaves(world, profile)
    others = ~favourite
    others[~others.any(axis=1)] = True  # an interest whose every leaf is a favourite: any leaf of the topic
    fav_local = _offset_pick(profile.leaf_share * favourite, interest, rng.random(n_int))
    other_local = _offset_pick(others.astype(np.float64), interest, rng.random(n_int))
    topic = profile.topics[interest]
    # A sibling topic under the same top topic (the topic itself when it has none), any of its leaves.
    step = rng.integers(1, max(n2, 2), n_int) if n2 > 1 else np.zeros(n_int, dtype=np.int64)
    sibling = (topic // n2) * n2 + (topic % n2 + step) % n2
    sibling_local = rng.integers(0, m, n_int)
    leaf = np.select([target == 0, target == 1],
                     [topic * m + fav_local, topic * m + other_local], default=sibling * m + sibling_local)
    slot = np.searchsorted(world.leaf_item_cdf, leaf + rng.random(n_int), side="right")
    items[~from_popularity] = world.leaf_items[np.minimum(slot, world.leaf_items.size - 1)]
    return items, np.where(from_popularity, 0, 1).astype(np.int64)


def _user_stream(config: SyntheticConfig, user_id: int, sub: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, _IMPRESSION_STREAM, int(user_id), sub])


def _community_and_fresh(world: SyntheticWorld, config: SyntheticConfig, user_id: int, items: np.ndarray,
                         exposure: np.ndarray, ts: np.ndarray) -> None:
    """Turn `community_share` of the shown items into community exposures and `fresh_share` into
    new-arrival ones (in place; one uniform per impression decides, from the user's own slot stream). A
    new-arrival slot with nothing launched in its window (early in the period) keeps its item."""
    cfg = config.impressions
    if cfg.community_share == 0 and cfg.fresh_share == 0:
        return
    rng = _user_stream(config, user_id, _SLOTS)
    u = rng.random(items.size)
    slot = np.flatnonzero(u < cfg.community_share)
    if slot.size:
        member_of = user_communities(config, user_id)
        items[slot] = community_pick(world, member_of[rng.integers(0, member_of.size, slot.size)],
                                     rng.random(slot.size))
        exposure[slot] = EXPOSURES.index("community")
    slot = np.flatnonzero((u >= cfg.community_share) & (u < cfg.community_share + cfg.fresh_share))
    if slot.size:
        # The fresh items launched in [ts - fresh_days, ts] are a contiguous run of the launch order;
        # one by popularity among them (cum: cumulative popularity over that order, from 0).
        lo = np.searchsorted(world.fresh_launch, ts[slot] - cfg.fresh_days * _SECONDS_PER_DAY, side="left")
        hi = np.searchsorted(world.fresh_launch, ts[slot], side="right")
        cum = world.fresh_popularity_cum
        target = cum[lo] + rng.random(slot.size) * (cum[hi] - cum[lo])
        pick = np.clip(np.searchsorted(cum, target, side="right") - 1, lo, np.maximum(hi - 1, lo))
        some = hi > lo
        items[slot[some]] = world.fresh_items[pick[some]]
        exposure[slot[some]] = EXPOSURES.index("new")


def _one_user(world: SyntheticWorld, config: SyntheticConfig, user_id: int, t0: int, t1: int) -> pd.DataFrame:
    rng = _user_stream(config, user_id, _DRAWS)
    count = max(1, int(rng.poisson(config.impressions.per_user)))
    # Distinct seconds: a (user, item, second) names one impression, which the oracle join relies on.
    ts = np.unique(rng.integers(t0 + config.impressions.from_day * _SECONDS_PER_DAY, t1, count))
    profile = user_profile(world, config, user_id)
    items, exposure = _shown_items(world, config, profile, ts.size, rng)
    _community_and_fresh(world, config, user_id, items, exposure, ts)
    if config.launch_share > 0:
        source = np.array([DrawSource.CATALOGUE, DrawSource.LEAF, DrawSource.COMMUNITY,
                           DrawSource.CATALOGUE])[exposure]
        items, launched = redraw_unlaunched(world, items, ts, source, _user_stream(config, user_id, _LAUNCH))
        items, exposure, ts = items[launched], exposure[launched], ts[launched]
    prob, relation = click_probability(world, config, user_id, items)
    label = (rng.random(ts.size) < prob).astype(np.int32)
    return pd.DataFrame({
        "user_id": np.full(ts.size, user_id, dtype=np.int64), "item_id": items,
        "category_id": world.item_category[items], "behavior": IMPRESSION_BEHAVIOR, "ts": ts.astype(np.int64),
        "label": label, "click_prob": prob, "relation": relation, "exposure": exposure,
        "community": in_user_communities(world, config, user_id, items),
        "dormant_target": dormant_target(world, profile, items, relation),
    })


def generate_user_impressions(world: SyntheticWorld, config: SyntheticConfig, user_ids: np.ndarray) -> pd.DataFrame:
    """Impressions of the given users (IMPRESSION_COLUMNS), sorted by (user_id, ts), with their truth:
    click_prob (the oracle), relation (index into RELATIONS), exposure (index into EXPOSURES), community
    (the item is in one of the user's communities) and dormant_target (only a dormant interest gives
    the relation)."""
    users = np.unique(np.asarray(user_ids, dtype=np.int64))
    t0 = parse_utc_timestamp(config.start_date, key="synthetic.start_date")
    t1 = t0 + config.days * _SECONDS_PER_DAY
    parts = [_one_user(world, config, user_id, t0, t1) for user_id in users.tolist()]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(IMPRESSION_COLUMNS, _COLUMN_TYPES)})
    return pd.concat(parts, ignore_index=True)
