"""`source.kind: table`: events, and optionally items, from any table Spark reads.

A Delta folder, a catalog table (`spark.table`), or Parquet / CSV / JSON / ORC folders with reader
options; `source.table.columns` names the table's column for each field of an event, so the table
keeps its own column names and types. Each row of the table is one event row (RAW_EVENT_COLUMNS):
`raw` is the row as JSON (nulls kept) and `source_file` the data file it came from.

    user, item      ids: non-negative integers, or (ids: string) any text hashed to 64 bits
    timestamp       epoch seconds, epoch milliseconds, or a timestamp / date (timestamp_unit)
    behavior        lower-cased; without a column every row is `source.table.behavior`
    label           labels: column (0/1, true/false), threshold (value >= t), implicit (null)
    value           a number, kept in events.value
    category        the item's category on the event, for tables without an items table

Bad rows get the reasons every source uses (missing_/bad_user_id, missing_/bad_item_id,
missing_/bad_timestamp, missing_behavior, missing_/bad_label, missing_/bad_value,
bad_category_id); `jobs.ingest.ingest` adds the shared checks. An id may be written as an integral
decimal (123.0, a float column's way); 123.5 is a bad id. NaN and ±Infinity are a `bad_value`.

A daily read (`day`) reads one partition when `partition_column` is set (a partition filter Spark
pushes into the scan): the partition is the day's batch. Without it, each row's timestamp says its
day, and the read takes every row dated up to the end of the day plus the rows no daily read would
otherwise reach: without a usable timestamp, or dated at or after `ingest.max_date` (a filter on
the column itself, so Delta and Parquet skip the files wholly between the two). `jobs.ingest.ingest`
accepts the day's rows, rejects the unusable ones, and only accounts for the rows of earlier days
(stored by their own day's run, or late: left for a backfill of their day), so nothing read goes
uncounted. Finding late rows takes reading the earlier days; a `partition_column` keeps a daily
read to one partition.
"""

from __future__ import annotations

import datetime as dt
import logging

from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.ingest.sources.common import (ParsedSource, SourceError, first_reason, integral, non_finite, raw_event_frame,
                                        string_id, to_id)
from jobs.runtime.dates import parse_day
from r2led_model.config import TableItemsConfig, TableSourceConfig, template_fields

log = logging.getLogger(__name__)

# Epoch seconds beyond this (year ~318,000) are garbage, not times: null instead of a cast overflow.
_MAX_ABS_SECONDS = 1e13
_TIME_TYPES = (T.TimestampType, T.TimestampNTZType, T.DateType)


def load_table(spark: SparkSession, config: TableSourceConfig, day: str | None = None, *,
               impossible_from: int | None = None) -> ParsedSource:
    """The mapped events (with `day`, what a daily read reads: see the module docstring) and the
    items table, if configured. `impossible_from`: epoch seconds from which a time is impossible
    (ingest.max_date); a daily read without a partition column reads those rows too, to reject them."""
    table = read_table(spark, path=config.path, name=config.name, format=config.format,
                       options=config.options, what="source.table")
    mapping = {key: getattr(config.columns, key)
               for key in ("user", "item", "timestamp", "behavior", "label", "value", "category")}
    _require_columns(table, {f"columns.{k}": v for k, v in mapping.items() if v}, "source.table", config)
    day_input = None
    if day is not None:
        day = parse_day(day)  # it becomes a filter literal: never unchecked text
        table = table.where(_day_filter(table, config, day, int(_MAX_ABS_SECONDS) if impossible_from is None
                                        else impossible_from))
        if config.partition_column:
            day_input = f"{config.name or config.path} ({config.partition_column} = {day})"
    events = _parse_events(table, config)
    files = (_identity(spark, config.path, config.name),)
    items = items_rejected = None
    if config.items is not None:
        items, items_rejected = _parse_items(spark, config.items, ids=config.ids)
        files += (_identity(spark, config.items.path, config.items.name),)
    by_partition = day is not None and config.partition_column is not None
    return ParsedSource(name="table", events=events, items=items, items_rejected=items_rejected, files=files,
                        read_by_day=by_partition, reads_until_day=day is not None and not by_partition,
                        day_input=day_input)


def read_table(spark: SparkSession, *, path: str | None, name: str | None, format: str,
               options: dict[str, object], what: str) -> DataFrame:
    """A folder in `format` or a catalog table, as Spark reads it; SourceError when it cannot be read."""
    reader = spark.read.options(**{k: _option_text(v) for k, v in options.items()})
    where = name or path
    try:
        df = reader.table(name) if name else reader.format(format).load(path)
        df.schema  # resolve now: a missing path or table fails here, not in the middle of ingest
    except AnalysisException as exc:
        detail = str(exc).strip().splitlines()[0]
        raise SourceError(f"{what}: cannot read {where!r} ({'table' if name else format}): {detail}") from exc
    log.info("%s: reading %s (%s)", what, where, "table" if name else format)
    return df


def _option_text(value: object) -> str:
    """YAML's `header: true` as Spark's "true"."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _identity(spark: SparkSession, path: str | None, name: str | None) -> str:
    """What the ingest run id hashes: a folder (its files' sizes are hashed), or a catalog table's
    name with its Delta version where it has one (a new commit is new input)."""
    if path:
        return path
    try:
        from delta.tables import DeltaTable

        version = DeltaTable.forName(spark, name).history(1).select("version").first()["version"]
        return f"{name}@v{version}"
    except Exception:  # not a Delta table: its name is all we know
        return name


def _col(name: str) -> Column:
    """A top-level column by its exact name (dots and spaces are part of the name)."""
    return F.col("`" + name.replace("`", "``") + "`")


def _require_columns(df: DataFrame, wanted: dict[str, str], what: str, config: object) -> None:
    missing = [f"{what}.{key} = {column!r}" for key, column in wanted.items() if column not in df.columns]
    if missing:
        where = getattr(config, "name", None) or getattr(config, "path", None)
        raise SourceError(f"{what}: column(s) not in {where!r}: {', '.join(missing)} "
                          f"(its columns: {', '.join(df.columns)})")


def _text(column: Column) -> Column:
    """The value as trimmed text, null when null or blank."""
    text = F.trim(column.cast("string"))
    return F.when(text == "", F.lit(None)).otherwise(text)


def _row_json(df: DataFrame) -> Column:
    return F.to_json(F.struct(*[_col(c) for c in df.columns]), {"ignoreNullFields": "false"})


def _source_file(df: DataFrame, where: str) -> Column:
    """The data file of each row; the table's name where Spark keeps no file metadata."""
    try:
        df.select("_metadata.file_path").schema
        return F.col("_metadata.file_path")
    except AnalysisException:
        return F.lit(where)


# ---- field parsers: each gives (value, reason) for one mapped column ----------------------------


def _id(column: Column, dtype: T.DataType, *, ids: str, name: str) -> tuple[Column, Column]:
    text = _text(column)
    if ids == "string":
        return F.when(text.isNotNull(), string_id(text)), F.when(text.isNull(), F.lit(f"missing_{name}"))
    if isinstance(dtype, T.IntegralType):
        parsed = column.cast("bigint")
    elif isinstance(dtype, T.FractionalType):
        parsed = integral(column)  # 123.0 is the id 123 (a float column written by pandas); 123.5 is bad
    else:
        parsed = to_id(text)
    reason = (F.when(text.isNull(), F.lit(f"missing_{name}"))
              .when(parsed.isNull() | (parsed < 0), F.lit(f"bad_{name}")))
    return parsed, reason


def _epoch_seconds(column: Column, dtype: T.DataType, unit: str, fmt: str | None) -> Column:
    if unit == "timestamp":
        if isinstance(dtype, T.DateType):
            return F.unix_date(column).cast("bigint") * 86400
        if isinstance(dtype, (T.TimestampType, T.TimestampNTZType)):
            return F.unix_seconds(column.cast("timestamp"))  # NTZ as UTC: the session's time zone
        text = _text(column)
        moment = F.try_to_timestamp(text, F.lit(fmt)) if fmt else F.try_to_timestamp(text)
        return F.unix_seconds(moment)
    number = (column if isinstance(dtype, T.NumericType) else _text(column)).try_cast("double")
    seconds = number / 1000 if unit == "milliseconds" else number
    return F.when(F.abs(seconds) < _MAX_ABS_SECONDS, F.floor(seconds))


def _check_timestamp_type(dtype: T.DataType, config: TableSourceConfig) -> None:
    """A unit that cannot be the column's type is a config mistake, not a million bad rows."""
    unit, column = config.columns.timestamp_unit, config.columns.timestamp
    if unit != "timestamp" and isinstance(dtype, _TIME_TYPES):
        raise SourceError(f"source.table.columns.timestamp_unit: {unit!r}, but column {column!r} is a "
                          f"{dtype.simpleString()}; set timestamp_unit: timestamp")
    if unit == "timestamp" and isinstance(dtype, T.NumericType):
        raise SourceError(f"source.table.columns.timestamp_unit: 'timestamp', but column {column!r} is a "
                          f"number ({dtype.simpleString()}); set timestamp_unit: seconds or milliseconds")


def _label(column: Column, dtype: T.DataType) -> tuple[Column, Column]:
    """0/1 from an int, a double, a boolean or text ("1", "0", "true", "false"); anything else is bad."""
    text = F.lower(_text(column))
    if isinstance(dtype, T.BooleanType):
        number = column.cast("double")
    elif isinstance(dtype, T.NumericType):
        number = column.cast("double")
    else:
        number = (F.when(text == "true", F.lit(1.0)).when(text == "false", F.lit(0.0))
                  .otherwise(text.try_cast("double")))
    label = F.when(number == 1.0, F.lit(1)).when(number == 0.0, F.lit(0))
    reason = F.when(text.isNull(), F.lit("missing_label")).when(label.isNull(), F.lit("bad_label"))
    return label, reason


def _number(column: Column, dtype: T.DataType) -> tuple[Column, Column]:
    """A double, and 'bad_value' for text that is not a number or for NaN / ±Infinity."""
    text = _text(column)
    value = column.cast("double") if isinstance(dtype, T.NumericType) else text.try_cast("double")
    return value, F.when(text.isNotNull() & (value.isNull() | non_finite(value)), F.lit("bad_value"))


def _path_text(column: Column, dtype: T.DataType) -> Column:
    """Text of a value; a list (a category path) joined with " > ", blank entries left out."""
    if isinstance(dtype, T.ArrayType):
        joined = F.array_join(F.filter(column.cast("array<string>"), lambda c: F.trim(c) != ""), " > ")
        return F.when(F.length(joined) > 0, joined)
    return _text(column)


def _category(column: Column, dtype: T.DataType, bad: str) -> tuple[Column, Column]:
    """An integer category id as is; a name or path hashed, so distinct paths stay distinct ids."""
    if isinstance(dtype, T.IntegralType):
        parsed = column.cast("bigint")
        return parsed, F.when(parsed < 0, F.lit(bad))
    if isinstance(dtype, T.FractionalType):  # a numeric id stored as a float: 12.0 is 12
        parsed = integral(column)
        return parsed, F.when(column.isNotNull() & (parsed.isNull() | (parsed < 0)), F.lit(bad))
    text = _path_text(column, dtype)
    return F.when(text.isNotNull(), string_id(text)), F.lit(None)


def _day_filter(df: DataFrame, config: TableSourceConfig, day: str, impossible_from: int) -> Column:
    """What a daily read of `day` reads, as a predicate Spark can push into the scan: the day's
    partition, or without one the rows up to the day's end and those no daily read would reach."""
    schema = {f.name: f.dataType for f in df.schema.fields}
    if config.partition_column:
        partition = config.partition_column
        if partition not in schema:
            raise SourceError(f"source.table.partition_column: {partition!r} is not a column of "
                              f"{config.name or config.path!r} (its columns: {', '.join(df.columns)})")
        dtype = schema[partition]
        literal = F.to_date(F.lit(day)) if isinstance(dtype, T.DateType) else F.lit(day)
        log.info("source.table: daily read of partition %s = %s", partition, day)
        return _col(partition) == literal
    # No partition: each row's timestamp says its day. Every row up to the day's end is read (an
    # earlier day's row is late or stored already: ingest accounts for it), and every row that no
    # day will ever read: without a usable timestamp, or at or after `impossible_from`
    # (ingest.max_date), both rejects. Only the files wholly between the two are skipped.
    column, dtype = _col(config.columns.timestamp), schema[config.columns.timestamp]
    _check_timestamp_type(dtype, config)
    end = dt.datetime.fromisoformat(day).replace(tzinfo=dt.timezone.utc) + dt.timedelta(days=1)
    high = int(end.timestamp())
    never = min(int(_MAX_ABS_SECONDS), impossible_from)
    log.info("source.table: daily read of the rows with %s before %s, and those no day reads", config.columns.timestamp,
             end)
    if isinstance(dtype, T.DateType):
        never_day = dt.datetime.fromtimestamp(never, dt.timezone.utc).date() + dt.timedelta(days=1)
        return (column.isNull() | (column < F.to_date(F.lit(end.date().isoformat())))
                | (column >= F.to_date(F.lit(never_day.isoformat()))))
    if isinstance(dtype, T.TimestampType):
        return (column.isNull() | (column < F.timestamp_seconds(F.lit(high)))
                | (column >= F.timestamp_seconds(F.lit(never))))
    if isinstance(dtype, T.TimestampNTZType):
        naive = dt.datetime.fromtimestamp(never, dt.timezone.utc).replace(tzinfo=None)
        return (column.isNull() | (column < F.lit(end.replace(tzinfo=None)).cast("timestamp_ntz"))
                | (column >= F.lit(naive).cast("timestamp_ntz")))
    if isinstance(dtype, T.NumericType):
        scale = 1000 if config.columns.timestamp_unit == "milliseconds" else 1
        # NaN is read too: Spark orders it above every number. Integer literals: a long column
        # compared with a double is cast, and then no file is skipped.
        return column.isNull() | (column < F.lit(high * scale)) | (column >= F.lit(never * scale))
    # Text: only the parsed time can say (no statistics to skip by).
    seconds = _epoch_seconds(column, dtype, config.columns.timestamp_unit, config.columns.timestamp_format)
    return seconds.isNull() | (seconds < high) | (seconds >= never)


# ---- the two tables --------------------------------------------------------------------------


def _parse_events(table: DataFrame, config: TableSourceConfig) -> DataFrame:
    schema = {f.name: f.dataType for f in table.schema.fields}
    cols = config.columns

    def mapped(key: str) -> tuple[Column, T.DataType]:
        name = getattr(cols, key)
        return _col(name), schema[name]

    user, user_reason = _id(*mapped("user"), ids=config.ids, name="user_id")
    item, item_reason = _id(*mapped("item"), ids=config.ids, name="item_id")
    ts_column, ts_type = mapped("timestamp")
    _check_timestamp_type(ts_type, config)
    ts = _epoch_seconds(ts_column, ts_type, cols.timestamp_unit, cols.timestamp_format)
    ts_reason = (F.when(_text(ts_column).isNull(), F.lit("missing_timestamp"))
                 .when(ts.isNull(), F.lit("bad_timestamp")))
    if cols.behavior:
        behavior = F.lower(_text(mapped("behavior")[0]))
        behavior_reason = F.when(behavior.isNull(), F.lit("missing_behavior"))
    else:
        behavior, behavior_reason = F.lit(config.behavior), F.lit(None)
    value = value_reason = F.lit(None)
    if cols.value:
        value, value_reason = _number(*mapped("value"))
    label = label_reason = F.lit(None)
    if config.labels == "column":
        label, label_reason = _label(*mapped("label"))
    elif config.labels == "threshold":
        label = (value >= F.lit(config.click_threshold)).cast("int")
        label_reason = F.when(_text(mapped("value")[0]).isNull(), F.lit("missing_value"))
    category = category_reason = F.lit(None)
    if cols.category:
        category, category_reason = _category(*mapped("category"), bad="bad_category_id")
    reason = first_reason(user_reason, item_reason, ts_reason, behavior_reason, label_reason, value_reason,
                          category_reason)
    where = config.name or config.path
    return raw_event_frame(table.select(
        _row_json(table).alias("raw"), _source_file(table, where).alias("source_file"),
        user.alias("user_id"), item.alias("item_id"), ts.alias("ts"), behavior.alias("behavior"),
        label.alias("label"), value.alias("value"), category.alias("category_id"), reason.alias("reason"),
    ))


def _parse_items(spark: SparkSession, config: TableItemsConfig, *, ids: str) -> tuple[DataFrame, DataFrame]:
    """(items: item_id, category_id, text[, item_key]; rejected lines: raw, reason, source_file)."""
    table = read_table(spark, path=config.path, name=config.name, format=config.format, options=config.options,
                       what="source.table.items")
    fields = template_fields(config.text, key="source.table.items.text") if config.text else ()
    wanted = {"item": config.item, **({"category": config.category} if config.category else {}),
              **{f"text {{{f}}}": f for f in fields}}
    _require_columns(table, wanted, "source.table.items", config)
    schema = {f.name: f.dataType for f in table.schema.fields}
    item, item_reason = _id(_col(config.item), schema[config.item], ids=ids, name="item_id")
    category = category_reason = F.lit(None)
    if config.category:
        category, category_reason = _category(_col(config.category), schema[config.category],
                                              bad="item_bad_category_id")
    text = _render(config.text, schema) if config.text else F.lit(None)
    reason = first_reason(F.concat(F.lit("item_"), item_reason), category_reason)
    parsed = table.select(
        _row_json(table).alias("raw"), _source_file(table, config.name or config.path).alias("source_file"),
        item.alias("item_id"), category.cast("bigint").alias("category_id"), text.cast("string").alias("text"),
        *([_text(_col(config.item)).alias("item_key")] if ids == "string" else []),
        reason.alias("reason"),
    )
    keep = ["item_id", "category_id", "text"] + (["item_key"] if ids == "string" else [])
    return (parsed.where(F.col("reason").isNull()).select(*keep),
            parsed.where(F.col("reason").isNotNull()).select("raw", "reason", "source_file"))


def _render(template: str, schema: dict[str, T.DataType]) -> Column:
    """The template with each {column} replaced by its text (null: empty); null when every column is null."""
    import string

    parts: list[Column] = []
    values: list[Column] = []
    for literal, name, _spec, _conversion in string.Formatter().parse(template):
        if literal:
            parts.append(F.lit(literal))
        if name is not None:
            value = _path_text(_col(name), schema[name])
            values.append(value)
            parts.append(F.coalesce(value, F.lit("")))
    text = F.trim(F.concat(*parts))
    return F.when(F.coalesce(*values).isNotNull(), text)
