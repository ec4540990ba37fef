"""`r2led ingest`: raw logs → `events`, `items` and `events_rejected`.

Every row read is counted in exactly one place, so
`rows read = accepted + rejected + deferred + late + stored earlier`:

- accepted: valid and this run's, offered to `events` (typed, validated, exact duplicates dropped;
  a row the table holds already is counted as already present);
- rejected: stored in `events_rejected` with the raw row, a reason, the source file and its
  occurrence (the n-th identical row of that file with that reason, so fifteen identical bad
  lines are fifteen rejects);
- deferred: a dated run of a source read whole leaves the rows dated after its day to their own runs;
- late: a daily read of a table without a partition column (each row dated by its timestamp) finds
  valid rows of an earlier day that `events` lacks; they are counted by day and logged, and a
  backfill of their day (`r2led pipeline --date <day> --backfill`) takes them;
- stored earlier: that same read meets rows an earlier run stored (earlier days' events, and rejects
  an earlier run recorded, such as rows without a usable timestamp, which belong to no day): a
  reject counts against the run that first records it, not against every later day.

Validation comes before any date rule. With item metadata (a catalogue or items table), an event
whose item is neither in the catalogue read nor in `items` is rejected as `unknown_item`, or with
`ingest.unknown_items: create` its item is created (the event's category, no text) and counted. A
catalogue that lists an item twice with different text or category keeps one row by a fixed rule,
whatever the read order: the row with text, then the one with a category, then the smallest text
and category id. Such items are counted and a few named in a warning.

Writes are insert-only MERGEs on the contract keys, so ingesting the same input twice changes
nothing and a new day's file adds only that day's rows. The ingest run id is a hash of the input
files' names and sizes: a re-run after a crash writes the same ids a clean run would have.

A dated run that finds no row of its day (an empty or missing day folder, a source without a row
dated that day) is an empty day: with `ingest.empty_day: allow` it warns and, having nothing of
its own, writes nothing; with `fail` it raises `EmptyDayError` before any write. Otherwise an
ingest whose valid rows are none, or whose rejected share of its own rows (accepted + rejected)
exceeds `ingest.max_reject_share`, fails with `IngestRejectedError` after committing its rejects
(and before any event or item).
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
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from jobs.ingest.sources import load_source
from jobs.ingest.sources.common import ParsedSource
from jobs.runtime.dates import date_argument, parse_day
from jobs.runtime.entrypoint import spark_job_main
from jobs.runtime.tables import TableStore, spec_for
from jobs.runtime.stage_protocol import Scope, StageOutcome
from r2led_model.config import Config, IngestConfig, parse_utc_timestamp

log = logging.getLogger(__name__)

FUTURE_EVENT = "future_event"
UNKNOWN_ITEM = "unknown_item"
# Where each row read ends (the `fate` column). Only accepted and rejected rows are the run's own.
ACCEPTED, REJECTED, DEFERRED, LATE, STORED_EARLIER = "accepted", "rejected", "deferred", "late", "stored_earlier"
_NAMED = 5  # ids or days a warning names
_BROADCAST_ITEMS = 5_000_000  # item ids (8 bytes each) the unknown-item check sends to every task


class IngestRejectedError(RuntimeError):
    """Too many (or only) bad rows: the rejects are committed, no event or item is."""


class EmptyDayError(RuntimeError):
    """A dated run found no row of its day and `ingest.empty_day` is 'fail': nothing was written."""


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
    # Valid rows of earlier days that `events` lacks, by day (YYYY-MM-DD), found by a daily read of a table
    # without a partition column: not ingested by this run; a backfill of each day takes them.
    late_rows_by_day: dict[str, int] = field(default_factory=dict)
    # Rows that read met which an earlier run stored: earlier days' events, rejects first recorded earlier.
    rows_stored_earlier: int = 0
    # A dated run that found no row of its day (ingest.empty_day: allow).
    empty_day: bool = False
    # Items created for accepted events whose item the catalogue lacks (ingest.unknown_items: create).
    items_created: int = 0
    # Catalogue item ids listed more than once with different text or category (one row kept by rule).
    conflicting_items: int = 0

    @property
    def rows_rejected(self) -> int:
        return sum(self.rejected_by_reason.values())

    @property
    def event_rows_rejected(self) -> int:
        return self.rows_rejected - self.item_lines_rejected

    @property
    def late_rows_not_ingested(self) -> int:
        return sum(self.late_rows_by_day.values())

    @property
    def already_present(self) -> int:
        """Accepted distinct rows the events table already held (e.g. an earlier day of a whole file)."""
        return self.rows_accepted - self.duplicates_dropped - self.events_inserted

    def summary(self) -> str:
        def line(label: str, n: int) -> str:
            return f"  {label:<19}{n:>12,}"

        lines = [f"ingest run {self.run_id}",
                 line("rows read", self.rows_read),
                 line("accepted", self.rows_accepted),
                 line("  exact duplicates", self.duplicates_dropped),
                 line("  already present", self.already_present),
                 line("  new events", self.events_inserted),
                 line("rejected", self.rows_rejected)]
        lines += [line(f"  {reason}", n) for reason, n in sorted(self.rejected_by_reason.items())]
        if self.item_lines_rejected:
            lines.append(line("  (item lines)", self.item_lines_rejected))
        if self.rows_deferred:
            lines.append(line("deferred (later)", self.rows_deferred))
        if self.late_rows_by_day:
            lines.append(line("late, not ingested", self.late_rows_not_ingested))
            lines += [line(f"  {day}", n) for day, n in sorted(self.late_rows_by_day.items())]
        if self.rows_stored_earlier:
            lines.append(line("stored earlier", self.rows_stored_earlier))
        lines.append(line("new items", self.items_inserted))
        if self.items_created:
            lines.append(line("  created", self.items_created))
        if self.conflicting_items:
            lines.append(line("catalogue conflicts", self.conflicting_items))
        if self.empty_day:
            lines.append("  empty day: no row of the day was read (ingest.empty_day: allow)")
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


def scope_to_day(checked: DataFrame, day: str | None, *, read_by_day: bool = False, until_day: bool = False,
                 catch_up: bool = False) -> DataFrame:
    """Where each validated row ends: adds `fate` and `of_day` (a row of the run's own day, which
    decides an empty day). Rejected rows are rejected whatever their date.

    - no `day` (a whole ingest): valid rows are accepted;
    - `read_by_day` (the day's drop folder): the folder is the day's batch; a valid row dated after
      the day is rejected as `future_event`;
    - `until_day` (a table read by timestamp up to the day's end): the day's valid rows are accepted,
      earlier days' are `stored_earlier` until `_sort_earlier` finds the late ones among them;
    - otherwise (a source read whole): valid rows dated up to the day are accepted (an earlier day's
      row is stored once), later ones deferred to their own runs; `catch_up` makes every day up to
      `day` the run's own.
    """
    valid = F.col("reason").isNull()
    date = F.to_date(F.timestamp_seconds("ts"))
    the_day = F.lit(day).cast("date")
    if day is None:
        fate, of_day = F.when(valid, F.lit(ACCEPTED)).otherwise(F.lit(REJECTED)), F.lit(True)
    elif read_by_day:
        checked = checked.withColumn("reason", F.when(valid & (date > the_day), F.lit(FUTURE_EVENT))
                                     .otherwise(F.col("reason")))
        fate = F.when(F.col("reason").isNull(), F.lit(ACCEPTED)).otherwise(F.lit(REJECTED))
        of_day = F.lit(True)
    elif until_day:
        fate = (F.when(~valid, F.lit(REJECTED)).when(date == the_day, F.lit(ACCEPTED))
                .when(date < the_day, F.lit(STORED_EARLIER)).otherwise(F.lit(DEFERRED)))
        of_day = date == the_day
    else:
        fate = F.when(~valid, F.lit(REJECTED)).when(date > the_day, F.lit(DEFERRED)).otherwise(F.lit(ACCEPTED))
        of_day = F.lit(True) if catch_up else date == the_day
    return checked.withColumn("fate", fate).withColumn("of_day", F.coalesce(of_day, F.lit(False)))


def run(spark: SparkSession, config: Config, *, date: str | None = None, catch_up: bool = False) -> IngestResult:
    """Every raw file, or with `date` only that day's events (`catch_up`: every day up to it)."""
    if date:
        return ingest_day(spark, config, date, catch_up=catch_up)
    parsed: ParsedSource = load_source(spark, config)
    return _ingest(spark, config, parsed, ingest_run_id(parsed.name, parsed.files), day=None)


def ingest_day(spark: SparkSession, config: Config, day: str, *, catch_up: bool = False) -> IngestResult:
    """The events of `day` (with `catch_up`, of every day up to it), plus every rejected row.

    A date-partitioned source reads only the day's folder (late events of earlier days included; a
    row dated after the day is a `future_event` reject) unless `catch_up` reads every folder. A
    table without a partition column reads the rows dated up to the day's end and those without a
    usable timestamp: it accepts the day's rows and counts the earlier days' (stored, or late: left
    for a backfill of their day). Any other source is read whole: every valid row dated on or before
    `day` is offered to `events` (rows an earlier run stored are not added again: counted as already
    present) and rows dated after it are deferred to their own day's run, so a run never ingests
    the future. Rejected rows are recorded whatever their date: the insert-only MERGE keeps that
    idempotent.
    """
    day = parse_day(day)  # it names the folder a date-partitioned source reads: never unchecked text
    parsed = load_source(spark, config, day=None if catch_up else day)
    return _ingest(spark, config, parsed, dated_run_id(parsed.name, day), day=day, catch_up=catch_up)


def derive(spark: SparkSession, config: Config, *, scope: Scope) -> StageOutcome:
    """The stage (`jobs.runtime.stage_protocol`): every input file in the full run; a dated run reads its
    day, or every day up to it when it catches up (a first run) or rebuilds (the insert-only MERGE then
    restores what a damaged events table lost and adds nothing it kept)."""
    catch_up = scope.catch_up or scope.rebuild
    if scope.full_run:
        result = run(spark, config)
    else:
        result = ingest_day(spark, config, scope.day, catch_up=catch_up)
    if result.empty_day:
        log.warning("%s: an empty day, no input to ingest (ingest.empty_day: allow); the run goes on", scope.day)
    # rows read = accepted + rejected + deferred; accepted = new + exact duplicates + already present.
    return StageOutcome(result.rows_read, result.events_inserted,
                        {"run_id": result.run_id, "catch_up": catch_up, "accepted": result.rows_accepted,
                         "empty_day": result.empty_day,
                         "rejected": result.event_rows_rejected, "rejected_by_reason": result.rejected_by_reason,
                         "item_lines_rejected": result.item_lines_rejected, "deferred": result.rows_deferred,
                         "duplicates_dropped": result.duplicates_dropped, "already_present": result.already_present,
                         "items_inserted": result.items_inserted})


def reject_problem(result: IngestResult, max_share: float) -> str | None:
    """Why this ingest must fail (None: it may commit its events)."""
    responsible = result.rows_accepted + result.event_rows_rejected  # the rows this run accepts or rejects
    if result.rows_accepted == 0:
        others = [f"{n:,} {what}" for n, what in ((result.rows_deferred, "dated later were left for their own runs"),
                                                  (result.late_rows_not_ingested, "of earlier days are late"),
                                                  (result.rows_stored_earlier, "were stored by earlier runs"))
                  if n]
        return (f"no valid rows: {responsible:,} of {result.rows_read:,} rows read were rejected"
                + "".join(f"; {o}" for o in others))
    share = result.event_rows_rejected / responsible
    if share > max_share:
        return (f"{result.event_rows_rejected:,} of {responsible:,} rows rejected ({share:.1%}), more than "
                f"ingest.max_reject_share {max_share:.1%}")
    return None


# ---- one ingest ---------------------------------------------------------------------------------


def _ingest(spark: SparkSession, config: Config, parsed: ParsedSource, run_id: str, *, day: str | None,
            catch_up: bool = False) -> IngestResult:
    store = TableStore(spark, config.tables)
    cached: list[DataFrame] = []

    def keep(df: DataFrame) -> DataFrame:
        cached.append(df.persist(StorageLevel.MEMORY_AND_DISK))
        return df

    try:
        catalogue = keep(_catalogue(parsed)) if parsed.items is not None else None
        until_day = parsed.reads_until_day and day is not None
        classified = scope_to_day(validate(parsed.events, config.ingest), day, read_by_day=parsed.read_by_day,
                                  until_day=until_day, catch_up=catch_up)
        known = keep(_known_items(store, catalogue)) if catalogue is not None else None
        classified = _check_items(classified, known, create=config.ingest.unknown_items == "create")
        if until_day:
            classified = _sort_earlier(store, classified, day)
        # Only a rejected row's text and file are stored (events_rejected): kept for every row, they
        # would be most of what the cache holds.
        rejected = F.col("fate") == REJECTED
        classified = keep(classified.withColumn("raw", F.when(rejected, F.col("raw")))
                          .withColumn("source_file", F.when(rejected, F.col("source_file"))))
        rejects = _numbered(classified.where(rejected).select("raw", "reason", "source_file"))
        rejects = keep(_mark_stored_earlier(store, rejects, run_id) if until_day
                       else rejects.withColumn("stored_earlier", F.lit(False)))
        return _write(store, config.ingest, parsed, run_id, day=day, classified=classified, rejects=rejects,
                      catalogue=catalogue)
    finally:
        for df in cached:
            df.unpersist()


def _write(store: TableStore, config: IngestConfig, parsed: ParsedSource, run_id: str, *, day: str | None,
           classified: DataFrame, rejects: DataFrame, catalogue: DataFrame | None) -> IngestResult:
    result, accepted_of_day = _count(run_id, classified, rejects)
    if result.late_rows_by_day:
        _warn_late(run_id, day, result.late_rows_by_day)
    if day is not None and accepted_of_day == 0 and result.event_rows_rejected == 0:
        result.empty_day = True
        _empty_day(config, parsed, run_id, day, result)
        if result.rows_accepted == 0:
            log.info("\n%s", result.summary())
            return result  # nothing of its own: no table is touched

    item_rejects = _numbered(parsed.items_rejected) if parsed.items_rejected is not None else None
    if item_rejects is not None:
        for row in item_rejects.groupBy("reason").count().collect():
            reason = row["reason"]
            result.rejected_by_reason[reason] = result.rejected_by_reason.get(reason, 0) + int(row["count"])
            result.item_lines_rejected += int(row["count"])
    if catalogue is not None:
        result.conflicting_items = _count_conflicts(run_id, catalogue)

    # Rejects first: if a later write fails, or this run is refused, they are already recorded.
    stored = rejects.drop("stored_earlier")
    if item_rejects is not None:
        stored = stored.unionByName(item_rejects)
    _upgrade_rejects_table(store)
    store.insert_new("events_rejected", stored.withColumn("ingest_run_id", F.lit(run_id)))
    problem = None if result.empty_day else reject_problem(result, config.max_reject_share)
    if problem:
        log.info("\n%s", result.summary())
        raise IngestRejectedError(f"ingest {run_id}: {problem}; nothing was added to events or items. The "
                                  f"rejected rows are in the table events_rejected ({store.location('events_rejected')}"
                                  f", ingest_run_id = '{run_id}'), by reason: " + ", ".join(
                                      f"{k} {v:,}" for k, v in sorted(result.rejected_by_reason.items())))

    accepted = classified.where(F.col("fate") == ACCEPTED)
    events = accepted.select(
        "user_id", "item_id", "ts", "behavior", "label", "value",
        F.lit(parsed.name).alias("source"), F.lit(run_id).alias("ingest_run_id"),
        F.to_date(F.timestamp_seconds("ts")).alias("event_date"),
    )
    distinct = events.dropDuplicates(list(spec_for("events").key)).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        result.duplicates_dropped = result.rows_accepted - distinct.count()
        result.items_inserted = _insert_items(store, parsed, run_id, catalogue, accepted, result)
        result.events_inserted = store.insert_new("events", distinct, already_distinct=True)
    finally:
        distinct.unpersist()
    log.info("\n%s", result.summary())
    return result


def _count(run_id: str, classified: DataFrame, rejects: DataFrame) -> tuple[IngestResult, int]:
    """The result's row counts by fate (item lines not yet), and how many accepted rows are of the run's own day."""
    result = IngestResult(run_id=run_id, rows_read=0, rows_accepted=0, duplicates_dropped=0, events_inserted=0,
                          items_inserted=0)
    accepted_of_day = 0
    late_day = F.when(F.col("fate") == LATE, F.date_format(F.timestamp_seconds("ts"), "yyyy-MM-dd"))
    valid = classified.where(F.col("fate") != REJECTED)
    for r in valid.groupBy("fate", "of_day", late_day.alias("day")).count().collect():
        n = int(r["count"])
        if r["fate"] == ACCEPTED:
            result.rows_accepted += n
            accepted_of_day += n if r["of_day"] else 0
        elif r["fate"] == DEFERRED:
            result.rows_deferred += n
        elif r["fate"] == LATE:
            result.late_rows_by_day[r["day"]] = n
        else:
            result.rows_stored_earlier += n
    for r in rejects.groupBy("reason", "stored_earlier").count().collect():
        if r["stored_earlier"]:
            result.rows_stored_earlier += int(r["count"])
        else:
            result.rejected_by_reason[r["reason"]] = int(r["count"])
    result.rows_read = (result.rows_accepted + result.event_rows_rejected + result.rows_deferred
                        + result.late_rows_not_ingested + result.rows_stored_earlier)
    return result, accepted_of_day


def _insert_items(store: TableStore, parsed: ParsedSource, run_id: str, catalogue: DataFrame | None,
                  accepted: DataFrame, result: IngestResult) -> int:
    """Insert the new items: the catalogue's (or the events' own), and with `ingest.unknown_items:
    create` the items accepted events name that it lacks (counted in `result.items_created`)."""
    items = _items(parsed, catalogue, accepted)
    if "new_item" not in accepted.columns:
        return store.insert_new("items", items)
    created = (accepted.where("new_item").groupBy("item_id").agg(F.min("category_id").alias("category_id"))
               .withColumn("text", F.lit(None).cast("string")).withColumn("source", F.lit(parsed.name))
               .persist(StorageLevel.MEMORY_AND_DISK))
    try:
        result.items_created = created.count()
        if result.items_created:
            named = ", ".join(str(r["item_id"]) for r in created.select("item_id").limit(_NAMED).collect())
            log.info("ingest %s: created %s items the catalogue lacks (ingest.unknown_items: create), e.g. %s",
                     run_id, f"{result.items_created:,}", named)
            items = items.unionByName(created, allowMissingColumns=True)
        return store.insert_new("items", items)
    finally:
        created.unpersist()


# ---- the steps ----------------------------------------------------------------------------------


def _catalogue(parsed: ParsedSource) -> DataFrame:
    """One row per catalogue item, by a rule that does not depend on the read order: the row with
    text, then the one with a category, then the smallest (text, category_id, ...). `variants`
    counts the item's distinct rows (more than one: a conflict)."""
    items = parsed.items
    extra = [c for c in items.columns if c not in ("item_id", "category_id", "text")]
    info = [F.col("text"), F.col("category_id"), *[F.col(c) for c in extra]]
    best = F.min(F.struct(F.col("text").isNull().alias("_no_text"),
                          F.col("category_id").isNull().alias("_no_category"), *info))
    return (items.groupBy("item_id").agg(best.alias("m"), F.count_distinct(F.struct(*info)).alias("variants"))
            .select("item_id", "m.category_id", "m.text", *[f"m.{c}" for c in extra], "variants"))


def _count_conflicts(run_id: str, catalogue: DataFrame) -> int:
    conflicts = catalogue.where(F.col("variants") > 1)
    count = conflicts.count()
    if count:
        name = "item_key" if "item_key" in catalogue.columns else "item_id"
        named = [str(r[0]) for r in conflicts.select(name).orderBy(name).limit(_NAMED).collect()]
        log.warning("ingest %s: %s items are listed more than once in the catalogue with different text or category "
                    "(%s: %s%s); each keeps its row with text, then with a category, then the smallest text",
                    run_id, f"{count:,}", name, ", ".join(named), ", ..." if count > len(named) else "")
    return count


def _known_items(store: TableStore, catalogue: DataFrame) -> DataFrame:
    """The item ids an event may name: the catalogue's and those `items` holds (`_known` = True)."""
    known = catalogue.select("item_id")
    if store.exists("items"):
        known = known.unionByName(store.read("items").select("item_id"))
    return known.distinct().withColumn("_known", F.lit(True))


def _check_items(classified: DataFrame, known: DataFrame | None, *, create: bool) -> DataFrame:
    """With a catalogue (`known` ids, persisted), an accepted event whose item is not known is rejected
    as `unknown_item` or (`create`) marked `new_item`, to be created. Without one, items come from
    the events: nothing to check."""
    if known is None:
        return classified
    # A catalogue is small beside its log: broadcast, the events are not shuffled for the check.
    checked = classified.join(F.broadcast(known) if known.count() <= _BROADCAST_ITEMS else known, "item_id", "left")
    unknown = (F.col("fate") == ACCEPTED) & F.col("_known").isNull()
    if create:
        return checked.withColumn("new_item", unknown).drop("_known")
    return (checked.withColumn("reason", F.when(unknown, F.lit(UNKNOWN_ITEM)).otherwise(F.col("reason")))
            .withColumn("fate", F.when(unknown, F.lit(REJECTED)).otherwise(F.col("fate"))).drop("_known"))


def _sort_earlier(store: TableStore, classified: DataFrame, day: str) -> DataFrame:
    """Valid rows of earlier days: stored earlier when `events` holds them, else late."""
    earlier = classified.where(F.col("fate") == STORED_EARLIER)
    rest = classified.where(F.col("fate") != STORED_EARLIER)
    if not store.exists("events"):
        return rest.unionByName(earlier.withColumn("fate", F.lit(LATE)))
    key = spec_for("events").key
    stored = (store.read("events").where(F.col("event_date") < F.lit(day).cast("date"))
              .select(*[F.col(k).alias(f"_stored_{k}") for k in key]).withColumn("_present", F.lit(True)))
    matched = earlier.join(stored, [F.col(k).eqNullSafe(F.col(f"_stored_{k}")) for k in key], "left")
    sorted_earlier = (matched.withColumn("fate", F.when(F.col("_present"), F.lit(STORED_EARLIER))
                                         .otherwise(F.lit(LATE)))
                      .drop(*stored.columns))
    return rest.unionByName(sorted_earlier)


def _numbered(rejects: DataFrame) -> DataFrame:
    """Adds `occurrence`: identical rejects (same file, raw row and reason) are numbered 1, 2, ... so
    each copy is stored once, and a re-run numbers them the same."""
    same = Window.partitionBy("source_file", "raw", "reason").orderBy("raw")
    return rejects.withColumn("occurrence", F.row_number().over(same))


def _stored_rejects(store: TableStore) -> DataFrame | None:
    """The stored rejects' keys and run ids; a table from before `occurrence` held each row once (copy 1)."""
    if not store.exists("events_rejected"):
        return None
    table = store.delta("events_rejected").toDF()
    occurrence = F.coalesce(F.col("occurrence"), F.lit(1)) if "occurrence" in table.columns else F.lit(1)
    return table.select("source_file", "raw", "reason", occurrence.cast("int").alias("occurrence"), "ingest_run_id")


def _mark_stored_earlier(store: TableStore, rejects: DataFrame, run_id: str) -> DataFrame:
    """Adds `stored_earlier`: a reject another run recorded first (a row without a usable timestamp,
    which every daily read meets) is not counted against this run again."""
    stored = _stored_rejects(store)
    if stored is None:
        return rejects.withColumn("stored_earlier", F.lit(False))
    earlier = (stored.where(F.col("ingest_run_id") != run_id).drop("ingest_run_id")
               .withColumn("stored_earlier", F.lit(True)))
    key = ["source_file", "raw", "reason", "occurrence"]
    return (rejects.join(earlier, key, "left")
            .withColumn("stored_earlier", F.coalesce(F.col("stored_earlier"), F.lit(False))))


def _upgrade_rejects_table(store: TableStore) -> None:
    """Give a rejects table written before `occurrence` existed its column: it held each (file, raw,
    reason) once, so every old row is copy 1 (and a re-run of its input stores nothing new)."""
    if not store.exists("events_rejected"):
        return
    store.add_missing_columns("events_rejected")
    if store.read("events_rejected").where(F.col("occurrence").isNull()).limit(1).count():
        store.update_where("events_rejected", F.col("occurrence").isNull(), {"occurrence": F.lit(1)}, count=False)


def _warn_late(run_id: str, day: str | None, late: dict[str, int]) -> None:
    days = sorted(late)
    named = ", ".join(f"{d} ({late[d]:,})" for d in days[:_NAMED]) + (", ..." if len(days) > _NAMED else "")
    log.warning("ingest %s: %s valid rows dated before %s are not in events and were not ingested (late rows of %s). "
                "A daily read of a table without source.table.partition_column ingests its own day only: run "
                "`r2led pipeline --date <day> --backfill` for each of those days to add them (`r2led ingest --date "
                "<day>` adds them to events alone)", run_id, f"{sum(late.values()):,}", day, named)


def _empty_day(config: IngestConfig, parsed: ParsedSource, run_id: str, day: str, result: IngestResult) -> None:
    """Warn of an empty day, or with `ingest.empty_day: fail` refuse it before anything is written."""
    if parsed.day_input:
        what = f"the day's input {parsed.day_input} has no rows (it is empty or missing)"
    else:
        what = f"no row of {', '.join(parsed.files)} is dated {day} ({result.rows_read:,} rows read)"
    if config.empty_day == "fail":
        raise EmptyDayError(f"ingest {run_id}: {day} is an empty day: {what}; ingest.empty_day is 'fail', so nothing "
                            f"was written. Deliver the day's input and run again, or set ingest.empty_day: allow to "
                            f"let a quiet day ingest nothing")
    log.warning("ingest %s: %s is an empty day: %s; nothing of the day to ingest (ingest.empty_day: allow)",
                run_id, day, what)


def _items(parsed: ParsedSource, catalogue: DataFrame | None, accepted: DataFrame) -> DataFrame:
    """The catalogue's items (one row each, by `_catalogue`'s rule), or for logs without metadata the
    items of the accepted events: the (smallest) category seen on them, no text."""
    if catalogue is not None:
        items = catalogue.drop("variants")
    else:
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
