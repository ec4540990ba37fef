"""Multi-route retrieval over a lifelong history: the routes' grammar, the vectorised kernel, its naive reference."""

from typing import Any


def __getattr__(name: str) -> Any:
    """The flat 0.1 module `r2led_model.retrieval` is `r2led_model.retrieval.multi_route` now."""
    from r2led_model.compat import moved_attribute

    return moved_attribute(__name__, name)
