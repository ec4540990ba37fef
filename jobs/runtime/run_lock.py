"""The workspace's run lock: one row of the Delta table `pipeline_lock`, so that two runs never write
the same tables at once. Every command that writes tables takes it: a dated `pipeline` run (and a
backfill), the full `pipeline`, and each stage run on its own (`r2led ingest`, ..., `r2led score`).

A run takes the lock with one conditional MERGE: the row is inserted when there is none, or taken
over when it is free (owner null) or stale. Staleness is judged by the holder's own recorded timeout
(`timeout_s`, written when it took the lock): a run started with a shorter
`pipeline.lock_timeout_minutes` cannot declare a live holder dead. Two runs racing for it both MERGE
into the same one-file table, so Delta's optimistic concurrency (Serializable isolation on this
table) commits one and refuses the other; the MERGE's own count of rows written says whether this
run won, and only a loser reads the row to name the winner.

While held, a daemon thread renews the heartbeat every sixth of the timeout, whatever the run is
doing (a stage may run for hours). Before each of the run's commits (`jobs.runtime.commit_guard`) the
lock checks that it still holds the row: a heartbeat thread that found the lock taken over, or that
has not confirmed it for half the timeout (a stalled process, an unreachable table), stops the run
with `LockLostError` before it writes. The holder frees the lock when it ends, failed or not.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass

from pyspark.sql import functions as F

from jobs.runtime import commit_guard
from jobs.runtime.tables import COMMIT_CONFLICTS, TableStore

log = logging.getLogger(__name__)

LOCK_TABLE = "pipeline_lock"
_ROW = "pipeline"  # one lock per workspace (per tables root or schema)
_SCHEMA = ("name STRING, owner STRING, run_date STRING, taken_at BIGINT, heartbeat_at BIGINT, timeout_s BIGINT, "
           "command STRING")
# How often the heartbeat thread renews, as a share of the timeout, and how long the holder trusts
# its last confirmed renewal before it re-checks the row itself (a takeover needs the whole timeout).
_BEAT_SHARE, _TRUST_SHARE = 1 / 6, 1 / 2


class LockHeldError(RuntimeError):
    """Another run holds the workspace's lock; this run wrote nothing."""


class LockLostError(RuntimeError):
    """This run's lock was taken over (its heartbeat stopped for longer than its timeout)."""


def _utc(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class LockHolder:
    owner: str
    run_date: str
    taken_at: int  # epoch seconds
    heartbeat_at: int
    timeout_s: int | None = None  # the holder's own timeout (None: a row written by an older release)
    command: str | None = None

    def describe(self, now: int) -> str:
        what = self.command or f"pipeline --date {self.run_date}"
        timeout = f", timeout {self.timeout_s // 60} min" if self.timeout_s else ""
        return (f"{self.owner} ({what}, since {_utc(self.taken_at)}, last heartbeat "
                f"{_utc(self.heartbeat_at)}, {(now - self.heartbeat_at) / 60:.0f} min ago{timeout})")


def default_owner() -> str:
    """host:pid:nonce: names the process for an operator, unique even across restarts of one pid."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class RunLock:
    """`acquire()` or raise LockHeldError; `check_held()` (also run before every commit while held);
    `release()` in a finally. Or `with RunLock(...):`."""

    def __init__(self, store: TableStore, *, timeout_minutes: float, run_date: str = "",
                 command: str | None = None, owner: str | None = None):
        if timeout_minutes <= 0:
            raise ValueError(f"the run lock's timeout must be positive (pipeline.lock_timeout_minutes), "
                             f"got {timeout_minutes}")
        self.store = store
        self.run_date = run_date
        self.command = command or f"pipeline --date {run_date}"
        self.timeout_s = max(1, round(timeout_minutes * 60))
        self.owner = owner or default_owner()
        self._confirmed_at: float | None = None  # time.monotonic() of the last renewal that found the lock ours
        self._lost: str | None = None  # why the heartbeat thread found the lock gone
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # ---- reading ---------------------------------------------------------------------------

    def holder(self) -> LockHolder | None:
        if not self.store.exists(LOCK_TABLE):
            return None
        row = self.store.read(LOCK_TABLE).where(F.col("name") == _ROW).first()
        if row is None or row["owner"] is None:
            return None
        fields = row.asDict()
        return LockHolder(row["owner"], row["run_date"], int(row["taken_at"]), int(row["heartbeat_at"]),
                          fields.get("timeout_s"), fields.get("command"))

    # ---- taking and freeing ----------------------------------------------------------------

    def acquire(self) -> LockHolder | None:
        """Take the lock and start renewing it; returns the stale holder it took over from, if any."""
        # Serializable: two MERGEs that both read the (empty or stale) row cannot both commit.
        self.store.create_if_missing(LOCK_TABLE, {"delta.isolationLevel": "Serializable"})
        self.store.add_missing_columns(LOCK_TABLE)  # a lock table of an older release gains timeout_s, command
        now = int(time.time())
        before = self.holder()
        mine = self.store.spark.createDataFrame(
            [(_ROW, self.owner, self.run_date, now, now, self.timeout_s, self.command)], _SCHEMA)
        # Stale by the holder's own timeout; a row without one (an older release) by this run's.
        holder_timeout = F.coalesce(F.col("t.timeout_s"), F.lit(self.timeout_s))
        free_or_stale = F.col("t.owner").isNull() | (F.col("t.heartbeat_at") < F.lit(now) - holder_timeout)
        try:
            # The MERGE wrote this run's row (inserted, or taken over while free or stale) or nothing.
            taken = self.store.upsert(LOCK_TABLE, mine, only_if=free_or_stale, guarded=False) == 1
        except COMMIT_CONFLICTS:
            log.info("run lock: another run committed first")  # the read below names the winner
            taken = False
        if not taken:
            holder = self.holder()
            who = holder.describe(now) if holder else "another run (it has released it since: try again)"
            raise LockHeldError(
                f"{self.command}: the workspace is locked by {who}; nothing was run or written. Wait for that "
                f"run to end; a lock whose heartbeat stopped for its holder's timeout is taken over by the next "
                f"run (its table: {self.store.location(LOCK_TABLE)})")
        self._confirmed_at = time.monotonic()
        self._lost = None
        self._start_heartbeat()
        if before is not None and before.owner != self.owner:
            log.warning("run lock: took over the stale lock of %s", before.describe(now))
            return before
        log.info("run lock taken by %s for %s", self.owner, self.command)
        return None

    def release(self) -> None:
        """Stop renewing and free the lock if this run still holds it (a no-op otherwise)."""
        self._stop_heartbeat()
        self._update_mine({"owner": F.lit(None).cast("string"), "heartbeat_at": F.lit(int(time.time()))})
        log.info("run lock released by %s", self.owner)

    # ---- holding ---------------------------------------------------------------------------

    def heartbeat(self) -> None:
        """Renew the lock now, or raise LockLostError if another run took it over meanwhile."""
        self._update_mine({"heartbeat_at": F.lit(int(time.time()))})
        holder = self.holder()
        if holder is None or holder.owner != self.owner:
            self._lost = holder.describe(int(time.time())) if holder else "nobody (it was freed)"
            raise self._lost_error()
        self._confirmed_at = time.monotonic()

    def check_held(self, what: str = "its next write") -> None:
        """Raise LockLostError, before `what` is committed, unless this run still holds the lock."""
        if self._lost is not None:
            raise self._lost_error(what)
        if self._confirmed_at is None or time.monotonic() - self._confirmed_at > self.timeout_s * _TRUST_SHARE:
            # The heartbeat thread has not confirmed the lock lately: check the row before committing.
            try:
                self.heartbeat()
            except LockLostError:
                raise self._lost_error(what) from None

    def _lost_error(self, what: str = "its next write") -> LockLostError:
        return LockLostError(f"{self.command}: this run ({self.owner}) lost the workspace lock to {self._lost}: "
                             f"its heartbeat stopped for longer than its timeout ({self.timeout_s // 60} min); "
                             f"stopped before {what}")

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"run-lock-heartbeat-{self.owner}", daemon=True)
        self._thread.start()
        commit_guard.install(self._guard)

    def _stop_heartbeat(self) -> None:
        commit_guard.remove(self._guard)
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _guard(self, what: str) -> None:
        self.check_held(what)

    def _beat(self) -> None:
        interval = max(1.0, self.timeout_s * _BEAT_SHARE)
        while not self._stop.wait(interval):
            try:
                self.heartbeat()
            except LockLostError:
                log.error("run lock: %s lost the lock to %s; the run stops before its next write",
                          self.owner, self._lost)
                return
            except Exception:  # a transient failure: the next beat retries, and check_held re-checks
                log.warning("run lock: heartbeat of %s failed", self.owner, exc_info=True)

    def _update_mine(self, assignments: dict) -> None:
        for attempt in range(3):
            try:
                self.store.update_where(LOCK_TABLE, (F.col("name") == _ROW) & (F.col("owner") == self.owner),
                                        assignments, count=False, guarded=False)
                return
            except COMMIT_CONFLICTS:  # a rival's MERGE touched the row first: read it again and retry
                if attempt == 2:
                    raise

