"""What each test row of a benchmark is, for AUC per segment: target warmth and, on an oracle-scored world,
what its truth says (dormant interest, community- or taxonomy-driven relevance, noisy or clean text).

Warmth is the number of training impressions of the row's target item (`training_examples`, split
train), in the buckets of `r2led_model.evaluation.segments.warmth_bucket`. The truth columns exist only in worlds
that plant them (`r2led generate`); a segment whose column a world lacks is left out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.ingest.sources.synthetic import read_truth
from jobs.runtime.tables import TableStore
from r2led_model.config import Config
from r2led_model.evaluation.segments import warmth_bucket
from r2led_model.worlds.impressions import IMPRESSION_BEHAVIOR, RELATIONS

TAXONOMY_RELATIONS = tuple(r for r in RELATIONS if r != "none")


def _relevance(relation: np.ndarray, community: np.ndarray) -> np.ndarray:
    """(n,) "community" / "taxonomy" / "both" / "none": which planted force makes the target relevant."""
    taxonomy = np.isin(relation, [RELATIONS.index(r) for r in TAXONOMY_RELATIONS])
    return np.select([taxonomy & community, community, taxonomy], ["both", "community", "taxonomy"],
                     default="none").astype(object)


def segments_of_test_rows(spark: SparkSession, config: Config) -> dict[str, np.ndarray]:
    """{"sample_id": (n,) the test rows of training_examples, ascending; segment family: (n,) str value per row}."""
    store = TableStore(spark, config.tables)
    examples = store.read("training_examples")
    per_item = (examples.where(F.col("split") == "train").groupBy("target_item").agg(F.count("*").alias("seen")))
    frame = (examples.where(F.col("split") == "test").select("sample_id", "target_item")
             .join(per_item, "target_item", "left").select("sample_id", "seen").toPandas()
             .sort_values("sample_id", kind="stable").reset_index(drop=True))
    segments = {"sample_id": frame["sample_id"].to_numpy(np.int64),
                "warmth": warmth_bucket(frame["seen"].fillna(0).to_numpy(dtype=np.int64)).astype(str)}
    truth = _truth_columns(spark, config, store)
    if truth is None:
        return segments
    frame = frame[["sample_id"]].merge(truth, on="sample_id", how="left")  # keeps frame's row order
    if "dormant_target" in frame:
        segments["dormant"] = np.where(frame["dormant_target"].fillna(False).astype(bool), "yes", "no")
    if "community" in frame and "relation" in frame:
        segments["relevance"] = _relevance(frame["relation"].fillna(RELATIONS.index("none")).to_numpy(np.int64),
                                           frame["community"].fillna(False).to_numpy(bool)).astype(str)
    if "text_noisy" in frame:
        segments["text"] = np.where(frame["text_noisy"].fillna(False).astype(bool), "noisy", "clean")
    return segments


def _truth_columns(spark: SparkSession, config: Config, store: TableStore) -> pd.DataFrame | None:
    """sample_id with whichever of relation, community, dormant_target (per impression) and text_noisy (per
    item) the world's truth holds; None for a world without truth."""
    impressions, items = read_truth(spark, config, "impressions"), read_truth(spark, config, "items")
    if impressions is None or items is None:
        return None
    wanted = [c for c in ("relation", "community", "dormant_target") if c in impressions.columns]
    truth = impressions.where(F.col("behavior") == IMPRESSION_BEHAVIOR).select("user_id", "item_id", "ts", *wanted)
    if "text_noisy" in items.columns:
        truth = truth.join(items.select("item_id", "text_noisy"), "item_id", "left")
    samples = store.read("samples").where((F.col("split") == "test") & ~F.col("is_sampled_negative"))
    return (samples.select("sample_id", "user_id", "item_id", "ts").join(truth, ["user_id", "item_id", "ts"])
            .drop("user_id", "item_id", "ts").toPandas())
