"""Progress lines for a long Spark write, so a job's log shows how far it has got: while a block runs,
a daemon thread reads the SparkContext's status tracker every STAGE_LOG_SECONDS and logs the active
stages' tasks done."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Iterator

from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

# How often a running block logs its active Spark stages, in seconds.
STAGE_LOG_SECONDS = 30.0


def active_stages(tracker) -> str | None:
    """The active stages of a `StatusTracker`, e.g. "stage 12 (save): 37/200 tasks; stage 13 (save):
    0/200 tasks" (a stage's call site left out of its name); None when none is running."""
    parts = []
    for stage_id in sorted(tracker.getActiveStageIds()):
        info = tracker.getStageInfo(stage_id)
        if info is not None:
            parts.append(f"stage {stage_id} ({info.name.split(' at ')[0]}): "
                         f"{info.numCompletedTasks:,}/{info.numTasks:,} tasks")
    return "; ".join(parts) or None


@contextlib.contextmanager
def stage_progress(spark: SparkSession, label: str) -> Iterator[None]:
    """Log "`label`, <elapsed>: <active stages>" every STAGE_LOG_SECONDS while the block runs. Nothing on
    a session without a SparkContext (Spark Connect)."""
    try:
        tracker = spark.sparkContext.statusTracker()
    except Exception:  # Spark Connect raises (the type varies by version): no tracker, no lines
        yield
        return
    every, started, stop = STAGE_LOG_SECONDS, time.monotonic(), threading.Event()

    def poll() -> None:
        while not stop.wait(every):
            try:
                line = active_stages(tracker)
            except Exception as exc:  # the JVM going away under a failing job: stop quietly
                log.debug("%s: no stage progress (%s)", label, exc)
                return
            if line:
                log.info("%s, %.0fs: %s", label, time.monotonic() - started, line)

    thread = threading.Thread(target=poll, name=f"{label} stage progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=every)
