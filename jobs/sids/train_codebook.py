"""`r2led train-codebook`: `item_embeddings` → a trained RQ-VAE codebook, logged to MLflow.

The RQ-VAE trains on the driver (torch, CPU) on at most `codebook.max_train_items` items, a
seeded sample ordered by item id, so the same inputs and seed give the same codebook. The
codebook is exported as plain arrays, versioned by content hash, saved under
`codebook.store_dir` (and made current) and logged to the MLflow run with its metrics.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.runtime.entrypoint import spark_job_main
from jobs.runtime.stage_protocol import Scope, StageOutcome
from jobs.runtime.tables import TableStore
from r2led_model.config import Config
from r2led_model.sids import codebook_store
from r2led_model.sids.codebook import sid_metrics
from r2led_model.sids.rqvae import export_codebook, reconstruction_mse, train_rqvae
from r2led_model.tracking.runs import tracked_run

log = logging.getLogger(__name__)


class EmbeddingInputError(ValueError):
    """item_embeddings holds vectors a codebook cannot be trained on."""


@dataclass
class CodebookResult:
    version: str
    path: str
    mlflow_run_id: str
    items: int
    metrics: dict[str, float]


def check_vectors(embeddings: DataFrame) -> int:
    """The one vector width of the table; refuses mixed widths and non-finite values, with counts."""
    widths = {int(r["width"]): int(r["n"]) for r in
              embeddings.groupBy(F.size("vector").alias("width")).agg(F.count("*").alias("n")).collect()}
    if len(widths) != 1:
        raise EmbeddingInputError(f"item_embeddings: vectors of several widths {widths} (width: items); "
                                  "re-run embed-items with one encoder")
    bad = embeddings.where(F.exists("vector", lambda v: F.isnan(v) | F.isnull(v) | (F.abs(v) == float("inf"))))
    n_bad = bad.count()
    if n_bad:
        examples = [r["item_id"] for r in bad.select("item_id").limit(5).collect()]
        raise EmbeddingInputError(f"item_embeddings: {n_bad} vectors hold NaN/inf/null (e.g. items {examples})")
    return next(iter(widths))


def training_vectors(embeddings: DataFrame, limit: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(item_ids (N,), vectors (N, D) float32), a seeded sample of at most `limit`, ordered by item id."""
    total = embeddings.count()
    if total > limit:
        embeddings = embeddings.orderBy(F.xxhash64("item_id", F.lit(seed))).limit(limit)
    rows = embeddings.select("item_id", "vector").orderBy("item_id").toPandas()
    return rows["item_id"].to_numpy(np.int64), np.stack(rows["vector"].to_numpy()).astype(np.float32)


def run(spark: SparkSession, config: Config) -> CodebookResult:
    store = TableStore(spark, config.tables)
    embeddings = store.read("item_embeddings")
    width = check_vectors(embeddings)
    item_ids, vectors = training_vectors(embeddings, config.codebook.max_train_items, config.codebook.seed)
    cb_config = config.codebook
    encoders = sorted(r[0] for r in embeddings.select("encoder").distinct().collect())

    with tracked_run(config, "train-codebook", tags={"stage": "train-codebook"}) as tracking:
        tracking.log_params({**{f"codebook.{k}": v for k, v in asdict(cb_config).items()},
                             "input_dim": width, "train_items": len(item_ids), "encoders": encoders,
                             "item_embeddings_version": store.version("item_embeddings")})
        model, history = train_rqvae(
            vectors, cb_config, on_epoch=lambda epoch, metrics: tracking.log_metrics(metrics, step=epoch))
        codebook = export_codebook(model)
        codes = codebook.assign_codes(vectors)
        final = {**sid_metrics(codes, cb_config.codebook_size),
                 "reconstruction_mse": reconstruction_mse(model, vectors)}
        tracking.log_metrics(final)
        path = codebook_store.publish(codebook, cb_config.store_dir, mlflow_run_id=tracking.run_id)
        tracking.log_artifact(path, "codebook")
        tracking.set_tags({"codebook_version": codebook.version})
        tracking.log_dict({"history": history}, "history.json")
    log.info("codebook %s: %s", codebook.version, ", ".join(f"{k}={v:.4g}" for k, v in final.items()))
    return CodebookResult(version=codebook.version, path=str(path), mlflow_run_id=tracking.run_id,
                          items=len(item_ids), metrics=final)


def derive(spark: SparkSession, config: Config, *, scope: Scope) -> StageOutcome:
    """The stage (`jobs.runtime.stage_protocol`): the full run trains a codebook; a dated run keeps the
    one its earlier runs used (`scope.codebook_version`, else the store's current one) unless it
    retrains or rebuilds, or there is none yet."""
    from r2led_model.sids import codebook_store

    store_dir = config.codebook.store_dir
    current = scope.codebook_version or codebook_store.current_version(store_dir)
    if not scope.full_run and current is not None and not scope.retrain and not scope.rebuild:
        codebook_store.load(store_dir, current)  # there and intact, or a clear error before any SID
        return StageOutcome(0, 0, {"codebook_version": current, "action": "kept"})
    result = run(spark, config)
    return StageOutcome(result.items, 1, {"codebook_version": result.version, "action": "trained"})


def main(argv: Sequence[str] | None = None) -> int:
    return spark_job_main(argv, "train-codebook", "Train the RQ-VAE codebook on item_embeddings.", run)


if __name__ == "__main__":
    sys.exit(main())
