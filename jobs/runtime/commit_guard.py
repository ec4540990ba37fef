"""The hooks around every durable commit of this process (a Delta write, a model registration, an alias
move): checks that run before it, so a run that may no longer write stops before its next commit, and
observers told after it, so an injected failure lands between two commits.

The run lock installs a check while it is held (`holding(check)`): it raises if another run took the
lock over. A dated run with a fault plan installs the plan's observer (`observing(observer)`) while it
runs. `TableStore` calls `before_commit` at the start of every write it makes and `after_commit` once
it is committed; the lock's own writes to its table do neither (they are how it proves it still holds
the lock).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator

Hook = Callable[[str], None]

_checks: list[Hook] = []
_observers: list[Hook] = []
_mutex = threading.Lock()


def before_commit(what: str) -> None:
    """Run every installed check; one raises if `what` must not be committed."""
    _call(_checks, what)


def after_commit(what: str) -> None:
    """Tell every installed observer that `what` was committed; one may raise (an injected failure)."""
    _call(_observers, what)


def _call(hooks: list[Hook], what: str) -> None:
    with _mutex:
        installed = list(hooks)
    for hook in installed:
        hook(what)


def install(check: Hook) -> None:
    with _mutex:
        _checks.append(check)


def remove(check: Hook) -> None:
    with _mutex:
        if check in _checks:
            _checks.remove(check)


@contextmanager
def holding(check: Hook) -> Iterator[None]:
    install(check)
    try:
        yield
    finally:
        remove(check)


@contextmanager
def observing(observer: Hook) -> Iterator[None]:
    with _mutex:
        _observers.append(observer)
    try:
        yield
    finally:
        with _mutex:
            if observer in _observers:
                _observers.remove(observer)
