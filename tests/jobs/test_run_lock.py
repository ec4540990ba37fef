"""The workspace's run lock on a real Delta table: one holder at a time (also when two take it at
once), stale locks taken over, a lost lock noticed, a release that frees only one's own lock."""

from __future__ import annotations

import threading
import time

import pytest
from pyspark.sql import functions as F

from jobs.orchestration.run_lock import LOCK_TABLE, LockHeldError, LockLostError, RunLock
from jobs.runtime.tables import TableStore


def lock(store, owner, day="2024-01-19", timeout_minutes=180):
    return RunLock(store, run_date=day, timeout_minutes=timeout_minutes, owner=owner)


def age(store, minutes):
    """Pretend the holder's last heartbeat was `minutes` ago (a run that died)."""
    store.update_where(LOCK_TABLE, F.col("owner").isNotNull(), {"heartbeat_at": F.lit(int(time.time()) - minutes * 60)})


def test_one_holder_a_stale_lock_is_taken_over_and_the_old_holder_stops(spark, make_config):
    store = TableStore(spark, make_config().tables)
    first, second = lock(store, "host-a:11:aaaa"), lock(store, "host-b:22:bbbb", day="2024-01-20")
    assert first.acquire() is None
    with pytest.raises(LockHeldError, match=r"locked by host-a:11:aaaa \(pipeline --date 2024-01-19"):
        second.acquire()
    first.heartbeat()  # still the holder
    age(store, 179)
    with pytest.raises(LockHeldError):
        second.acquire()  # not stale yet
    age(store, 181)
    taken_from = second.acquire()
    assert taken_from is not None and taken_from.owner == "host-a:11:aaaa"
    assert store.read(LOCK_TABLE).count() == 1 and second.holder().owner == "host-b:22:bbbb"
    with pytest.raises(LockLostError, match="host-b:22:bbbb"):
        first.heartbeat()
    first.release()  # not the holder: frees nothing
    assert second.holder().owner == "host-b:22:bbbb"
    second.release()
    assert second.holder() is None
    assert lock(store, "host-c:33:cccc").acquire() is None  # a free lock is taken at once


def test_two_runs_taking_the_lock_at_once_get_one_holder(spark, make_config):
    store = TableStore(spark, make_config().tables)
    for round_ in range(2):  # first with no lock table (creation and insert race), then on a freed row
        outcomes: dict[str, str] = {}
        start = threading.Barrier(2)

        def take(owner):
            start.wait()
            try:
                lock(store, owner).acquire()
                outcomes[owner] = "holder"
            except LockHeldError:
                outcomes[owner] = "refused"

        threads = [threading.Thread(target=take, args=(f"host:{n}:{round_}",)) for n in (1, 2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes.values()) == ["holder", "refused"], outcomes
        winner = next(o for o, v in outcomes.items() if v == "holder")
        assert lock(store, "reader").holder().owner == winner
        lock(store, winner).release()


def test_renewal_when_due_writes_nothing_until_a_quarter_of_the_timeout_has_passed(spark, make_config,
                                                                                   monkeypatch):
    store = TableStore(spark, make_config().tables)
    holder = lock(store, "host-a:11:aaaa", timeout_minutes=60)
    holder.acquire()
    taken_at = store.version(LOCK_TABLE)
    assert holder.renew_if_due() is False and store.version(LOCK_TABLE) == taken_at

    from jobs.orchestration import run_lock
    start = time.monotonic()
    monkeypatch.setattr(run_lock.time, "monotonic", lambda: start + 15 * 60)  # a quarter of 60 minutes later
    assert holder.renew_if_due() is True and store.version(LOCK_TABLE) == taken_at + 1
    assert holder.renew_if_due() is False  # renewed just now
    # Taken over after its heartbeat went stale: the next renewal that is due notices.
    age(store, 61)
    lock(store, "host-b:22:bbbb", timeout_minutes=60).acquire()
    monkeypatch.setattr(run_lock.time, "monotonic", lambda: start + 30 * 60)
    with pytest.raises(LockLostError, match="host-b:22:bbbb"):
        holder.renew_if_due()
