"""The folder `r2led generate` writes: UserBehavior-layout CSV events plus item JSON lines.

    <root>/events/event_date=YYYY-MM-DD/part-*.csv   user_id,item_id,category_id,behavior,ts
    <root>/items/part-*.json                         {"item_id", "category_id", "text", ...}
    <root>/impressions/event_date=YYYY-MM-DD/*.csv   user_id,item_id,category_id,behavior,ts,label (optional)
    <root>/truth/...                                 planted taxonomy, interests, click probabilities (not ingested)

Events go through the same parser as Taobao logs, so synthetic runs exercise the real ingest path.
Impressions carry an explicit label (the click drawn from the world's known probability).
"""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.sources.common import (
    ParsedSource,
    SourceError,
    field,
    first_reason,
    id_reason,
    raw_event_frame,
    read_lines,
    to_long,
)
from jobs.sources.taobao import parse_user_behavior_csv
from r2led_model.config import Config


def synthetic_root(config: Config) -> Path:
    return Path(config.source.synthetic.path or f"{config.workspace.root}/raw/synthetic")


def load_synthetic(spark: SparkSession, config: Config, day: str | None = None) -> ParsedSource:
    """All days, or with `day` only `events/event_date=<day>/` (a nightly run reads one folder)."""
    root = synthetic_root(config)
    events_dir, items_dir = root / "events", root / "items"
    if not events_dir.is_dir() or not items_dir.is_dir():
        raise SourceError(f"synthetic source: {root} has no events/ and items/; run `r2led generate` first")
    day_dir = events_dir / f"event_date={day}" if day else events_dir / "*"
    if day and not day_dir.is_dir():
        raise SourceError(f"synthetic source: no logs for {day} (expected {day_dir})")
    # Only the CSV parts: Spark's _SUCCESS markers and .crc files are not data.
    events = parse_user_behavior_csv(spark, [str(day_dir / "*.csv")])
    impressions_dir = root / "impressions"
    impressions_day = impressions_dir / (f"event_date={day}" if day else "*")
    if impressions_dir.is_dir() and (not day or impressions_day.is_dir()):
        events = events.unionByName(parse_impression_csv(spark, [str(impressions_day / "*.csv")]))
    items = spark.read.schema("item_id BIGINT, category_id BIGINT, text STRING").json(str(items_dir / "*.json"))
    rejected = (spark.createDataFrame([], "raw STRING, reason STRING, source_file STRING"))
    return ParsedSource(name="synthetic", events=events, items=items.where(F.col("item_id").isNotNull()),
                        items_rejected=rejected,
                        files=(str(day_dir if day else events_dir), str(items_dir),
                               *([str(impressions_day if day else impressions_dir)] if impressions_dir.is_dir() else [])),
                        read_by_day=bool(day))


def parse_impression_csv(spark: SparkSession, paths: list[str]) -> DataFrame:
    """`user_id,item_id,category_id,behavior,ts,label` lines; label must be 0 or 1."""
    lines = read_lines(spark, paths)
    parts = F.split("raw", ",", -1)
    user_t, item_t, cat_t, behavior_t, ts_t, label_t = (field(parts, i) for i in range(6))
    user, item, category, ts, label = (to_long(t) for t in (user_t, item_t, cat_t, ts_t, label_t))
    reason = first_reason(
        F.when(F.size(parts) != 6, F.lit("wrong_field_count")),
        id_reason(user_t, user, "user_id"),
        id_reason(item_t, item, "item_id"),
        F.when(ts_t.isNull(), F.lit("missing_timestamp")).when(ts.isNull(), F.lit("bad_timestamp")),
        F.when(behavior_t.isNull(), F.lit("missing_behavior")),
        F.when(cat_t.isNotNull() & category.isNull(), F.lit("bad_category_id")),
        F.when(label_t.isNull(), F.lit("missing_label")).when(~label.isin(0, 1) | label.isNull(), F.lit("bad_label")),
    )
    return raw_event_frame(lines.select(
        "raw", "source_file", user.alias("user_id"), item.alias("item_id"), ts.alias("ts"),
        F.lower(behavior_t).alias("behavior"), label.alias("label"), category.alias("category_id"),
        reason.alias("reason"),
    ))
