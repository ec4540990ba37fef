"""The dated pipeline's ledger, the Delta table `pipeline_runs`: an append-only log of stage
attempts. Each record is one stage of one date that finished (`done`) or failed; a (date, stage)
stands as its latest record.

Appending a row is one small commit; a MERGE on (date, stage) costs several Spark jobs more and
the ledger writes once per stage. The log also keeps every failure an operator may want to read.
Records are ordered by `recorded_at`, epoch milliseconds made strictly increasing over the whole
log: the run lock serialises writers, and each one starts from the newest record it has read, so
a clock that runs behind on another host never puts a newer record before an older one.
"""

from __future__ import annotations

import time
from typing import Any

from jobs.runtime.tables import TableStore

LEDGER = "pipeline_runs"
DONE, FAILED = "done", "failed"
_SCHEMA = ("run_date STRING, stage STRING, status STRING, rows_in BIGINT, rows_out BIGINT, seconds DOUBLE, "
           "table_versions STRING, detail STRING, recorded_at BIGINT")


class RunLedger:
    """`state()` reads where every (date, stage) stands; `record(row)` appends one attempt.
    Only the holder of the run lock writes."""

    def __init__(self, store: TableStore):
        self.store = store
        self._newest = 0  # the highest recorded_at read or written through this object

    def state(self) -> list[dict[str, Any]]:
        """The latest record of each (date, stage). The whole log is read: about a dozen records a
        night, so years of runs are still a small collect."""
        if not self.store.exists(LEDGER):
            return []
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        # Records from before recorded_at existed (null) were one per key: they sort first.
        for record in sorted((r.asDict() for r in self.store.read(LEDGER).collect()),
                             key=lambda r: r["recorded_at"] or 0):
            latest[(record["run_date"], record["stage"])] = record
            self._newest = max(self._newest, record["recorded_at"] or 0)
        return list(latest.values())

    def upgrade(self) -> list[str]:
        """Add `recorded_at` to a ledger written before it existed; returns the columns added."""
        return self.store.add_missing_columns(LEDGER) if self.store.exists(LEDGER) else []

    def record(self, row: dict[str, Any]) -> dict[str, Any]:
        """Append `row` (every column but recorded_at) as the newest record; returns it as stored."""
        self._newest = max(int(time.time() * 1000), self._newest + 1)
        stored = {**row, "recorded_at": self._newest}
        self.store.append(LEDGER, self.store.spark.createDataFrame([stored], _SCHEMA))
        return stored
