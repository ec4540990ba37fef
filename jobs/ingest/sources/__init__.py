"""Source loaders: one module per raw log format, chosen by `source.kind`."""

from __future__ import annotations

from pyspark.sql import SparkSession

from jobs.ingest.sources.common import ParsedSource, SourceError
from r2led_model.config import Config


def load_source(spark: SparkSession, config: Config, day: str | None = None) -> ParsedSource:
    """The configured source. With `day`, a date-partitioned layout reads only that day's folder (a
    table source only that day's partition or timestamps); other layouts are read whole and
    `jobs.ingest.ingest` keeps the day's rows."""
    kind = config.source.kind
    if kind == "movielens100k":
        from jobs.ingest.sources.movielens import load_movielens

        return load_movielens(spark, config.source.movielens100k)
    if kind == "taobao":
        from jobs.ingest.sources.taobao import load_taobao

        return load_taobao(spark, config.source.taobao)
    if kind == "tmall":
        from jobs.ingest.sources.tmall import load_tmall

        return load_tmall(spark, config.source.tmall)
    if kind == "amazon":
        from jobs.ingest.sources.amazon import load_amazon

        return load_amazon(spark, config.source.amazon)
    if kind == "synthetic":
        from jobs.ingest.sources.synthetic import load_synthetic

        return load_synthetic(spark, config, day=day)
    if kind == "table":
        from jobs.ingest.sources.table import load_table

        from r2led_model.config import parse_utc_timestamp

        return load_table(spark, config.source.table, day=day,
                          impossible_from=parse_utc_timestamp(config.ingest.max_date))
    raise SourceError(f"source.kind: no loader for {kind!r}")


__all__ = ["ParsedSource", "SourceError", "load_source"]
