"""Multi-route mixed retrieval over one user's lifelong sequence (numpy only; design.md §4, "Routes").

The kernel ranks blocks of (samples × history positions) cells: one user's stored sequence
(T behaviours, ascending ts) against all S of that user's labelled samples as (S, T) arrays
(`retrieve_routes`), or many users at once (`retrieve_routes_many`), where samples of short
histories are pooled across users and each sample's history is gathered per row. The Spark job
(`jobs/retrieval/retrieve.py`) calls `retrieve_routes_many` once per partition; blocks are the only loop.

Point in time: a sample's history is positions [0, end) of the stored sequence with
end = hist_len − dropped, where hist_len counts the user's behaviours strictly before the
sample's ts and `dropped` is how many of the user's oldest behaviours were cut from storage
(`sequences.max_stored`). end <= 0 means an empty history; end > T is a data error and raises.

Routes (one per entry of `RetrievalConfig.routes`, each keeping its own k):
  * "sid<l>": the pool is the history behaviours whose SID prefix of length l equals the
    target's (semantic view), ranked by collaborative similarity to the target (collaborative
    view): SimHash Hamming distance ascending, or cosine descending.
  * "collab": the whole history, ranked the same way.
  * "category": SIM's hard search run offline over the whole stored history, for a two-stage baseline
    (not one of R2LED's routes): the behaviours of the target's category, most recent first, in every
    mode (category −1 = unknown matches nothing).
Ties are broken by recency (the later position first). An item without a collaborative vector
(all-zero signature words or vector) has no similarity to anything: such pairs rank after every
pair with one, so for a cold target the routes fall back to recency. Modes:
  * mixed: as above.
  * semantic_only: the same SID filters, every route ranked by recency only (no collaborative
    view anywhere, so "collab" becomes the most recent k).
  * collaborative_only: no SID filter, every route ranks the whole history by similarity; the
    routes then differ only in k.
  * lambda: no hard filter; every route ranks the whole history by
    λ · sem + (1 − λ) · sim01, where lcp is the length of the SID prefix shared with the
    target (0..L), sim01 is 1 − d / bits (Hamming) or (cos + 1) / 2 (cosine), and the semantic
    term depends on the route: sem = min(lcp, l) / l for "sid<l>" (sid1 only cares about the
    first code, sid2 about the first two, ...; sid<L> equals collab) and sem = lcp / L for
    "collab". The routes thus differ in ranking as well as in k.
SID codes < 0 mean "unknown" and match nothing (not even another unknown code).

Too few survivors: fill="pad" leaves the slots empty (position −1, mask False); fill="recent"
fills them with the most recent history positions that are not already in the route's list,
marked in `filled` (their mask is True: they are real behaviours).

Baselines' offline retrieval uses the same output: SIM-hard (same category as the target, most
recent first; category −1 = unknown matches nothing) and last-k recency.

Ranking is one stable argsort per route over an (S, T) key: entries that passed the filter
first, by score; then (fill="recent") the other valid positions; then positions at or beyond the
cut. Columns are sorted in reversed position order so that the stable sort puts the later of
two equal keys first. `r2led_model/retrieval/naive.py` is an independent per-row
pure-Python implementation of the same rules, used as the tests' oracle and the benchmark's
baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, get_args

import numpy as np

from r2led_model.config import FillMode, RetrievalMode, Similarity
from r2led_model.retrieval.route_names import CATEGORY_LEVEL, CATEGORY_ROUTE, COLLAB_ROUTE, route_level
from r2led_model.retrieval.simhash import hamming, has_signature, words_for

MODES: tuple[str, ...] = get_args(RetrievalMode)
SIMILARITIES: tuple[str, ...] = get_args(Similarity)
FILLS: tuple[str, ...] = get_args(FillMode)
# Samples × history positions ranked at once: a few dozen bytes per cell (S·T·L for the prefix
# test, a few S·T arrays for keys and orders), so a block's temporaries stay in the CPU caches;
# bigger blocks measured slower (`r2led benchmark retrieval`).
MAX_CELLS = 1 << 17

# Sort keys of the two classes that follow the ranked pool: fill candidates, then invalid.
_FLOAT_FILL_KEY = np.finfo(np.float64).max
_FLOAT_INVALID_KEY = np.inf
# Mixed-mode cosine key of a pair without a similarity: past every −cosine in [−1, 1].
_NO_COSINE_KEY = 2.0


# --------------------------------------------------------------------------------------
# Plan and data
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteSpec:
    """One route: its name, the SID prefix length it filters on (0 for "collab", −1 for "category") and its k."""

    name: str
    level: int
    k: int


@dataclass(frozen=True)
class RoutePlan:
    """What `retrieve_routes` computes: ordered routes plus the options they share."""

    routes: tuple[RouteSpec, ...]
    levels: int
    mode: str = "mixed"
    mix_lambda: float = 0.5
    similarity: str = "hamming"
    simhash_bits: int = 64
    fill: str = "pad"

    def __post_init__(self) -> None:
        if self.levels < 1:
            raise ValueError(f"levels must be >= 1, got {self.levels}")
        if not self.routes:
            raise ValueError("a route plan needs at least one route")
        names = [r.name for r in self.routes]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate routes in {names}")
        for route in self.routes:
            if route.k < 1:
                raise ValueError(f"route {route.name!r}: k must be >= 1, got {route.k}")
            expected = route_level(route.name, self.levels)
            if route.level != expected:
                raise ValueError(f"route {route.name!r}: level {route.level} != {expected}")
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r} is not one of {MODES}")
        if self.similarity not in SIMILARITIES:
            raise ValueError(f"similarity {self.similarity!r} is not one of {SIMILARITIES}")
        if self.fill not in FILLS:
            raise ValueError(f"fill {self.fill!r} is not one of {FILLS}")
        if not 0.0 <= self.mix_lambda <= 1.0:
            raise ValueError(f"mix_lambda must be in [0, 1], got {self.mix_lambda}")
        words_for(self.simhash_bits)

    @classmethod
    def from_config(cls, config, levels: int) -> "RoutePlan":
        """From a `RetrievalConfig` and the number of SID levels L of the codebook in use."""
        routes = tuple(
            RouteSpec(name=name, level=route_level(name, levels),
                      k=int(config.k_per_route.get(name, config.k)))
            for name in config.routes)
        unknown = set(config.k_per_route) - set(config.routes)
        if unknown:
            raise ValueError(f"k_per_route names routes not in routes: {sorted(unknown)}")
        return cls(routes=routes, levels=int(levels), mode=config.mode, mix_lambda=float(config.mix_lambda),
                   similarity=config.similarity, simhash_bits=int(config.simhash_bits), fill=config.fill)

    @property
    def route_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.routes)

    @property
    def max_level(self) -> int:
        return max(0, *(r.level for r in self.routes))

    @property
    def by_category(self) -> bool:
        """Whether a route filters by category (and the kernel needs categories)."""
        return any(r.level == CATEGORY_LEVEL for r in self.routes)

    def route(self, name: str) -> RouteSpec:
        for r in self.routes:
            if r.name == name:
                return r
        raise KeyError(name)


@dataclass
class UserHistory:
    """One user's stored sequence, oldest first (T behaviours).

    signatures: (T, W) uint64 SimHash words (similarity "hamming"); vectors: (T, d) float
    collaborative vectors (similarity "cosine"); categories: (T,) with −1 for unknown (None:
    all unknown); dropped: the user's oldest behaviours cut from storage before position 0.
    """

    item_ids: np.ndarray  # (T,)
    ts: np.ndarray  # (T,) ascending
    sid_codes: np.ndarray  # (T, L') with L' >= L; codes < 0 are unknown
    signatures: np.ndarray | None = None  # (T, W) uint64
    vectors: np.ndarray | None = None  # (T, d) float
    categories: np.ndarray | None = None  # (T,) int, −1 unknown
    dropped: int = 0

    def __len__(self) -> int:
        return len(self.item_ids)


@dataclass
class Targets:
    """S labelled samples of the same user: the target items and where each one's history ends.

    hist_len counts the user's behaviours strictly before the sample's ts (the `samples` column).
    ts is optional: only `assert_point_in_time` reads it.
    """

    item_ids: np.ndarray  # (S,)
    hist_len: np.ndarray  # (S,)
    sid_codes: np.ndarray  # (S, L')
    signatures: np.ndarray | None = None  # (S, W) uint64
    vectors: np.ndarray | None = None  # (S, d) float
    categories: np.ndarray | None = None  # (S,) int, −1 unknown
    ts: np.ndarray | None = None  # (S,)

    def __len__(self) -> int:
        return len(self.item_ids)


@dataclass
class RouteCandidates:
    """A route's top-k per sample, best first. Empty slots hold position −1 and mask False."""

    positions: np.ndarray  # (S, k) int32, indices into the user's stored sequence
    mask: np.ndarray  # (S, k) bool, True where the slot holds a behaviour
    filled: np.ndarray  # (S, k) bool, True where fill="recent" supplied the behaviour
    pool_size: np.ndarray  # (S,) int32, behaviours that passed the filter before truncation to k

    @property
    def k(self) -> int:
        return self.positions.shape[1]

    @classmethod
    def empty(cls, samples: int, k: int) -> "RouteCandidates":
        """`samples` rows of k empty slots, pool 0."""
        return cls(positions=np.full((samples, k), -1, dtype=np.int32), mask=np.zeros((samples, k), dtype=bool),
                   filled=np.zeros((samples, k), dtype=bool), pool_size=np.zeros(samples, dtype=np.int32))


@dataclass
class Histories:
    """U users' stored sequences end to end (N behaviours in all), for retrieving many users at once.

    User u owns rows [starts[u], starts[u] + lengths[u]) of every per-behaviour array; the fields
    mean what they mean in `UserHistory`, and `dropped` is per user.
    """

    item_ids: np.ndarray  # (N,)
    ts: np.ndarray  # (N,) ascending within each user
    sid_codes: np.ndarray  # (N, L')
    starts: np.ndarray  # (U,)
    lengths: np.ndarray  # (U,)
    dropped: np.ndarray  # (U,)
    signatures: np.ndarray | None = None  # (N, W) uint64
    vectors: np.ndarray | None = None  # (N, d) float
    categories: np.ndarray | None = None  # (N,) int, −1 unknown

    @classmethod
    def of(cls, history: UserHistory) -> "Histories":
        """One user's history as a batch of one."""
        return cls(item_ids=history.item_ids, ts=history.ts, sid_codes=history.sid_codes,
                   starts=np.zeros(1, dtype=np.int64), lengths=np.array([len(history)], dtype=np.int64),
                   dropped=np.array([int(history.dropped)], dtype=np.int64), signatures=history.signatures,
                   vectors=history.vectors, categories=history.categories)

    def __len__(self) -> int:
        return len(self.starts)


# --------------------------------------------------------------------------------------
# Point in time
# --------------------------------------------------------------------------------------


def history_end(history: UserHistory, targets: Targets) -> np.ndarray:
    """(S,) int64 end of each sample's history in the stored sequence, clipped at 0; raises if > T."""
    return _history_ends(Histories.of(history), targets, np.zeros(len(targets), dtype=np.int64))


def _history_ends(histories: Histories, targets: Targets, owner: np.ndarray) -> np.ndarray:
    """(S,) end of each sample's history within its owner's stored rows, clipped at 0; raises if beyond them."""
    hist_len = np.asarray(targets.hist_len, dtype=np.int64)
    dropped = np.asarray(histories.dropped, dtype=np.int64)[owner]  # (S,)
    stored = np.asarray(histories.lengths, dtype=np.int64)[owner]  # (S,)
    end = hist_len - dropped  # (S,)
    beyond = end > stored  # (S,)
    if beyond.any():
        row = int(np.argmax(beyond))
        raise ValueError(f"sample row {row}: hist_len {int(hist_len[row])} - dropped {int(dropped[row])} = "
                         f"{int(end[row])} exceeds the {int(stored[row])} stored behaviours (sequences and samples "
                         f"disagree)")
    return np.maximum(end, 0)


def assert_point_in_time(history: UserHistory, targets: Targets,
                         candidates: RouteCandidates | Mapping[str, RouteCandidates]) -> None:
    """Raise AssertionError unless every candidate lies in its sample's history.

    Checks: masked-in slots hold a position in [0, end); empty slots hold −1; no position twice in
    a row; and, where `targets.ts` is given, every candidate's ts is strictly before the sample's.
    """
    if isinstance(candidates, Mapping):
        for name, found in candidates.items():
            try:
                assert_point_in_time(history, targets, found)
            except AssertionError as exc:
                raise AssertionError(f"route {name!r}: {exc}") from None
        return
    end = history_end(history, targets)  # (S,)
    pos = candidates.positions.astype(np.int64)  # (S, k)
    mask = candidates.mask  # (S, k)
    S = len(targets)
    if pos.shape != mask.shape or pos.shape[0] != S or candidates.filled.shape != pos.shape:
        raise AssertionError(f"shapes disagree: positions {pos.shape}, mask {mask.shape}, "
                             f"filled {candidates.filled.shape}, {S} samples")
    bad = mask & ((pos < 0) | (pos >= end[:, None]))  # (S, k)
    if bad.any():
        s, j = map(int, np.argwhere(bad)[0])
        raise AssertionError(f"sample row {s}: slot {j} holds position {pos[s, j]}, outside its history [0, {end[s]})")
    if (pos[~mask] != -1).any():
        raise AssertionError("an empty slot holds a position other than -1")
    if (candidates.filled & ~mask).any():
        raise AssertionError("a slot is marked filled but masked out")
    ranked = np.sort(np.where(mask, pos, -1 - np.arange(pos.shape[1])[None, :]), axis=1)  # (S, k), empties distinct
    if (ranked[:, 1:] == ranked[:, :-1]).any():
        raise AssertionError("a position appears twice in one sample's candidates")
    if targets.ts is not None and mask.any():
        when = np.asarray(history.ts)[np.where(mask, pos, 0)]  # (S, k)
        late = mask & (when >= np.asarray(targets.ts)[:, None])  # (S, k)
        if late.any():
            s, j = map(int, np.argwhere(late)[0])
            raise AssertionError(f"sample row {s}: slot {j} holds a behaviour at ts {when[s, j]} >= the sample's ts "
                                 f"{targets.ts[s]}")


# --------------------------------------------------------------------------------------
# Similarity and prefixes
# --------------------------------------------------------------------------------------


def shared_prefix_length(history_codes: np.ndarray, target_codes: np.ndarray) -> np.ndarray:
    """(T, L) and (S, L) SID codes → (S, T) number of leading levels on which they agree (0..L).

    A code < 0 is unknown and agrees with nothing.
    """
    h = np.asarray(history_codes)  # (T, L)
    t = np.asarray(target_codes)  # (S, L)
    if h.shape[1] != t.shape[1]:
        raise ValueError(f"SID codes differ in levels: {h.shape} vs {t.shape}")
    return _prefix_lengths(h[None], t)


def _prefix_lengths(history_codes: np.ndarray, target_codes: np.ndarray) -> np.ndarray:
    """(1 or S, T', L) history codes (shared or per row) and (S, L) targets → (S, T') int8 shared prefix length."""
    S, width = len(target_codes), history_codes.shape[1]
    shared = np.zeros((S, width), dtype=np.int8)  # (S, T')
    still = np.ones((S, width), dtype=bool)  # (S, T'): agreed on every level so far
    for level in range(target_codes.shape[1]):  # L is small (3-4): one (S, T') comparison per level
        target = target_codes[:, level, None]  # (S, 1)
        still &= (history_codes[:, :, level] == target) & (target >= 0)  # (1 or S, T') vs (S, 1) → (S, T')
        shared += still
    return shared


def cosine_matrix(history_vectors: np.ndarray, target_vectors: np.ndarray) -> np.ndarray:
    """(T, d), (S, d) → (S, T) float64 cosine dot / (|t| · |h|); 0 where either vector is zero."""
    hv = np.asarray(history_vectors, dtype=np.float64)
    tv = np.asarray(target_vectors, dtype=np.float64)
    dots = tv @ hv.T  # (S, T)
    norms = np.sqrt((tv * tv).sum(axis=1))[:, None] * np.sqrt((hv * hv).sum(axis=1))[None, :]  # (S, T)
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)  # (S, T)


def _cosine_rows(history_vectors: np.ndarray, target_vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(1 or S, T', d) history vectors and (S, d) targets → (S, T') cosine as `cosine_matrix`, and (S, T')
    bool: both vectors non-zero (the pair has a similarity at all)."""
    hv = np.asarray(history_vectors, dtype=np.float64)  # (1 or S, T', d)
    tv = np.asarray(target_vectors, dtype=np.float64)  # (S, d)
    if hv.shape[0] == 1:
        return cosine_matrix(hv[0], tv), (tv != 0).any(axis=1)[:, None] & (hv[0] != 0).any(axis=1)[None, :]
    dots = np.einsum("std,sd->st", hv, tv)  # (S, T')
    norms = np.sqrt((tv * tv).sum(axis=1))[:, None] * np.sqrt((hv * hv).sum(axis=2))  # (S, T')
    known = (tv != 0).any(axis=1)[:, None] & (hv != 0).any(axis=2)  # (S, T')
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0), known


def _check_inputs(histories: Histories, targets: Targets, owner: np.ndarray, plan: RoutePlan) -> None:
    N, S, U = len(histories.item_ids), len(targets), len(histories)
    for name, arr, n in (("history.ts", histories.ts, N), ("history.sid_codes", histories.sid_codes, N),
                         ("history.lengths", histories.lengths, U), ("history.dropped", histories.dropped, U),
                         ("targets.hist_len", targets.hist_len, S), ("targets.sid_codes", targets.sid_codes, S),
                         ("owner", owner, S)):
        if len(arr) != n:
            raise ValueError(f"{name}: {len(arr)} rows, expected {n}")
    if U and ((histories.starts < 0).any() or (histories.starts + histories.lengths > N).any()):
        raise ValueError(f"history starts/lengths reach outside the {N} behaviours")
    if S and (owner.min() < 0 or owner.max() >= U):
        raise ValueError(f"owner: user indices must lie in [0, {U})")
    needs_codes = plan.levels if plan.mode == "lambda" else plan.max_level
    if plan.mode != "collaborative_only":
        for name, codes in (("history.sid_codes", histories.sid_codes), ("targets.sid_codes", targets.sid_codes)):
            if np.ndim(codes) != 2 or np.shape(codes)[1] < needs_codes:
                raise ValueError(f"{name}: expected (n, >= {needs_codes}) SID codes, got shape {np.shape(codes)}")
    if plan.by_category:
        for name, cats, n in (("history.categories", histories.categories, N),
                              ("targets.categories", targets.categories, S)):
            if cats is None or len(cats) != n:
                raise ValueError(f"{name}: the {CATEGORY_ROUTE!r} route needs {n} categories")
    if plan.mode == "semantic_only" or all(r.level == CATEGORY_LEVEL for r in plan.routes):
        return
    if plan.similarity == "hamming":
        width = words_for(plan.simhash_bits)
        for name, sig, n in (("history.signatures", histories.signatures, N),
                             ("targets.signatures", targets.signatures, S)):
            if sig is None:
                raise ValueError(f"{name}: similarity 'hamming' needs SimHash signatures")
            if np.shape(sig) != (n, width) or np.asarray(sig).dtype != np.uint64:
                raise ValueError(f"{name}: expected ({n}, {width}) uint64 for {plan.simhash_bits} bits, got "
                                 f"{np.shape(sig)} {np.asarray(sig).dtype}")
    else:
        for name, vec, n in (("history.vectors", histories.vectors, N), ("targets.vectors", targets.vectors, S)):
            if vec is None:
                raise ValueError(f"{name}: similarity 'cosine' needs collaborative vectors")
            if np.ndim(vec) != 2 or len(vec) != n:
                raise ValueError(f"{name}: expected ({n}, d) vectors, got {np.shape(vec)}")
        if np.shape(histories.vectors)[1] != np.shape(targets.vectors)[1]:
            raise ValueError("history.vectors and targets.vectors differ in dimension")


# --------------------------------------------------------------------------------------
# Ranking
# --------------------------------------------------------------------------------------


def _rank(key: np.ndarray | None, key_top: int | None, passes: np.ndarray, valid: np.ndarray, k: int,
          fill: str) -> RouteCandidates:
    """Top-k of one route over an (S, T') block (T' = the columns kept, positions 0..T'−1).

    key: (S, T'), smaller is better among `passes`; None ranks by recency only. An integer key
    must lie in [0, key_top]; a float key must be finite. passes ⊆ valid.
    """
    S, width = passes.shape
    # Class 0: in the pool; 1: fill candidate (fill="recent" only); 2: never chosen.
    if fill == "recent":
        klass = (~passes).view(np.int8) + (~valid).view(np.int8)  # (S, T'); passes ⊆ valid
    else:
        klass = (~passes).view(np.int8) * np.int8(2)  # (S, T')
    if key is None:
        sort_key = klass
    elif key_top is not None:
        dtype = np.int16 if key_top + 2 < (1 << 15) else np.int64  # 16-bit keys get numpy's radix sort
        sort_key = np.where(passes, key, key_top + klass.astype(dtype)).astype(dtype, copy=False)  # (S, T')
    else:
        sort_key = np.where(passes, key, np.where(klass == 1, _FLOAT_FILL_KEY, _FLOAT_INVALID_KEY))  # (S, T')
    taken = min(k, width)
    # Reversed columns + stable sort: of two equal keys, the later position comes first.
    order = np.argsort(sort_key[:, ::-1], axis=1, kind="stable")[:, :taken]  # (S, taken)
    positions = width - 1 - order  # (S, taken)
    chosen = np.take_along_axis(klass, positions, axis=1)  # (S, taken)
    mask = chosen < 2  # (S, taken)
    out = RouteCandidates.empty(S, k)
    out.positions[:, :taken] = np.where(mask, positions, -1)
    out.mask[:, :taken] = mask
    out.filled[:, :taken] = chosen == 1
    out.pool_size[:] = np.count_nonzero(passes, axis=1)
    return out


def _place(out: RouteCandidates, rows: slice, part: RouteCandidates) -> None:
    out.positions[rows] = part.positions
    out.mask[rows] = part.mask
    out.filled[rows] = part.filled
    out.pool_size[rows] = part.pool_size


def _reordered(candidates: RouteCandidates, index: np.ndarray) -> RouteCandidates:
    return RouteCandidates(positions=candidates.positions[index], mask=candidates.mask[index],
                           filled=candidates.filled[index], pool_size=candidates.pool_size[index])


# --------------------------------------------------------------------------------------
# Blocks: which samples are ranked together
# --------------------------------------------------------------------------------------


@dataclass
class _Block:
    """Samples ranked together: `span` of the ranking order, i.e. `rows` (S_b,) of the targets;
    history columns 0..T'−1.

    `history(field)` is that per-behaviour field over those columns: (1, T', ...) sliced from one
    user's rows when every sample of the block is that user's, else (S_b, T', ...) gathered per
    sample (columns past a sample's own end hold someone else's rows; `valid` masks them).
    """

    span: slice
    rows: np.ndarray  # (S_b,)
    valid: np.ndarray  # (S_b, T')
    history: Callable[[np.ndarray], np.ndarray]


def _ranking_order(histories: Histories, owner: np.ndarray, end: np.ndarray,
                   max_cells: int) -> tuple[np.ndarray, np.ndarray]:
    """(S,) the order in which samples are ranked, and (S,) each one's group in that order.

    A user whose samples alone fill a block (S_u · T'_u ≥ max_cells) is a group of its own, where
    the history is one shared slice. The other users' samples are pooled in group −1, so that many
    short histories cost one numpy call instead of one per user. Within a group, samples sort by
    end, so that a block's rows need about the same width and no columns that nobody can see.
    """
    users = len(histories)
    samples = np.bincount(owner, minlength=users)  # (U,)
    widest = np.zeros(users, dtype=np.int64)  # (U,) the largest end among each user's samples
    np.maximum.at(widest, owner, end)
    own = samples * widest >= max_cells  # (U,)
    group = np.where(own[owner], owner, -1)  # (S,)
    order = np.lexsort((end, group))  # (S,) by group, then end
    return order, group[order]


def _blocks(histories: Histories, owner: np.ndarray, end: np.ndarray, order: np.ndarray, group: np.ndarray,
            max_cells: int) -> Iterator[_Block]:
    """Consecutive runs of `order` within one group, of at most ~max_cells (samples × width) cells,
    covering every sample with a non-empty history."""
    if not len(end):
        return
    sorted_end = end[order]
    cuts = np.flatnonzero(np.r_[True, group[1:] != group[:-1], True])
    starts = np.asarray(histories.starts, dtype=np.int64)
    last_row = max(len(histories.item_ids) - 1, 0)
    position = np.arange(int(end.max()))
    for first, stop in zip(cuts[:-1], cuts[1:]):
        i = first + int(np.searchsorted(sorted_end[first:stop], 1))  # rows with end 0 see nothing
        while i < stop:
            # The most rows whose (rows × widest end) fits; ends ascend, so shrinking only helps.
            j = min(stop, i + max(1, max_cells // int(sorted_end[i])))
            while j - i > 1 and (j - i) * int(sorted_end[j - 1]) > max_cells:
                j = i + max(1, max_cells // int(sorted_end[j - 1]))
            rows = order[i:j]
            width = int(sorted_end[j - 1])
            row_starts = starts[owner[rows]]  # (S_b,)
            if (row_starts == row_starts[0]).all():
                first_row = int(row_starts[0])

                def history(field: np.ndarray, a: int = first_row, w: int = width) -> np.ndarray:
                    return field[a:a + w][None]  # (1, T', ...)
            else:
                index = np.minimum(row_starts[:, None] + position[None, :width], last_row)  # (S_b, T')

                def history(field: np.ndarray, index: np.ndarray = index) -> np.ndarray:
                    return field[index]  # (S_b, T', ...)
            yield _Block(span=slice(i, j), rows=rows, valid=position[None, :width] < end[rows][:, None],
                         history=history)
            i = j


def _in_blocks(histories: Histories, owner: np.ndarray, end: np.ndarray, max_cells: int,
               outputs: Mapping[str, int], rank_block: Callable[[_Block], Mapping[str, RouteCandidates]]
               ) -> dict[str, RouteCandidates]:
    """Run `rank_block` over every block and return its candidates per output name (k each), in
    the samples' own order. Blocks write contiguous runs of the ranking order; one gather puts
    them back at the end."""
    order, group = _ranking_order(histories, owner, end, max_cells)
    ranked = {name: RouteCandidates.empty(len(end), k) for name, k in outputs.items()}
    for block in _blocks(histories, owner, end, order, group, max_cells):
        for name, part in rank_block(block).items():
            _place(ranked[name], block.span, part)
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    return {name: _reordered(found, back) for name, found in ranked.items()}


# --------------------------------------------------------------------------------------
# Public kernels
# --------------------------------------------------------------------------------------


def retrieve_routes(history: UserHistory, targets: Targets, plan: RoutePlan, *,
                    max_cells: int = MAX_CELLS) -> dict[str, RouteCandidates]:
    """Every route of `plan` for all of one user's samples → {route name: RouteCandidates}, in plan order."""
    return retrieve_routes_many(Histories.of(history), targets, np.zeros(len(targets), dtype=np.int64), plan,
                                max_cells=max_cells)


def retrieve_routes_many(histories: Histories, targets: Targets, owner: np.ndarray, plan: RoutePlan, *,
                         max_cells: int = MAX_CELLS) -> dict[str, RouteCandidates]:
    """Every route of `plan` for samples of many users at once; sample s belongs to user owner[s].

    The same answer, sample by sample, as `retrieve_routes` on each user alone.
    """
    owner = np.asarray(owner, dtype=np.int64)
    _check_inputs(histories, targets, owner, plan)
    end = _history_ends(histories, targets, owner)  # (S,)
    filtered = plan.mode in ("mixed", "semantic_only")
    need_prefix = plan.mode == "lambda" or (filtered and plan.max_level > 0)
    levels = plan.levels if plan.mode == "lambda" else plan.max_level
    h_codes = _compact_codes(np.asarray(histories.sid_codes)[:, :levels]) if need_prefix else None  # (N, L)
    t_codes = np.asarray(targets.sid_codes)[:, :levels] if need_prefix else None  # (S, L)
    similar = plan.mode != "semantic_only" and any(r.level != CATEGORY_LEVEL for r in plan.routes)

    def rank_block(block: _Block) -> dict[str, RouteCandidates]:
        rows, valid = block.rows, block.valid
        lcp = _prefix_lengths(block.history(h_codes), t_codes[rows]) if need_prefix else None  # (S_b, T')
        key, key_top = _similarity_key(histories, targets, plan, block) if similar else (None, None)
        # lambda: key is sim01; its (1 − λ) share is the same for every route.
        collab_part = (1 - plan.mix_lambda) * key if plan.mode == "lambda" else None  # (S_b, T')
        found = {}
        for route in plan.routes:
            if route.level == CATEGORY_LEVEL:
                h_cat = block.history(np.asarray(histories.categories))  # (1 or S_b, T')
                t_cat = np.asarray(targets.categories)[rows][:, None]  # (S_b, 1)
                found[route.name] = _rank(None, None, valid & (h_cat == t_cat) & (t_cat >= 0), valid, route.k,
                                          plan.fill)
                continue
            passes = valid & (lcp >= route.level) if filtered and route.level > 0 else valid  # (S_b, T')
            if plan.mode == "lambda":
                route_key = -_lambda_score(lcp, collab_part, route.level, plan)  # (S_b, T'), per route
                found[route.name] = _rank(route_key, None, passes, valid, route.k, plan.fill)
            else:
                found[route.name] = _rank(key, key_top, passes, valid, route.k, plan.fill)
        return found

    return _in_blocks(histories, owner, end, max_cells, {r.name: r.k for r in plan.routes}, rank_block)


def _compact_codes(codes: np.ndarray) -> np.ndarray:
    """SID codes as int16 when they fit (they are gathered per sample and position: 4x less to move)."""
    if codes.size and codes.dtype != np.int16 and -(1 << 15) <= codes.min() and codes.max() < (1 << 15):
        return codes.astype(np.int16)
    return codes


def _similarity_key(histories: Histories, targets: Targets, plan: RoutePlan,
                    block: _Block) -> tuple[np.ndarray, int | None]:
    """(S_b, T') collaborative view of the target vs the history.

    mixed / collaborative_only: a sort key, smaller = more similar (Hamming distance or −cosine),
    and the largest value an integer key can take (None for float keys). lambda: sim01 in [0, 1],
    larger = more similar (1 − d / bits or (cos + 1) / 2), and None; `_lambda_score` mixes it per route.

    A pair where either item has no collaborative vector (an all-zero signature or vector) has no
    similarity: it ranks after every pair that has one (key bits + 1, or 2 past the cosine range;
    sim01 = 0), so among such pairs recency decides, not the popcount of the other signature.
    """
    if plan.similarity == "hamming":
        h_sig = block.history(np.asarray(histories.signatures))  # (1 or S_b, T', W)
        t_sig = np.asarray(targets.signatures)[block.rows][:, None, :]  # (S_b, 1, W)
        distance = hamming(t_sig, h_sig)  # (S_b, T')
        known = has_signature(t_sig) & has_signature(h_sig)  # (S_b, T')
        if plan.mode != "lambda":
            return np.where(known, distance, plan.simhash_bits + 1), plan.simhash_bits + 1
        return np.where(known, 1 - distance / plan.simhash_bits, 0.0), None  # (S_b, T') in [0, 1]
    cosine, known = _cosine_rows(block.history(np.asarray(histories.vectors)),
                                 np.asarray(targets.vectors)[block.rows])  # (S_b, T'), (S_b, T')
    if plan.mode != "lambda":
        return np.where(known, -cosine, _NO_COSINE_KEY), None
    return np.where(known, (cosine + 1) / 2, 0.0), None  # (S_b, T') in [0, 1]


def _lambda_score(lcp: np.ndarray, collab_part: np.ndarray, level: int, plan: RoutePlan) -> np.ndarray:
    """(S_b, T') λ-score of one route: λ · sem + collab_part, collab_part = (1 − λ) · sim01.

    sem = min(lcp, l) / l for route "sid<l>" (level l > 0), lcp / L for "collab" (level 0).
    """
    depth = level if level > 0 else plan.levels
    semantic = (np.minimum(lcp, depth) if level > 0 else lcp) / depth  # (S_b, T') in [0, 1]
    return plan.mix_lambda * semantic + collab_part


def retrieve_sim_hard(history: UserHistory, targets: Targets, k: int, *, fill: str = "pad",
                      max_cells: int = MAX_CELLS) -> RouteCandidates:
    """SIM-hard: history behaviours of the target's category, most recent first (−1 matches nothing)."""
    if history.categories is None or targets.categories is None:
        raise ValueError("SIM-hard retrieval needs categories for the history and the targets")
    return _recency_route(history, targets, k, fill, max_cells, by_category=True)


def retrieve_recent(history: UserHistory, targets: Targets, k: int, *, max_cells: int = MAX_CELLS) -> RouteCandidates:
    """Last-k: the k most recent behaviours of each sample's history."""
    return _recency_route(history, targets, k, "pad", max_cells, by_category=False)


def _recency_route(history: UserHistory, targets: Targets, k: int, fill: str, max_cells: int,
                   by_category: bool) -> RouteCandidates:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if fill not in FILLS:
        raise ValueError(f"fill {fill!r} is not one of {FILLS}")
    owner = np.zeros(len(targets), dtype=np.int64)
    histories = Histories.of(history)
    end = _history_ends(histories, targets, owner)  # (S,)

    def rank_block(block: _Block) -> dict[str, RouteCandidates]:
        passes = block.valid
        if by_category:
            h_cat = block.history(np.asarray(history.categories))  # (1, T')
            t_cat = np.asarray(targets.categories)[block.rows][:, None]  # (S_b, 1)
            passes = block.valid & (h_cat == t_cat) & (t_cat >= 0)  # (S_b, T')
        return {"route": _rank(None, None, passes, block.valid, k, fill)}

    return _in_blocks(histories, owner, end, max_cells, {"route": k}, rank_block)["route"]


__all__ = [
    "CATEGORY_ROUTE", "COLLAB_ROUTE", "MAX_CELLS", "MODES", "Histories", "RouteCandidates", "RoutePlan", "RouteSpec", "Targets",
    "UserHistory", "assert_point_in_time", "cosine_matrix", "history_end", "retrieve_recent", "retrieve_routes",
    "retrieve_routes_many", "retrieve_sim_hard", "shared_prefix_length",
]
