"""A deliberately naive, per-row pure-Python implementation of multi-route retrieval.

The same rules as `r2led_model.retrieval.multi_route` (see its docstring), written the obvious way: for each
sample, for each history position, decide whether the behaviour passes the route's filter and
score it with plain Python ints and floats (Hamming distance by ``bin(x).count("1")``), then sort
the survivors by (score, later position first). No numpy inside the loops: numpy arrays are
turned into lists first and the results back into arrays at the end.

In `lambda` mode the semantic term is per route, computed here by stopping the prefix walk at
the route's depth: _lcp(…, l) / l for "sid<l>" (the same number as the kernel's min(lcp, l) / l)
and _lcp(…, L) / L for "collab".

Two uses: the tests' independent oracle for the vectorised kernel, and the baseline that the
retrieval benchmark puts the kernel beside. `random_user_case` builds seeded random inputs with
many ties (small code alphabets, few signature bits, integer-valued vectors) for both.

No similarity: a pair where either item's signature (or vector) is all zero ("no collaborative
vector") ranks after every pair with one, by recency among themselves (sim01 = 0 in lambda mode).

Cosine: dot / (|t| · |h|) with 0 for a zero vector, the same operations in the same order as the
kernel, so integer-valued vectors give bit-identical scores; for arbitrary floats the two sum a
dot product in different orders and may order near-ties (within rounding) differently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from r2led_model.retrieval.multi_route import Histories, RouteCandidates, RoutePlan, Targets, UserHistory
from r2led_model.retrieval.route_names import CATEGORY_LEVEL

_NO_SCORE = 0


def _end(hist_len: int, dropped: int, stored: int, row: int) -> int:
    end = hist_len - dropped
    if end > stored:
        raise ValueError(f"sample row {row}: hist_len {hist_len} - dropped {dropped} = {end} exceeds the {stored} "
                         f"stored behaviours (sequences and samples disagree)")
    return max(end, 0)


def _lcp(a: list[int], b: list[int], levels: int) -> int:
    shared = 0
    for level in range(levels):
        if b[level] < 0 or a[level] != b[level]:
            break
        shared += 1
    return shared


def _hamming(a: list[int], b: list[int]) -> int:
    return sum(bin(x ^ y).count("1") for x, y in zip(a, b))


def _cosine(a: list[float], b: list[float]) -> float:
    dot = 0.0
    for x, y in zip(a, b):
        dot += x * y
    norm_a = math.sqrt(sum(x * x for x in a))
    norm_b = math.sqrt(sum(y * y for y in b))
    norms = norm_a * norm_b
    return dot / norms if norms > 0 else 0.0


def _as_lists(array) -> list | None:
    if array is None:
        return None
    return np.asarray(array).tolist()


def _pack(rows: list[tuple[list[int], list[bool], list[bool], int]]) -> RouteCandidates:
    k = len(rows[0][0]) if rows else 0
    return RouteCandidates(
        positions=np.array([r[0] for r in rows], dtype=np.int32).reshape(len(rows), k),
        mask=np.array([r[1] for r in rows], dtype=bool).reshape(len(rows), k),
        filled=np.array([r[2] for r in rows], dtype=bool).reshape(len(rows), k),
        pool_size=np.array([r[3] for r in rows], dtype=np.int32),
    )


def _choose(pool: list[tuple], others: list[int], k: int, fill: str) -> tuple[list[int], list[bool], list[bool], int]:
    """pool: (sort key, −position, position) tuples; others: valid positions outside the pool."""
    pool.sort()
    positions = [entry[2] for entry in pool[:k]]
    filled = [False] * len(positions)
    if fill == "recent":
        for p in sorted(others, reverse=True):
            if len(positions) >= k:
                break
            positions.append(p)
            filled.append(True)
    mask = [True] * len(positions)
    while len(positions) < k:
        positions.append(-1)
        mask.append(False)
        filled.append(False)
    return positions, mask, filled, len(pool)


def naive_retrieve_routes(history: UserHistory, targets: Targets, plan: RoutePlan) -> dict[str, RouteCandidates]:
    """Same contract as `r2led_model.retrieval.multi_route.retrieve_routes`, one sample and one position at a time."""
    stored = len(history.item_ids)
    h_codes = _as_lists(history.sid_codes)
    t_codes = _as_lists(targets.sid_codes)
    h_sig = _as_lists(history.signatures)
    t_sig = _as_lists(targets.signatures)
    h_vec = _as_lists(history.vectors)
    t_vec = _as_lists(targets.vectors)
    hist_len = _as_lists(targets.hist_len)
    dropped = int(history.dropped)
    bits, levels, lam = plan.simhash_bits, plan.levels, plan.mix_lambda
    out = {}
    for route in plan.routes:
        if route.level == CATEGORY_LEVEL:
            out[route.name] = naive_sim_hard(history, targets, route.k, fill=plan.fill)
            continue
        depth = route.level if route.level > 0 else levels  # lambda: SID levels the semantic term looks at
        rows = []
        for s in range(len(hist_len)):
            end = _end(hist_len[s], dropped, stored, s)
            pool, others = [], []
            for p in range(end):
                if plan.mode in ("mixed", "semantic_only") and route.level > 0:
                    passes = _lcp(h_codes[p], t_codes[s], route.level) == route.level
                else:
                    passes = True
                if not passes:
                    others.append(p)
                    continue
                if plan.mode == "semantic_only":
                    key = _NO_SCORE
                elif plan.similarity == "hamming":
                    known = any(h_sig[p]) and any(t_sig[s])
                    distance = _hamming(h_sig[p], t_sig[s])
                    if plan.mode == "lambda":
                        similarity = 1 - distance / bits if known else 0.0
                        key = -(lam * (_lcp(h_codes[p], t_codes[s], depth) / depth) + (1 - lam) * similarity)
                    else:
                        key = distance if known else bits + 1
                else:
                    known = any(h_vec[p]) and any(t_vec[s])
                    cosine = _cosine(t_vec[s], h_vec[p])
                    if plan.mode == "lambda":
                        similarity = (cosine + 1) / 2 if known else 0.0
                        key = -(lam * (_lcp(h_codes[p], t_codes[s], depth) / depth) + (1 - lam) * similarity)
                    else:
                        key = -cosine if known else 2.0
                pool.append((key, -p, p))
            rows.append(_choose(pool, others, route.k, plan.fill))
        out[route.name] = _pack(rows) if rows else _pack_empty(route.k)
    return out


def _pack_empty(k: int) -> RouteCandidates:
    return RouteCandidates(positions=np.zeros((0, k), dtype=np.int32), mask=np.zeros((0, k), dtype=bool),
                           filled=np.zeros((0, k), dtype=bool), pool_size=np.zeros(0, dtype=np.int32))


def naive_sim_hard(history: UserHistory, targets: Targets, k: int, *, fill: str = "pad") -> RouteCandidates:
    """Same contract as `retrieve_sim_hard`: same category (−1 never matches), most recent first."""
    stored = len(history.item_ids)
    h_cat = _as_lists(history.categories)
    t_cat = _as_lists(targets.categories)
    rows = []
    for s, hist_len in enumerate(_as_lists(targets.hist_len)):
        end = _end(hist_len, int(history.dropped), stored, s)
        pool, others = [], []
        for p in range(end):
            if t_cat[s] >= 0 and h_cat[p] == t_cat[s]:
                pool.append((_NO_SCORE, -p, p))
            else:
                others.append(p)
        rows.append(_choose(pool, others, k, fill))
    return _pack(rows) if rows else _pack_empty(k)


def naive_recent(history: UserHistory, targets: Targets, k: int) -> RouteCandidates:
    """Same contract as `retrieve_recent`: the k most recent behaviours before each sample."""
    stored = len(history.item_ids)
    rows = []
    for s, hist_len in enumerate(_as_lists(targets.hist_len)):
        end = _end(hist_len, int(history.dropped), stored, s)
        rows.append(_choose([(_NO_SCORE, -p, p) for p in range(end)], [], k, "pad"))
    return _pack(rows) if rows else _pack_empty(k)


@dataclass(frozen=True)
class RandomCatalogue:
    """Seeded random item features, shared by every user drawn from it (item i is row i)."""

    codes: np.ndarray  # (I, L), some −1 = unknown
    signatures: np.ndarray  # (I, W) uint64
    vectors: np.ndarray  # (I, d) integer-valued floats in [−2, 2]
    categories: np.ndarray  # (I,), some −1 = unknown

    def __len__(self) -> int:
        return len(self.codes)


def random_catalogue(rng: np.random.Generator | int, size: int, *, levels: int = 3, alphabet: int = 3, bits: int = 8,
                     dim: int = 3, categories: int = 4) -> RandomCatalogue:
    """`size` items with SID codes from `alphabet` codes per level (3% unknown), `bits` random
    SimHash bits, integer-valued vectors (some all-zero) and a category (10% unknown)."""
    rng = np.random.default_rng(rng) if isinstance(rng, int) else rng
    words = (bits + 63) // 64
    codes = rng.integers(0, alphabet, size=(size, levels))  # (I, L)
    codes[rng.random((size, levels)) < 0.03] = -1
    signatures = np.zeros((size, words), dtype=np.uint64)  # (I, W)
    for bit in range(bits):
        on = rng.random(size) < 0.5
        signatures[on, bit // 64] |= np.uint64(1) << np.uint64(bit % 64)
    vectors = rng.integers(-2, 3, size=(size, dim)).astype(np.float64)  # (I, d), some all-zero
    category = rng.integers(0, categories, size=size)
    category[rng.random(size) < 0.1] = -1
    return RandomCatalogue(codes=codes, signatures=signatures, vectors=vectors, categories=category)


def random_user_case(seed: int, stored: int, samples: int, *, levels: int = 3, alphabet: int = 3, bits: int = 8,
                     dim: int = 3, catalogue: int | RandomCatalogue = 60, categories: int = 4,
                     dropped: int | None = None) -> tuple[UserHistory, Targets]:
    """One user's random stored sequence and samples, consistent in time, with many ties.

    Items come from `catalogue`: a shared `RandomCatalogue`, or a number of items for a private one
    drawn from this user's seed (see `random_catalogue`; small alphabets and few bits give many
    ties). Each sample's ts is chosen so that hist_len − dropped behaviours of the stored sequence
    precede it (including samples older than the whole stored sequence, end <= 0).
    """
    rng = np.random.default_rng(seed)
    if not isinstance(catalogue, RandomCatalogue):
        catalogue = random_catalogue(rng, catalogue, levels=levels, alphabet=alphabet, bits=bits, dim=dim,
                                     categories=categories)
    codes, signatures, vectors, category = (catalogue.codes, catalogue.signatures, catalogue.vectors,
                                            catalogue.categories)
    dropped = int(rng.integers(0, 5)) if dropped is None else dropped

    items = rng.integers(0, len(catalogue), size=stored)  # (T,) repeats are common
    ts = np.sort(rng.integers(1000, 1000 + 3 * stored + 10, size=stored))  # (T,) ascending, with equal seconds
    # Boundaries e where a sample's ts can cut: ts[e-1] < ts[e] (or the ends of the sequence).
    boundaries = [e for e in range(stored + 1) if e in (0, stored) or ts[e - 1] < ts[e]]
    ends = rng.choice(boundaries, size=samples)  # (S,)
    hist_len = ends + dropped
    sample_ts = np.where(ends < stored, ts[np.minimum(ends, max(stored - 1, 0))] if stored else 0,
                         (ts[-1] + 1) if stored else 1000)
    older = rng.random(samples) < 0.1  # some samples predate the stored sequence: end < 0
    hist_len = np.where(older, rng.integers(0, dropped + 1, size=samples), hist_len)
    sample_ts = np.where(older, (ts[0] if stored else 1000) - 1, sample_ts)
    target_items = rng.integers(0, len(catalogue), size=samples)  # (S,)

    history = UserHistory(item_ids=items.astype(np.int64), ts=ts.astype(np.int64), sid_codes=codes[items],
                          signatures=signatures[items], vectors=vectors[items], categories=category[items],
                          dropped=dropped)
    targets = Targets(item_ids=target_items.astype(np.int64), hist_len=hist_len.astype(np.int64),
                      sid_codes=codes[target_items], signatures=signatures[target_items],
                      vectors=vectors[target_items], categories=category[target_items],
                      ts=sample_ts.astype(np.int64))
    return history, targets


def in_memory(cases: list[tuple[UserHistory, Targets]]) -> tuple[Histories, Targets, np.ndarray]:
    """Every user's case as one batch for `retrieve_routes_many`: histories end to end, samples
    user after user, and each sample's user."""
    histories = [history for history, _ in cases]
    targets = [t for _, t in cases]
    lengths = np.array([len(h) for h in histories], dtype=np.int64)

    def joined(field: str, parts: list) -> np.ndarray:
        return np.concatenate([np.asarray(getattr(part, field)) for part in parts])

    batch = Histories(item_ids=joined("item_ids", histories), ts=joined("ts", histories),
                      sid_codes=joined("sid_codes", histories), starts=np.r_[0, np.cumsum(lengths)[:-1]],
                      lengths=lengths, dropped=np.array([h.dropped for h in histories], dtype=np.int64),
                      signatures=joined("signatures", histories), vectors=joined("vectors", histories),
                      categories=joined("categories", histories))
    batch_targets = Targets(**{field: joined(field, targets) for field in (
        "item_ids", "hist_len", "sid_codes", "signatures", "vectors", "categories", "ts")})
    return batch, batch_targets, np.repeat(np.arange(len(cases), dtype=np.int64), [len(t) for t in targets])
