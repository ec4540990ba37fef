"""Run dates: the one parser every `--date` (and the notebooks' `date` widget) goes through.

A run date becomes a folder name (`event_date=D/`), a ledger key and a `replaceWhere` predicate, so
only a strict `YYYY-MM-DD` that names a real calendar day is accepted, and the canonical text
`date.isoformat()` returns is what the rest of the run uses. `datetime.date.fromisoformat` alone is
not enough: since Python 3.11 it also takes `20240116` and ISO week dates such as `2024-W03-2`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re

# ASCII digits only: `\d` would also match other scripts' digits.
_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def parse_day(text: object, what: str = "date") -> str:
    """`text` as a canonical YYYY-MM-DD string, or ValueError naming `what`."""
    if not isinstance(text, str) or not _ISO_DAY.fullmatch(text):
        raise ValueError(f"{what}: {text!r} is not a YYYY-MM-DD date")
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not a calendar date") from None


def date_argument(text: str) -> str:
    """argparse `type` for `--date`: a bad value is a usage error (exit 2) before any work starts."""
    try:
        return parse_day(text, "--date")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
