"""`r2led ingest`: raw logs → `events`, `items` and `events_rejected`.

Every input line ends in exactly one place: `events` (typed, validated, exact duplicates
dropped), or `events_rejected` with the raw line, a reason and the source file. Writes are
insert-only MERGEs on the contract keys, so ingesting the same input twice changes nothing and a
new day's file adds only that day's rows. The ingest run id is a hash of the input files'
names and sizes: a re-run after a crash writes the same ids a clean run would have.
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

from jobs.dates import date_argument, parse_day
from jobs.entrypoint import spark_job_main
from jobs.sources import load_source
from jobs.sources.common import ParsedSource
from jobs.tables import TableStore, spec_for
from r2led_model.config import Config, IngestConfig, parse_utc_timestamp

log = logging.getLogger(__name__)


@dataclass
class IngestResult:
    run_id: str
    rows_read: int
    rows_accepted: int
    duplicates_dropped: int
    events_inserted: int
    items_inserted: int
    rejected_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def rows_rejected(self) -> int:
        return sum(self.rejected_by_reason.values())

    def summary(self) -> str:
        lines = [f"ingest run {self.run_id}",
                 f"  rows read          {self.rows_read:>12,}",
                 f"  accepted           {self.rows_accepted:>12,}",
                 f"    exact duplicates {self.duplicates_dropped:>12,}",
                 f"    new events       {self.events_inserted:>12,}",
                 f"  rejected           {self.rows_rejected:>12,}"]
        lines += [f"    {reason:<16} {n:>12,}" for reason, n in sorted(self.rejected_by_reason.items())]
        lines.append(f"  new items          {self.items_inserted:>12,}")
        return "\n".join(lines)


def ingest_run_id(source: str, files: Sequence[str]) -> str:
    """Content-addressed id: the same inputs always get the same id."""
    digest = hashlib.sha1(source.encode())
    for name in sorted(files):
        path = Path(name)
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


def run(spark: SparkSession, config: Config, args: argparse.Namespace | None = None) -> IngestResult:
    day = getattr(args, "date", None)
    if day:
        return ingest_day(spark, config, day, catch_up=getattr(args, "catch_up", False))
    parsed: ParsedSource = load_source(spark, config)
    return _ingest(spark, config, parsed, parsed.events, ingest_run_id(parsed.name, parsed.files))


def ingest_day(spark: SparkSession, config: Config, day: str, *, catch_up: bool = False) -> IngestResult:
    """One day's events (or, with `catch_up`, every day up to and including it), plus every rejected row.

    A date-partitioned source reads only the day's folder, late events included; any other source is
    read whole and keeps the events dated `day`. Events dated after `day` are always left for their
    own run, so a run never sees the future. Rejected rows are recorded whatever their date: the
    insert-only MERGE keeps that idempotent.
    """
    day = parse_day(day)  # it names the folder a date-partitioned source reads: never unchecked text
    parsed = load_source(spark, config, day=None if catch_up else day)
    event_date, cutoff = F.to_date(F.timestamp_seconds("ts")), F.lit(day).cast("date")
    in_scope = (event_date <= cutoff) if (catch_up or parsed.read_by_day) else (event_date == cutoff)
    events = parsed.events.where(F.col("reason").isNotNull() | F.col("ts").isNull() | in_scope)
    return _ingest(spark, config, parsed, events, dated_run_id(parsed.name, day))


def _ingest(spark: SparkSession, config: Config, parsed: ParsedSource, events: DataFrame, run_id: str) -> IngestResult:
    store = TableStore(spark, config.tables)
    checked = validate(events, config.ingest).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        return _write(store, parsed, checked, run_id)
    finally:
        checked.unpersist()


def _write(store: TableStore, parsed: ParsedSource, checked: DataFrame, run_id: str) -> IngestResult:
    rejected = checked.where(F.col("reason").isNotNull()).select("raw", "reason", "source_file")
    if parsed.items_rejected is not None:
        rejected = rejected.unionByName(parsed.items_rejected)
    rejected = rejected.withColumn("ingest_run_id", F.lit(run_id))

    accepted = checked.where(F.col("reason").isNull())
    events = accepted.select(
        "user_id", "item_id", "ts", "behavior", "label", "value",
        F.lit(parsed.name).alias("source"), F.lit(run_id).alias("ingest_run_id"),
        F.to_date(F.timestamp_seconds("ts")).alias("event_date"),
    )

    counts = {r["reason"]: int(r["count"]) for r in checked.groupBy("reason").count().collect()}
    rows_accepted = counts.pop(None, 0)
    distinct = events.dropDuplicates(list(spec_for("events").key)).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        distinct_accepted = distinct.count()
        # Rejects first: if a later write fails, the re-run finds them already recorded and adds nothing.
        store.insert_new("events_rejected", rejected)
        items_inserted = store.insert_new("items", _items(parsed, accepted))
        events_inserted = store.insert_new("events", distinct, already_distinct=True)
    finally:
        distinct.unpersist()
    result = IngestResult(
        run_id=run_id,
        rows_read=rows_accepted + sum(counts.values()),
        rows_accepted=rows_accepted,
        duplicates_dropped=rows_accepted - distinct_accepted,
        events_inserted=events_inserted,
        items_inserted=items_inserted,
        rejected_by_reason=counts,
    )
    if parsed.items_rejected is not None:
        for row in parsed.items_rejected.groupBy("reason").count().collect():
            reason = row["reason"]
            result.rejected_by_reason[reason] = result.rejected_by_reason.get(reason, 0) + int(row["count"])
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
