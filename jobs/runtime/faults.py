"""Injected failures, for proving that a crashed run can be re-run safely.

A dated run carries at most one `FaultPlan` in its run context (`--inject-failure STAGE[:N]`): the N-th
commit reached while that stage runs raises `InjectedFailure`. Commits are every Delta write
(`TableStore`), a model registration and an alias change, each announced through
`jobs.runtime.commit_guard.after_commit`, so a fault lands *inside* a stage, after some of its outputs are
committed and before the stage is recorded as done: the worst moment for a re-run. The plan counts only
while it is installed (`armed`) and only inside its stage (`inside`); it fires once.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from jobs.runtime import commit_guard

log = logging.getLogger(__name__)


class InjectedFailure(RuntimeError):
    """The failure an armed fault raises; nothing else raises it."""


@dataclass
class FaultPlan:
    """Fail at the `after`-th commit reached inside `stage`."""

    stage: str
    after: int = 1
    _seen: int = field(default=0, init=False, repr=False)
    _running: str | None = field(default=None, init=False, repr=False)  # the stage running now
    _fired: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.after < 1:
            raise ValueError(f"a fault plan's commit count must be >= 1, got {self.after}")

    @contextmanager
    def armed(self) -> Iterator[FaultPlan]:
        """Count this process's commits while the block runs."""
        with commit_guard.observing(self._committed):
            yield self

    @contextmanager
    def inside(self, stage: str) -> Iterator[None]:
        """The block is `stage` running: its commits count when it is the plan's stage."""
        self._running = stage
        try:
            yield
        finally:
            self._running = None

    def _committed(self, what: str) -> None:
        if self._fired or self._running != self.stage:
            return
        self._seen += 1
        if self._seen >= self.after:
            self._fired = True
            log.warning("injected failure in stage %s after %s", self.stage, what)
            raise InjectedFailure(f"injected failure in stage {self.stage!r} after {what}")
