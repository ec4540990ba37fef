"""Implicit-feedback ALS item vectors (Spark MLlib), fitted on the training window only.

Used where an item has no text (embed-items) and, later, as the collaborative view. ALS needs
32-bit ids, so users and items get dense indices first (distributed zipWithIndex, no driver collect).
"""

from __future__ import annotations

import logging

from pyspark.ml.recommendation import ALS
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

log = logging.getLogger(__name__)


def dense_index(spark: SparkSession, ids: DataFrame, column: str) -> DataFrame:
    """Distinct values of `column` → (column, `<column>_idx` int), ordered by value (deterministic)."""
    distinct = ids.select(column).distinct().orderBy(column)
    indexed = distinct.rdd.map(lambda row: row[0]).zipWithIndex()
    return spark.createDataFrame(indexed, f"{column} BIGINT, {column}_idx BIGINT").withColumn(
        f"{column}_idx", F.col(f"{column}_idx").cast("int"))


def fit_item_vectors(spark: SparkSession, events: DataFrame, *, rank: int, iterations: int, reg: float,
                     alpha: float, seed: int, until_ts: int | None) -> DataFrame:
    """(item_id, vector array<float>) for every item with a behaviour before `until_ts`."""
    window = events if until_ts is None else events.where(F.col("ts") < until_ts)
    # Implicit confidence: how often the user touched the item in the window.
    counts = window.groupBy("user_id", "item_id").agg(F.count("*").cast("float").alias("strength"))
    users = dense_index(spark, counts, "user_id")
    items = dense_index(spark, counts, "item_id")
    ratings = counts.join(users, "user_id").join(items, "item_id")
    als = ALS(rank=rank, maxIter=iterations, regParam=reg, alpha=alpha, implicitPrefs=True, seed=seed,
              userCol="user_id_idx", itemCol="item_id_idx", ratingCol="strength", nonnegative=False)
    model = als.fit(ratings)
    log.info("ALS fitted: rank %d, %d iterations, window until %s", rank, iterations, until_ts)
    return (model.itemFactors.withColumnRenamed("id", "item_id_idx").join(items, "item_id_idx")
            .select("item_id", F.col("features").alias("vector")))
