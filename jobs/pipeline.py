"""`r2led pipeline`: the end-to-end run on one session, stage by stage.

ingest → sequences → embed-items → train-codebook → assign-sids → collab-vectors → retrieve →
build-training-set → train → promote → score. Each stage is its job's
`run`, so the pipeline adds no logic of its own beyond ordering and the run summary.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Sequence

from pyspark.sql import SparkSession

from jobs import (
    assign_sids,
    build_training_set,
    collab_vectors,
    embed_items,
    ingest,
    promote,
    retrieve,
    score,
    sequences,
    train,
    train_codebook,
)
from jobs.entrypoint import spark_job_main
from jobs.tables import TableStore
from r2led_model.config import Config

log = logging.getLogger(__name__)

STAGES = (
    ("ingest", ingest.run),
    ("sequences", sequences.run),
    ("embed-items", embed_items.run),
    ("train-codebook", train_codebook.run),
    ("assign-sids", assign_sids.run),
    ("collab-vectors", collab_vectors.run),
    ("retrieve", retrieve.run),
    ("build-training-set", build_training_set.run),
    ("train", train.run),
    ("promote", promote.run),
    ("score", score.run),
)
REPORTED_TABLES = ("events", "events_rejected", "items", "user_sequences", "samples", "item_embeddings",
                   "items_rejected", "item_sids", "item_collab_vectors", "route_candidates", "item_index",
                   "training_examples", "predictions")


def run(spark: SparkSession, config: Config, args: argparse.Namespace | None = None) -> dict[str, object]:
    results: dict[str, object] = {}
    for name, stage in STAGES:
        started = time.perf_counter()
        results[name] = stage(spark, config, args)
        log.info("stage %s done in %.1fs", name, time.perf_counter() - started)
    store = TableStore(spark, config.tables)
    rows = []
    for table in REPORTED_TABLES:
        df = store.read(table)
        rows.append((table, df.count(), store.version(table), store.location(table)))
    width = max(len(t) for t, *_ in rows)
    print("\n".join([f"{'table':<{width}} {'rows':>10} {'version':>8}  location"]
                    + [f"{t:<{width}} {n:>10,} {v:>8}  {loc}" for t, n, v, loc in rows]), flush=True)
    results["tables"] = {t: n for t, n, _, _ in rows}
    return results


def main(argv: Sequence[str] | None = None) -> int:
    return spark_job_main(argv, "pipeline", "Run every stage end to end.", run)


if __name__ == "__main__":
    sys.exit(main())
