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

import json
import time
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from jobs.runtime.tables import TableStore, spec_for

LEDGER = "pipeline_runs"
DONE, FAILED = "done", "failed"
BACKFILL_PREFIX = "backfill/"  # a backfill's stages are recorded beside the date's own


@dataclass(frozen=True)
class LedgerRecord:
    """One stage attempt of one date as `pipeline_runs` holds it, its JSON columns parsed once."""

    run_date: str
    stage: str  # the ledger's stage name: "backfill/<stage>" for a backfill's
    status: str  # DONE or FAILED
    rows_in: int | None = None
    rows_out: int | None = None
    seconds: float = 0.0
    table_versions: Mapping[str, int | None] = field(default_factory=dict)  # the Delta versions it left
    detail: Mapping[str, Any] = field(default_factory=dict)  # what the stage reported (config, versions, ...)
    recorded_at: int | None = None  # epoch ms, increasing over the log; None on records of earlier releases

    @property
    def stage_name(self) -> str:
        """The stage itself, a backfill's prefix removed."""
        return self.stage.removeprefix(BACKFILL_PREFIX)

    @property
    def done(self) -> bool:
        return self.status == DONE

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "LedgerRecord":
        return cls(run_date=row["run_date"], stage=row["stage"], status=row["status"], rows_in=row["rows_in"],
                   rows_out=row["rows_out"], seconds=row["seconds"] or 0.0,
                   table_versions=json.loads(row["table_versions"] or "{}"), detail=json.loads(row["detail"] or "{}"),
                   recorded_at=row.get("recorded_at"))

    def to_row(self) -> dict[str, Any]:
        return {"run_date": self.run_date, "stage": self.stage, "status": self.status, "rows_in": self.rows_in,
                "rows_out": self.rows_out, "seconds": float(self.seconds),
                "table_versions": json.dumps(dict(self.table_versions), sort_keys=True),
                "detail": json.dumps(dict(self.detail), sort_keys=True, default=str),
                "recorded_at": self.recorded_at}


class RunLedger:
    """`state()` reads where every (date, stage) stands; `record(record)` appends one attempt.
    Only the holder of the run lock writes."""

    def __init__(self, store: TableStore):
        self.store = store
        self._newest = 0  # the highest recorded_at read or written through this object

    def state(self) -> list[LedgerRecord]:
        """The latest record of each (date, stage). The whole log is read: about a dozen records a
        night, so years of runs are still a small collect."""
        if not self.store.exists(LEDGER):
            return []
        latest: dict[tuple[str, str], LedgerRecord] = {}
        # Records from before recorded_at existed (null) were one per key: they sort first.
        for record in sorted((LedgerRecord.from_row(r.asDict()) for r in self.store.read(LEDGER).collect()),
                             key=lambda r: r.recorded_at or 0):
            latest[(record.run_date, record.stage)] = record
            self._newest = max(self._newest, record.recorded_at or 0)
        return list(latest.values())

    def upgrade(self) -> list[str]:
        """Add `recorded_at` to a ledger written before it existed; returns the columns added."""
        return self.store.add_missing_columns(LEDGER) if self.store.exists(LEDGER) else []

    def record(self, record: LedgerRecord) -> LedgerRecord:
        """Append `record` as the newest (its recorded_at is set here); returns it as stored."""
        self._newest = max(int(time.time() * 1000), self._newest + 1)
        stored = replace(record, recorded_at=self._newest)
        self.store.append(LEDGER, self.store.spark.createDataFrame([stored.to_row()], spec_for(LEDGER).schema))
        return stored
