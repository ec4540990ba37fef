"""Tables checked against the ledger before a dated run writes anything.

The ledger records the Delta version every stage left each table at. A table the ledger says exists
but whose folder or log is gone (a partial restore, a sync that missed `_delta_log`), or whose version
is behind the recorded one (its newest commits deleted), has lost rows: writing on would replace it,
or build on a rolled-back copy, and report success. Such a table stops the run, named with its
recorded and found versions and the two fixes: restore it, or rebuild it and everything after it
(`pipeline --date D --rebuild-from STAGE`). A version ahead of the record is normal (a stage run on
its own since, a failed attempt that committed part of its work).
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from jobs.orchestration.ledger import LedgerRecord
from jobs.orchestration.stages import STAGE_NAMES, STAGES
from jobs.runtime.tables import DamagedTableError, TableStore

log = logging.getLogger(__name__)


class TableStateError(RuntimeError):
    """A table is missing or behind what the ledger recorded; nothing was written."""


@dataclass(frozen=True)
class Recorded:
    table: str
    version: int
    run_date: str
    stage: str  # the ledger's stage name (a backfill's is "backfill/<stage>")


@dataclass(frozen=True)
class Problem:
    recorded: Recorded
    found: str  # "version 4", "no Delta log", "missing"

    def __str__(self) -> str:
        r = self.recorded
        return (f"{r.table}: the ledger records version {r.version} (stage {r.stage} of {r.run_date}), "
                f"found {self.found}")


def writer_of(table: str) -> str:
    """The stage that writes `table`."""
    for stage in STAGES:
        if table in stage.writes:
            return stage.name
    raise KeyError(table)


def tables_from(stage: str) -> frozenset[str]:
    """The tables `stage` and every later stage write: what `--rebuild-from stage` rebuilds."""
    later = STAGE_NAMES[STAGE_NAMES.index(stage):]
    return frozenset(t for s in STAGES if s.name in later for t in s.writes)


def recorded_versions(ledger: Iterable[LedgerRecord]) -> dict[str, Recorded]:
    """Each table's version as the latest finished stage that wrote it left it (latest by recorded_at,
    so a rebuild that restarted a table's versions from 0 is what counts after it)."""
    latest: dict[str, tuple[int, Recorded]] = {}
    for record in ledger:
        if not record.done:
            continue
        order = record.recorded_at or 0
        for table, version in record.table_versions.items():
            if version is None:
                continue
            if table not in latest or order >= latest[table][0]:
                latest[table] = (order, Recorded(table, int(version), record.run_date, record.stage))
    return {table: recorded for table, (_, recorded) in latest.items()}


def find_problems(store: TableStore, ledger: Sequence[LedgerRecord]) -> list[Problem]:
    problems = []
    for table, recorded in sorted(recorded_versions(ledger).items()):
        try:
            found = store.version(table)
        except DamagedTableError:
            problems.append(Problem(recorded, "data files but no Delta log"))
            continue
        if found is None:
            problems.append(Problem(recorded, "no table (its folder or Delta log is missing)"))
        elif found < recorded.version:
            problems.append(Problem(recorded, f"version {found} (its newest commits are missing)"))
    return problems


def check_tables(store: TableStore, ledger: Sequence[LedgerRecord], *, day: str,
                 rebuild_from: str | None = None) -> list[Problem]:
    """Raise TableStateError for any table missing or behind the ledger, except those `rebuild_from`
    rebuilds (returned: the run rebuilds them)."""
    problems = find_problems(store, ledger)
    accepted = tables_from(rebuild_from) if rebuild_from else frozenset()
    refused = [p for p in problems if p.recorded.table not in accepted]
    if refused:
        first = min((writer_of(p.recorded.table) for p in refused), key=STAGE_NAMES.index)
        raise TableStateError(
            "tables do not match the ledger; nothing was written:\n  " + "\n  ".join(map(str, refused))
            + f"\nRestore each from a backup (its folder with _delta_log, at least at the recorded version), or "
              f"rebuild it and every table after it from the logs: r2led pipeline --date {day} --rebuild-from "
              f"{first} (a damaged folder is moved aside under {Path(store.config.root) / '_damaged'}, not deleted)")
    return [p for p in problems if p.recorded.table in accepted]


def move_damaged_aside(store: TableStore, tables: Iterable[str]) -> list[Path]:
    """Move each table folder that holds data files but no Delta log to `<tables.root>/_damaged/`, so a
    rebuild starts a new table without deleting anything; returns where each went."""
    moved = []
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for table in sorted(tables):
        if store.config.backend != "path":
            continue  # a catalog table without its log fails its own reads; nothing to move
        try:
            store.exists(table)
            continue
        except DamagedTableError:
            folder = Path(store.location(table))
        target = Path(store.config.root).resolve() / "_damaged" / f"{table}-{stamp}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(folder), str(target))
        log.warning("table %s had data files but no Delta log: moved to %s, rebuilding it", table, target)
        moved.append(target)
    return moved
