"""Amazon reviews + metadata, JSON lines (McAuley lab releases).

Reviews, 2018 layout: reviewerID, asin, overall, unixReviewTime (s); 2023 layout: user_id,
parent_asin (or asin), rating, timestamp (ms). Metadata: asin or parent_asin, title,
category (2018, a list) or categories + main_category (2023). A review is a behaviour
("review"); the rating is kept in `value`. Without `click_threshold` a review is a positive (no
label: `sequences` samples negatives); with it the rating is the label, rating >= threshold a click
(1), below it 0. String ids become 64-bit ids with xxhash64; the items table keeps the original id
in `item_key`. `category_id` identifies the whole category path (`Electronics > Computers >
Accessories` and `Camera & Photo > Accessories` are two categories); the item text names the path.
"""

from __future__ import annotations

from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F

from jobs.ingest.sources.common import (ParsedSource, first_reason, non_finite, raw_event_frame, read_lines,
                                        require_files, string_id, to_double, to_long)
from r2led_model.config import AmazonSourceConfig


def _json(path: str) -> Column:
    return F.get_json_object("raw", path)


def _text(col: Column) -> Column:
    trimmed = F.trim(col)
    return F.when(trimmed == "", F.lit(None)).otherwise(trimmed)


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
    explicit = config.click_threshold is not None
    reason = first_reason(
        F.when(~valid_json, F.lit("unparseable_json")),
        F.when(user_t.isNull(), F.lit("missing_user_id")),
        F.when(item_t.isNull(), F.lit("missing_item_id")),
        F.when(seconds_t.isNull() & millis_t.isNull(), F.lit("missing_timestamp"))
        .when(ts.isNull(), F.lit("bad_timestamp")),
        # An explicit label needs the rating it is read from.
        F.when(F.lit(explicit) & rating_t.isNull(), F.lit("missing_value")),
        F.when(rating_t.isNotNull() & (rating.isNull() | non_finite(rating) | (rating < 0) | (rating > 5)),
               F.lit("bad_value")),
    )
    label = (rating >= F.lit(config.click_threshold)).cast("int") if explicit else F.lit(None)
    events = raw_event_frame(lines.select(
        "raw", "source_file", string_id(user_t).alias("user_id"), string_id(item_t).alias("item_id"),
        ts.alias("ts"), F.lit("review").alias("behavior"), rating.alias("value"), label.alias("label"),
        reason.alias("reason"),
    ))

    meta = read_lines(spark, meta_files)
    meta_valid = _json("$").isNotNull() & F.trim("raw").startswith("{")
    key = _text(F.coalesce(_json("$.parent_asin"), _json("$.asin")))
    title = _text(_json("$.title"))
    categories = F.from_json(F.coalesce(_json("$.category"), _json("$.categories")), "array<string>")
    main_category = _text(_json("$.main_category"))
    path = F.array_join(F.filter(categories, lambda c: F.trim(c) != ""), " > ")
    # The category is the whole path: leaf names repeat under different parents ("Accessories").
    # An empty list (common in 2023 metadata) falls back to main_category, a one-level path.
    category = F.when(F.length(path) > 0, path).otherwise(main_category)
    text = F.concat_ws(" ", title, F.when(F.length(path) > 0, F.concat(F.lit("Category: "), path, F.lit("."))))
    meta_reason = first_reason(
        F.when(~meta_valid, F.lit("item_unparseable_json")),
        F.when(key.isNull(), F.lit("item_missing_item_id")),
    )
    parsed = meta.select(
        "raw", "source_file", string_id(key).alias("item_id"), key.alias("item_key"),
        F.when(category.isNotNull(), string_id(category)).alias("category_id"),
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
