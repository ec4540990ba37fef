"""What tables' columns say about their shape, in one place: the routes of `route_candidates`
(columns `cand_<route>_<part>`) and the SID levels of `item_sids`."""

from __future__ import annotations

from typing import Iterable

from pyspark.sql import DataFrame

# Per route, route_candidates holds its candidates' history positions, item ids and validity (k
# each) and its pool size before the top-k cut.
CANDIDATE_PARTS = ("pos", "item", "mask", "pool")
CANDIDATE_KINDS = {"pos": "ARRAY<INT>", "item": "ARRAY<BIGINT>", "mask": "ARRAY<BOOLEAN>", "pool": "INT"}


def candidate_column(route: str, part: str) -> str:
    """The route_candidates column of `part` (one of CANDIDATE_PARTS) for `route`."""
    if part not in CANDIDATE_PARTS:
        raise ValueError(f"unknown candidate part {part!r}; known: {', '.join(CANDIDATE_PARTS)}")
    return f"cand_{route}_{part}"


def candidate_routes(columns: Iterable[str]) -> list[str]:
    """The routes a route_candidates-shaped frame holds, in column order (a route's `pos` column names it)."""
    prefix, suffix = "cand_", "_pos"
    return [c[len(prefix):-len(suffix)] for c in columns if c.startswith(prefix) and c.endswith(suffix)]


def sid_levels(item_sids: DataFrame) -> int:
    """How many levels the SIDs of an `item_sids`-shaped frame have (every row has the same count)."""
    first = item_sids.select("semantic_codes").first()
    if first is None:
        raise ValueError("item_sids is empty: run `r2led assign-sids` first")
    return len(first[0])
