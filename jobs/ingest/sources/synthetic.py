"""The folder `r2led generate` writes: UserBehavior-layout CSV events plus item JSON lines.

    <root>/events/event_date=YYYY-MM-DD/part-*.csv   user_id,item_id,category_id,behavior,ts
    <root>/items/part-*.json                         {"item_id", "category_id", "text", ...}
    <root>/impressions/event_date=YYYY-MM-DD/*.csv   user_id,item_id,category_id,behavior,ts,label (optional)
    <root>/truth/...                                 planted taxonomy, interests, click probabilities (not ingested)

Events go through the same parser as Taobao logs, so synthetic runs exercise the real ingest path.
Impressions carry an explicit label (the click drawn from the world's known probability). An item
line that is not JSON, or whose ids are not non-negative integers, is rejected (item_unparseable_json,
item_missing_item_id, item_bad_item_id, item_bad_category_id).
"""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.ingest.sources.common import (ParsedSource, SourceError, empty_events, first_reason, id_reason, read_lines,
                                        to_id)
from jobs.ingest.sources.taobao import parse_user_behavior_csv
from r2led_model.config import Config


# What `<root>/truth/` holds: items (planted topics, quality, catalogue noise, community, launch time),
# user_interests, impressions (click probabilities, relations, exposure, community, dormant_target).
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
    """All days, or with `day` only `events/event_date=<day>/` (a nightly run reads one folder). A
    day whose folder is missing or holds no CSV part has no rows (`ingest.empty_day` decides)."""
    root = synthetic_root(config)
    events_dir, items_dir = root / "events", root / "items"
    if not events_dir.is_dir() or not items_dir.is_dir():
        raise SourceError(f"synthetic source: {root} has no events/ and items/; run `r2led generate` first")
    day_dir = events_dir / f"event_date={day}" if day else events_dir / "*"
    # Only the CSV parts: Spark's _SUCCESS markers and .crc files are not data.
    parts = [str(day_dir / "*.csv")] if _has_files(day_dir, "*.csv") else []
    impressions_dir = root / "impressions"
    impressions_day = impressions_dir / (f"event_date={day}" if day else "*")
    events = parse_user_behavior_csv(spark, parts) if parts else empty_events(spark)
    if _has_files(impressions_day, "*.csv"):
        events = events.unionByName(parse_user_behavior_csv(spark, [str(impressions_day / "*.csv")], with_label=True))
    items, items_rejected = _parse_items(spark, items_dir)
    return ParsedSource(name="synthetic", events=events, items=items, items_rejected=items_rejected,
                        files=(str(day_dir if day else events_dir), str(items_dir),
                               *([str(impressions_day if day else impressions_dir)] if impressions_dir.is_dir() else [])),
                        read_by_day=bool(day), day_input=str(day_dir) if day else None)


def _has_files(folder: Path, pattern: str) -> bool:
    """Whether `folder` (a path or a one-level glob like events/*) holds a file matching `pattern`."""
    folders = folder.parent.glob(folder.name) if "*" in folder.name else [folder]
    return any(next(f.glob(pattern), None) is not None for f in folders if f.is_dir())


def _parse_items(spark: SparkSession, items_dir: Path) -> tuple[DataFrame, DataFrame]:
    """The item JSON lines (item_id, category_id, text) and the lines that are not items, with a reason."""
    lines = read_lines(spark, [str(items_dir / "*.json")])
    id_text = F.get_json_object("raw", "$.item_id")
    category_text = F.get_json_object("raw", "$.category_id")
    item_id, category_id = to_id(id_text), to_id(category_text)
    reason = first_reason(
        F.when(F.get_json_object("raw", "$").isNull() | ~F.trim("raw").startswith("{"),
               F.lit("item_unparseable_json")),
        F.concat(F.lit("item_"), id_reason(id_text, item_id, "item_id")),
        F.when(category_text.isNotNull() & (category_id.isNull() | (category_id < 0)), F.lit("item_bad_category_id")),
    )
    parsed = lines.select("raw", "source_file", item_id.alias("item_id"), category_id.alias("category_id"),
                          F.get_json_object("raw", "$.text").alias("text"), reason.alias("reason"))
    return (parsed.where(F.col("reason").isNull()).select("item_id", "category_id", "text"),
            parsed.where(F.col("reason").isNotNull()).select("raw", "reason", "source_file"))
