"""What notebook 03 shows of one user's retrieval: their samples and stored sequence, one sample's
candidates per route with the SID prefix each shares with the target, and that sample's training example."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.notebook_views.context import optional_id
from jobs.retrieval.table_shapes import candidate_column, candidate_routes
from jobs.runtime.tables import TableStore
from r2led_model.config import Config


def resolve_user_id(spark: SparkSession, config: Config, text: str | None) -> int:
    """The `user_id` widget: a user id, or empty → the smallest user id that has route candidates."""
    chosen = optional_id(text, "user_id")
    if chosen is not None:
        return chosen
    first = TableStore(spark, config.tables).read("route_candidates").agg(F.min("user_id")).first()[0]
    if first is None:
        raise LookupError("route_candidates is empty: run `r2led retrieve` first")
    return int(first)


def _shared_prefix(a: str, b: str) -> Column:
    """How many leading codes two equal-length code arrays share."""
    equal = F.zip_with(F.col(a), F.col(b), lambda x, y: x == y)
    first_diff = F.array_position(equal, False)
    return F.when(F.col(a).isNull() | F.col(b).isNull(), F.lit(None)).when(
        first_diff == 0, F.size(equal)).otherwise(first_diff - 1).cast("int")


def pick_sample(spark: SparkSession, config: Config, user_id: int) -> int:
    """The user's sample with the most retrieved candidates (ties: the newest, then the smallest id)."""
    candidates = TableStore(spark, config.tables).read("route_candidates").where(F.col("user_id") == user_id)
    pools = [F.coalesce(F.col(candidate_column(r, "pool")), F.lit(0)) for r in candidate_routes(candidates.columns)]
    total = pools[0]
    for pool in pools[1:]:
        total = total + pool
    row = candidates.withColumn("total_pool", total).orderBy(
        F.desc("total_pool"), F.desc("ts"), "sample_id").select("sample_id").first()
    if row is None:
        raise LookupError(f"user {user_id} has no samples in route_candidates")
    return int(row[0])


def user_retrieval(spark: SparkSession, config: Config, user_id: int, sample_id: int | None = None) -> DataFrame:
    """One sample's retrieved behaviours, one row per (route, rank).

    Columns: sample_id, user_id, split, route, rank (0 = best), position (into the user's stored
    sequence), item_id, codes (its SID), target_item_id, target_codes, shared_prefix (leading SID
    codes in common with the target), category_id, text. `sample_id` defaults to `pick_sample`.
    """
    store = TableStore(spark, config.tables)
    candidates = store.read("route_candidates")
    if sample_id is None:
        sample_id = pick_sample(spark, config, user_id)
    row = candidates.where((F.col("sample_id") == sample_id) & (F.col("user_id") == user_id))
    target = store.read("samples").where(F.col("sample_id") == sample_id).select(
        "sample_id", F.col("item_id").alias("target_item_id"), "label")
    per_route = [
        row.select("sample_id", "user_id", "split", F.lit(route).alias("route"),
                   F.posexplode(F.arrays_zip(F.col(candidate_column(route, "pos")).alias("position"),
                                             F.col(candidate_column(route, "item")).alias("item_id"),
                                             F.col(candidate_column(route, "mask")).alias("mask")))
                   .alias("rank", "slot"))
        for route in candidate_routes(candidates.columns)
    ]
    exploded = per_route[0]
    for frame in per_route[1:]:
        exploded = exploded.unionByName(frame)
    sids = store.read("item_sids").select("item_id", "codes", "semantic_codes")
    items = store.read("items").select("item_id", "category_id", "text")
    found = (exploded.where(F.col("slot.mask"))
             .select("sample_id", "user_id", "split", "route", "rank", F.col("slot.position").alias("position"),
                     F.col("slot.item_id").alias("item_id"))
             .join(target, "sample_id")
             .join(sids, "item_id", "left")
             .join(sids.select(F.col("item_id").alias("target_item_id"), F.col("codes").alias("target_codes"),
                               F.col("semantic_codes").alias("target_semantic")), "target_item_id", "left")
             .join(items, "item_id", "left")
             .withColumn("shared_prefix", _shared_prefix("semantic_codes", "target_semantic")))
    return found.select("sample_id", "user_id", "split", "label", "route", "rank", "position", "item_id", "codes",
                        "target_item_id", "target_codes", "shared_prefix", "category_id", "text"
                        ).orderBy("route", "rank")


def user_samples(store: TableStore, user_id: int) -> DataFrame:
    """The user's samples, oldest first."""
    return store.read("samples").where(F.col("user_id") == user_id).orderBy("ts", "sample_id")


def user_sequence(store: TableStore, user_id: int) -> DataFrame:
    """The user's stored sequence: its length and the behaviours the cap dropped."""
    return store.read("user_sequences").where(F.col("user_id") == user_id).select("user_id", "length", "dropped")


def route_summary(candidates: DataFrame) -> DataFrame:
    """Per route of `user_retrieval`'s rows: candidates retrieved and the mean SID prefix shared with the target."""
    return (candidates.groupBy("route").agg(F.count("*").alias("retrieved"),
                                            F.avg("shared_prefix").alias("mean_shared_prefix"))
            .orderBy("route"))


def training_examples_of(store: TableStore, candidates: DataFrame) -> DataFrame:
    """The `training_examples` rows of the samples in `candidates`."""
    return store.read("training_examples").join(candidates.select("sample_id").distinct(), "sample_id")
