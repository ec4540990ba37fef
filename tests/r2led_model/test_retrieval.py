"""Multi-route retrieval: a hand-made history with hand-computed answers, then the vectorised kernel
against the naive per-row oracle on seeded random users."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from r2led_model.config import RetrievalConfig
from r2led_model.retrieval.multi_route import (RouteCandidates, RoutePlan, Targets, UserHistory, assert_point_in_time,
                                               history_end, retrieve_recent, retrieve_routes, retrieve_routes_many,
                                               retrieve_sim_hard, shared_prefix_length)
from r2led_model.retrieval.naive import in_memory, naive_recent, naive_retrieve_routes, naive_sim_hard, random_user_case

# --------------------------------------------------------------------------------------
# Hand-made user
# --------------------------------------------------------------------------------------
#
# The user's two oldest behaviours were cut from storage (dropped = 2), so end = hist_len − 2.
#
#   pos  item  ts   SID (c1,c2,c3)  signature (4 bits)  category
#   0    101   100  (1,1,1)         0b0101              7
#   1    102   110  (1,2,1)         0b0011              7
#   2    103   120  (2,1,1)         0b0001              8
#   3    104   130  (1,1,2)         0b0111              7
#   4    105   140  (1,1,1)         0b0001              −1 (unknown)
#   5    106   150  (3,3,3)         0b1111              9
#   6    107   160  (1,2,2)         0b0001              8
#   7    108   170  (1,1,1)         0b1000              7
#
# Targets:
#   A: item 200, ts 175, hist_len 10 → end 8 (the whole stored sequence); SID (1,1,1), sig 0b0001, cat 7
#   B: item 201, ts 135, hist_len 6  → end 4 (positions 0..3 only);       SID (1,2,3), sig 0b0011, cat 8
#   C: item 202, ts 95,  hist_len 1  → end −1 (its one earlier behaviour was dropped): empty history
#
# Per position, shared prefix length (lcp) and Hamming distance d to the target:
#   A: lcp = [3, 1, 0, 2, 3, 0, 1, 3]   d = [1, 1, 0, 2, 0, 3, 0, 2]
#   B: lcp = [1, 2, 0, 1]               d = [2, 0, 1, 1]            (positions 4..7 are after ts 135)
#
# Routes: sid1, sid2, sid3, collab with k = 3, except sid3 with k = 4 (more than its pool for A).

HISTORY = UserHistory(
    item_ids=np.array([101, 102, 103, 104, 105, 106, 107, 108]),
    ts=np.array([100, 110, 120, 130, 140, 150, 160, 170]),
    sid_codes=np.array([[1, 1, 1], [1, 2, 1], [2, 1, 1], [1, 1, 2], [1, 1, 1], [3, 3, 3], [1, 2, 2], [1, 1, 1]]),
    signatures=np.array([[0b0101], [0b0011], [0b0001], [0b0111], [0b0001], [0b1111], [0b0001], [0b1000]],
                        dtype=np.uint64),
    categories=np.array([7, 7, 8, 7, -1, 9, 8, 7]),
    dropped=2,
)
TARGETS = Targets(
    item_ids=np.array([200, 201, 202]),
    hist_len=np.array([10, 6, 1]),
    sid_codes=np.array([[1, 1, 1], [1, 2, 3], [1, 1, 1]]),
    signatures=np.array([[0b0001], [0b0011], [0b0000]], dtype=np.uint64),
    categories=np.array([7, 8, 7]),
    ts=np.array([175, 135, 95]),
)
CONFIG = RetrievalConfig(routes=("sid1", "sid2", "sid3", "collab"), k=3, k_per_route={"sid3": 4}, simhash_bits=4)
EMPTY3, EMPTY4 = [-1, -1, -1], [-1, -1, -1, -1]


def plan(**changes) -> RoutePlan:
    return RoutePlan.from_config(dataclasses.replace(CONFIG, **changes), levels=3)


def check(found: RouteCandidates, positions: list[list[int]], pool: list[int], filled=None) -> None:
    """Positions best first (−1 = empty slot); mask is True exactly on the non-empty slots."""
    assert found.positions.dtype == np.int32 and found.mask.dtype == bool
    assert found.positions.tolist() == positions
    assert found.mask.tolist() == [[p >= 0 for p in row] for row in positions]
    assert found.pool_size.tolist() == pool
    expected_filled = filled if filled is not None else [[False] * len(row) for row in positions]
    assert found.filled.tolist() == expected_filled
    assert_point_in_time(HISTORY, TARGETS, found)


def test_hand_made_prefix_lengths():
    lcp = shared_prefix_length(HISTORY.sid_codes, TARGETS.sid_codes[:2])
    assert lcp.tolist() == [[3, 1, 0, 2, 3, 0, 1, 3], [1, 2, 0, 1, 1, 0, 2, 1]]


def test_mixed_routes_filter_by_prefix_and_rank_by_hamming_then_recency():
    got = retrieve_routes(HISTORY, TARGETS, plan())
    assert list(got) == ["sid1", "sid2", "sid3", "collab"]
    # sid1, A: pool {0,1,3,4,6,7}; d 0 → 6, 4 (tie: later first), d 1 → 1, 0, d 2 → 7, 3.
    #      B: pool {0,1,3} (6 shares c1 but is after ts 135); d: 1 → 0, 3 → 1, 0 → 2.
    check(got["sid1"], [[6, 4, 1], [1, 3, 0], EMPTY3], pool=[6, 3, 0])
    # sid2, A: pool {0,3,4,7}: 4 (d 0), 0 (d 1), 7 and 3 (d 2, 7 is later). B: only 1 (6 is cut).
    check(got["sid2"], [[4, 0, 7], [1, -1, -1], EMPTY3], pool=[4, 1, 0])
    # sid3, k = 4 > pool: A {0,4,7} → 4, 0, 7, then an empty slot. B: nothing shares (1,2,3): empty pool.
    check(got["sid3"], [[4, 0, 7, -1], EMPTY4, EMPTY4], pool=[3, 0, 0])
    # collab: the whole history. A: d 0 at 2, 4, 6 → recency breaks the three-way tie. B: 1, then 3 and 2 (d 1).
    check(got["collab"], [[6, 4, 2], [1, 3, 2], EMPTY3], pool=[8, 4, 0])


def test_semantic_only_ranks_the_prefix_pool_by_recency():
    got = retrieve_routes(HISTORY, TARGETS, plan(mode="semantic_only"))
    check(got["sid1"], [[7, 6, 4], [3, 1, 0], EMPTY3], pool=[6, 3, 0])
    check(got["sid2"], [[7, 4, 3], [1, -1, -1], EMPTY3], pool=[4, 1, 0])
    check(got["sid3"], [[7, 4, 0, -1], EMPTY4, EMPTY4], pool=[3, 0, 0])
    # No collaborative view anywhere: the collab route is the k most recent.
    check(got["collab"], [[7, 6, 5], [3, 2, 1], EMPTY3], pool=[8, 4, 0])


def test_collaborative_only_routes_differ_only_in_k():
    got = retrieve_routes(HISTORY, TARGETS, plan(mode="collaborative_only"))
    # A, whole history by d then recency: 6, 4, 2 (d 0), 1, 0 (d 1), 7, 3 (d 2), 5 (d 3).
    for route in ("sid1", "sid2", "collab"):
        check(got[route], [[6, 4, 2], [1, 3, 2], EMPTY3], pool=[8, 4, 0])
    check(got["sid3"], [[6, 4, 2, 1], [1, 3, 2, 0], EMPTY4], pool=[8, 4, 0])


def test_lambda_mixes_per_route_prefix_share_and_hamming_similarity():
    # score = λ · sem + (1 − λ) · (1 − d/4), sem = min(lcp, l)/l for sid<l>, lcp/3 for collab.
    # sim01 = 1 − d/4:  A: [.75, .75, 1, .5, 1, .25, 1, .5]   B: [.5, 1, .75, .75]
    # λ = .5 (all values below are exact binary fractions, so the ties are exact):
    # sid1, sem = min(lcp, 1): A [1, 1, 0, 1, 1, 0, 1, 1]   B [1, 1, 0, 1]
    #    A: pos 0: .5 + .375 = .875   1: .875   2: 0 + .5 = .5   3: .5 + .25 = .75
    #       pos 4: .5 + .5 = 1.0      5: .125   6: 1.0           7: .75
    #       → 6, 4 (1.0, later first), 1, 0 (.875), 7, 3 (.75), 2, 5
    #    B: 0: .5 + .25 = .75   1: .5 + .5 = 1.0   2: 0 + .375 = .375   3: .5 + .375 = .875   → 1, 3, 0, 2
    # sid2, sem = min(lcp, 2)/2: A [1, .5, 0, 1, 1, 0, .5, 1]   B [.5, 1, 0, .5]
    #    A: 0: .5 + .375 = .875   1: .25 + .375 = .625   2: .5   3: .5 + .25 = .75
    #       4: 1.0                5: .125                6: .25 + .5 = .75   7: .5 + .25 = .75
    #       → 4, 0, 7, 6, 3 (three-way tie at .75), 1, 2, 5
    #    B: 0: .25 + .25 = .5   1: .5 + .5 = 1.0   2: .375   3: .25 + .375 = .625   → 1, 3, 0, 2
    # sid3 and collab, sem = lcp/3: A [1, 1/3, 0, 2/3, 1, 0, 1/3, 1]   B [1/3, 2/3, 0, 1/3]
    #    A: 0: .5 + .375 = .875   1: 1/6 + .375 = .542   2: .5     3: 1/3 + .25 = .583
    #       4: .5 + .5 = 1.0      5: .125                6: 1/6 + .5 = .667   7: .5 + .25 = .75
    #       → 4, 0, 7, 6, 3, 1, 2, 5
    #    B: 0: 1/6 + .25 = .417   1: 1/3 + .5 = .833   2: .375   3: 1/6 + .375 = .542   → 1, 3, 0, 2
    got = retrieve_routes(HISTORY, TARGETS, plan(mode="lambda", mix_lambda=0.5))
    check(got["sid1"], [[6, 4, 1], [1, 3, 0], EMPTY3], pool=[8, 4, 0])
    check(got["sid2"], [[4, 0, 7], [1, 3, 0], EMPTY3], pool=[8, 4, 0])
    check(got["sid3"], [[4, 0, 7, 6], [1, 3, 0, 2], EMPTY4], pool=[8, 4, 0])
    check(got["collab"], [[4, 0, 7], [1, 3, 0], EMPTY3], pool=[8, 4, 0])
    # λ = 1: the route's prefix share only, then recency.
    #   sid1: A sem 1 at 7, 6, 4, 3, 1, 0 → 7, 6, 4.   B sem 1 at 3, 1, 0 → 3, 1, 0.
    #   sid2: A sem 1 at 7, 4, 3, 0 → 7, 4, 3.         B: 1 (sem 1), then 3, 0 (.5) → 1, 3, 0.
    #   sid3: A lcp 3 at 7, 4, 0, then lcp 2 at 3.      B: 1 (lcp 2), then 3, 0 (lcp 1), then 2.
    #   collab: the same scores as sid3 → 7, 4, 0 and 1, 3, 0.
    got = retrieve_routes(HISTORY, TARGETS, plan(mode="lambda", mix_lambda=1.0))
    check(got["sid1"], [[7, 6, 4], [3, 1, 0], EMPTY3], pool=[8, 4, 0])
    check(got["sid2"], [[7, 4, 3], [1, 3, 0], EMPTY3], pool=[8, 4, 0])
    check(got["sid3"], [[7, 4, 0, 3], [1, 3, 0, 2], EMPTY4], pool=[8, 4, 0])
    check(got["collab"], [[7, 4, 0], [1, 3, 0], EMPTY3], pool=[8, 4, 0])
    # λ = 0: collaborative similarity only, the same as collaborative_only for every route.
    got = retrieve_routes(HISTORY, TARGETS, plan(mode="lambda", mix_lambda=0.0))
    for route in ("sid1", "sid2", "collab"):
        check(got[route], [[6, 4, 2], [1, 3, 2], EMPTY3], pool=[8, 4, 0])
    check(got["sid3"], [[6, 4, 2, 1], [1, 3, 2, 0], EMPTY4], pool=[8, 4, 0])


def test_fill_recent_tops_up_with_the_most_recent_other_behaviours():
    got = retrieve_routes(HISTORY, TARGETS, plan(fill="recent"))
    F, T = False, True
    check(got["sid1"], [[6, 4, 1], [1, 3, 0], EMPTY3], pool=[6, 3, 0])
    # sid2, B: pool {1}; fill from {0, 2, 3} most recent first → 3, 2.
    check(got["sid2"], [[4, 0, 7], [1, 3, 2], EMPTY3], pool=[4, 1, 0],
          filled=[[F, F, F], [F, T, T], [F, F, F]])
    # sid3, A: pool {0,4,7} then the most recent outside it: 6. B: empty pool, all four slots filled.
    check(got["sid3"], [[4, 0, 7, 6], [3, 2, 1, 0], EMPTY4], pool=[3, 0, 0],
          filled=[[F, F, F, T], [T, T, T, T], [F, F, F, F]])
    check(got["collab"], [[6, 4, 2], [1, 3, 2], EMPTY3], pool=[8, 4, 0])


def test_cosine_ties_are_broken_by_recency():
    # Target (1, 0). History cosines: (1,0) → 1, (0,1) → 0, (2,0) → 1, (−1,0) → −1, (1,1) → .707, (0,0) → 0.
    history = UserHistory(item_ids=np.arange(6), ts=np.arange(6), sid_codes=np.zeros((6, 3), int),
                          vectors=np.array([[1, 0], [0, 1], [2, 0], [-1, 0], [1, 1], [0, 0]], dtype=float))
    targets = Targets(item_ids=np.array([9]), hist_len=np.array([6]), sid_codes=np.zeros((1, 3), int),
                      vectors=np.array([[1.0, 0.0]]))
    got = retrieve_routes(history, targets, RoutePlan.from_config(
        RetrievalConfig(routes=("collab",), k=6, similarity="cosine"), levels=3))["collab"]
    # 2 and 0 tie at 1 (2 is later); 4; 1 at 0; 3 at −1; 5 last: a zero vector has no similarity at all.
    assert got.positions.tolist() == [[2, 0, 4, 1, 3, 5]]


NO_VECTOR = np.zeros(1, dtype=np.uint64)  # an all-zero signature: the catalogue has no vector for the item


@pytest.mark.parametrize("mode", ["mixed", "collaborative_only", "lambda"])
def test_a_target_without_a_vector_ranks_its_pool_by_recency(mode):
    # Signatures of very different popcounts: by Hamming distance to an all-zero signature the order
    # would be 0 (popcount 1), 2 (2), 3 (3), 1 (4); with no similarity, recency decides.
    history = UserHistory(item_ids=np.arange(4), ts=np.arange(4), sid_codes=np.ones((4, 3), int),
                          signatures=np.array([[0b0001], [0b1111], [0b0011], [0b0111]], dtype=np.uint64))
    targets = Targets(item_ids=np.array([9]), hist_len=np.array([4]), sid_codes=np.ones((1, 3), int),
                      signatures=NO_VECTOR[None, :])
    route_plan = RoutePlan.from_config(RetrievalConfig(routes=("sid1", "collab"), k=4, simhash_bits=4, mode=mode),
                                       levels=3)
    got = retrieve_routes(history, targets, route_plan)
    naive = naive_retrieve_routes(history, targets, route_plan)
    for route in ("sid1", "collab"):
        assert got[route].positions.tolist() == [[3, 2, 1, 0]]
        assert naive[route].positions.tolist() == [[3, 2, 1, 0]]


def test_a_behaviour_without_a_vector_ranks_after_every_behaviour_with_one():
    # Target 0b0011. Distances: pos 0 → 2, pos 1 → no vector, pos 2 → 0, pos 3 → 4 (the farthest known).
    history = UserHistory(item_ids=np.arange(4), ts=np.arange(4), sid_codes=np.ones((4, 3), int),
                          signatures=np.array([[0b0101], [0b0000], [0b0011], [0b1100]], dtype=np.uint64))
    targets = Targets(item_ids=np.array([9]), hist_len=np.array([4]), sid_codes=np.ones((1, 3), int),
                      signatures=np.array([[0b0011]], dtype=np.uint64))
    route_plan = RoutePlan.from_config(RetrievalConfig(routes=("collab",), k=4, simhash_bits=4), levels=3)
    assert retrieve_routes(history, targets, route_plan)["collab"].positions.tolist() == [[2, 0, 3, 1]]
    assert naive_retrieve_routes(history, targets, route_plan)["collab"].positions.tolist() == [[2, 0, 3, 1]]


def test_sim_hard_takes_the_targets_category_most_recent_first():
    # A: category 7 at 0, 1, 3, 7 → 7, 3, 1. B: category 8 at 2 (6 is after ts 135). C: empty history.
    check(retrieve_sim_hard(HISTORY, TARGETS, k=3), [[7, 3, 1], [2, -1, -1], EMPTY3], pool=[4, 1, 0])
    # An unknown category (−1) matches nothing, not even the unknown category at position 4.
    unknown = dataclasses.replace(TARGETS, categories=np.array([-1, -1, -1]))
    assert not retrieve_sim_hard(HISTORY, unknown, k=3).mask.any()


def test_recent_takes_the_last_k_before_each_sample():
    check(retrieve_recent(HISTORY, TARGETS, k=3), [[7, 6, 5], [3, 2, 1], EMPTY3], pool=[8, 4, 0])


def test_point_in_time_check_catches_leaks():
    good = retrieve_recent(HISTORY, TARGETS, k=3)
    late = dataclasses.replace(good, positions=good.positions.copy())
    late.positions[1, 0] = 4  # B's history ends at 4: position 4 (ts 140 >= 135) is the future
    with pytest.raises(AssertionError, match="sample row 1"):
        assert_point_in_time(HISTORY, TARGETS, late)
    twice = dataclasses.replace(good, positions=good.positions.copy())
    twice.positions[0, 1] = 7
    with pytest.raises(AssertionError, match="twice"):
        assert_point_in_time(HISTORY, TARGETS, twice)
    # A ts check independent of hist_len: claim B happened at ts 125, before position 3 (ts 130).
    early = dataclasses.replace(TARGETS, ts=np.array([175, 125, 95]))
    with pytest.raises(AssertionError, match="ts 130"):
        assert_point_in_time(HISTORY, early, good)


def test_hist_len_beyond_the_stored_sequence_is_an_error():
    bad = dataclasses.replace(TARGETS, hist_len=np.array([11, 6, 1]))  # 11 − 2 = 9 > 8 stored
    with pytest.raises(ValueError, match="exceeds the 8 stored"):
        retrieve_routes(HISTORY, bad, plan())
    assert history_end(HISTORY, TARGETS).tolist() == [8, 4, 0]


def test_route_plan_from_config():
    p = plan(routes=("collab", "sid2"), k=5, k_per_route={"sid2": 2}, mode="lambda", mix_lambda=0.25)
    assert p.route_names == ("collab", "sid2")
    assert [(r.level, r.k) for r in p.routes] == [(0, 5), (2, 2)]
    assert (p.mode, p.mix_lambda, p.similarity, p.simhash_bits, p.fill, p.levels) == ("lambda", 0.25, "hamming", 4,
                                                                                      "pad", 3)
    with pytest.raises(ValueError, match="sid4"):
        plan(routes=("sid4",), k_per_route={})
    with pytest.raises(ValueError, match="cosine"):
        retrieve_routes(HISTORY, TARGETS, plan(similarity="cosine"))  # no vectors
    with pytest.raises(ValueError, match="uint64"):
        retrieve_routes(HISTORY, TARGETS, plan(simhash_bits=70))  # 70 bits need 2 words


# --------------------------------------------------------------------------------------
# Random users against the naive oracle
# --------------------------------------------------------------------------------------

# (seed, stored length, samples, signature bits): ~330 samples, an empty user, a 2-word signature.
USERS = [(1, 0, 10, 8), (2, 1, 10, 8), (3, 7, 30, 8), (4, 40, 60, 8), (5, 120, 80, 70), (6, 300, 60, 8),
         (7, 250, 50, 70), (8, 25, 30, 70)]
FIELDS = ("positions", "mask", "filled", "pool_size")


@pytest.fixture(scope="module")
def users():
    cases = []
    for seed, stored, samples, bits in USERS:
        history, targets = random_user_case(seed, stored, samples, bits=bits)
        end = np.asarray(targets.hist_len) - history.dropped
        # The generator is consistent: exactly max(end, 0) stored behaviours precede each sample's ts.
        assert (np.searchsorted(history.ts, targets.ts, side="left") == np.maximum(end, 0)).all()
        cases.append((history, targets, bits))
    return cases


def same(a: RouteCandidates, b: RouteCandidates) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f)) and getattr(a, f).dtype == getattr(b, f).dtype
               for f in FIELDS)


def check_invariants(history: UserHistory, targets: Targets, found: RouteCandidates, fill: str) -> None:
    assert_point_in_time(history, targets, found)  # positions < end, ts < sample ts, −1 when empty, distinct
    assert found.positions.dtype == np.int32 and found.pool_size.dtype == np.int32
    end = history_end(history, targets)
    for row, mask in zip(found.positions, found.mask):
        assert len(set(row[mask].tolist())) == int(mask.sum())
    if fill == "pad":
        assert not found.filled.any()
        assert (found.mask.sum(axis=1) == np.minimum(found.pool_size, found.k)).all()
    else:  # every available slot is used: min(k, history length)
        assert (found.mask.sum(axis=1) == np.minimum(end, found.k)).all()
    assert not found.mask[end == 0].any()


@pytest.mark.parametrize("mode,similarity,fill", list(itertools.product(
    ["mixed", "semantic_only", "collaborative_only", "lambda"], ["hamming", "cosine"], ["pad", "recent"])))
def test_vectorised_equals_naive(users, mode, similarity, fill):
    for history, targets, bits in users:
        config = RetrievalConfig(routes=("sid1", "sid2", "sid3", "collab"), k=6, k_per_route={"sid3": 9, "sid1": 4},
                                 mode=mode, mix_lambda=0.3, similarity=similarity, simhash_bits=bits, fill=fill)
        route_plan = RoutePlan.from_config(config, levels=3)
        fast = retrieve_routes(history, targets, route_plan)
        slow = naive_retrieve_routes(history, targets, route_plan)
        assert list(fast) == list(slow) == ["sid1", "sid2", "sid3", "collab"]
        for name in fast:
            assert same(fast[name], slow[name]), (mode, similarity, fill, name, len(history))
            check_invariants(history, targets, fast[name], fill)


@pytest.mark.parametrize("mode,fill", list(itertools.product(["mixed", "semantic_only", "lambda"], ["pad", "recent"])))
def test_the_category_route_is_sim_hard_over_the_whole_stored_history(users, mode, fill):
    for history, targets, bits in users:
        config = RetrievalConfig(routes=("sid2", "category", "collab"), k=5, k_per_route={"category": 7}, mode=mode,
                                 simhash_bits=bits, fill=fill)
        route_plan = RoutePlan.from_config(config, levels=3)
        fast = retrieve_routes(history, targets, route_plan)
        slow = naive_retrieve_routes(history, targets, route_plan)
        assert list(fast) == ["sid2", "category", "collab"]
        for name in fast:
            assert same(fast[name], slow[name]), (mode, fill, name, len(history))
        assert same(fast["category"], retrieve_sim_hard(history, targets, 7, fill=fill))
        check_invariants(history, targets, fast["category"], fill)
    alone = RoutePlan.from_config(RetrievalConfig(routes=("category",), k=3), levels=3)
    got = retrieve_routes(HISTORY, TARGETS, alone)["category"]  # needs neither SIDs' prefixes nor signatures
    assert got.positions.tolist() == [[7, 3, 1], [2, -1, -1], EMPTY3]  # A: category 7; B: category 8 before ts 135
    with pytest.raises(ValueError, match="categories"):
        retrieve_routes(dataclasses.replace(HISTORY, categories=None), TARGETS, alone)


def test_pool_size_counts_the_valid_prefix_matches(users):
    for history, targets, bits in users:
        got = retrieve_routes(history, targets, RoutePlan.from_config(
            RetrievalConfig(k=3, simhash_bits=bits), levels=3))
        end = history_end(history, targets)
        for level, name in ((1, "sid1"), (2, "sid2"), (3, "sid3"), (0, "collab")):
            expected = [sum(1 for p in range(e)
                            if all(t >= 0 and h == t for h, t in zip(history.sid_codes[p, :level], codes[:level])))
                        for e, codes in zip(end.tolist(), targets.sid_codes.tolist())]
            assert got[name].pool_size.tolist() == expected


def test_baselines_equal_naive(users):
    for history, targets, _ in users:
        for fill in ("pad", "recent"):
            found = retrieve_sim_hard(history, targets, 5, fill=fill)
            assert same(found, naive_sim_hard(history, targets, 5, fill=fill))
            check_invariants(history, targets, found, fill)
        found = retrieve_recent(history, targets, 7)
        assert same(found, naive_recent(history, targets, 7))
        check_invariants(history, targets, found, "pad")


def test_row_blocks_do_not_change_the_result(users):
    history, targets, bits = users[5]
    route_plan = RoutePlan.from_config(RetrievalConfig(mode="lambda", simhash_bits=bits, fill="recent"), levels=3)
    whole = retrieve_routes(history, targets, route_plan)
    blocked = retrieve_routes(history, targets, route_plan, max_cells=500)  # one or two samples per block
    assert all(same(whole[name], blocked[name]) for name in whole)
    assert same(retrieve_sim_hard(history, targets, 4), retrieve_sim_hard(history, targets, 4, max_cells=1))


def _concatenated(cases: list[tuple[UserHistory, Targets]], rng: np.random.Generator):
    """Users' histories end to end, with one extra user that has no samples at all, and every
    sample of every user in one shuffled batch → (Histories, Targets, owner, per-user rows)."""
    no_samples = random_user_case(99, 30, 0)
    batch, targets, owner = in_memory(cases + [no_samples])
    order = rng.permutation(len(owner))  # (S,) samples of all users interleaved
    shuffled = Targets(**{f.name: getattr(targets, f.name)[order] for f in dataclasses.fields(Targets)})
    back = np.argsort(order)  # batch position of each original sample
    firsts = np.r_[0, np.cumsum([len(t) for _, t in cases])]
    rows = {u: back[firsts[u]:firsts[u + 1]] for u in range(len(cases))}  # each user's samples, in their order
    return batch, shuffled, owner[order], rows


@pytest.mark.parametrize("mode,similarity,fill", [("mixed", "hamming", "pad"), ("semantic_only", "hamming", "recent"),
                                                  ("collaborative_only", "cosine", "pad"),
                                                  ("lambda", "cosine", "recent"), ("lambda", "hamming", "pad")])
@pytest.mark.parametrize("max_cells", [300, 4_000, 1 << 17])
def test_many_users_at_once_equal_each_user_alone(users, mode, similarity, fill, max_cells):
    """Pooled blocks (gathered histories), a user's own blocks (shared slice) and blocks that mix
    users all give each sample what the user alone gets."""
    cases = [(h, t) for h, t, bits in users if bits == 8]  # one signature width for the batch
    batch, targets, owner, rows = _concatenated(cases, np.random.default_rng(max_cells))
    route_plan = RoutePlan.from_config(RetrievalConfig(
        routes=("sid1", "sid2", "sid3", "collab"), k=6, k_per_route={"sid3": 9}, mode=mode, mix_lambda=0.3,
        similarity=similarity, simhash_bits=8, fill=fill), levels=3)
    together = retrieve_routes_many(batch, targets, owner, route_plan, max_cells=max_cells)
    for user, (history, user_targets) in enumerate(cases):
        alone = retrieve_routes(history, user_targets, route_plan)
        for name, found in alone.items():
            mine = together[name]
            assert same(RouteCandidates(positions=mine.positions[rows[user]], mask=mine.mask[rows[user]],
                                        filled=mine.filled[rows[user]], pool_size=mine.pool_size[rows[user]]),
                        found), (user, name)


def test_many_users_reject_a_sample_beyond_its_users_history(users):
    cases = [(h, t) for h, t, bits in users if bits == 8]
    batch, targets, owner, _ = _concatenated(cases, np.random.default_rng(0))
    short_user = int(np.argmin(batch.lengths[:-1]))  # the user with the shortest stored sequence
    bad = dataclasses.replace(targets, hist_len=np.where(owner == short_user, batch.lengths[short_user] + 50,
                                                         targets.hist_len))
    with pytest.raises(ValueError, match="exceeds the .* stored behaviours"):
        retrieve_routes_many(batch, bad, owner, RoutePlan.from_config(RetrievalConfig(simhash_bits=8), levels=3))
    with pytest.raises(ValueError, match="owner"):
        retrieve_routes_many(batch, targets, np.full(len(owner), len(batch)),
                             RoutePlan.from_config(RetrievalConfig(simhash_bits=8), levels=3))


def test_empty_history_masks_everything():
    history, targets = random_user_case(11, 0, 5)
    assert len(history) == 0
    for mode, fill in itertools.product(["mixed", "semantic_only", "collaborative_only", "lambda"], ["pad", "recent"]):
        route_plan = RoutePlan.from_config(RetrievalConfig(mode=mode, fill=fill, simhash_bits=8), levels=3)
        for found in retrieve_routes(history, targets, route_plan).values():
            assert found.positions.shape == (5, found.k) and (found.positions == -1).all()
            assert not found.mask.any() and not found.filled.any() and not found.pool_size.any()
    # Samples older than the whole stored sequence (hist_len <= dropped) see nothing either.
    history, targets = random_user_case(12, 50, 20, dropped=3)
    older = dataclasses.replace(targets, hist_len=np.array([0, 1, 2, 3] * 5), ts=np.full(20, history.ts[0]))
    for found in retrieve_routes(history, older, RoutePlan.from_config(
            RetrievalConfig(fill="recent", simhash_bits=8), levels=3)).values():
        assert not found.mask.any() and (found.positions == -1).all()
    assert not retrieve_recent(history, older, 3).mask.any()
    # No samples at all: (0, k) arrays.
    none = dataclasses.replace(targets, item_ids=targets.item_ids[:0], hist_len=targets.hist_len[:0],
                               sid_codes=targets.sid_codes[:0], signatures=targets.signatures[:0],
                               vectors=targets.vectors[:0], categories=targets.categories[:0], ts=targets.ts[:0])
    got = retrieve_routes(history, none, RoutePlan.from_config(RetrievalConfig(simhash_bits=8), levels=3))
    assert got["sid1"].positions.shape == (0, 20)
