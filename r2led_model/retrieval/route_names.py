"""The route-name grammar, in one place: "collab", "category" or "sid<l>" (l ≥ 1), and each name's level.

Read by the config's check, the retrieval plan and the models; it imports nothing of the package, so the
config can use it.
"""

from __future__ import annotations

import re

COLLAB_ROUTE = "collab"
CATEGORY_ROUTE = "category"
CATEGORY_LEVEL = -1  # the category route's level: no SID prefix
_SID_ROUTE = re.compile(r"^sid([0-9]+)$")


def route_level(name: str, levels: int | None = None) -> int:
    """A route name's level: l for "sid<l>", 0 for "collab", CATEGORY_LEVEL for "category".

    Raises ValueError for any other name, and for a SID level outside 1..`levels` (with `levels` given:
    the SIDs actually assigned)."""
    if name == COLLAB_ROUTE:
        return 0
    if name == CATEGORY_ROUTE:
        return CATEGORY_LEVEL
    level = _sid_level(name)
    if level < 1 or (levels is not None and level > levels):
        bound = f"1 <= l <= {levels}" if levels is not None else "l >= 1"
        raise ValueError(f"route {name!r} is not {COLLAB_ROUTE!r}, {CATEGORY_ROUTE!r} or 'sid<l>' with {bound}")
    return level


def is_sid_route(name: str | None) -> bool:
    """Whether `name` is a well-formed "sid<l>" route."""
    return name is not None and _sid_level(name) >= 1


def _sid_level(name: str) -> int:
    """l of "sid<l>"; 0 for any other name."""
    match = _SID_ROUTE.match(name)
    return int(match.group(1)) if match else 0
