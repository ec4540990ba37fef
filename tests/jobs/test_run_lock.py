"""The workspace's run lock on a real Delta table: one holder at a time (also when two take it at
once), stale locks taken over (by the holder's own timeout, never a shorter one of the taker's), a
heartbeat that runs on its own, a holder that lost the lock stopped before its next commit, a stage
command refused while a run holds the lock, a release that frees only one's own lock."""

from __future__ import annotations

import threading
import time

import pytest
from pyspark.sql import functions as F

from jobs.runtime.run_lock import LOCK_TABLE, LockHeldError, LockLostError, RunLock
from jobs.runtime import run_lock
from jobs.runtime.tables import TableStore
from tests.helpers import IVY_DIR


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
    third = lock(store, "host-c:33:cccc")
    assert third.acquire() is None  # a free lock is taken at once
    third.release()


def test_two_runs_taking_the_lock_at_once_get_one_holder(spark, make_config):
    store = TableStore(spark, make_config().tables)
    for round_ in range(2):  # first with no lock table (creation and insert race), then on a freed row
        outcomes: dict[str, str] = {}
        locks = {f"host:{n}:{round_}": lock(store, f"host:{n}:{round_}") for n in (1, 2)}
        start = threading.Barrier(2)

        def take(owner):
            start.wait()
            try:
                locks[owner].acquire()
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
        locks[winner].release()


def test_staleness_is_judged_by_the_holders_own_timeout_not_the_takers(spark, make_config):
    store = TableStore(spark, make_config().tables)
    holder = lock(store, "host-a:11:aaaa", timeout_minutes=180)
    holder.acquire()
    try:
        age(store, 2)  # a stage running for two minutes: no renewal due yet
        with pytest.raises(LockHeldError, match=r"host-a:11:aaaa .*timeout 180 min"):
            lock(store, "host-b:22:bbbb", timeout_minutes=1).acquire()
        holder.check_held()  # still the holder
        assert holder.holder().owner == "host-a:11:aaaa"
    finally:
        holder.release()


def test_the_heartbeat_runs_on_its_own_thread_and_keeps_a_busy_holder_alive(spark, make_config):
    store = TableStore(spark, make_config().tables)
    holder = lock(store, "host-a:11:aaaa", timeout_minutes=0.1)  # 6 s: a beat every second
    holder.acquire()
    try:
        first_beat = holder.holder().heartbeat_at
        time.sleep(8)  # longer than the timeout, and this thread does nothing
        assert holder.holder().heartbeat_at > first_beat
        with pytest.raises(LockHeldError):
            lock(store, "host-b:22:bbbb", timeout_minutes=0.1).acquire()
    finally:
        holder.release()
    assert holder.holder() is None


def test_a_holder_that_lost_the_lock_stops_before_its_next_commit(spark, make_config):
    store = TableStore(spark, make_config().tables)
    store.overwrite("items_rejected", spark.createDataFrame([(1, "embed-items", "no_text")],
                                                            "item_id BIGINT, stage STRING, reason STRING"))
    holder = lock(store, "host-a:11:aaaa", timeout_minutes=0.05)
    holder.acquire()
    # The process stalls (its heartbeat thread too) for longer than its timeout, and a run takes over.
    holder._stop.set()
    holder._thread.join()
    age(store, 1)
    taker = lock(store, "host-b:22:bbbb", timeout_minutes=180)
    assert taker.acquire().owner == "host-a:11:aaaa"
    try:
        version = store.version("items_rejected")
        with pytest.raises(LockLostError, match=r"lost the workspace lock to host-b:22:bbbb.*stopped before a "
                                                r"write of items_rejected"):
            store.overwrite("items_rejected", spark.createDataFrame(
                [(2, "embed-items", "no_text")], "item_id BIGINT, stage STRING, reason STRING"))
        assert store.version("items_rejected") == version  # nothing was double-written
        assert [r.item_id for r in store.read("items_rejected").collect()] == [1]
        holder.release()  # frees nothing: the lock is the taker's
        assert taker.holder().owner == "host-b:22:bbbb"
    finally:
        holder.release()
        taker.release()


def test_a_stage_command_refuses_while_a_run_holds_the_lock_and_takes_it_otherwise(spark, tmp_path, capsys):
    from jobs.registry import score
    from jobs.sids import train_codebook

    config_args = ["--env", "tiny", "--set", f"workspace.root={tmp_path}", "--set", f"spark.ivy_dir={IVY_DIR}"]
    store = TableStore(spark, make_store_config(tmp_path).tables)
    nightly = run_lock.RunLock(store, run_date="2024-01-19", timeout_minutes=180, owner="etl-7:4242:1f2e3d4c")
    nightly.acquire()
    try:
        for main, args in ((score.main, ["--date", "2024-01-19"]), (train_codebook.main, [])):
            assert main(config_args + args) == 1
            assert "the workspace is locked by etl-7:4242:1f2e3d4c (pipeline --date 2024-01-19" in \
                capsys.readouterr().err
    finally:
        nightly.release()
    # Free: the command takes the lock itself (and fails on its own terms: no table to score from).
    assert score.main(config_args + ["--date", "2024-01-19"]) == 1
    err = capsys.readouterr().err
    assert "run lock taken by" in err and "r2led score" in err and "run lock released" in err


def make_store_config(root):
    from tests.helpers import config_in

    return config_in(root)
