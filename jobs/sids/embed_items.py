"""`r2led embed-items`: `items` → `item_embeddings` (design.md §4, "SIDs").

Items with text go through the frozen sentence encoder inside Spark (mapInPandas: the model is
loaded once per Python worker process and fed Arrow batches). Items without text get a vector
from implicit ALS fitted on the training window only:
  * if some items have text, the ALS vector is mapped into the text space by a ridge regression
    fitted on the items that have both (sufficient statistics summed over partitions, so nothing
    but two small matrices reaches the driver);
  * if no item has text (e.g. Taobao logs), the ALS vector itself is the content vector.
Items with neither text nor a training-window interaction go to `items_rejected`.
"""

from __future__ import annotations

import importlib.metadata
import logging
import sys
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.retrieval.als import fit_item_vectors
from jobs.runtime.entrypoint import spark_job_main
from jobs.runtime.stage_protocol import Scope, StageOutcome
from jobs.runtime.tables import TableStore
from jobs.sequences.splits import training_window_end
from r2led_model.config import Config, EmbeddingConfig
from r2led_model.sids.text_encoder import ENCODERS, load_text_encoder

log = logging.getLogger(__name__)

STAGE = "embed-items"
VECTOR_SCHEMA = "item_id BIGINT, vector ARRAY<FLOAT>"
# Ridge penalty for the ALS → text-space map; small, the map is fitted on thousands of items.
RIDGE_LAMBDA = 1e-2

_ENCODER_CACHE: dict[str, object] = {}


@dataclass
class EmbedResult:
    items: int
    from_text: int
    from_als: int
    rejected: int
    encoder_version: str


def _encoder(name: str):
    """One encoder per Python worker process (workers are reused across tasks)."""
    if name not in _ENCODER_CACHE:
        _ENCODER_CACHE[name] = load_text_encoder(name)
    return _ENCODER_CACHE[name]


def _encode_batches(name: str, batch_size: int):
    def encode(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        encoder = _encoder(name)
        for batch in batches:
            vectors = encoder.encode(batch["text"].tolist(), batch_size=batch_size)
            yield pd.DataFrame({"item_id": batch["item_id"].to_numpy(), "vector": list(vectors)})
    return encode


def encoder_version(name: str) -> str:
    package = ENCODERS[name][0]
    return f"{package}=={importlib.metadata.version(package)}"


def _ridge_map(pairs: DataFrame, rank: int, dim: int) -> np.ndarray:
    """W (rank+1, dim) minimising ||[X 1] W − Y||² + λ||W||² from per-partition XᵀX and XᵀY."""
    width = rank + 1

    def partial(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        xtx, xty = np.zeros((width, width)), np.zeros((width, dim))
        for batch in batches:
            x = np.c_[np.stack(batch["als"].to_numpy()), np.ones(len(batch))]  # (n, rank+1)
            y = np.stack(batch["text_vector"].to_numpy())  # (n, dim)
            xtx += x.T @ x
            xty += x.T @ y
        yield pd.DataFrame({"xtx": [xtx.ravel()], "xty": [xty.ravel()]})

    sums = pairs.mapInPandas(partial, "xtx ARRAY<DOUBLE>, xty ARRAY<DOUBLE>").toPandas()
    xtx = np.sum(np.stack(sums["xtx"].to_numpy()), axis=0).reshape(width, width)
    xty = np.sum(np.stack(sums["xty"].to_numpy()), axis=0).reshape(width, dim)
    return np.linalg.solve(xtx + RIDGE_LAMBDA * np.eye(width), xty)


def _apply_map(weights: np.ndarray):
    def apply(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            x = np.c_[np.stack(batch["vector"].to_numpy()), np.ones(len(batch))]  # (n, rank+1)
            y = x @ weights  # (n, dim)
            # Text vectors are unit length; keep imputed ones on the same sphere.
            y /= np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
            yield pd.DataFrame({"item_id": batch["item_id"].to_numpy(), "vector": list(y.astype(np.float32))})
    return apply


def build_item_embeddings(spark: SparkSession, items: DataFrame, events: DataFrame, config: EmbeddingConfig,
                          until_ts: int | None) -> tuple[DataFrame, DataFrame, dict[str, object]]:
    """→ (item_embeddings, items_rejected, stats)."""
    has_text = F.col("text").isNotNull() & (F.length(F.trim("text")) > 0)
    version = encoder_version(config.encoder)
    text_vectors = (items.where(has_text).select("item_id", "text")
                    .mapInPandas(_encode_batches(config.encoder, config.batch_size), VECTOR_SCHEMA)
                    .persist(StorageLevel.MEMORY_AND_DISK))
    parts = [text_vectors.select("item_id", "vector", F.lit(config.encoder).alias("encoder"),
                                 F.lit(version).alias("encoder_version"))]
    without_text = items.where(~has_text).select("item_id")
    stats: dict[str, object] = {"from_text": text_vectors.count(), "from_als": 0, "encoder_version": version}
    rejected = spark.createDataFrame([], "item_id BIGINT, stage STRING, reason STRING")
    if without_text.limit(1).count():
        als = fit_item_vectors(spark, events, rank=config.als_rank, iterations=config.als_iterations,
                               reg=config.als_reg, alpha=config.als_alpha, seed=config.seed, until_ts=until_ts)
        als = als.persist(StorageLevel.MEMORY_AND_DISK)
        als_version = f"als-implicit(rank={config.als_rank},iter={config.als_iterations},until={until_ts})"
        missing = without_text.join(als, "item_id")
        if stats["from_text"]:
            pairs = als.withColumnRenamed("vector", "als").join(
                text_vectors.withColumnRenamed("vector", "text_vector"), "item_id")
            weights = _ridge_map(pairs, config.als_rank, ENCODERS[config.encoder][1])
            imputed = missing.mapInPandas(_apply_map(weights), VECTOR_SCHEMA)
            encoder, imputed_version = f"{config.encoder}<-als", f"{version};{als_version};ridge"
        else:
            imputed, encoder, imputed_version = missing, "als-implicit", als_version
        parts.append(imputed.select("item_id", "vector", F.lit(encoder).alias("encoder"),
                                    F.lit(imputed_version).alias("encoder_version")))
        rejected = without_text.join(als, "item_id", "left_anti").select(
            "item_id", F.lit(STAGE).alias("stage"), F.lit("no_text_and_no_training_interactions").alias("reason"))
    embeddings = parts[0] if len(parts) == 1 else parts[0].unionByName(parts[1])
    return embeddings, rejected, stats


def run(spark: SparkSession, config: Config) -> EmbedResult:
    store = TableStore(spark, config.tables)
    items = store.read("items")
    embeddings, rejected, stats = build_item_embeddings(
        spark, items, store.read("events"), config.embedding, until_ts=training_window_end(config.sequences.split))
    store.overwrite("item_embeddings", embeddings)
    store.overwrite_partitions("items_rejected", rejected, where=f"stage = '{STAGE}'")
    written = store.read("item_embeddings")
    result = EmbedResult(
        items=items.count(),
        from_text=int(stats["from_text"]),
        from_als=written.count() - int(stats["from_text"]),
        rejected=store.read("items_rejected").where(F.col("stage") == STAGE).count(),
        encoder_version=str(stats["encoder_version"]),
    )
    log.info("item_embeddings: %d items (%d from text, %d from ALS), %d rejected (%s)",
             result.items, result.from_text, result.from_als, result.rejected, result.encoder_version)
    return result


@dataclass
class NewItemsResult:
    new_items: int
    embedded: int
    deferred: int


def update(spark: SparkSession, config: Config) -> NewItemsResult:
    """Embed only items not yet in `item_embeddings` (a nightly run), leaving every stored vector as is.

    New items with text go through the encoder. A new item without text cannot have an ALS vector
    before the next refit (its interactions are newer than the training window), so it is recorded
    in `items_rejected` with reason `no_text_until_refit` and skipped until then.
    """
    store = TableStore(spark, config.tables)
    if not store.exists("item_embeddings"):
        first = run(spark, config)
        return NewItemsResult(new_items=first.items, embedded=first.from_text + first.from_als, deferred=first.rejected)
    fresh = store.read("items").join(store.read("item_embeddings").select("item_id"), "item_id", "left_anti")
    fresh = fresh.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        new_items = fresh.count()  # materialised before item_embeddings changes under its anti-join
        if new_items == 0:
            log.info("item_embeddings: no new items")
            return NewItemsResult(new_items=0, embedded=0, deferred=0)
        has_text = F.col("text").isNotNull() & (F.length(F.trim("text")) > 0)
        vectors = (fresh.where(has_text).select("item_id", "text")
                   .mapInPandas(_encode_batches(config.embedding.encoder, config.embedding.batch_size), VECTOR_SCHEMA)
                   .select("item_id", "vector", F.lit(config.embedding.encoder).alias("encoder"),
                           F.lit(encoder_version(config.embedding.encoder)).alias("encoder_version")))
        deferred = fresh.where(~has_text).select("item_id", F.lit(STAGE).alias("stage"),
                                                 F.lit("no_text_until_refit").alias("reason"))
        store.insert_new("items_rejected", deferred)
        embedded = store.insert_new("item_embeddings", vectors)
        result = NewItemsResult(new_items=new_items, embedded=embedded, deferred=deferred.count())
    finally:
        fresh.unpersist()
    log.info("item_embeddings: %d new items, %d embedded, %d without text deferred to the next refit",
             result.new_items, result.embedded, result.deferred)
    return result


def derive(spark: SparkSession, config: Config, *, scope: Scope) -> StageOutcome:
    """The stage (`jobs.runtime.stage_protocol`): every item in the full run or a rebuild; a dated run
    embeds the items not embedded yet."""
    if scope.full_run or scope.rebuild:
        full = run(spark, config)
        return StageOutcome(full.items, full.from_text + full.from_als, {"action": "rebuilt"})
    result = update(spark, config)
    return StageOutcome(result.new_items, result.embedded, {"deferred": result.deferred})


def main(argv: Sequence[str] | None = None) -> int:
    return spark_job_main(argv, "embed-items", "Embed item text (or ALS for items without text).", run)


if __name__ == "__main__":
    sys.exit(main())
