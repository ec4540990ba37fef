"""Injected failures, for proving that a crashed run can be re-run safely.

The dated pipeline arms one fault per run at most (`arm("sequences", 1)`): the n-th commit point
reached while that stage runs raises `InjectedFailure`. Commit points are every Delta write
(`TableStore`), a model registration and an alias change, so a fault lands *inside* a stage, after
some of its outputs are committed and before the stage is recorded as done: the worst moment for a
re-run. Unarmed, `commit_point` is a no-op.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)


class InjectedFailure(RuntimeError):
    """The failure an armed fault raises; nothing else raises it."""


@dataclass
class _Armed:
    stage: str
    after: int
    seen: int = 0


_armed: _Armed | None = None
_current_stage: str | None = None


def arm(stage: str, after: int = 1) -> None:
    """Fail at the `after`-th commit point reached inside `stage`."""
    global _armed
    if after < 1:
        raise ValueError("after must be >= 1")
    _armed = _Armed(stage, after)


def disarm() -> None:
    global _armed, _current_stage
    _armed, _current_stage = None, None


def enter_stage(stage: str | None) -> None:
    global _current_stage
    _current_stage = stage


def commit_point(what: str) -> None:
    """Called right after something durable was committed (a Delta write, a registration)."""
    if _armed is None or _current_stage != _armed.stage:
        return
    _armed.seen += 1
    if _armed.seen >= _armed.after:
        stage = _armed.stage
        disarm()
        log.warning("injected failure in stage %s after %s", stage, what)
        raise InjectedFailure(f"injected failure in stage {stage!r} after {what}")
