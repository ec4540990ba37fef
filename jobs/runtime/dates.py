"""Run dates: the one parser every `--date` (and the notebooks' `date` widget) goes through.

A run date becomes a folder name (`event_date=D/`), a ledger key and a `replaceWhere` predicate, so
only a strict `YYYY-MM-DD` that names a real calendar day is accepted, and the canonical text
`date.isoformat()` returns is what the rest of the run uses. `datetime.date.fromisoformat` alone is
not enough: since Python 3.11 it also takes `20240116` and ISO week dates such as `2024-W03-2`.

One date semantics for every scheduler: a nightly run processes the (UTC) day before its trigger.
`r2led pipeline --date yesterday --as-of T` resolves to T - 1 day, where the scheduler passes its
trigger's date as T (Databricks: `{{job.trigger.time.iso_date}}`, Airflow: `{{ data_interval_end | ds }}`)
because neither templating language can subtract a day; without `--as-of`, T is today in UTC (cron).

A date given on the command line is at most tomorrow in UTC (today somewhere east of UTC): a run date
further ahead has no data yet, and is a typo (2099 for 2009) or a template filled in wrongly.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
from typing import Callable

# ASCII digits only: `\d` would also match other scripts' digits.
_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
YESTERDAY = "yesterday"


def parse_day(text: object, what: str = "date") -> str:
    """`text` as a canonical YYYY-MM-DD string, or ValueError naming `what`."""
    try:
        return _canonical_day(text)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None


def _canonical_day(text: object) -> str:
    if not isinstance(text, str) or not _ISO_DAY.fullmatch(text):
        raise ValueError(f"{text!r} is not a YYYY-MM-DD date")
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise ValueError(f"{text!r} is not a calendar date") from None


def date_argument(text: str) -> str:
    """argparse `type` for `--date` and `--as-of`: a bad value is a usage error (exit 2) before any work
    starts. The message leaves the flag out: argparse prefixes it (`argument --as-of: ...`), so each flag
    that uses this type is named right."""
    try:
        day = _canonical_day(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    latest = utc_today() + dt.timedelta(days=1)
    if dt.date.fromisoformat(day) > latest:
        raise argparse.ArgumentTypeError(f"{day!r} is in the future (after tomorrow, {latest.isoformat()}, UTC): "
                                         "a day in the future has no data yet")
    return day


def run_date_argument(text: str) -> str:
    """argparse `type` for `pipeline --date`: a YYYY-MM-DD day, or `yesterday` (resolved by `resolve_run_date`)."""
    return YESTERDAY if text == YESTERDAY else date_argument(text)


def utc_today() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date()


def resolve_run_date(text: str, *, as_of: str | None = None, today: Callable[[], dt.date] = utc_today) -> str:
    """The run's day: `text` itself if it is a date, or for `yesterday` the day before `as_of`
    (the trigger's date; default today in UTC). `as_of` is ignored for an explicit date, so a
    scheduler's template can always pass it and an operator still backfills by setting the date."""
    if text != YESTERDAY:
        return parse_day(text)
    anchor = dt.date.fromisoformat(parse_day(as_of, "--as-of")) if as_of is not None else today()
    return (anchor - dt.timedelta(days=1)).isoformat()
