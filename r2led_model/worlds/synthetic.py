"""A synthetic shopping world with planted structure, the ground truth for R2LED benchmarks.

The world (taxonomy, items, text, popularity) depends only on the config. Each user's events
depend only on ``(seed, user_id)`` and the world, so any batching of user ids (e.g. Spark
``mapInPandas``) produces the same rows. What is planted:

* a 3-level taxonomy ``l1 -> l2 -> leaf`` with item text built from one real word per level,
  so a sentence encoder (and semantic IDs) can recover it;
* Zipf item popularity over a seeded permutation of items;
* users with a few long-lived level-2 interests; sessions of geometric length each follow one
  interest and never the previous session's, so an interest returns only after a gap: it is
  missing from the recent window but present in the lifelong history; with `dormant_share`, some
  interests stop appearing in the log after `dormant_after` of the days (`r2led_model.worlds.impressions`
  still lets them drive clicks);
* a catalogue that is not the taxonomy (`synthetic.catalogue`): the `category_id` a model sees names
  a node at a configurable level, a share of items carry another node's category, and a share of
  item texts lose taxonomy words or name them by a synonym; with `noisy_top_share`, the titles of
  some top topics are degraded far more often than the rest (`top_text_noise` per item);
* latent communities (`synthetic.communities`) that cut across the taxonomy: disjoint sets of items
  drawn by popularity from the whole catalogue; each user belongs to a few, and `community_share`
  of their page views are of those communities' items (`interest` -2), so co-visitation reveals
  them while item text does not;
* items launched late (`synthetic.launch_share`): launched uniformly over the last `launch_days`
  days, and seen in no page view before (`launch_ts` per item). A draw that lands on an item not
  yet launched is drawn again from where it came (the leaf, the community, the catalogue).

Each of these draws from its own random stream, so a world with the knob off is byte-identical to a
world generated before the knob existed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from r2led_model.config import SyntheticConfig, parse_utc_timestamp

log = logging.getLogger(__name__)

# Vocabulary. The pools are disjoint so a word identifies its level (tests check this).
L1_WORDS = (
    "kitchen garden camping fitness office bathroom bedroom automotive pets baby music photography "
    "cycling fishing gaming travel crafts beauty tools laundry audio school party winter"
).split()
L2_WORDS = (
    "lantern kettle blender toaster skillet spatula ladle colander grater whisk teapot mug tumbler "
    "thermos cooler tent hammock backpack compass stove shovel rake hose sprinkler planter trowel "
    "pruner wheelbarrow dumbbell kettlebell treadmill mat stapler binder notebook pen pencil marker "
    "folder calendar desk chair lamp pillow blanket mattress curtain towel mirror faucet shower soap "
    "razor brush comb dryer helmet glove jacket boot sandal sneaker sock scarf umbrella suitcase "
    "wallet camera lens tripod speaker headphone microphone keyboard mouse monitor router charger "
    "cable battery drone guitar violin drum piano ukulele harmonica leash collar aquarium feeder "
    "stroller crib bottle rattle bicycle pump saddle chain reel rod bait hook kayak paddle canoe "
    "puzzle controller console candle vase basket hamper iron detergent hanger ladder drill hammer "
    "wrench screwdriver saw clamp toolbox sander grill thermometer scale clock radio projector "
    "printer scanner heater fan humidifier purifier vacuum mop broom bucket sponge"
).split()
L3_WORDS = (
    "rechargeable cordless stainless bamboo ceramic wooden leather cotton wool silicone titanium "
    "aluminum copper brass glass plastic carbon insulated waterproof foldable portable adjustable "
    "wireless digital analog electric manual magnetic inflatable collapsible ergonomic ventilated "
    "padded reversible heated solar ultralight rugged telescopic stackable nonstick enamel granite "
    "marble linen velvet denim canvas nylon polyester mesh fleece suede rubber foam hybrid folding "
    "rolling hanging tabletop handheld countertop freestanding tactical marine alpine arctic "
    "tropical desert urban rustic nautical retro industrial minimalist professional beginner junior "
    "toddler outdoor indoor overhead underwater smart programmable automatic dual triple single "
    "double modular convertible expandable detachable universal compostable organic recycled "
    "biodegradable antibacterial hypoallergenic scented unscented quiet silent turbo steam infrared "
    "ultrasonic bluetooth mechanical hydraulic pneumatic spring clamping locking sliding rotating "
    "swivel tilting reclining weighted cushioned quilted woven knitted embroidered printed engraved "
    "polished brushed matte glossy frosted tinted"
).split()
STYLE_WORDS = (
    "compact classic modern vintage premium deluxe basic elegant sleek sturdy lightweight durable "
    "slim large small mini"
).split()
COLOUR_WORDS = "red blue green black white grey silver gold pink purple orange yellow navy beige brown teal".split()

# Synonyms for text noise: a degraded text may name a node by one of these instead of its own word.
# None of them is in a level's pool, so a synonym never reads as another node's name.
SYNONYMS = {
    "kitchen": "cookware", "garden": "yard", "camping": "outdoors", "fitness": "workout", "office": "stationery",
    "bathroom": "bath", "bedroom": "sleep", "automotive": "car", "pets": "animal", "baby": "infant",
    "music": "instruments", "photography": "photo", "cycling": "bike", "fishing": "angling", "gaming": "games",
    "travel": "luggage", "crafts": "hobby", "beauty": "cosmetics", "tools": "hardware", "laundry": "washing",
    "audio": "sound", "school": "classroom", "party": "celebration", "winter": "snow",
    "lantern": "lamplight", "kettle": "boiler", "skillet": "frypan", "mug": "cup", "tent": "shelter",
    "backpack": "rucksack", "stove": "burner", "shovel": "spade", "hose": "tubing", "dumbbell": "weight",
    "notebook": "journal", "pen": "ballpoint", "chair": "seat", "lamp": "light", "pillow": "cushion",
    "blanket": "throw", "towel": "washcloth", "jacket": "coat", "boot": "footwear", "sneaker": "trainer",
    "suitcase": "case", "camera": "camcorder", "speaker": "loudspeaker", "headphone": "earphone",
    "monitor": "display", "charger": "adapter", "bicycle": "cycle", "kayak": "boat", "puzzle": "jigsaw",
    "console": "gamebox", "vase": "urn", "drill": "driver", "hammer": "mallet", "grill": "barbecue",
    "printer": "copier", "heater": "warmer", "vacuum": "hoover", "broom": "sweeper",
    "cordless": "wirefree", "stainless": "steel", "wooden": "timber", "waterproof": "watertight",
    "foldable": "fold-up", "portable": "travel-size", "wireless": "untethered", "electric": "powered",
    "ergonomic": "comfort", "padded": "cushy", "rugged": "tough", "smart": "connected", "quiet": "hushed",
}
_TEXT_DROP, _TEXT_SWAP = 1 / 3, 2 / 3  # a degraded text's word: dropped below 1/3, a synonym below 2/3

_WORLD_STREAM, _USER_STREAM = 0, 1  # keep world and user random streams apart
# Later streams, so a world without catalogue noise, dormancy, communities, launches or noisy top
# topics is byte-identical to older worlds. 3 is r2led_model.worlds.impressions'.
_CATALOGUE_STREAM, _DORMANT_STREAM, _COMMUNITY_STREAM, _LAUNCH_STREAM, _NOISY_TOP_STREAM = 2, 4, 5, 6, 7
_MEMBERSHIP, _VISITS = 0, 1  # sub-streams of a user's community stream
# Page-view `interest` codes besides a topic id: popularity noise, a visit to one of the user's communities.
NOISE_INTEREST, COMMUNITY_INTEREST = -1, -2
# Draws that land on an item not launched yet are drawn again (rejection) this often; the few left then
# (a leaf whose popularity is mostly one late item) get an exact draw among the launched items.
_LAUNCH_REDRAWS = 8
_SECONDS_PER_DAY = 86_400
_COUNT_SIGMA = 0.6  # log-normal spread of events per user
_INTEREST_ALPHA = 1.0  # Dirichlet concentration of a user's interest weights
_LEAF_ALPHA = 0.5  # < 1: each interest prefers a few leaves of its topic
_GAP_MEDIAN_S, _GAP_SIGMA = 30.0, 1.0  # in-session gaps: seconds to minutes


@dataclass(frozen=True, eq=False)
class SyntheticWorld:
    """Items, taxonomy and sampling tables; everything a user's events are drawn from."""

    item_leaf: np.ndarray  # (num_items,) int64 global leaf id per item (item_id == index)
    leaf_path: np.ndarray  # (num_leaves, 3) int64 (l1, l2, l3) per leaf
    item_popularity: np.ndarray  # (num_items,) float64, sums to 1
    item_text: tuple[str, ...]
    l1_names: tuple[str, ...]  # word(s) of each level-1 node
    l2_names: tuple[str, ...]  # word(s) of each level-2 node (global l2 id)
    l3_names: tuple[str, ...]  # word(s) of each leaf (global leaf id)
    leaves_per_l2: int
    topic_popularity: np.ndarray  # (num_l2,) summed item popularity per level-2 topic
    leaf_popularity: np.ndarray  # (num_leaves,) summed item popularity per leaf
    leaf_items: np.ndarray  # (num_items,) item ids grouped by leaf
    leaf_item_cdf: np.ndarray  # (num_items,) leaf id + within-leaf popularity CDF, aligned to leaf_items
    item_cdf: np.ndarray  # (num_items,) catalogue popularity CDF, for noise
    item_category: np.ndarray  # (num_items,) int64 the catalogue's category: a node at the configured level
    item_mislabelled: np.ndarray  # (num_items,) bool, category is not the item's own node
    item_text_noisy: np.ndarray  # (num_items,) bool, text degraded
    item_quality: np.ndarray  # (num_items,) float64 standard-normal quality (scaled by the impression config)
    top_text_noise: np.ndarray  # (n1,) float64 text noise share of each top topic
    item_community: np.ndarray  # (num_items,) int64 the item's community, -1 for none
    community_items: np.ndarray  # (C·S,) item ids grouped by community
    community_item_cdf: np.ndarray  # (C·S,) community id + within-community popularity CDF, aligned to community_items
    item_launch: np.ndarray  # (num_items,) int64 epoch second from which the item can be seen
    fresh_items: np.ndarray  # (F,) late-launched item ids, by launch time
    fresh_launch: np.ndarray  # (F,) their launch seconds, ascending
    fresh_popularity_cum: np.ndarray  # (F + 1,) cumulative popularity over fresh_items, from 0


def _node_names(pool: list[str], count: int, rng: np.random.Generator) -> tuple[str, ...]:
    """A distinct word per node from a shuffled pool; a numeric suffix once the pool runs out."""
    words = [pool[i] for i in rng.permutation(len(pool))]
    return tuple(words[i % len(words)] + (f" {i // len(words) + 1}" if i >= len(words) else "")
                 for i in range(count))


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def build_world(config: SyntheticConfig) -> SyntheticWorld:
    """Taxonomy, item-to-leaf assignment, Zipf popularity and item text, all from the seed."""
    rng = np.random.default_rng([config.seed, _WORLD_STREAM])
    n1, n2, n3 = config.taxonomy
    num_leaves, num_items = n1 * n2 * n3, config.num_items
    leaf = np.arange(num_leaves, dtype=np.int64)
    leaf_path = np.stack([leaf // (n2 * n3), leaf // n3, leaf], axis=1)

    # One item per leaf first (so none is empty), the rest uniformly; shuffled so ids carry no order.
    if num_items >= num_leaves:
        assigned = np.concatenate([leaf, rng.integers(0, num_leaves, num_items - num_leaves)])
    else:
        assigned = np.arange(num_items, dtype=np.int64) % num_leaves
    item_leaf = rng.permutation(assigned).astype(np.int64)

    rank = np.empty(num_items, dtype=np.float64)
    rank[rng.permutation(num_items)] = np.arange(1, num_items + 1)
    popularity = rank ** -config.zipf_exponent
    popularity /= popularity.sum()

    l1_names = _node_names(L1_WORDS, n1, rng)
    l2_names = _node_names(L2_WORDS, n1 * n2, rng)
    l3_names = _node_names(L3_WORDS, num_leaves, rng)
    styles = rng.integers(0, len(STYLE_WORDS), num_items)
    colours = rng.integers(0, len(COLOUR_WORDS), num_items)
    path = leaf_path[item_leaf]

    catalogue_rng = np.random.default_rng([config.seed, _CATALOGUE_STREAM])
    noise = config.catalogue
    top_noise = _top_text_noise(config)
    noisy_text = catalogue_rng.random(num_items) < top_noise[path[:, 0]]
    word_fate = catalogue_rng.random((num_items, 3))  # (items, 3 levels): drop / synonym / keep
    word_fate[~noisy_text] = 1.0
    names = (l1_names, l2_names, l3_names)
    text = tuple(
        " ".join(w for w in (_noisy_word(names[level][node], fate)
                             for level, (node, fate) in enumerate(zip(nodes, fates))) if w)
        + f", {STYLE_WORDS[s]} {COLOUR_WORDS[k]}"
        for nodes, fates, s, k in zip(path.tolist(), word_fate.tolist(), styles.tolist(), colours.tolist())
    )
    level_nodes = (n1, n1 * n2, num_leaves)[noise.category_level - 1]
    own_category = path[:, noise.category_level - 1]
    mislabelled = (catalogue_rng.random(num_items) < noise.mislabel_share) & (level_nodes > 1)
    # Another node of the level, uniformly: shift by 1..nodes-1 so it is never the item's own.
    shift = catalogue_rng.integers(1, max(level_nodes, 2), num_items)
    category = np.where(mislabelled, (own_category + shift) % level_nodes, own_category).astype(np.int64)
    quality = catalogue_rng.standard_normal(num_items)

    # Two-stage sampling tables: pick a leaf, then an item inside it by popularity. Each leaf's
    # CDF is offset by its id, so one searchsorted over all items serves every leaf at once.
    leaf_popularity = np.bincount(item_leaf, weights=popularity, minlength=num_leaves)
    leaf_items = np.argsort(item_leaf, kind="stable").astype(np.int64)
    sorted_leaf, sorted_pop = item_leaf[leaf_items], popularity[leaf_items]
    within = np.cumsum(sorted_pop) - np.repeat(np.cumsum(leaf_popularity) - leaf_popularity,
                                               np.bincount(item_leaf, minlength=num_leaves))
    within /= leaf_popularity[sorted_leaf]
    within[np.r_[sorted_leaf[1:] != sorted_leaf[:-1], True]] = 1.0  # exact end of each leaf
    item_cdf = np.cumsum(popularity)
    item_cdf[-1] = 1.0
    community, community_items, community_cdf = _communities(config, popularity)
    launch = _launch_times(config, num_items)
    fresh = np.flatnonzero(launch > parse_utc_timestamp(config.start_date))  # launched after the start
    fresh = fresh[np.argsort(launch[fresh], kind="stable")]
    log.debug("synthetic world: %d items, %d leaves", num_items, num_leaves)
    return SyntheticWorld(
        item_leaf=_frozen(item_leaf), leaf_path=_frozen(leaf_path), item_popularity=_frozen(popularity),
        item_text=text, l1_names=l1_names, l2_names=l2_names, l3_names=l3_names, leaves_per_l2=n3,
        topic_popularity=_frozen(np.bincount(leaf_path[:, 1], weights=leaf_popularity, minlength=n1 * n2)),
        leaf_popularity=_frozen(leaf_popularity), leaf_items=_frozen(leaf_items),
        leaf_item_cdf=_frozen(within + sorted_leaf), item_cdf=_frozen(item_cdf),
        item_category=_frozen(category), item_mislabelled=_frozen(mislabelled),
        item_text_noisy=_frozen(noisy_text), item_quality=_frozen(quality), top_text_noise=_frozen(top_noise),
        item_community=_frozen(community), community_items=_frozen(community_items),
        community_item_cdf=_frozen(community_cdf), item_launch=_frozen(launch), fresh_items=_frozen(fresh),
        fresh_launch=_frozen(launch[fresh]), fresh_popularity_cum=_frozen(np.r_[0.0, np.cumsum(popularity[fresh])]),
    )


def _top_text_noise(config: SyntheticConfig) -> np.ndarray:
    """(n1,) the text noise share of each top topic: round(noisy_top_share · n1) of them, chosen
    uniformly, get `noisy_top_text_noise_share`; the rest `text_noise_share`."""
    noise, n1 = config.catalogue, config.taxonomy[0]
    shares = np.full(n1, noise.text_noise_share, dtype=np.float64)
    noisy = int(round(noise.noisy_top_share * n1))
    if noisy:
        rng = np.random.default_rng([config.seed, _NOISY_TOP_STREAM])
        shares[rng.permutation(n1)[:noisy]] = noise.noisy_top_text_noise_share
    return shares


def _communities(config: SyntheticConfig, popularity: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(item_community (num_items,), community_items (C·S,), community_item_cdf (C·S,)).

    C·S distinct items drawn by popularity (Gumbel top-k) and dealt to the C communities at random,
    so every community holds head and tail items of every topic. The CDF of community c is offset by
    c, so one searchsorted draws an item of each visit's community by popularity.
    """
    count, size = config.communities, config.community_size
    item_community = np.full(popularity.size, -1, dtype=np.int64)
    if count == 0:
        return item_community, np.empty(0, np.int64), np.empty(0, np.float64)
    rng = np.random.default_rng([config.seed, _COMMUNITY_STREAM])
    keys = np.log(popularity) + rng.gumbel(size=popularity.size)
    members = rng.permutation(np.argsort(-keys, kind="stable")[:count * size]).reshape(count, size)  # (C, S)
    item_community[members] = np.arange(count)[:, None]
    weight = popularity[members]  # (C, S)
    cdf = np.cumsum(weight, axis=1) / weight.sum(axis=1, keepdims=True)
    cdf[:, -1] = 1.0
    return item_community, members.ravel().astype(np.int64), (cdf + np.arange(count)[:, None]).ravel()


def _launch_times(config: SyntheticConfig, num_items: int) -> np.ndarray:
    """(num_items,) launch second of each item: the period's start, or for `launch_share` of the
    items a uniform second of its last `launch_days` days."""
    t0 = parse_utc_timestamp(config.start_date, key="synthetic.start_date")
    launch = np.full(num_items, t0, dtype=np.int64)
    if config.launch_share > 0:
        rng = np.random.default_rng([config.seed, _LAUNCH_STREAM])
        late = rng.random(num_items) < config.launch_share
        t1 = t0 + config.days * _SECONDS_PER_DAY
        launch[late] = rng.integers(t1 - config.launch_days * _SECONDS_PER_DAY, t1, int(late.sum()))
    return launch


def _noisy_word(name: str, fate: float) -> str:
    """A node's name in a degraded text: dropped, swapped for its synonym (when it has one), or kept."""
    if fate < _TEXT_DROP:
        return ""
    if fate < _TEXT_SWAP:
        word, _, suffix = name.partition(" ")
        return SYNONYMS.get(word, word) + (f" {suffix}" if suffix else "")
    return name


def item_frame(world: SyntheticWorld) -> pd.DataFrame:
    """One row per item: id, the catalogue's category, text, the planted taxonomy path, popularity,
    quality, whether the category or the text was degraded, the text noise share of its top topic,
    its community (-1: none) and its launch second."""
    path = world.leaf_path[world.item_leaf]
    return pd.DataFrame({
        "item_id": np.arange(world.item_leaf.size, dtype=np.int64),
        "category_id": world.item_category.astype(np.int64),
        "text": pd.Series(world.item_text, dtype=object),
        "topic_l1": path[:, 0], "topic_l2": path[:, 1], "topic_l3": path[:, 2],
        "popularity": world.item_popularity.astype(np.float64),
        "quality": world.item_quality.astype(np.float64),
        "mislabelled": world.item_mislabelled.astype(bool),
        "text_noisy": world.item_text_noisy.astype(bool),
        "top_text_noise": world.top_text_noise[path[:, 0]].astype(np.float64),
        "community_id": world.item_community.astype(np.int64),
        "launch_ts": world.item_launch.astype(np.int64),
    })


def _user_rng(config: SyntheticConfig, user_id: int) -> np.random.Generator:
    if user_id < 0:
        raise ValueError(f"user ids must be non-negative, got {user_id}")
    return np.random.default_rng([config.seed, _USER_STREAM, int(user_id)])


def _user_profile(world: SyntheticWorld, config: SyntheticConfig,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Interests (l2 topics, weight-descending), their weights, and per-interest leaf CDFs.

    Drawn first from the user's stream, so the truth frame and the events agree.
    """
    pop = world.topic_popularity
    k = int(min(config.interests_per_user, np.count_nonzero(pop)))
    # Gumbel top-k: k distinct topics, drawn in proportion to popularity; empty topics never.
    keys = np.log(pop, out=np.full(pop.size, -np.inf), where=pop > 0) + rng.gumbel(size=pop.size)
    topics = np.argsort(-keys, kind="stable")[:k].astype(np.int64)
    weights = rng.dirichlet(np.full(k, _INTEREST_ALPHA))
    order = np.argsort(-weights, kind="stable")
    topics, weights = topics[order], weights[order]

    m = world.leaves_per_l2
    preference = rng.dirichlet(np.full(m, _LEAF_ALPHA), size=k) + 1e-9  # never all-zero
    prob = preference * world.leaf_popularity[topics[:, None] * m + np.arange(m)]
    cdf = np.cumsum(prob, axis=1) / prob.sum(axis=1, keepdims=True)
    last = m - 1 - np.argmax(prob[:, ::-1] > 0, axis=1)  # past the last non-empty leaf: exactly 1
    cdf[np.arange(m)[None, :] >= last[:, None]] = 1.0
    return topics, weights, cdf


@dataclass(frozen=True)
class UserProfile:
    """A user's planted interests, heaviest first: level-2 topics, weights, and per-interest leaf shares."""

    topics: np.ndarray  # (k,) global level-2 topic ids
    weights: np.ndarray  # (k,) sums to 1
    leaf_share: np.ndarray  # (k, leaves_per_l2) how the interest's visits spread over its topic's leaves
    dormant: np.ndarray  # (k,) bool


def user_profile(world: SyntheticWorld, config: SyntheticConfig, user_id: int) -> UserProfile:
    """The same profile the user's page views are drawn from."""
    topics, weights, cdf = _user_profile(world, config, _user_rng(config, user_id))
    share = np.diff(cdf, axis=1, prepend=0.0)  # (k, m) CDF → per-leaf probability
    return UserProfile(topics=topics, weights=weights, leaf_share=share,
                       dormant=dormant_interests(config, user_id, topics.size))


def user_communities(config: SyntheticConfig, user_id: int) -> np.ndarray:
    """(c,) the user's communities, ascending: `communities_per_user` of them (at most all), uniformly,
    from the user's own community stream; empty without communities."""
    if config.communities == 0:
        return np.empty(0, dtype=np.int64)
    rng = np.random.default_rng([config.seed, _COMMUNITY_STREAM, int(user_id), _MEMBERSHIP])
    count = min(config.communities_per_user, config.communities)
    return np.sort(rng.permutation(config.communities)[:count]).astype(np.int64)


def community_pick(world: SyntheticWorld, communities: np.ndarray, u: np.ndarray) -> np.ndarray:
    """(n,) an item of each of `communities` (n,), by popularity inside it, from uniforms `u` (n,)."""
    slot = np.searchsorted(world.community_item_cdf, communities + u, side="right")
    return world.community_items[np.minimum(slot, world.community_items.size - 1)]


class DrawSource:
    """Where a drawn item came from, so a redraw (of an item not launched yet) comes from the same place."""

    CATALOGUE, LEAF, COMMUNITY = 0, 1, 2


def redraw_unlaunched(world: SyntheticWorld, items: np.ndarray, ts: np.ndarray, source: np.ndarray,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(items (n,), launched (n,) bool): each item seen before its launch replaced by a draw from its
    `source` (DrawSource: the catalogue, the item's leaf, the item's community) by popularity among the
    items launched by `ts`; `launched` is False where that place has none yet (the caller drops it).

    items, ts, source: (n,). Rejection first (`_LAUNCH_REDRAWS` rounds of drawing again from the
    source), then an exact draw for what is left; both give the popularity distribution restricted to
    launched items. No uniform is drawn when every item is already launched, so a world without late
    launches is unchanged.
    """
    items = np.array(items, dtype=np.int64)
    for _ in range(_LAUNCH_REDRAWS):
        late = np.flatnonzero(ts < world.item_launch[items])
        if late.size == 0:
            return items, np.ones(items.size, dtype=bool)
        items[late] = _draw_from_source(world, items[late], source[late], rng.random(late.size))
    late = np.flatnonzero(ts < world.item_launch[items])
    for index in late.tolist():
        candidates = _source_items(world, int(items[index]), int(source[index]))
        weight = world.item_popularity[candidates] * (world.item_launch[candidates] <= ts[index])
        if weight.sum() > 0:
            cdf = np.cumsum(weight) / weight.sum()
            items[index] = candidates[min(int(np.searchsorted(cdf, rng.random(), side="right")), cdf.size - 1)]
    return items, ts >= world.item_launch[items]


def _draw_from_source(world: SyntheticWorld, items: np.ndarray, source: np.ndarray, u: np.ndarray) -> np.ndarray:
    """(n,) a fresh draw by popularity from where each of `items` (n,) came (`source` (n,)), uniforms u (n,)."""
    from_catalogue = np.minimum(np.searchsorted(world.item_cdf, u, side="right"), world.item_cdf.size - 1)
    leaf = world.item_leaf[items]
    from_leaf = world.leaf_items[np.minimum(np.searchsorted(world.leaf_item_cdf, leaf + u, side="right"),
                                            world.leaf_items.size - 1)]
    if world.community_items.size:
        from_community = community_pick(world, np.maximum(world.item_community[items], 0), u)
    else:
        from_community = from_catalogue
    return np.select([source == DrawSource.LEAF, source == DrawSource.COMMUNITY],
                     [from_leaf, from_community], default=from_catalogue)


def _source_items(world: SyntheticWorld, item: int, source: int) -> np.ndarray:
    """Every item of the place `item` was drawn from: its leaf, its community, or the catalogue."""
    if source == DrawSource.LEAF:
        return np.flatnonzero(world.item_leaf == world.item_leaf[item])
    if source == DrawSource.COMMUNITY and world.item_community[item] >= 0:
        return np.flatnonzero(world.item_community == world.item_community[item])
    return np.arange(world.item_leaf.size)


def dormant_interests(config: SyntheticConfig, user_id: int, count: int) -> np.ndarray:
    """(count,) bool: which of the user's interests (weight order) fall silent after `dormant_after`.

    round(dormant_share · count) of them, chosen uniformly from the user's own dormancy stream.
    """
    silent = np.zeros(count, dtype=bool)
    n = int(round(config.dormant_share * count))
    if n:
        rng = np.random.default_rng([config.seed, _DORMANT_STREAM, int(user_id)])
        silent[rng.permutation(count)[:n]] = True
    return silent


def dormant_from(config: SyntheticConfig) -> int:
    """Epoch second after which dormant interests leave no page view."""
    t0 = parse_utc_timestamp(config.start_date, key="synthetic.start_date")
    return t0 + int(config.dormant_after * config.days * _SECONDS_PER_DAY)


def user_interest_frame(world: SyntheticWorld, config: SyntheticConfig, user_ids: np.ndarray) -> pd.DataFrame:
    """The planted truth: each user's interests (level-2 topics) with their weights, heaviest first,
    and whether each is dormant."""
    parts = []
    for user_id in np.unique(np.asarray(user_ids, dtype=np.int64)).tolist():
        topics, weights, _ = _user_profile(world, config, _user_rng(config, user_id))
        parts.append(pd.DataFrame({"user_id": np.full(topics.size, user_id, dtype=np.int64),
                                   "interest_rank": np.arange(topics.size, dtype=np.int64),
                                   "topic_l2": topics, "weight": weights,
                                   "dormant": dormant_interests(config, user_id, topics.size)}))
    if not parts:
        return pd.DataFrame({"user_id": np.empty(0, np.int64), "interest_rank": np.empty(0, np.int64),
                             "topic_l2": np.empty(0, np.int64), "weight": np.empty(0, np.float64),
                             "dormant": np.empty(0, bool)})
    return pd.concat(parts, ignore_index=True)


def _session_lengths(rng: np.random.Generator, total: int, mean: float) -> np.ndarray:
    """Geometric lengths (mean `mean`, >= 1) summing exactly to `total`; the last is truncated."""
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    chunks, drawn = [], 0
    while drawn < total:
        chunk = rng.geometric(1.0 / mean, size=int(total / mean * 1.25) + 4)
        chunks.append(chunk)
        drawn += int(chunk.sum())
    lengths = np.concatenate(chunks)
    cum = np.cumsum(lengths)
    count = int(np.searchsorted(cum, total)) + 1
    lengths = lengths[:count]
    lengths[-1] -= cum[count - 1] - total
    return lengths


def _session_interests(rng: np.random.Generator, weights: np.ndarray, count: int) -> np.ndarray:
    """Interest index per session, never equal to the previous session's.

    Dropping repeats from an i.i.d. sequence gives exactly the chain P(j | i) = w_j / (1 - w_i),
    without a Python loop per session.
    """
    if weights.size == 1 or count == 0:
        return np.zeros(count, dtype=np.int64)
    cdf = np.cumsum(weights)
    batch = int(count / max(1.0 - float(np.sum(weights**2)), 0.05) * 1.2) + 8
    kept, have, previous = [], 0, -1
    while have < count:
        draws = np.minimum(np.searchsorted(cdf, rng.random(batch), side="right"), weights.size - 1)
        new = np.empty(batch, dtype=bool)
        new[0], new[1:] = draws[0] != previous, draws[1:] != draws[:-1]
        kept.append(draws[new])
        have += int(new.sum())
        previous = int(draws[-1])
    return np.concatenate(kept)[:count].astype(np.int64)


def _one_user(world: SyntheticWorld, config: SyntheticConfig, user_id: int,
              t0: int, t1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(item_id, interest, ts) for one user, in time order."""
    rng = _user_rng(config, user_id)
    topics, weights, leaf_cdf = _user_profile(world, config, rng)
    mu = np.log(config.events_per_user) - _COUNT_SIGMA**2 / 2  # so that E[count] = events_per_user
    n = max(2, int(round(float(np.exp(mu + _COUNT_SIGMA * rng.standard_normal())))))
    noise = rng.random(n) < config.noise_share
    on_topic = ~noise
    n_topic = int(on_topic.sum())

    # Sessions partition the on-topic events; a noise event joins the session it falls in.
    ends = np.cumsum(_session_lengths(rng, n_topic, config.session_length))
    session = np.searchsorted(ends, np.maximum(np.cumsum(on_topic) - 1, 0), side="right")
    chosen = _session_interests(rng, weights, ends.size)[session[on_topic]]  # index into topics
    # Leaf from the interest's preferred mix (rows offset by index, one searchsorted for all),
    # then an item inside the leaf by popularity.
    m = world.leaves_per_l2
    local = np.searchsorted(leaf_cdf.ravel(), chosen + rng.random(n_topic), side="right") - chosen * m
    leaf = topics[chosen] * m + np.minimum(local, m - 1)
    slot = np.searchsorted(world.leaf_item_cdf, leaf + rng.random(n_topic), side="right")
    items = np.empty(n, dtype=np.int64)
    items[on_topic] = world.leaf_items[np.minimum(slot, world.leaf_items.size - 1)]
    items[noise] = np.minimum(np.searchsorted(world.item_cdf, rng.random(n - n_topic), side="right"),
                              world.item_cdf.size - 1)
    interest = np.full(n, -1, dtype=np.int64)
    interest[on_topic] = topics[chosen]

    # Sessions start at sorted random times; events follow seconds to minutes apart.
    num_sessions = int(session[-1]) + 1
    starts = np.sort(rng.integers(t0, t1, size=num_sessions))
    gaps = np.maximum(np.rint(rng.lognormal(np.log(_GAP_MEDIAN_S), _GAP_SIGMA, size=n)), 1).astype(np.int64)
    first = np.empty(n, dtype=bool)
    first[0], first[1:] = True, session[1:] != session[:-1]
    gaps[first] = 0
    elapsed = np.cumsum(gaps)
    ts = starts[session] + elapsed - elapsed[np.flatnonzero(first)][session]
    np.maximum.accumulate(ts, out=ts)  # a long session may run into the next one's start
    np.minimum(ts, t1 - 1, out=ts)
    silent = dormant_interests(config, user_id, topics.size)
    if silent.any():
        # A dormant interest's sessions after the cut leave no trace (noise events stay).
        late_silent = (ts >= dormant_from(config)) & np.isin(interest, topics[silent])
        items, interest, ts = items[~late_silent], interest[~late_silent], ts[~late_silent]
    if config.community_share > 0:
        # A share of the page views that remain are visits to the user's communities, wherever they fall.
        visits = np.random.default_rng([config.seed, _COMMUNITY_STREAM, int(user_id), _VISITS])
        member_of = user_communities(config, user_id)
        visit = np.flatnonzero(visits.random(items.size) < config.community_share)
        which = member_of[visits.integers(0, member_of.size, visit.size)]
        items[visit] = community_pick(world, which, visits.random(visit.size))
        interest[visit] = COMMUNITY_INTEREST
    if config.launch_share > 0:
        source = np.select([interest >= 0, interest == COMMUNITY_INTEREST],
                           [DrawSource.LEAF, DrawSource.COMMUNITY], default=DrawSource.CATALOGUE)
        rng = np.random.default_rng([config.seed, _LAUNCH_STREAM, int(user_id)])
        items, launched = redraw_unlaunched(world, items, ts, source, rng)
        items, interest, ts = items[launched], interest[launched], ts[launched]
    return items, interest, ts


def generate_user_events(world: SyntheticWorld, config: SyntheticConfig, user_ids: np.ndarray) -> pd.DataFrame:
    """Page views of the given users, sorted by (user_id, ts); `interest` is the planted topic the view
    came from, NOISE_INTEREST (-1) for popularity noise, COMMUNITY_INTEREST (-2) for a community visit."""
    users = np.unique(np.asarray(user_ids, dtype=np.int64))
    t0 = parse_utc_timestamp(config.start_date, key="synthetic.start_date")
    t1 = t0 + config.days * _SECONDS_PER_DAY
    parts = [_one_user(world, config, user_id, t0, t1) for user_id in users.tolist()]
    counts = np.array([p[0].size for p in parts], dtype=np.int64)
    total = int(counts.sum())
    item_id = np.concatenate([p[0] for p in parts]) if parts else np.empty(0, np.int64)
    return pd.DataFrame({
        "user_id": np.repeat(users, counts),
        "item_id": item_id,
        "category_id": world.item_category[item_id],
        "behavior": np.array(["pv"], dtype=object).repeat(total),
        "ts": np.concatenate([p[2] for p in parts]) if parts else np.empty(0, np.int64),
        "interest": np.concatenate([p[1] for p in parts]) if parts else np.empty(0, np.int64),
    }, copy=False)  # no block consolidation: a full extra copy of every column otherwise
