"""Taobao UserBehavior CSV (Tianchi dataset 649): `user_id,item_id,category_id,behavior_type,timestamp`.

No header; behavior_type is one of pv, buy, cart, fav; timestamp is epoch seconds. The log is
positive-only (no label), so `r2led sequences` samples negatives for it. The synthetic generator
writes the same layout, so both share `parse_user_behavior_csv`.
"""

from __future__ import annotations

from typing import Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.ingest.sources.common import (ParsedSource, field, first_reason, id_reason, raw_event_frame, read_lines,
                                        require_files, to_id, to_long)
from r2led_model.config import TaobaoSourceConfig


def parse_user_behavior_csv(spark: SparkSession, paths: Sequence[str], *, with_label: bool = False) -> DataFrame:
    """UserBehavior lines; `with_label` reads a sixth field, the click label (0 or 1), as impression logs carry."""
    lines = read_lines(spark, paths)
    parts = F.split("raw", ",", -1)
    fields = 6 if with_label else 5
    user_t, item_t, cat_t, behavior_t, ts_t = (field(parts, i) for i in range(5))
    user, item, category, ts = to_id(user_t), to_id(item_t), to_id(cat_t), to_long(ts_t)
    checks = [
        F.when(F.size(parts) != fields, F.lit("wrong_field_count")),
        id_reason(user_t, user, "user_id"),
        id_reason(item_t, item, "item_id"),
        F.when(ts_t.isNull(), F.lit("missing_timestamp")).when(ts.isNull(), F.lit("bad_timestamp")),
        F.when(behavior_t.isNull(), F.lit("missing_behavior")),
        F.when(cat_t.isNotNull() & category.isNull(), F.lit("bad_category_id")),
    ]
    columns = ["raw", "source_file", user.alias("user_id"), item.alias("item_id"), ts.alias("ts"),
               F.lower(behavior_t).alias("behavior"), category.alias("category_id")]
    if with_label:
        label_t = field(parts, 5)
        label = to_long(label_t)
        checks.append(F.when(label_t.isNull(), F.lit("missing_label"))
                      .when(~label.isin(0, 1) | label.isNull(), F.lit("bad_label")))
        columns.append(label.alias("label"))
    return raw_event_frame(lines.select(*columns, first_reason(*checks).alias("reason")))


def load_taobao(spark: SparkSession, config: TaobaoSourceConfig) -> ParsedSource:
    files = require_files(config.paths, "Taobao UserBehavior")
    return ParsedSource(name="taobao", events=parse_user_behavior_csv(spark, files), items=None,
                        items_rejected=None, files=files)
