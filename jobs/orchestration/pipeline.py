"""`r2led pipeline`: the end-to-end run on one session, stage by stage; `--date D` is the nightly run
(`jobs.orchestration.nightly`).

ingest → sequences → embed-items → train-codebook → assign-sids → collab-vectors → retrieve →
build-training-set → train → promote → score. Each stage is its job's
`derive` over all the data (`jobs.runtime.stage_protocol`), so the pipeline adds no logic of its own beyond ordering and the run summary, which `main`
prints (a dated run's summary as soon as it ends, failed or not).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from pyspark.sql import SparkSession

from jobs.orchestration.stages import STAGE_NAMES, STAGES
from jobs.runtime.entrypoint import spark_job_main
from jobs.runtime.run_lock import RunLock
from jobs.runtime.spark_runtime import stage_jobs
from jobs.runtime.stage_protocol import FULL_RUN
from jobs.runtime.tables import TableStore
from r2led_model.config import Config

log = logging.getLogger(__name__)
REPORTED_TABLES = ("events", "events_rejected", "items", "user_sequences", "samples", "item_embeddings",
                   "items_rejected", "item_sids", "item_collab_vectors", "route_candidates", "item_index",
                   "training_examples", "predictions")


def run(spark: SparkSession, config: Config, *, date: str | None = None, as_of: str | None = None,
        force: bool = False, force_stage: Sequence[str] = (), retrain: bool = False, rebuild: bool = False,
        until: str | None = None, backfill: bool = False, inject_failure: tuple[str, int] | None = None,
        skip_day: Sequence[str] = (), rebuild_from: str | None = None,
        on_summary: Callable[[str], None] | None = None) -> object:
    """The nightly run of `date` ("yesterday" counts back from `as_of`), or with no date the full run,
    which takes none of the dated flags. `on_summary` gets the run's summary table when it ends."""
    if date:
        from jobs.orchestration.nightly import run_date
        from jobs.runtime.dates import resolve_run_date

        day = resolve_run_date(date, as_of=as_of)
        if day != date:
            log.info("--date %s (as of %s) is %s", date, as_of or "today, UTC", day)
        return run_date(spark, config, day, force=force, force_stages=tuple(force_stage), retrain=retrain,
                        rebuild=rebuild, until=until, inject_failure=inject_failure, backfill=backfill,
                        skip_days=tuple(skip_day), rebuild_from=rebuild_from, on_summary=on_summary)
    dated_only = [flag for flag, value in (("--force", force), ("--as-of", as_of), ("--force-stage", force_stage),
                                           ("--retrain", retrain), ("--rebuild", rebuild), ("--until", until),
                                           ("--backfill", backfill), ("--skip-day", skip_day),
                                           ("--rebuild-from", rebuild_from)) if value]
    if dated_only:
        log.warning("%s apply to dated runs only (--date); the full run ignores them", ", ".join(dated_only))
    results = run_full(spark, config)
    if on_summary is not None:
        on_summary(tables_table(results["tables"]))
    return results


def run_full(spark: SparkSession, config: Config) -> dict[str, object]:
    """Every stage over all the data (the embedded default's `make run`), each with its own defaults.

    No pipeline flag reaches a stage: `pipeline --force` must never become `promote --force`. It holds
    the workspace's run lock throughout, as a dated run does.
    """
    results: dict[str, object] = {}
    store = TableStore(spark, config.tables)
    with RunLock(store, timeout_minutes=config.pipeline.lock_timeout_minutes, command="pipeline (full run)"):
        for stage in STAGES:
            started = time.perf_counter()
            with stage_jobs(spark, stage.name):
                outcome = stage.derive(spark, config, scope=FULL_RUN)
            results[stage.name] = outcome
            log.info("stage %s done in %.1fs: %s rows in, %s rows out", stage.name, time.perf_counter() - started,
                     f"{outcome.rows_in:,}", f"{outcome.rows_out:,}")
    results["tables"] = [TableRow(table, store.read(table).count(), store.version(table), store.location(table))
                         for table in REPORTED_TABLES]
    return results


@dataclass(frozen=True)
class TableRow:
    table: str
    rows: int
    version: int | None
    location: str


def tables_table(rows: Sequence[TableRow]) -> str:
    """The full run's summary: each table's rows, Delta version and location."""
    width = max(len(r.table) for r in rows)
    return "\n".join([f"{'table':<{width}} {'rows':>10} {'version':>8}  location"]
                     + [f"{r.table:<{width}} {r.rows:>10,} {r.version:>8}  {r.location}" for r in rows])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from jobs.orchestration.nightly import check_failure
    from jobs.runtime.dates import date_argument, run_date_argument

    parser.add_argument("--date", type=run_date_argument, default=None,
                        help="the nightly run for this day, YYYY-MM-DD, or 'yesterday' (the day before --as-of): "
                             "incremental, resumable, ledger-tracked (default: a full run over all data)")
    parser.add_argument("--as-of", type=date_argument, default=None, metavar="YYYY-MM-DD",
                        help="with --date yesterday: the day it counts back from, a scheduler's trigger date "
                             "(default: today in UTC); ignored for an explicit --date")
    parser.add_argument("--force", action="store_true", help="with --date: re-run stages already done for the date")
    parser.add_argument("--force-stage", action="append", default=[], choices=STAGE_NAMES, metavar="STAGE",
                        help="with --date: re-run this stage even if done (repeatable)")
    parser.add_argument("--retrain", action="store_true",
                        help="with --date: retrain the codebook and refit collaborative vectors (then every "
                             "SID, candidate and example is rebuilt)")
    parser.add_argument("--rebuild", action="store_true",
                        help="with --date: accept a config changed since the tables were built (other routes, k, "
                             "windows, sequence rules, embeddings) by rebuilding in full every table it shapes")
    parser.add_argument("--until", default=None, choices=STAGE_NAMES, metavar="STAGE",
                        help="with --date: stop after this stage (earlier days the run catches up on run their "
                             "data stages whatever it is)")
    parser.add_argument("--backfill", action="store_true",
                        help="with --date of a processed day: ingest its late input and re-derive exactly the rows "
                             "it changes, up to build-training-set (no training, no scoring)")
    parser.add_argument("--skip-day", action="append", default=[], type=date_argument, metavar="YYYY-MM-DD",
                        help="with --date: give up on this missed day (a broken or lost day folder): recorded in "
                             "the ledger as skipped, nothing ingested for it; --backfill of it later ingests what "
                             "it holds then (repeatable)")
    parser.add_argument("--rebuild-from", default=None, choices=STAGE_NAMES, metavar="STAGE",
                        help="with --date: tables missing or behind the ledger (a lost _delta_log, deleted commits) "
                             "written by STAGE or a later stage are rebuilt in full for the date (ingest re-reads "
                             "every day up to it); a damaged folder is moved aside under <tables.root>/_damaged")
    # Tests and drills: fail at the N-th commit inside STAGE (STAGE[:N]).
    parser.add_argument("--inject-failure", type=check_failure, default=None, help=argparse.SUPPRESS)


def _print(summary: str) -> None:
    print(summary, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    def run_and_print(spark: SparkSession, config: Config, **flags: object) -> object:
        return run(spark, config, **flags, on_summary=_print)

    return spark_job_main(argv, "pipeline", "Run every stage end to end, or the nightly run of one --date.",
                          run_and_print, add_arguments)


if __name__ == "__main__":
    sys.exit(main())
