"""Shared parsing for source loaders.

A loader turns raw files into a `ParsedSource`: an events DataFrame in `RAW_EVENT_COLUMNS`
(one row per input line, with `reason` set where the line could not be parsed) and an items
DataFrame. `jobs.ingest.ingest` then applies the checks that every source shares.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

# What every loader's events DataFrame carries. `category_id` feeds `items` for logs that
# carry the category on each event (Taobao, Tmall).
RAW_EVENT_COLUMNS = ("raw", "source_file", "user_id", "item_id", "ts", "behavior", "label", "value",
                     "category_id", "reason")


class SourceError(ValueError):
    """A source cannot be read at all (missing files, wrong format): nothing is ingested."""


@dataclass(frozen=True)
class ParsedSource:
    name: str
    events: DataFrame
    # Items with text/category from a metadata file; None when items come from events only.
    items: DataFrame | None
    # Bad metadata rows, in the events_rejected layout (raw, reason, source_file).
    items_rejected: DataFrame | None
    files: tuple[str, ...]
    # True when only one day's drop folder was read: the folder, not the event date, is the day's batch.
    read_by_day: bool = False
    # True for a daily read scoped by each row's timestamp (a table without a partition column): the
    # rows dated up to the day and those without a usable timestamp; a row of an earlier day belongs
    # to its own day's run and is read only to be accounted for (stored already, or late).
    reads_until_day: bool = False
    # What a daily read read, for messages: the day's folder or partition (None: the source's files).
    day_input: str | None = None


def require_files(paths: Iterable[str], what: str) -> tuple[str, ...]:
    from pathlib import Path

    paths = tuple(str(p) for p in paths)
    if not paths:
        raise SourceError(f"{what}: no input paths configured")
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise SourceError(f"{what}: input not found: {', '.join(missing)}")
    return paths


def read_lines(spark: SparkSession, paths: Sequence[str], header: str | None = None) -> DataFrame:
    """One row per non-blank line: `raw` (line without trailing CR) and `source_file`.

    A header line equal to `header` is dropped wherever it occurs (every file may have one).
    """
    lines = spark.read.text(list(paths)).select(
        F.regexp_replace("value", "\r$", "").alias("raw"),
        F.col("_metadata.file_path").alias("source_file"),
    )
    lines = lines.where(F.trim("raw") != "")
    if header is not None:
        lines = lines.where(F.col("raw") != header)
    return lines


def field(parts: Column, index: int) -> Column:
    """The index-th split field, trimmed, null when absent or empty."""
    value = F.trim(F.get(parts, index))
    return F.when(value == "", F.lit(None)).otherwise(value)


def to_long(text: Column) -> Column:
    return text.try_cast("bigint")


def to_double(text: Column) -> Column:
    return text.try_cast("double")


def to_id(text: Column) -> Column:
    """An integer id from text, also when written as an integral decimal ("123.0", as a float
    column exported to CSV writes it); "123.5" or "1e3" give null (a bad id)."""
    return F.regexp_replace(text, r"^(-?[0-9]+)\.0*$", "$1").try_cast("bigint")


def integral(number: Column) -> Column:
    """A floating or decimal number as a long when it is a whole number that fits, else null."""
    whole = ~F.isnan(number.cast("double")) & (number == F.floor(number))
    return F.when(whole, number.try_cast("bigint"))


def non_finite(number: Column) -> Column:
    """NaN, +Infinity or -Infinity: no usable value (Spark orders NaN above every number, so a
    threshold would call it a click)."""
    return F.isnan(number) | (F.abs(number) == F.lit(float("inf")))


def id_reason(text: Column, parsed: Column, name: str) -> Column:
    """'missing_<name>' for an empty field, 'bad_<name>' for one that is not a non-negative integer."""
    return (F.when(text.isNull(), F.lit(f"missing_{name}"))
            .when(parsed.isNull() | (parsed < 0), F.lit(f"bad_{name}")))


def string_id(key: Column) -> Column:
    """A stable non-negative 64-bit id for a string key (collisions ~n²/2⁶⁴: negligible)."""
    return F.xxhash64(key).bitwiseAND(F.lit(0x7FFFFFFFFFFFFFFF))


def first_reason(*reasons: Column) -> Column:
    """The first non-null reason, so a row is rejected for its earliest problem."""
    return F.coalesce(*reasons)


_RAW_EVENT_TYPES = {"raw": "string", "source_file": "string", "user_id": "bigint", "item_id": "bigint",
                    "ts": "bigint", "behavior": "string", "label": "int", "value": "double",
                    "category_id": "bigint", "reason": "string"}


def empty_events(spark: SparkSession) -> DataFrame:
    """No event rows, in RAW_EVENT_COLUMNS (a day whose folder is missing or holds no data file)."""
    return spark.createDataFrame([], ", ".join(f"{c} {_RAW_EVENT_TYPES[c]}" for c in RAW_EVENT_COLUMNS))


def raw_event_frame(df: DataFrame) -> DataFrame:
    """Select the RAW_EVENT_COLUMNS, adding null ones a loader did not set, with fixed types."""
    return df.select(*[
        (F.col(c) if c in df.columns else F.lit(None)).cast(_RAW_EVENT_TYPES[c]).alias(c) for c in RAW_EVENT_COLUMNS
    ])
