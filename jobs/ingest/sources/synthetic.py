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

from jobs.ingest.sources.common import ParsedSource, SourceError
from jobs.ingest.sources.taobao import parse_user_behavior_csv
from r2led_model.config import Config


# What `<root>/truth/` holds: items (planted topics, quality), user_interests, impressions (click
# probabilities and relations).
TRUTH_TABLES = ("items", "user_interests", "impressions")


def synthetic_root(config: Config) -> Path:
    return Path(config.source.synthetic.path or f"{config.workspace.root}/raw/synthetic")


def truth_dir(root: Path, table: str) -> Path:
    """Where the generator writes one of a world's truth tables (parquet), for the world at `root`."""
    if table not in TRUTH_TABLES:
        raise ValueError(f"unknown truth table {table!r}; known: {', '.join(TRUTH_TABLES)}")
    return root / "truth" / table


def read_truth(spark: SparkSession, config: Config, table: str) -> DataFrame | None:
    """A truth table of the config's synthetic world, or None for real data or a world without it."""
    path = truth_dir(synthetic_root(config), table)
    if config.source.kind != "synthetic" or not path.is_dir():
        return None
    return spark.read.parquet(str(path))


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
        events = events.unionByName(parse_user_behavior_csv(spark, [str(impressions_day / "*.csv")], with_label=True))
    items = spark.read.schema("item_id BIGINT, category_id BIGINT, text STRING").json(str(items_dir / "*.json"))
    rejected = (spark.createDataFrame([], "raw STRING, reason STRING, source_file STRING"))
    return ParsedSource(name="synthetic", events=events, items=items.where(F.col("item_id").isNotNull()),
                        items_rejected=rejected,
                        files=(str(day_dir if day else events_dir), str(items_dir),
                               *([str(impressions_day if day else impressions_dir)] if impressions_dir.is_dir() else [])),
                        read_by_day=bool(day))

