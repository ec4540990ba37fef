"""The workspace's run lock: one row of the Delta table `pipeline_lock`, so two dated runs never write
the same tables at once.

A run takes the lock with one conditional MERGE: the row is inserted when there is none, or taken
over when it is free (owner null) or stale (no heartbeat for `pipeline.lock_timeout_minutes`). Two
runs racing for it both MERGE into the same one-file table, so Delta's optimistic concurrency
(Serializable isolation on this table) commits one and refuses the other; the MERGE's own count
of rows written says whether this run won, and only a loser reads the row to name the winner. The
holder renews its heartbeat between stages once a quarter of the timeout has passed since the last
renewal (sooner, nobody can have taken it over: that takes a heartbeat older than the whole
timeout), and frees the lock when it ends, failed or not; a run that finds its lock taken over
stops before its next stage.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass

from pyspark.sql import functions as F

from jobs.runtime.tables import COMMIT_CONFLICTS, TableStore

log = logging.getLogger(__name__)

LOCK_TABLE = "pipeline_lock"
_ROW = "pipeline"  # one lock per workspace (per tables root or schema)
_SCHEMA = "name STRING, owner STRING, run_date STRING, taken_at BIGINT, heartbeat_at BIGINT"


class LockHeldError(RuntimeError):
    """Another run holds the workspace's lock; this run wrote nothing."""


class LockLostError(RuntimeError):
    """This run's lock was taken over (it stopped renewing it for longer than the timeout)."""


def _utc(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class LockHolder:
    owner: str
    run_date: str
    taken_at: int  # epoch seconds
    heartbeat_at: int

    def describe(self, now: int) -> str:
        return (f"{self.owner} (pipeline --date {self.run_date}, since {_utc(self.taken_at)}, last heartbeat "
                f"{_utc(self.heartbeat_at)}, {(now - self.heartbeat_at) / 60:.0f} min ago)")


def default_owner() -> str:
    """host:pid:nonce: names the process for an operator, unique even across restarts of one pid."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class RunLock:
    """`acquire()` or raise LockHeldError; `heartbeat()` between stages; `release()` in a finally."""

    def __init__(self, store: TableStore, *, run_date: str, timeout_minutes: int, owner: str | None = None):
        self.store = store
        self.run_date = run_date
        self.timeout_s = timeout_minutes * 60
        self.owner = owner or default_owner()
        self._renewed_at: float | None = None  # time.monotonic() of this object's last acquire or heartbeat

    def holder(self) -> LockHolder | None:
        if not self.store.exists(LOCK_TABLE):
            return None
        row = self.store.read(LOCK_TABLE).where(F.col("name") == _ROW).first()
        if row is None or row["owner"] is None:
            return None
        return LockHolder(row["owner"], row["run_date"], int(row["taken_at"]), int(row["heartbeat_at"]))

    def acquire(self) -> LockHolder | None:
        """Take the lock; returns the stale holder it took over from, if any."""
        # Serializable: two MERGEs that both read the (empty or stale) row cannot both commit.
        self.store.create_if_missing(LOCK_TABLE, {"delta.isolationLevel": "Serializable"})
        now = int(time.time())
        before = self.holder()
        mine = self.store.spark.createDataFrame([(_ROW, self.owner, self.run_date, now, now)], _SCHEMA)
        free_or_stale = F.col("t.owner").isNull() | (F.col("t.heartbeat_at") < F.lit(now - self.timeout_s))
        try:
            # The MERGE wrote this run's row (inserted, or taken over while free or stale) or nothing.
            taken = self.store.upsert(LOCK_TABLE, mine, only_if=free_or_stale) == 1
        except COMMIT_CONFLICTS:
            log.info("run lock: another run committed first")  # the read below names the winner
            taken = False
        if not taken:
            holder = self.holder()
            who = holder.describe(now) if holder else "another run (it has released it since: try again)"
            raise LockHeldError(
                f"pipeline --date {self.run_date}: the workspace is locked by {who}; nothing was run or written. "
                f"Wait for that run to end; a lock without a heartbeat for pipeline.lock_timeout_minutes "
                f"({self.timeout_s // 60}) is taken over by the next run (its table: "
                f"{self.store.location(LOCK_TABLE)})")
        self._renewed_at = time.monotonic()
        if before is not None and before.owner != self.owner:
            log.warning("run lock: took over the stale lock of %s", before.describe(now))
            return before
        log.info("run lock taken by %s for --date %s", self.owner, self.run_date)
        return None

    def renew_if_due(self) -> bool:
        """`heartbeat()` if a quarter of the timeout has passed since the last renewal; returns
        whether it did. Two small commits saved per stage, and no takeover missed: one needs the
        stored heartbeat older than the whole timeout, and this one was renewed less than a quarter
        of it ago (by the monotonic clock; hosts' clocks may differ by up to the other three quarters)."""
        if self._renewed_at is not None and time.monotonic() - self._renewed_at < self.timeout_s / 4:
            return False
        self.heartbeat()
        return True

    def heartbeat(self) -> None:
        """Renew the lock, or raise LockLostError if another run took it over meanwhile."""
        self._update_mine({"heartbeat_at": F.lit(int(time.time()))})
        self._renewed_at = time.monotonic()
        holder = self.holder()
        if holder is None or holder.owner != self.owner:
            raise LockLostError(f"pipeline --date {self.run_date}: this run ({self.owner}) lost the workspace lock "
                                f"to {holder.describe(int(time.time())) if holder else 'nobody'}: a stage ran longer "
                                f"than pipeline.lock_timeout_minutes ({self.timeout_s // 60}); stopping before the "
                                "next stage")

    def release(self) -> None:
        """Free the lock if this run still holds it (a no-op otherwise)."""
        self._update_mine({"owner": F.lit(None).cast("string"), "heartbeat_at": F.lit(int(time.time()))})
        log.info("run lock released by %s", self.owner)

    def _update_mine(self, assignments: dict) -> None:
        for attempt in range(3):
            try:
                self.store.update_where(LOCK_TABLE, (F.col("name") == _ROW) & (F.col("owner") == self.owner),
                                        assignments, count=False)
                return
            except COMMIT_CONFLICTS:  # a rival's MERGE touched the row first: read it again and retry
                if attempt == 2:
                    raise
