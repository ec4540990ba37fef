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
import contextlib
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
from jobs.orchestration.stages import DATA_STAGES, STAGE_NAMES, STAGES, Stage
from jobs.runtime import commit_guard
from jobs.runtime.faults import FaultPlan
from jobs.runtime.dates import parse_day
from jobs.runtime.spark_runtime import stage_jobs
from jobs.runtime.stage_protocol import Scope
from jobs.runtime.tables import TableStore
from r2led_model.config import Config, split_as_of

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
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
    faults: FaultPlan | None = None  # --inject-failure: the commit inside a stage that fails

    def rebuilds(self, stage: str) -> bool:
        return stage in self.rebuild


# ---- stages ---------------------------------------------------------------------------------


def scope_of(ctx: RunContext, stage: str) -> Scope:
    """What the dated run tells `stage` (`jobs.runtime.stage_protocol`): its day, whether it derives every
    row again or refits, and the ledger's facts it needs from earlier stages."""
    return Scope(day=ctx.day, rebuild=ctx.rebuilds(stage), retrain=ctx.retrain, catch_up=ctx.catch_up,
                 codebook_version=_codebook_for(ctx, stage),
                 challenger=ctx.ledger["train"].detail if stage == "promote" and "train" in ctx.ledger else {})


def _codebook_for(ctx: RunContext, stage: str) -> str | None:
    if stage == "train-codebook":
        # The ledger is the pointer: the codebook the last run used, not whatever `current.json` names
        # now (a codebook trained by hand in between). A workspace whose ledger has none yet starts from it.
        return config_drift.latest_detail(ctx.run_ledger.state(), "train-codebook", "codebook_version") or None
    if stage == "assign-sids":
        trained = ctx.ledger.get("train-codebook")  # done before this stage, in this run or an earlier one
        return trained.detail.get("codebook_version") if trained else None
    return None


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
    if stage not in STAGE_NAMES or not (after or "1").isdigit() or int(after or 1) < 1:
        raise argparse.ArgumentTypeError(f"--inject-failure: {text!r} is not STAGE[:N] with STAGE one of "
                                         f"{', '.join(STAGE_NAMES)} and N >= 1")
    return stage, int(after or 1)


@dataclass(frozen=True, kw_only=True)
class RunRequest:
    """What a dated run was asked to do, checked whole when made: every flag valid on its own and with the
    others. What depends on the ledger (a processed date, a missed day) is checked by the run, under its lock."""

    day: str
    force: bool = False
    force_stages: tuple[str, ...] = ()
    retrain: bool = False
    rebuild: bool = False
    until: str | None = None
    backfill: bool = False
    skip_days: tuple[str, ...] = ()
    rebuild_from: str | None = None
    inject_failure: tuple[str, int] | None = None

    def __post_init__(self) -> None:
        # The date becomes a ledger key, a folder name and a replaceWhere: never unchecked text.
        object.__setattr__(self, "day", parse_day(self.day))
        object.__setattr__(self, "skip_days", tuple(sorted({parse_day(d) for d in self.skip_days})))
        object.__setattr__(self, "force_stages", tuple(self.force_stages))
        named = set(self.force_stages) | {s for s in (self.until, self.rebuild_from) if s}
        if self.inject_failure:
            named.add(self.inject_failure[0])
        unknown = sorted(named - set(STAGE_NAMES))
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; stages are {', '.join(STAGE_NAMES)}")
        if self.backfill and (self.force or self.force_stages or self.retrain or self.rebuild or self.until
                              or self.skip_days or self.rebuild_from):
            raise ValueError("--backfill runs every data stage of the date: it takes no --force, --force-stage, "
                             "--retrain, --rebuild, --until, --skip-day or --rebuild-from")

    def fault_plan(self) -> FaultPlan | None:
        return FaultPlan(*self.inject_failure) if self.inject_failure else None

    def command(self) -> str:
        return f"pipeline --date {self.day}" + (" --backfill" if self.backfill else "")


def run_date(spark: SparkSession, config: Config, day: str, *, force: bool = False,
             force_stages: tuple[str, ...] = (), retrain: bool = False, rebuild: bool = False,
             until: str | None = None, inject_failure: tuple[str, int] | None = None,
             backfill: bool = False, skip_days: tuple[str, ...] = (),
             rebuild_from: str | None = None,
             on_summary: Callable[[str], None] | None = None) -> list[StageReport]:
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

    When the run ends, failed or not, its summary table goes to MLflow and to `on_summary` (the
    command's `main` prints it).
    """
    request = RunRequest(day=day, force=force, force_stages=tuple(force_stages), retrain=retrain, rebuild=rebuild,
                         until=until, backfill=backfill, skip_days=tuple(skip_days), rebuild_from=rebuild_from,
                         inject_failure=inject_failure)
    return run_request(spark, config, request, on_summary=on_summary)


def run_request(spark: SparkSession, config: Config, request: RunRequest, *,
                on_summary: Callable[[str], None] | None = None) -> list[StageReport]:
    """`run_date` for a request already made."""
    store = TableStore(spark, config.tables)
    # Taken before the ledger is read (what this run decides from it cannot go stale) and before any
    # write; a run that finds it held raises LockHeldError having written nothing.
    lock = RunLock(store, run_date=request.day, timeout_minutes=config.pipeline.lock_timeout_minutes,
                   command=request.command())
    lock.acquire()
    reports: list[StageReport] = []
    try:
        _run_locked(spark, config, store=store, lock=lock, request=request, reports=reports)
        return reports
    finally:
        if reports:  # a run refused before its first stage has nothing to summarise
            summary = report_run(config, request.day, reports, backfill=request.backfill)
            if on_summary is not None:
                on_summary(summary)
        try:
            lock.release()
        except Exception:  # it expires after pipeline.lock_timeout_minutes; the run's own outcome matters more
            log.exception("could not release the run lock of %s", lock.owner)


def _run_locked(spark: SparkSession, config: Config, *, store: TableStore, lock: RunLock, request: RunRequest,
                reports: list[StageReport]) -> None:
    day = request.day
    run_ledger = RunLedger(store)
    run_ledger.upgrade()  # a ledger written by an older release gains recorded_at (under the lock)
    ledger = run_ledger.state()
    processed = _done_dates(ledger, DATA_STAGES[-1])
    if request.backfill:
        if not processed or day > processed[-1]:
            raise ValueError(f"--backfill {day}: only a processed date can be backfilled (last processed: "
                             f"{processed[-1] if processed else 'none'}); run pipeline --date {day} instead")
    else:
        newer = sorted({r.run_date for r in ledger if r.run_date > day and r.stage == "ingest"})
        if newer and not request.force:
            raise ValueError(f"--date {day}: {newer[-1]} already ran; re-running an older date would roll the split "
                             f"back (use --force to do it anyway, or --backfill to add late data of {day})")
    # Before any write: every table the ledger knows is there, at least at its recorded version.
    damaged = table_guard.check_tables(store, ledger, day=day, rebuild_from=request.rebuild_from)
    # Before any write: a config that changed since the tables were built is refused or rebuilt.
    rebuilt = config_drift.stages_to_rebuild(ledger, config, retrain=request.retrain, rebuild=request.rebuild)
    if rebuilt:
        log.info("config changed for %s: rebuilt in full (--rebuild)", ", ".join(sorted(rebuilt)))
    days = [day] if request.backfill else days_to_run(ledger, day)
    not_missed = sorted(set(request.skip_days) - set(days[:-1]))
    if not_missed:
        raise ValueError(f"--skip-day {', '.join(not_missed)}: only a missed day this run would catch up on can be "
                         f"skipped (missed days: {', '.join(days[:-1]) or 'none'}); the run's own date cannot")
    forced_from: frozenset[str] = frozenset()
    if request.rebuild_from:
        forced_from = frozenset(STAGE_NAMES[STAGE_NAMES.index(request.rebuild_from):])
        rebuilt = rebuilt | frozenset(s for s in DATA_STAGES if s in forced_from)
        for problem in damaged:
            log.warning("--rebuild-from %s: %s; rebuilt", request.rebuild_from, problem)
        table_guard.move_damaged_aside(store, table_guard.tables_from(request.rebuild_from))
    first_day = next(d for d in days if d not in request.skip_days)  # the one that rebuilds, if anything is
    if len(days) > 1:
        log.info("--date %s: catching up on %s first (data stages only)", day, ", ".join(days[:-1]))
    plan = request.fault_plan()
    with plan.armed() if plan else contextlib.nullcontext():
        if request.backfill:
            # The latest processed date's split: a backfill must not roll any row's split back.
            ctx = RunContext(spark=spark, config=split_as_of(config, processed[-1]), day=day, retrain=False,
                             store=store, run_ledger=run_ledger, catch_up=False, ledger_prefix=BACKFILL_PREFIX,
                             lock=lock, faults=plan)
            _run_stages(ctx, DATA_STAGES, reports, rerun=_always)
        for current in ([] if request.backfill else days):
            if current in request.skip_days:
                _skip_day(run_ledger, current, reports)
                continue
            if current != days[0]:
                ledger = run_ledger.state()  # the days run so far in this call count as ingested
            ingested_before = any(r.stage == "ingest" and r.done and r.run_date < current for r in ledger)
            ctx = RunContext(spark=spark, config=split_as_of(config, current), day=current,
                             retrain=request.retrain and current == day, store=store, run_ledger=run_ledger,
                             catch_up=not ingested_before,
                             ledger={r.stage: r for r in ledger if r.run_date == current and r.done},
                             lock=lock, rebuild=rebuilt if current == first_day else frozenset(), faults=plan)
            if current != day:
                _run_stages(ctx, DATA_STAGES, reports, rerun=ctx.rebuilds)
                continue
            names = STAGE_NAMES[:STAGE_NAMES.index(request.until) + 1] if request.until else STAGE_NAMES
            _run_stages(ctx, names, reports, rerun=_rerun_of_dated_day(ctx, request, forced_from))


def _always(stage: str) -> bool:
    return True


def _rerun_of_dated_day(ctx: RunContext, request: RunRequest,
                        forced_from: frozenset[str]) -> Callable[[str], bool]:
    """Which stages already done for the run's own date run again."""
    def rerun(name: str) -> bool:
        return (request.force or name in request.force_stages or ctx.rebuilds(name) or name in forced_from
                or (request.retrain and not _retrained(ctx, name)))
    return rerun


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
        name = stage.name
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
            _run_stage(ctx, stage, reports)


def _run_stage(ctx: RunContext, stage: Stage, reports: list[StageReport]) -> None:
    name = stage.name
    log.info("stage %s for %s", name, ctx.day)
    started = time.perf_counter()
    # The fault plan counts this stage's commits only; the ledger write below is the stage's own commit,
    # never an injected failure point.
    inside = ctx.faults.inside(name) if ctx.faults else contextlib.nullcontext()
    try:
        with inside, stage_jobs(ctx.spark, name):
            outcome = stage.derive(ctx.spark, ctx.config, scope=scope_of(ctx, name))
            # The stage's outputs are all committed but it is not yet recorded as done: a fault planned
            # for a stage that wrote nothing this time fires here.
            commit_guard.after_commit("the end of the stage")
    except Exception as exc:
        report = StageReport(name, "failed", seconds=time.perf_counter() - started,
                             detail={"error": f"{type(exc).__name__}: {exc}"[:500]}, day=ctx.day)
        reports.append(report)
        try:
            _record(ctx, report)
        except Exception:  # the ledger is best effort here; the stage's own error is what matters
            log.exception("could not record the failure of stage %s", name)
        raise
    report = StageReport(name, "ran", outcome.rows_in, outcome.rows_out, time.perf_counter() - started,
                         {t: ctx.store.version(t) for t in stage.writes}, outcome.detail, day=ctx.day)
    _record(ctx, report)
    reports.append(report)
