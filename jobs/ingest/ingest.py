"""`r2led ingest`: raw logs → `events`, `items` and `events_rejected`.

Every input line ends in exactly one place: `events` (typed, validated, exact duplicates
dropped), `events_rejected` with the raw line, a reason and the source file, or (a dated run of a
source read whole) left for the run of its own, later day; the result counts each, so
`rows read = accepted + rejected + deferred`. Validation comes before any date rule. Writes are
insert-only MERGEs on the contract keys, so ingesting the same input twice changes nothing and a
new day's file adds only that day's rows. The ingest run id is a hash of the input files'
names and sizes: a re-run after a crash writes the same ids a clean run would have.

An ingest whose valid rows are none, or whose rejected share exceeds `ingest.max_reject_share`,
fails with `IngestRejectedError` after committing its rejects (and before any event or item).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.ingest.sources import load_source
from jobs.ingest.sources.common import ParsedSource
from jobs.runtime.dates import date_argument, parse_day
from jobs.runtime.entrypoint import spark_job_main
from jobs.runtime.tables import TableStore, spec_for
from r2led_model.config import Config, IngestConfig, parse_utc_timestamp

log = logging.getLogger(__name__)

FUTURE_EVENT = "future_event"


class IngestRejectedError(RuntimeError):
    """Too many (or only) bad rows: the rejects are committed, no event or item is."""


@dataclass
class IngestResult:
    run_id: str
    rows_read: int  # event rows read (item metadata lines are not rows of the log)
    rows_accepted: int  # valid and in this run's scope: new + exact duplicates + already present
    duplicates_dropped: int  # exact duplicates within what was read
    events_inserted: int
    items_inserted: int
    rejected_by_reason: dict[str, int] = field(default_factory=dict)  # event rows and item lines
    item_lines_rejected: int = 0  # of rows_rejected, lines of the item metadata
    rows_deferred: int = 0  # valid rows dated after a dated run's day, from a source read whole

    @property
    def rows_rejected(self) -> int:
        return sum(self.rejected_by_reason.values())

    @property
    def event_rows_rejected(self) -> int:
        return self.rows_rejected - self.item_lines_rejected

    @property
    def already_present(self) -> int:
        """Accepted distinct rows the events table already held (e.g. an earlier day of a whole file)."""
        return self.rows_accepted - self.duplicates_dropped - self.events_inserted

    def summary(self) -> str:
        lines = [f"ingest run {self.run_id}",
                 f"  rows read          {self.rows_read:>12,}",
                 f"  accepted           {self.rows_accepted:>12,}",
                 f"    exact duplicates {self.duplicates_dropped:>12,}",
                 f"    already present  {self.already_present:>12,}",
                 f"    new events       {self.events_inserted:>12,}",
                 f"  rejected           {self.rows_rejected:>12,}"]
        lines += [f"    {reason:<16} {n:>12,}" for reason, n in sorted(self.rejected_by_reason.items())]
        if self.item_lines_rejected:
            lines.append(f"    (item lines)     {self.item_lines_rejected:>12,}")
        if self.rows_deferred:
            lines.append(f"  deferred (later)   {self.rows_deferred:>12,}")
        lines.append(f"  new items          {self.items_inserted:>12,}")
        return "\n".join(lines)


def ingest_run_id(source: str, files: Sequence[str]) -> str:
    """Content-addressed id: the same inputs always get the same id. An input that is not a local
    path (a catalog table with its version, a remote URI) counts by its name."""
    digest = hashlib.sha1(source.encode())
    for name in sorted(files):
        path = Path(name)
        if not path.exists():
            digest.update(f"{name}:".encode())
            continue
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
        digest.update(f"{path.resolve()}:{size}".encode())
    return f"ingest-{digest.hexdigest()[:12]}"


def dated_run_id(source: str, day: str) -> str:
    """A dated run's id: its day's events carry it, so later stages find exactly that day's batch,
    however many times the day is re-run and whether or not it was a catch-up."""
    return f"ingest-{hashlib.sha1(f'{source}:{day}'.encode()).hexdigest()[:12]}-{day}"


def validate(raw_events: DataFrame, config: IngestConfig) -> DataFrame:
    """Add the checks every source shares to the loader's own `reason`."""
    low, high = parse_utc_timestamp(config.min_date), parse_utc_timestamp(config.max_date)
    allowed = F.array(*[F.lit(b) for b in config.behaviors])
    shared = F.coalesce(
        F.col("reason"),
        F.when((F.col("ts") < low) | (F.col("ts") >= high), F.lit("impossible_timestamp")),
        F.when(~F.array_contains(allowed, F.col("behavior")), F.lit("unknown_behavior")),
    )
    return raw_events.withColumn("reason", shared)


def scope_to_day(checked: DataFrame, day: str, *, read_whole: bool) -> DataFrame:
    """A dated run's rule for validated rows (adds `deferred`): dated on or before `day`, in scope;
    dated after it, `deferred` when the source was read whole (they are the rows of later days, for
    their own runs), else (the day's own drop folder) rejected as `future_event`."""
    later = F.col("reason").isNull() & (F.to_date(F.timestamp_seconds("ts")) > F.lit(day).cast("date"))
    if read_whole:
        return checked.withColumn("deferred", later)
    return (checked.withColumn("reason", F.when(later, F.lit(FUTURE_EVENT)).otherwise(F.col("reason")))
            .withColumn("deferred", F.lit(False)))


def run(spark: SparkSession, config: Config, *, date: str | None = None, catch_up: bool = False) -> IngestResult:
    """Every raw file, or with `date` only that day's events (`catch_up`: every day up to it)."""
    if date:
        return ingest_day(spark, config, date, catch_up=catch_up)
    parsed: ParsedSource = load_source(spark, config)
    checked = validate(parsed.events, config.ingest).withColumn("deferred", F.lit(False))
    return _ingest(spark, config, parsed, checked, ingest_run_id(parsed.name, parsed.files))


def ingest_day(spark: SparkSession, config: Config, day: str, *, catch_up: bool = False) -> IngestResult:
    """The events of `day` and of every earlier day not yet ingested, plus every rejected row.

    A date-partitioned source reads only the day's folder (late events of earlier days included; a
    row dated after the day is a `future_event` reject) unless `catch_up` reads every folder; any
    other source is read whole. From a whole read, every valid row dated on or before `day` is
    offered to `events` (rows an earlier run stored are not added again: counted as already
    present) and rows dated after it are counted as deferred, left for their own day's run, so a
    run never ingests the future. Rejected rows are recorded whatever their date: the insert-only
    MERGE keeps that idempotent.
    """
    day = parse_day(day)  # it names the folder a date-partitioned source reads: never unchecked text
    parsed = load_source(spark, config, day=None if catch_up else day)
    checked = scope_to_day(validate(parsed.events, config.ingest), day, read_whole=not parsed.read_by_day)
    return _ingest(spark, config, parsed, checked, dated_run_id(parsed.name, day))


def _ingest(spark: SparkSession, config: Config, parsed: ParsedSource, checked: DataFrame,
            run_id: str) -> IngestResult:
    store = TableStore(spark, config.tables)
    checked = checked.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        return _write(store, config.ingest, parsed, checked, run_id)
    finally:
        checked.unpersist()


def reject_problem(result: IngestResult, max_share: float) -> str | None:
    """Why this ingest must fail (None: it may commit its events)."""
    responsible = result.rows_read - result.rows_deferred  # the rows this run accepts or rejects
    if result.rows_accepted == 0:
        later = f"; {result.rows_deferred:,} dated later were left for their own runs" if result.rows_deferred else ""
        return f"no valid rows: {responsible:,} of {result.rows_read:,} rows read were rejected{later}"
    share = result.event_rows_rejected / responsible
    if share > max_share:
        return (f"{result.event_rows_rejected:,} of {responsible:,} rows rejected ({share:.1%}), more than "
                f"ingest.max_reject_share {max_share:.1%}")
    return None


def _write(store: TableStore, config: IngestConfig, parsed: ParsedSource, checked: DataFrame,
           run_id: str) -> IngestResult:
    rejected = checked.where(F.col("reason").isNotNull()).select("raw", "reason", "source_file")
    if parsed.items_rejected is not None:
        rejected = rejected.unionByName(parsed.items_rejected)
    rejected = rejected.withColumn("ingest_run_id", F.lit(run_id))

    accepted = checked.where(F.col("reason").isNull() & ~F.col("deferred"))
    events = accepted.select(
        "user_id", "item_id", "ts", "behavior", "label", "value",
        F.lit(parsed.name).alias("source"), F.lit(run_id).alias("ingest_run_id"),
        F.to_date(F.timestamp_seconds("ts")).alias("event_date"),
    )

    counts: dict[str, int] = {}
    rows_accepted = rows_deferred = 0
    for r in checked.groupBy("reason", "deferred").count().collect():
        if r["reason"] is not None:
            counts[r["reason"]] = counts.get(r["reason"], 0) + int(r["count"])
        elif r["deferred"]:
            rows_deferred += int(r["count"])
        else:
            rows_accepted += int(r["count"])
    result = IngestResult(run_id=run_id, rows_read=rows_accepted + sum(counts.values()) + rows_deferred,
                          rows_accepted=rows_accepted, duplicates_dropped=0, events_inserted=0, items_inserted=0,
                          rejected_by_reason=counts, rows_deferred=rows_deferred)
    if parsed.items_rejected is not None:
        for row in parsed.items_rejected.groupBy("reason").count().collect():
            reason = row["reason"]
            result.rejected_by_reason[reason] = result.rejected_by_reason.get(reason, 0) + int(row["count"])
            result.item_lines_rejected += int(row["count"])
    # Rejects first: if a later write fails, or this run is refused, they are already recorded.
    store.insert_new("events_rejected", rejected)
    problem = reject_problem(result, config.max_reject_share)
    if problem:
        log.info("\n%s", result.summary())
        raise IngestRejectedError(f"ingest {run_id}: {problem}; nothing was added to events or items. The "
                                  f"rejected rows are in the table events_rejected ({store.location('events_rejected')}"
                                  f", ingest_run_id = '{run_id}'), by reason: " + ", ".join(
                                      f"{k} {v:,}" for k, v in sorted(result.rejected_by_reason.items())))
    distinct = events.dropDuplicates(list(spec_for("events").key)).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        result.duplicates_dropped = rows_accepted - distinct.count()
        result.items_inserted = store.insert_new("items", _items(parsed, accepted))
        result.events_inserted = store.insert_new("events", distinct, already_distinct=True)
    finally:
        distinct.unpersist()
    log.info("\n%s", result.summary())
    return result


def _items(parsed: ParsedSource, accepted: DataFrame) -> DataFrame:
    """One row per item id, chosen deterministically when a source lists an item twice."""
    if parsed.items is not None:
        items = parsed.items
        extra = [c for c in items.columns if c not in ("item_id", "category_id", "text")]
        items = items.groupBy("item_id").agg(
            F.min(F.struct(F.col("text"), F.col("category_id"), *[F.col(c) for c in extra])).alias("m")
        ).select("item_id", "m.category_id", "m.text", *[f"m.{c}" for c in extra])
    else:
        # Logs without metadata: the item's (smallest) category seen on its events, no text.
        items = accepted.groupBy("item_id").agg(F.min("category_id").alias("category_id")).withColumn(
            "text", F.lit(None).cast("string"))
    return items.withColumn("source", F.lit(parsed.name))


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--date", type=date_argument, default=None,
                        help="ingest only this day's events, YYYY-MM-DD (default: all)")
    parser.add_argument("--catch-up", action="store_true",
                        help="with --date: every day up to and including it (a first run's history)")


def main(argv: Sequence[str] | None = None) -> int:
    return spark_job_main(argv, "ingest", "Parse, validate and load raw logs into events/items/events_rejected.", run,
                          _add_arguments)


if __name__ == "__main__":
    sys.exit(main())
