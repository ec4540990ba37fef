"""The true click probability of every sample of an oracle-scored synthetic world, keyed by sample id,
and the truth that segments its rows (the target's relation, community, dormancy, text, launch).

`r2led generate` with `synthetic.impressions.enabled` writes each impression's probability to
`<root>/truth/impressions`; a sample is an impression when its (user, item, second) matches one.
Only quality reports read this: the truth never enters a table a model trains on.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.ingest.sources.synthetic import read_truth
from jobs.runtime.tables import TableStore
from r2led_model.config import Config
from r2led_model.worlds.impressions import IMPRESSION_BEHAVIOR
from r2led_model.worlds.oracle import OracleTruth, quality_from_clicks

log = logging.getLogger(__name__)

# Per-sample truth columns of `load_sample_truth`: from truth/impressions, then from truth/items (the
# target's). A world generated before a column existed lacks it, and so does the frame.
IMPRESSION_SEGMENTS = ("relation", "exposure", "community", "dormant_target")
ITEM_SEGMENTS = ("text_noisy", "top_text_noise", "community_id", "launch_ts")


def _matched_samples(spark: SparkSession, config: Config, impressions: DataFrame, columns: list[str]) -> DataFrame:
    """The world's labelled samples (not sampled negatives) joined to their impression's truth `columns`."""
    truth = impressions.where(F.col("behavior") == IMPRESSION_BEHAVIOR).select("user_id", "item_id", "ts", *columns)
    samples = TableStore(spark, config.tables).read("samples").where(~F.col("is_sampled_negative")).select(
        "sample_id", "user_id", "item_id", "ts", "split", "label")
    return samples.join(truth, ["user_id", "item_id", "ts"])


def load_oracle_truth(spark: SparkSession, config: Config) -> OracleTruth | None:
    """The truth of the world's samples, or None when the source has none (real data, older worlds)."""
    impressions, items = read_truth(spark, config, "impressions"), read_truth(spark, config, "items")
    if impressions is None or items is None:
        return None
    with_community = "community" in impressions.columns and config.synthetic.communities > 0
    columns = ["click_prob", "relation"] + (["community"] if with_community else [])
    quality = items.select("item_id", "quality")
    rows = (_matched_samples(spark, config, impressions, columns).join(quality, "item_id")
            .select("sample_id", "item_id", "split", "label", *columns, "quality").toPandas())
    log.info("oracle truth for %s samples", f"{len(rows):,}")
    # Partial oracles: what knowing the interest relation alone, or it and the item's quality, is worth
    # (the rest of the truth is the user's own click propensity, which no model here can see), and the
    # relation with each item's quality as far as its training clicks reveal it: the most a model that
    # knew every relation could learn of quality from the rows it trains on. In a world with latent
    # communities, also the relation with community membership; "every relation" then includes it.
    cfg = config.synthetic.impressions
    relation = np.r_[np.asarray(cfg.affinity, dtype=np.float64), 0.0][rows["relation"].to_numpy()]
    known = relation
    parts: dict[str, np.ndarray] = {}
    if with_community:
        known = relation + cfg.community_affinity * rows["community"].to_numpy(dtype=np.float64)
        parts["relation_community"] = known
    quality_term = cfg.quality_std * rows["quality"].to_numpy()
    train = (rows["split"] == "train").to_numpy()
    learned = quality_from_clicks(rows["item_id"].to_numpy()[train], cfg.base_logit + known[train],
                                  rows["label"].to_numpy()[train], quality_std=cfg.quality_std)
    learned_term = cfg.quality_std * rows["item_id"].map(learned).fillna(0.0).to_numpy()
    parts = {"relation": relation, "relation_quality": relation + quality_term, **parts,
             "relation_clicks_quality": known + learned_term}
    return OracleTruth.from_arrays(rows["sample_id"].to_numpy(), rows["click_prob"].to_numpy(), parts=parts)


def load_sample_truth(spark: SparkSession, config: Config) -> pd.DataFrame | None:
    """One row per labelled sample of the world: sample_id, split, and those of IMPRESSION_SEGMENTS and
    ITEM_SEGMENTS (the target's) its truth tables hold; None when the source has no truth."""
    impressions, items = read_truth(spark, config, "impressions"), read_truth(spark, config, "items")
    if impressions is None or items is None:
        return None
    shown = [c for c in IMPRESSION_SEGMENTS if c in impressions.columns]
    item_columns = [c for c in ITEM_SEGMENTS if c in items.columns]
    rows = (_matched_samples(spark, config, impressions, shown).join(items.select("item_id", *item_columns), "item_id")
            .select("sample_id", "split", *shown, *item_columns))
    return rows.toPandas()
