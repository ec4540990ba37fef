"""`r2led pipeline --date D`: the nightly run, incremental, idempotent and resumable stage by stage.

A run first processes every earlier day it missed (the days after the last whose data stages are
done), each through the data stages with its own split, so a skipped night ends with the tables of
a run without the gap; then D through every stage:

ingest (that day's logs; a first run catches up on every earlier day) → sequences (MERGE the
users of every batch not yet sampled, insert their new samples) → embed-items (new items only) →
train-codebook (kept unless --retrain or none exists) → assign-sids (new items, current codebook) →
collab-vectors (kept unless --retrain) → retrieve (new or recounted samples only) → build-training-set
(likewise, append-only item index) → train (rolling window) → promote → score (the day's samples).

The split rolls with D (`pipeline.valid_days`, `pipeline.test_days`); rows whose split the new
date changes are moved in place. Every stage attempt is recorded in the `pipeline_runs` ledger
(`jobs.orchestration.ledger`); a finished one is skipped on a re-run of the date unless forced;
every write is an idempotent MERGE, UPDATE or partition overwrite, so a re-run after a crash
anywhere ends with the tables a clean run leaves.
`--backfill` re-runs the data stages of a processed date whose input grew (late files). A run
holds the workspace's run lock (`jobs.runtime.run_lock`) from before it reads the ledger until it ends.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from pyspark.sql import SparkSession

from jobs.orchestration import config_drift, table_guard
from jobs.orchestration.ledger import BACKFILL_PREFIX, DONE, FAILED, LedgerRecord, RunLedger
from jobs.orchestration.nightly_report import StageReport, report_run
from jobs.runtime.run_lock import RunLock
from jobs.orchestration.stages import DATA_STAGES, STAGE_NAMES, STAGES
from jobs.runtime import faults
from jobs.runtime.dates import parse_day
from jobs.runtime.spark_runtime import stage_jobs
from jobs.runtime.tables import TableStore
from r2led_model.config import Config, split_as_of

log = logging.getLogger(__name__)


@dataclass
class StageOutcome:
    rows_in: int
    rows_out: int
    detail: dict[str, object] = field(default_factory=dict)


@dataclass
class RunContext:
    spark: SparkSession
    config: Config
    day: str
    retrain: bool
    store: TableStore
    run_ledger: RunLedger
    catch_up: bool  # no earlier date has been ingested: this run ingests every day up to its own
    ledger: dict[str, LedgerRecord] = field(default_factory=dict)  # stage → this date's finished record
    ledger_prefix: str = ""  # BACKFILL_PREFIX: a backfill's stages are recorded beside the date's own
    lock: RunLock | None = None  # the workspace's run lock, checked before each stage that runs
    rebuild: frozenset[str] = frozenset()  # stages run in full: their config changed (--rebuild)


# ---- stages ---------------------------------------------------------------------------------


def _ingest(ctx: RunContext) -> StageOutcome:
    from jobs.ingest.ingest import ingest_day

    # A rebuild re-reads every day up to the date: the insert-only MERGE restores what a damaged
    # events table lost and adds nothing it kept.
    catch_up = ctx.catch_up or "ingest" in ctx.rebuild
    result = ingest_day(ctx.spark, ctx.config, ctx.day, catch_up=catch_up)
    if result.empty_day:
        log.warning("%s: an empty day, no input to ingest (ingest.empty_day: allow); the run goes on", ctx.day)
    # rows read = accepted + rejected + deferred; accepted = new + exact duplicates + already present.
    return StageOutcome(result.rows_read, result.events_inserted,
                        {"run_id": result.run_id, "catch_up": catch_up, "accepted": result.rows_accepted,
                         "empty_day": result.empty_day,
                         "rejected": result.event_rows_rejected, "rejected_by_reason": result.rejected_by_reason,
                         "item_lines_rejected": result.item_lines_rejected, "deferred": result.rows_deferred,
                         "duplicates_dropped": result.duplicates_dropped, "already_present": result.already_present,
                         "items_inserted": result.items_inserted})


def _sequences(ctx: RunContext) -> StageOutcome:
    from jobs.sequences import sequences

    if "sequences" in ctx.rebuild:
        full = sequences.run(ctx.spark, ctx.config)
        return StageOutcome(ctx.store.read("events").count(), sum(full.samples_by_split.values()),
                            {"users": full.users, "action": "rebuilt"})
    # Every batch not yet sampled, whichever run ingested it (a forced ingest, a backfill).
    result = sequences.update(ctx.spark, ctx.config)
    return StageOutcome(result.batch_events, result.samples_inserted,
                        {"users": result.users, "batches": result.batches, "samples_moved": result.samples_moved,
                         "samples_recounted": result.samples_recounted})


def _embed_items(ctx: RunContext) -> StageOutcome:
    from jobs.sids import embed_items

    if "embed-items" in ctx.rebuild:
        full = embed_items.run(ctx.spark, ctx.config)
        return StageOutcome(full.items, full.from_text + full.from_als, {"action": "rebuilt"})
    result = embed_items.update(ctx.spark, ctx.config)
    return StageOutcome(result.new_items, result.embedded, {"deferred": result.deferred})


def _train_codebook(ctx: RunContext) -> StageOutcome:
    from jobs.sids import train_codebook
    from r2led_model import codebook_store

    store_dir = ctx.config.codebook.store_dir
    # The ledger is the pointer: the codebook the last run used, not whatever `current.json` names now
    # (a codebook trained by hand in between). A workspace whose ledger has none yet starts from it.
    current = _recorded_codebook(ctx.run_ledger) or codebook_store.current_version(store_dir)
    if current is not None and not ctx.retrain and "train-codebook" not in ctx.rebuild:
        codebook_store.load(store_dir, current)  # there and intact, or a clear error before any SID
        return StageOutcome(0, 0, {"codebook_version": current, "action": "kept"})
    result = train_codebook.run(ctx.spark, ctx.config)
    return StageOutcome(result.items, 1, {"codebook_version": result.version, "action": "trained"})


def _recorded_codebook(run_ledger: RunLedger) -> str | None:
    """The codebook version of the latest finished train-codebook stage in the ledger."""
    return config_drift.latest_detail(run_ledger.state(), "train-codebook", "codebook_version") or None


def _assign_sids(ctx: RunContext) -> StageOutcome:
    from jobs.sids import assign_sids

    trained = ctx.ledger.get("train-codebook")  # done before this stage, in this run or an earlier one
    version = trained.detail.get("codebook_version") if trained else None
    result = assign_sids.assign(ctx.spark, ctx.config, version=version)
    return StageOutcome(result.items, result.assigned_now,
                        {"codebook_version": result.codebook_version, "full_rebuild": result.full_rebuild})


def _collab_vectors(ctx: RunContext) -> StageOutcome:
    from jobs.retrieval import collab_vectors

    if ctx.store.exists("item_collab_vectors") and not ctx.retrain and "collab-vectors" not in ctx.rebuild:
        version = ctx.store.read("item_collab_vectors").select("version").first()
        return StageOutcome(0, 0, {"collab_version": version[0] if version else None, "action": "kept"})
    result = collab_vectors.run(ctx.spark, ctx.config)
    return StageOutcome(result.items, result.items, {"collab_version": result.version, "action": "fitted"})


def _retrieve(ctx: RunContext) -> StageOutcome:
    from jobs.retrieval import retrieve

    if "retrieve" in ctx.rebuild:
        full = retrieve.run(ctx.spark, ctx.config)
        return StageOutcome(full.samples, full.samples, {"full_rebuild": True, "action": "rebuilt"})
    result = retrieve.update(ctx.spark, ctx.config)
    return StageOutcome(result.new_samples, result.inserted,
                        {"moved": result.moved, "full_rebuild": result.full_rebuild})


def _build_training_set(ctx: RunContext) -> StageOutcome:
    from jobs.training import build_training_set

    if "build-training-set" in ctx.rebuild:
        full = build_training_set.run(ctx.spark, ctx.config)
        written = sum(full.examples_by_split.values())
        return StageOutcome(written, written, {"full_rebuild": True, "action": "rebuilt"})
    result = build_training_set.update(ctx.spark, ctx.config)
    return StageOutcome(result.new_samples, result.inserted,
                        {"moved": result.moved, "new_items": result.new_items, "full_rebuild": result.full_rebuild})


def _train(ctx: RunContext) -> StageOutcome:
    from jobs.training.train import train

    counts = {r["split"]: int(r["count"]) for r in
              ctx.store.read("training_examples").groupBy("split").count().collect()}
    empty = [split for split in ("train", "valid", "test") if not counts.get(split)]
    if empty:
        # Quiet days in the rolling window: a challenger could not be validated or compared with the
        # champion on the same test rows. The champion stays, and scores the day.
        log.warning("%s: no training examples in split(s) %s (quiet days in the rolling window): no challenger "
                    "is trained tonight", ctx.day, ", ".join(empty))
        return StageOutcome(counts.get("train", 0), 0, {"action": "not trained", "empty_splits": empty})
    result = train(ctx.spark, ctx.config, run_tags={"pipeline_date": ctx.day})
    train_rows = counts["train"]
    return StageOutcome(train_rows, 1, {"model_version": result.version, "run_id": result.run_id,
                               **{f"test_{k}": v for k, v in result.test.items() if k != "n"}})


def _promote(ctx: RunContext) -> StageOutcome:
    from jobs.registry.promote import promote

    trained = ctx.ledger["train"].detail if "train" in ctx.ledger else {}
    if trained.get("action") == "not trained":
        return StageOutcome(0, 0, {"action": "no challenger", "promoted": False})
    decision = promote(ctx.spark, ctx.config, version=trained.get("model_version"))
    return StageOutcome(1, int(decision.promoted),
                        {"challenger": decision.challenger_version, "champion_before": decision.champion_version,
                         "promoted": decision.promoted, "reason": decision.reason[:300]})


def _score(ctx: RunContext) -> StageOutcome:
    from jobs.registry.score import score

    result = score(ctx.spark, ctx.config, date=ctx.day)
    return StageOutcome(result.rows, result.rows, {"model_version": result.model_version,
                                                   "mean_score": round(result.mean_score, 6)})


# Each stage's step in a dated run (`jobs.orchestration.stages` holds their order and tables).
NIGHTLY_STEPS: dict[str, Callable[[RunContext], StageOutcome]] = {
    "ingest": _ingest, "sequences": _sequences, "embed-items": _embed_items, "train-codebook": _train_codebook,
    "assign-sids": _assign_sids, "collab-vectors": _collab_vectors, "retrieve": _retrieve,
    "build-training-set": _build_training_set, "train": _train, "promote": _promote, "score": _score,
}
assert tuple(NIGHTLY_STEPS) == STAGE_NAMES, "every stage has its nightly step, in stage order"


# ---- the ledger -----------------------------------------------------------------------------


def _record(ctx: RunContext, report: StageReport) -> None:
    detail = dict(report.detail)
    if report.status == "ran" and report.stage in config_drift.OWN_SECTIONS:
        # What shaped the stage's rows: the next run compares its own config with this.
        detail["config"] = config_drift.stage_config(ctx.config, report.stage)
    if report.status == "ran" and ctx.retrain:
        detail["retrain"] = True  # a re-run of the same --retrain resumes after this stage (`_retrained`)
    record = LedgerRecord(run_date=ctx.day, stage=ctx.ledger_prefix + report.stage,
                          status=DONE if report.status == "ran" else FAILED, rows_in=report.rows_in,
                          rows_out=report.rows_out, seconds=round(report.seconds, 3),
                          table_versions=report.table_versions, detail=detail)
    faults.enter_stage(None)  # the ledger write is the stage's commit, never an injected failure point
    stored = ctx.run_ledger.record(record)
    if report.status == "ran":
        ctx.ledger[report.stage] = stored


def _done_dates(ledger: list[LedgerRecord], stage: str) -> list[str]:
    return sorted({r.run_date for r in ledger if r.stage == stage and r.done})


def days_to_run(ledger: list[LedgerRecord], day: str) -> list[str]:
    """`day`, preceded by every earlier day not yet processed (a missed night, a failed one, one cut
    short by --until), in order: the days after the last whose data stages are all done, or from the
    first day ever ingested. A first run is `day` alone (its ingest catches up on the history)."""
    processed = _done_dates(ledger, DATA_STAGES[-1])
    started = _done_dates(ledger, "ingest")
    if processed:
        first = dt.date.fromisoformat(processed[-1]) + dt.timedelta(days=1)
    elif started:
        first = dt.date.fromisoformat(started[0])
    else:
        return [day]
    last = dt.date.fromisoformat(day)
    if first >= last:
        return [day]  # the date itself is done or resumes; an older one (--force) runs alone
    return [(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


# ---- the run --------------------------------------------------------------------------------


def check_failure(text: str) -> tuple[str, int]:
    """--inject-failure STAGE[:N] → (stage, n)."""
    stage, _, after = text.partition(":")
    if stage not in STAGE_NAMES or not (after or "1").isdigit():
        raise argparse.ArgumentTypeError(f"--inject-failure: {text!r} is not STAGE[:N] with STAGE one of "
                                         f"{', '.join(STAGE_NAMES)}")
    return stage, int(after or 1)


def run_date(spark: SparkSession, config: Config, day: str, *, force: bool = False,
             force_stages: tuple[str, ...] = (), retrain: bool = False, rebuild: bool = False,
             until: str | None = None, inject_failure: tuple[str, int] | None = None,
             backfill: bool = False, skip_days: tuple[str, ...] = (),
             rebuild_from: str | None = None) -> list[StageReport]:
    """Run (or resume) the nightly pipeline for `day`, after every earlier day it missed
    (`days_to_run`: those run their data stages); returns one report per stage run, in order.

    `backfill`: `day` is a date already processed whose input changed (late files): its ingest and
    every data stage run again, with the split of the latest processed date, so exactly the rows the
    new input changes are added or re-derived; no model is trained and nothing is scored.

    A config that changed since the tables were built is refused before anything is written
    (`jobs.orchestration.config_drift`); `retrain` accepts codebook and collaborative changes, `rebuild` every
    change after ingest, rebuilding in full the data stages whose config changed.

    Tables missing or behind the versions the ledger recorded stop the run before any write
    (`jobs.orchestration.table_guard`); `rebuild_from` accepts that for the tables of that stage and
    every later one, and rebuilds them in full for `day` (ingest re-reads every day up to it).
    `skip_days`: missed days the operator gives up on (a broken day folder): recorded in the ledger as
    skipped, nothing ingested for them; a `--backfill` of such a day later ingests what it then has.
    """
    day = parse_day(day)  # it becomes a ledger key, a folder name and a replaceWhere: never unchecked text
    skip_days = tuple(sorted({parse_day(d) for d in skip_days}))
    named = set(force_stages) | ({until} if until else set()) | ({rebuild_from} if rebuild_from else set())
    unknown = sorted(named - set(STAGE_NAMES))
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; stages are {', '.join(STAGE_NAMES)}")
    store = TableStore(spark, config.tables)
    # Taken before the ledger is read (what this run decides from it cannot go stale) and before any
    # write; a run that finds it held raises LockHeldError having written nothing.
    lock = RunLock(store, run_date=day, timeout_minutes=config.pipeline.lock_timeout_minutes,
                   command=f"pipeline --date {day}" + (" --backfill" if backfill else ""))
    lock.acquire()
    try:
        return _run_locked(spark, config, store, lock, day, force=force, force_stages=force_stages, retrain=retrain,
                           rebuild=rebuild, until=until, inject_failure=inject_failure, backfill=backfill,
                           skip_days=skip_days, rebuild_from=rebuild_from)
    finally:
        try:
            lock.release()
        except Exception:  # it expires after pipeline.lock_timeout_minutes; the run's own outcome matters more
            log.exception("could not release the run lock of %s", lock.owner)


def _run_locked(spark: SparkSession, config: Config, store: TableStore, lock: RunLock, day: str, *, force: bool,
                force_stages: tuple[str, ...], retrain: bool, rebuild: bool, until: str | None,
                inject_failure: tuple[str, int] | None, backfill: bool, skip_days: tuple[str, ...],
                rebuild_from: str | None) -> list[StageReport]:
    run_ledger = RunLedger(store)
    run_ledger.upgrade()  # a ledger written by an older release gains recorded_at (under the lock)
    ledger = run_ledger.state()
    processed = _done_dates(ledger, DATA_STAGES[-1])
    if backfill:
        if not processed or day > processed[-1]:
            raise ValueError(f"--backfill {day}: only a processed date can be backfilled (last processed: "
                             f"{processed[-1] if processed else 'none'}); run pipeline --date {day} instead")
        if force or force_stages or retrain or rebuild or until or skip_days or rebuild_from:
            raise ValueError("--backfill runs every data stage of the date: it takes no --force, --force-stage, "
                             "--retrain, --rebuild, --until, --skip-day or --rebuild-from")
    else:
        newer = sorted({r.run_date for r in ledger if r.run_date > day and r.stage == "ingest"})
        if newer and not force:
            raise ValueError(f"--date {day}: {newer[-1]} already ran; re-running an older date would roll the split "
                             f"back (use --force to do it anyway, or --backfill to add late data of {day})")
    # Before any write: every table the ledger knows is there, at least at its recorded version.
    damaged = table_guard.check_tables(store, ledger, day=day, rebuild_from=rebuild_from)
    # Before any write: a config that changed since the tables were built is refused or rebuilt.
    rebuilt = config_drift.stages_to_rebuild(ledger, config, retrain=retrain, rebuild=rebuild)
    if rebuilt:
        log.info("config changed for %s: rebuilt in full (--rebuild)", ", ".join(sorted(rebuilt)))
    days = [day] if backfill else days_to_run(ledger, day)
    not_missed = sorted(set(skip_days) - set(days[:-1]))
    if not_missed:
        raise ValueError(f"--skip-day {', '.join(not_missed)}: only a missed day this run would catch up on can be "
                         f"skipped (missed days: {', '.join(days[:-1]) or 'none'}); the run's own date cannot")
    if rebuild_from:
        from_here = STAGE_NAMES[STAGE_NAMES.index(rebuild_from):]
        rebuilt = rebuilt | frozenset(s for s in DATA_STAGES if s in from_here)
        for problem in damaged:
            log.warning("--rebuild-from %s: %s; rebuilt", rebuild_from, problem)
        table_guard.move_damaged_aside(store, table_guard.tables_from(rebuild_from))
    forced_from = frozenset(STAGE_NAMES[STAGE_NAMES.index(rebuild_from):]) if rebuild_from else frozenset()
    first_day = next(d for d in days if d not in skip_days)  # the one that rebuilds, if anything is
    if len(days) > 1:
        log.info("--date %s: catching up on %s first (data stages only)", day, ", ".join(days[:-1]))
    if inject_failure:
        faults.arm(*inject_failure)
    reports: list[StageReport] = []
    try:
        if backfill:
            # The latest processed date's split: a backfill must not roll any row's split back.
            ctx = RunContext(spark, split_as_of(config, processed[-1]), day, False, store, run_ledger, catch_up=False,
                             ledger_prefix=BACKFILL_PREFIX, lock=lock)
            _run_stages(ctx, DATA_STAGES, reports, rerun=lambda name: True)
        for current in ([] if backfill else days):
            if current in skip_days:
                _skip_day(run_ledger, current, reports)
                continue
            if current != days[0]:
                ledger = run_ledger.state()  # the days run so far in this call count as ingested
            ingested_before = any(r.stage == "ingest" and r.done and r.run_date < current for r in ledger)
            ctx = RunContext(spark, split_as_of(config, current), current, retrain and current == day, store,
                             run_ledger, catch_up=not ingested_before,
                             ledger={r.stage: r for r in ledger if r.run_date == current and r.done},
                             lock=lock, rebuild=rebuilt if current == first_day else frozenset())
            if current != day:
                _run_stages(ctx, DATA_STAGES, reports, rerun=lambda name: name in ctx.rebuild)
                continue
            names = STAGE_NAMES[:STAGE_NAMES.index(until) + 1] if until else STAGE_NAMES
            _run_stages(ctx, names, reports, rerun=lambda name: force or name in force_stages or name in ctx.rebuild
                        or name in forced_from or (retrain and not _retrained(ctx, name)))
    finally:
        faults.disarm()
        report_run(config, day, reports, backfill=backfill)
    return reports


def _skip_day(run_ledger: RunLedger, day: str, reports: list[StageReport]) -> None:
    """Record every data stage of `day` as done with nothing ingested (`--skip-day`): later runs no
    longer catch up on it; `--backfill` of the day ingests what its folder holds by then."""
    log.warning("--skip-day %s: the day is skipped, nothing of it is ingested (recorded in the ledger)", day)
    for name in DATA_STAGES:
        detail = {"skipped_day": True, "reason": "--skip-day"}
        run_ledger.record(LedgerRecord(run_date=day, stage=name, status=DONE, rows_in=0, rows_out=0, detail=detail))
        reports.append(StageReport(name, "skipped", 0, 0, detail=detail, day=day))


def _retrained(ctx: RunContext, stage: str) -> bool:
    """`stage` is done for the date by a --retrain run with the current config: a re-run of that
    --retrain after a crash resumes instead of retraining from the first stage again."""
    record = ctx.ledger.get(stage)
    if record is None:
        return False
    detail = record.detail
    return bool(detail.get("retrain")) and (stage not in config_drift.OWN_SECTIONS
                                            or detail.get("config") == config_drift.stage_config(ctx.config, stage))


def _run_stages(ctx: RunContext, names: tuple[str, ...], reports: list[StageReport],
                rerun: Callable[[str], bool]) -> None:
    """Run `names` in stage order for `ctx.day`; a stage done before is skipped unless `rerun(name)`."""
    for stage in STAGES:
        name, tables = stage.name, stage.writes
        if name not in names:
            continue
        if name in ctx.ledger and not rerun(name):
            recorded = ctx.ledger[name]
            detail = {k: v for k, v in recorded.detail.items() if k not in ("config", "retrain")}
            reports.append(StageReport(name, "skipped", recorded.rows_in, recorded.rows_out,
                                       # As the stage left them (recorded, not read back: a resumed run
                                       # skips most stages, and a version read is a Spark job per table).
                                       table_versions=dict(recorded.table_versions),
                                       detail=detail, day=ctx.day))
            log.info("stage %s: already done for %s, skipped", name, ctx.day)
        else:
            if ctx.lock is not None:
                ctx.lock.check_held(f"stage {name}")  # LockLostError if a run took the lock over
            _run_stage(ctx, name, NIGHTLY_STEPS[name], tables, reports)


def _run_stage(ctx: RunContext, name: str, stage: Callable[[RunContext], StageOutcome],
               tables: tuple[str, ...], reports: list[StageReport]) -> None:
    log.info("stage %s for %s", name, ctx.day)
    started = time.perf_counter()
    faults.enter_stage(name)
    try:
        with stage_jobs(ctx.spark, name):
            outcome = stage(ctx)
        # The stage's outputs are all committed but it is not yet recorded as done: a fault armed
        # for a stage that wrote nothing this time fires here.
        faults.commit_point("the end of the stage")
    except Exception as exc:
        report = StageReport(name, "failed", seconds=time.perf_counter() - started,
                             detail={"error": f"{type(exc).__name__}: {exc}"[:500]}, day=ctx.day)
        reports.append(report)
        try:
            _record(ctx, report)
        except Exception:  # the ledger is best effort here; the stage's own error is what matters
            log.exception("could not record the failure of stage %s", name)
        raise
    finally:
        faults.enter_stage(None)
    report = StageReport(name, "ran", outcome.rows_in, outcome.rows_out, time.perf_counter() - started,
                         {t: ctx.store.version(t) for t in tables}, outcome.detail, day=ctx.day)
    _record(ctx, report)
    reports.append(report)
