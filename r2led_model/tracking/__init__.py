"""MLflow: tracked runs, the registered pyfunc model (from code) and the bundle it loads."""

from typing import Any


def __getattr__(name: str) -> Any:
    """The flat 0.1 module `r2led_model.tracking` is `r2led_model.tracking.runs` now."""
    from r2led_model.compat import moved_attribute

    return moved_attribute(__name__, name)
