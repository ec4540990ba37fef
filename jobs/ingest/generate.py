"""`r2led generate`: write a synthetic world's raw logs, generated in parallel by Spark.

Users are spread over Spark tasks (`spark.range` → `mapInPandas`); each task builds the
(small) item world once from the config and generates its users' events with
`r2led_model.worlds.synthetic`, whose per-user random streams depend only on (seed, user_id). The
output is therefore identical for any partitioning, and a re-run overwrites it with the same bytes.

Output (read back by `source.kind: synthetic`):
    <root>/events/event_date=YYYY-MM-DD/part-*.csv   UserBehavior layout: user_id,item_id,category_id,behavior,ts
    <root>/items/part-*.json                         item_id, category_id, text
    <root>/impressions/event_date=YYYY-MM-DD/*.csv   with synthetic.impressions.enabled: user_id,item_id,
                                                     category_id,behavior (imp),ts,label
    <root>/truth/items, <root>/truth/user_interests  planted taxonomy, catalogue noise (text_noisy, top_text_noise),
                                                     community_id, launch_ts, and interests (Parquet)
    <root>/truth/impressions                         every impression's click probability, relation, exposure,
                                                     community and dormant_target
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Sequence

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.ingest.sources.synthetic import synthetic_root, truth_dir
from jobs.runtime.entrypoint import spark_job_main
from r2led_model.config import Config, SyntheticConfig
from r2led_model.worlds.impressions import generate_user_impressions
from r2led_model.worlds.synthetic import (SyntheticWorld, build_world, generate_user_events, item_frame,
                                          user_interest_frame)

log = logging.getLogger(__name__)

EVENT_SCHEMA = "user_id BIGINT, item_id BIGINT, category_id BIGINT, behavior STRING, ts BIGINT, interest BIGINT"
INTEREST_SCHEMA = "user_id BIGINT, interest_rank BIGINT, topic_l2 BIGINT, weight DOUBLE, dormant BOOLEAN"
IMPRESSION_SCHEMA = ("user_id BIGINT, item_id BIGINT, category_id BIGINT, behavior STRING, ts BIGINT, label INT, "
                     "click_prob DOUBLE, relation BIGINT, exposure BIGINT, community BOOLEAN, dormant_target BOOLEAN")
# Aim for ~2M events per task: big enough to amortise the world build, small enough for memory.
EVENTS_PER_PARTITION = 2_000_000


@dataclass
class GenerateResult:
    root: str
    users: int
    items: int
    events: int
    impressions: int = 0


@functools.lru_cache(maxsize=2)
def _world(config: SyntheticConfig) -> SyntheticWorld:
    """Built once per worker process (the config is frozen, so hashable)."""
    return build_world(config)


def _per_user_batch(frame_of, config: SyntheticConfig):
    """A mapInPandas function: `frame_of(world, config, user_ids)` for each batch of user ids."""
    def apply(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        world = _world(config)
        for batch in batches:
            yield frame_of(world, config, batch["id"].to_numpy())
    return apply


def effective_config(config: SyntheticConfig, total_events: int | None) -> SyntheticConfig:
    """`--events N` sets the user count so that users × events_per_user ≈ N."""
    if not total_events:
        return config
    return replace(config, num_users=max(1, round(total_events / config.events_per_user)))


def run(spark: SparkSession, config: Config, *, events: int | None = None) -> GenerateResult:
    """`events`: an approximate total, which sets the number of users (`effective_config`)."""
    synth = effective_config(config.synthetic, events)
    root = synthetic_root(config).resolve()
    expected_events = synth.num_users * synth.events_per_user
    partitions = synth.partitions or max(2, expected_events // EVENTS_PER_PARTITION + 1)
    users = spark.range(0, synth.num_users, numPartitions=partitions)

    world = _world(synth)
    items = spark.createDataFrame(item_frame(world))
    items.select("item_id", "category_id", "text").coalesce(1).write.mode("overwrite").json(str(root / "items"))
    items.write.mode("overwrite").parquet(str(truth_dir(root, "items")))
    (users.mapInPandas(_per_user_batch(user_interest_frame, synth), INTEREST_SCHEMA)
     .write.mode("overwrite").parquet(str(truth_dir(root, "user_interests"))))

    events = users.mapInPandas(_per_user_batch(generate_user_events, synth), EVENT_SCHEMA).withColumn(
        "event_date", F.to_date(F.timestamp_seconds("ts")))
    (events.select("user_id", "item_id", "category_id", "behavior", "ts", "event_date")
     .write.mode("overwrite").partitionBy("event_date").csv(str(root / "events")))
    written = spark.read.csv(str(root / "events")).count()
    shown = write_impressions(users, synth, root) if synth.impressions.enabled else 0
    result = GenerateResult(root=str(root), users=synth.num_users, items=synth.num_items, events=written,
                            impressions=shown)
    log.info("synthetic world at %s: %s users, %s items, %s events, %s impressions",
             root, f"{result.users:,}", f"{result.items:,}", f"{result.events:,}", f"{result.impressions:,}")
    return result


def write_impressions(users: DataFrame, synth: SyntheticConfig, root: Path) -> int:
    """The impression log (what ingest reads) and its truth (what only the oracle reads); returns the count.

    The truth is written first: a log without its truth would be unscorable, the reverse is harmless.
    """
    impressions = users.mapInPandas(_per_user_batch(generate_user_impressions, synth), IMPRESSION_SCHEMA)
    impressions.write.mode("overwrite").parquet(str(truth_dir(root, "impressions")))
    truth = users.sparkSession.read.parquet(str(truth_dir(root, "impressions")))
    (truth.withColumn("event_date", F.to_date(F.timestamp_seconds("ts")))
     .select("user_id", "item_id", "category_id", "behavior", "ts", "label", "event_date")
     .write.mode("overwrite").partitionBy("event_date").csv(str(root / "impressions")))
    return truth.count()


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=None,
                        help="approximate total events (sets synthetic.num_users = events / events_per_user)")


def main(argv: Sequence[str] | None = None) -> int:
    return spark_job_main(argv, "generate", "Write a synthetic world's raw logs.", run, _add_arguments)


if __name__ == "__main__":
    sys.exit(main())
