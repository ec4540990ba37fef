"""Amazon reviews + metadata, JSON lines (McAuley lab releases).

Reviews, 2018 layout: reviewerID, asin, overall, unixReviewTime (s); 2023 layout: user_id,
parent_asin (or asin), rating, timestamp (ms). Metadata: asin or parent_asin, title,
category (2018, a list) or categories + main_category (2023). A review is a positive behaviour
("review"); the rating is kept in `value`. String ids become 64-bit ids with xxhash64; the
items table keeps the original id in `item_key`.
"""

from __future__ import annotations

from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F

from jobs.sources.common import (
    ParsedSource,
    first_reason,
    raw_event_frame,
    read_lines,
    require_files,
    to_double,
    to_long,
)
from r2led_model.config import AmazonSourceConfig


def _json(path: str) -> Column:
    return F.get_json_object("raw", path)


def _text(col: Column) -> Column:
    trimmed = F.trim(col)
    return F.when(trimmed == "", F.lit(None)).otherwise(trimmed)


def string_id(key: Column) -> Column:
    """A stable non-negative 64-bit id for a string key (collisions ~n²/2⁶⁴: negligible)."""
    return F.xxhash64(key).bitwiseAND(F.lit(0x7FFFFFFFFFFFFFFF))


def load_amazon(spark: SparkSession, config: AmazonSourceConfig) -> ParsedSource:
    review_files = require_files(config.reviews_paths, "Amazon reviews")
    meta_files = require_files(config.metadata_paths, "Amazon metadata")

    lines = read_lines(spark, review_files)
    valid_json = _json("$").isNotNull() & F.trim("raw").startswith("{")
    user_t = _text(F.coalesce(_json("$.reviewerID"), _json("$.user_id")))
    # 2023 reviews name both the variant (asin) and the product (parent_asin); metadata is keyed
    # by parent_asin, so prefer it on both sides.
    item_t = _text(F.coalesce(_json("$.parent_asin"), _json("$.asin")))
    seconds_t = _text(_json("$.unixReviewTime"))
    millis_t = _text(_json("$.timestamp"))
    ts = F.coalesce(to_long(seconds_t), (to_long(millis_t) / 1000).cast("bigint"))
    rating_t = _text(F.coalesce(_json("$.overall"), _json("$.rating")))
    rating = to_double(rating_t)
    reason = first_reason(
        F.when(~valid_json, F.lit("unparseable_json")),
        F.when(user_t.isNull(), F.lit("missing_user_id")),
        F.when(item_t.isNull(), F.lit("missing_item_id")),
        F.when(seconds_t.isNull() & millis_t.isNull(), F.lit("missing_timestamp"))
        .when(ts.isNull(), F.lit("bad_timestamp")),
        F.when(rating_t.isNotNull() & (rating.isNull() | (rating < 0) | (rating > 5)), F.lit("bad_value")),
    )
    events = raw_event_frame(lines.select(
        "raw", "source_file", string_id(user_t).alias("user_id"), string_id(item_t).alias("item_id"),
        ts.alias("ts"), F.lit("review").alias("behavior"), rating.alias("value"), reason.alias("reason"),
    ))

    meta = read_lines(spark, meta_files)
    meta_valid = _json("$").isNotNull() & F.trim("raw").startswith("{")
    key = _text(F.coalesce(_json("$.parent_asin"), _json("$.asin")))
    title = _text(_json("$.title"))
    categories = F.from_json(F.coalesce(_json("$.category"), _json("$.categories")), "array<string>")
    main_category = _text(_json("$.main_category"))
    # try_element_at: an empty category list is common and must not stop the job.
    leaf = F.coalesce(F.try_element_at(categories, F.lit(-1)), main_category)
    path = F.array_join(F.filter(categories, lambda c: F.trim(c) != ""), " > ")
    text = F.concat_ws(" ", title, F.when(F.length(path) > 0, F.concat(F.lit("Category: "), path, F.lit("."))))
    meta_reason = first_reason(
        F.when(~meta_valid, F.lit("item_unparseable_json")),
        F.when(key.isNull(), F.lit("item_missing_item_id")),
    )
    parsed = meta.select(
        "raw", "source_file", string_id(key).alias("item_id"), key.alias("item_key"),
        F.when(leaf.isNotNull(), string_id(leaf)).alias("category_id"),
        F.when(title.isNotNull() | (F.length(path) > 0), text).alias("text"),
        meta_reason.alias("reason"),
    )
    return ParsedSource(
        name="amazon",
        events=events,
        items=parsed.where(F.col("reason").isNull()).select("item_id", "category_id", "text", "item_key"),
        items_rejected=parsed.where(F.col("reason").isNotNull()).select("raw", "reason", "source_file"),
        files=review_files + meta_files,
    )
