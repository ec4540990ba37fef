"""`r2led collab-vectors`: `events` → `item_collab_vectors` (the collaborative view of retrieval).

Implicit ALS item vectors fitted on the training window only (events before
`sequences.split.valid_from`), so nothing from the validation or test period shapes them, plus a
SimHash signature per item (`retrieval.simhash_bits` random hyperplanes, seeded) for Hamming
ranking. The version names the fit (rank, iterations, window end, seed) and the events table
version it read; retrieval and training record it, and scoring refuses a mismatch. Items with no
training-window behaviour have no row: retrieval treats them as unknown (an all-zero signature).
"""

from __future__ import annotations

import hashlib
import logging
import sys
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.retrieval.als import fit_item_vectors
from jobs.runtime.entrypoint import spark_job_main
from jobs.runtime.stage_protocol import Scope, StageOutcome
from jobs.runtime.tables import TableStore
from jobs.sequences.splits import training_window_end
from r2led_model.arrow_arrays import list_column, vectors_of
from r2led_model.config import Config
from r2led_model.retrieval.simhash import simhash_signatures

log = logging.getLogger(__name__)

SOURCE = "als-implicit"
SIGNATURE_SCHEMA = "item_id BIGINT, vector ARRAY<FLOAT>, signature ARRAY<BIGINT>"


@dataclass
class CollabResult:
    version: str
    items: int


def with_signatures(vectors: DataFrame, width: int, bits: int, seed: int) -> DataFrame:
    """Add `signature` (W = ceil(bits/64) SimHash words, stored as signed longs) per `width`-d vector."""
    def sign(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            column = batch.column("vector")
            words = simhash_signatures(vectors_of(batch, width), bits, seed).view(np.int64)  # (n, W)
            yield pa.RecordBatch.from_arrays(
                [batch.column("item_id"), column, list_column(words)],
                names=["item_id", "vector", "signature"])
    return vectors.select("item_id", "vector").mapInArrow(sign, SIGNATURE_SCHEMA)


def collab_version(config: Config, until_ts: int | None, events_version: int | None) -> str:
    c = config.collab
    spec = (f"{SOURCE}:rank={c.rank}:iter={c.iterations}:reg={c.reg}:alpha={c.alpha}:seed={c.seed}:until={until_ts}"
            f":events_v={events_version}:simhash={config.retrieval.simhash_bits}/{config.retrieval.simhash_seed}")
    return "cv-" + hashlib.sha256(spec.encode()).hexdigest()[:12]


def run(spark: SparkSession, config: Config) -> CollabResult:
    store = TableStore(spark, config.tables)
    until = training_window_end(config.sequences.split)
    c = config.collab
    vectors = fit_item_vectors(spark, store.read("events"), rank=c.rank, iterations=c.iterations, reg=c.reg,
                               alpha=c.alpha, seed=c.seed, until_ts=until)
    version = collab_version(config, until, store.version("events"))
    rows = with_signatures(vectors, c.rank, config.retrieval.simhash_bits, config.retrieval.simhash_seed).select(
        "item_id", "vector", "signature", F.lit(SOURCE).alias("source"), F.lit(version).alias("version"))
    store.overwrite("item_collab_vectors", rows)
    result = CollabResult(version=version, items=store.read("item_collab_vectors").count())
    log.info("item_collab_vectors: %d items, version %s (training window until %s)", result.items, version, until)
    return result


def derive(spark: SparkSession, config: Config, *, scope: Scope) -> StageOutcome:
    """The stage (`jobs.runtime.stage_protocol`): the full run fits the vectors; a dated run keeps the
    stored ones unless it retrains or rebuilds, or there are none yet."""
    store = TableStore(spark, config.tables)
    if not scope.full_run and store.exists("item_collab_vectors") and not scope.retrain and not scope.rebuild:
        version = store.read("item_collab_vectors").select("version").first()
        return StageOutcome(0, 0, {"collab_version": version[0] if version else None, "action": "kept"})
    result = run(spark, config)
    return StageOutcome(result.items, result.items, {"collab_version": result.version, "action": "fitted"})


def main(argv: Sequence[str] | None = None) -> int:
    return spark_job_main(argv, "collab-vectors", "Fit implicit ALS item vectors and SimHash signatures.", run)


if __name__ == "__main__":
    sys.exit(main())
