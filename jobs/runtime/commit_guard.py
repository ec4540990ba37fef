"""Checks that run before every durable commit of this process (a Delta write, a model registration,
an alias move), so a run that may no longer write stops before its next commit, not after it.

The run lock installs one while it is held (`holding(check)`): its check raises if another run took
the lock over. `TableStore` calls `before_commit` at the start of every write it makes; the lock's own
writes to its table do not (they are how it proves it still holds the lock).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator

_checks: list[Callable[[str], None]] = []
_mutex = threading.Lock()


def before_commit(what: str) -> None:
    """Run every installed check; one raises if `what` must not be committed."""
    with _mutex:
        checks = list(_checks)
    for check in checks:
        check(what)


def install(check: Callable[[str], None]) -> None:
    with _mutex:
        _checks.append(check)


def remove(check: Callable[[str], None]) -> None:
    with _mutex:
        if check in _checks:
            _checks.remove(check)


@contextmanager
def holding(check: Callable[[str], None]) -> Iterator[None]:
    install(check)
    try:
        yield
    finally:
        remove(check)
