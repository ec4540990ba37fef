"""Tmall repeat-buyer logs (Tianchi dataset 42), `user_log_format1.csv`.

Header `user_id,item_id,cat_id,seller_id,brand_id,time_stamp,action_type`; time_stamp is `mmdd`
of one year (config `source.tmall.year`), read as midnight UTC of that day; action_type
0 click, 1 add-to-cart, 2 purchase, 3 add-to-favourite. Positive-only, like Taobao.
"""

from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.ingest.sources.common import (ParsedSource, field, first_reason, id_reason, raw_event_frame, read_lines,
                                        require_files, to_id)
from r2led_model.config import TmallSourceConfig

HEADER = "user_id,item_id,cat_id,seller_id,brand_id,time_stamp,action_type"
ACTIONS = {"0": "click", "1": "cart", "2": "buy", "3": "fav"}


def load_tmall(spark: SparkSession, config: TmallSourceConfig) -> ParsedSource:
    files = require_files(config.paths, "Tmall user_log_format1")
    lines = read_lines(spark, files, header=HEADER)
    parts = F.split("raw", ",", -1)
    user_t, item_t, cat_t, _seller, _brand, day_t, action_t = (field(parts, i) for i in range(7))
    user, item, category = to_id(user_t), to_id(item_t), to_id(cat_t)
    # try_to_timestamp gives null for 1301 or 0230 instead of failing the job.
    day = F.expr(f"try_to_timestamp(concat('{config.year:04d}', lpad(`time_stamp`, 4, '0')), 'yyyyMMdd')")
    lines = lines.withColumn("time_stamp", day_t)
    ts = F.unix_timestamp(day)
    action_map = F.create_map(*[F.lit(x) for kv in ACTIONS.items() for x in kv])
    behavior = F.coalesce(action_map[action_t], F.concat(F.lit("action_"), action_t))
    reason = first_reason(
        F.when(F.size(parts) != 7, F.lit("wrong_field_count")),
        id_reason(user_t, user, "user_id"),
        id_reason(item_t, item, "item_id"),
        F.when(day_t.isNull(), F.lit("missing_timestamp"))
        .when(~day_t.rlike("^[0-9]{3,4}$") | ts.isNull(), F.lit("bad_timestamp")),
        F.when(action_t.isNull(), F.lit("missing_behavior")),
        F.when(cat_t.isNotNull() & category.isNull(), F.lit("bad_category_id")),
    )
    events = raw_event_frame(lines.select(
        "raw", "source_file", user.alias("user_id"), item.alias("item_id"),
        F.when(day_t.rlike("^[0-9]{3,4}$"), ts).alias("ts"), behavior.alias("behavior"),
        category.alias("category_id"), reason.alias("reason"),
    ))
    return ParsedSource(name="tmall", events=events, items=None, items_rejected=None, files=files)
