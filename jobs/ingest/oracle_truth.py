"""The true click probability of every sample of an oracle-scored synthetic world, keyed by sample id.

`r2led generate` with `synthetic.impressions.enabled` writes each impression's probability to
`<root>/truth/impressions`; a sample is an impression when its (user, item, second) matches one.
Only quality reports read this: the truth never enters a table a model trains on.
"""

from __future__ import annotations

import logging

import numpy as np
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.ingest.sources.synthetic import read_truth
from jobs.runtime.tables import TableStore
from r2led_model.config import Config
from r2led_model.impressions import IMPRESSION_BEHAVIOR
from r2led_model.oracle import OracleTruth, quality_from_clicks

log = logging.getLogger(__name__)


def load_oracle_truth(spark: SparkSession, config: Config) -> OracleTruth | None:
    """The truth of the world's samples, or None when the source has none (real data, older worlds)."""
    impressions, items = read_truth(spark, config, "impressions"), read_truth(spark, config, "items")
    if impressions is None or items is None:
        return None
    truth = impressions.where(F.col("behavior") == IMPRESSION_BEHAVIOR).select(
        "user_id", "item_id", "ts", "click_prob", "relation")
    quality = items.select("item_id", "quality")
    samples = TableStore(spark, config.tables).read("samples").where(~F.col("is_sampled_negative")).select(
        "sample_id", "user_id", "item_id", "ts", "split", "label")
    rows = (samples.join(truth, ["user_id", "item_id", "ts"]).join(quality, "item_id")
            .select("sample_id", "item_id", "split", "label", "click_prob", "relation", "quality").toPandas())
    log.info("oracle truth for %s samples", f"{len(rows):,}")
    # Partial oracles: what knowing the interest relation alone, or it and the item's quality, is worth
    # (the rest of the truth is the user's own click propensity, which no model here can see), and the
    # relation with each item's quality as far as its training clicks reveal it: the most a model that
    # knew every relation could learn of quality from the rows it trains on.
    cfg = config.synthetic.impressions
    relation = np.r_[np.asarray(cfg.affinity, dtype=np.float64), 0.0][rows["relation"].to_numpy()]
    quality_term = cfg.quality_std * rows["quality"].to_numpy()
    train = (rows["split"] == "train").to_numpy()
    learned = quality_from_clicks(rows["item_id"].to_numpy()[train], cfg.base_logit + relation[train],
                                  rows["label"].to_numpy()[train], quality_std=cfg.quality_std)
    learned_term = cfg.quality_std * rows["item_id"].map(learned).fillna(0.0).to_numpy()
    return OracleTruth.from_arrays(rows["sample_id"].to_numpy(), rows["click_prob"].to_numpy(),
                                   parts={"relation": relation, "relation_quality": relation + quality_term,
                                          "relation_clicks_quality": relation + learned_term})
