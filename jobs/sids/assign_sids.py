"""`r2led assign-sids`: `item_embeddings` + the current codebook → `item_sids`.

The codebook travels to the workers as one broadcast of plain numpy arrays; each Arrow batch
(mapInArrow: the vectors reach numpy as one flat buffer, no per-row objects) is assigned in one
vectorised call (`Codebook.assign_codes`, float64, the same arithmetic as the
torch model's `assign_codes`). The optional dedup digit separates items whose L codes collide:
0, 1, 2, ... by item_id inside each full-code group, a global operation (a window over the codes).

Idempotent and stable:
  * a new codebook version replaces the whole table in one Delta commit;
  * with the same version, only items not yet in the table are assigned, and a new item that
    joins a collision group takes the next free digit, so existing SIDs never change.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from jobs.runtime.entrypoint import spark_job_main
from jobs.runtime.stage_protocol import Scope, StageOutcome
from jobs.runtime.tables import TableStore
from r2led_model.arrow_arrays import list_column, vectors_of
from r2led_model.config import Config
from r2led_model.sids import codebook_store
from r2led_model.sids.codebook import Codebook

log = logging.getLogger(__name__)

CODES_SCHEMA = "item_id BIGINT, semantic_codes ARRAY<INT>"


@dataclass
class AssignResult:
    codebook_version: str
    items: int
    assigned_now: int
    full_rebuild: bool


def semantic_codes(spark: SparkSession, embeddings: DataFrame, codebook: Codebook) -> DataFrame:
    """(item_id, semantic_codes array<int> of length L) for every row of `embeddings`."""
    shared = spark.sparkContext.broadcast(codebook)

    def assign(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        book = shared.value
        for batch in batches:
            codes = book.assign_codes(vectors_of(batch, book.input_dim)).astype(np.int32)  # (n, L)
            yield pa.RecordBatch.from_arrays([batch.column("item_id"), list_column(codes)],
                                             names=["item_id", "semantic_codes"])

    return embeddings.select("item_id", "vector").mapInArrow(assign, CODES_SCHEMA)


def with_dedup_digits(codes: DataFrame, first_free: DataFrame | None = None) -> DataFrame:
    """Add dedup_digit: rank by item_id within each semantic_codes group, offset by the group's first
    free digit (from rows already in the table) when given."""
    rank = F.row_number().over(Window.partitionBy("semantic_codes").orderBy("item_id")) - 1
    digits = codes.withColumn("dedup_digit", rank.cast("int"))
    if first_free is not None:
        digits = (digits.join(first_free, "semantic_codes", "left")
                  .withColumn("dedup_digit", (F.col("dedup_digit") + F.coalesce("first_free", F.lit(0))).cast("int"))
                  .drop("first_free"))
    return digits


def finish(digits: DataFrame, version: str, use_digit: bool) -> DataFrame:
    full = (F.concat("semantic_codes", F.array(F.col("dedup_digit"))) if use_digit else F.col("semantic_codes"))
    return digits.select("item_id", full.alias("codes"), "semantic_codes", "dedup_digit",
                         F.lit(version).alias("codebook_version"))


def run(spark: SparkSession, config: Config, *, version: str | None = None) -> AssignResult:
    return assign(spark, config, version=version)


def assign(spark: SparkSession, config: Config, *, version: str | None = None) -> AssignResult:
    """SIDs with codebook `version` (default: the store's current one) for items that have none, or
    for every item when the stored SIDs come from another codebook."""
    store = TableStore(spark, config.tables)
    codebook = codebook_store.load(config.codebook.store_dir, version)
    embeddings = store.read("item_embeddings")
    width = embeddings.select(F.size("vector")).first()
    if width is not None and width[0] != codebook.input_dim:
        raise ValueError(f"item_embeddings vectors are {width[0]}-d but codebook {codebook.version} "
                         f"expects {codebook.input_dim}-d; re-run train-codebook")

    current = store.read("item_sids") if store.exists("item_sids") else None
    same_version = current is not None and [r[0] for r in current.select("codebook_version").distinct().collect()] == [
        codebook.version]
    if same_version:
        fresh = embeddings.join(current.select("item_id"), "item_id", "left_anti")
        first_free = current.groupBy("semantic_codes").agg((F.max("dedup_digit") + 1).alias("first_free"))
        new_rows = finish(with_dedup_digits(semantic_codes(spark, fresh, codebook), first_free),
                          codebook.version, config.codebook.dedup_digit)
        assigned = store.insert_new("item_sids", new_rows)
    else:
        rows = finish(with_dedup_digits(semantic_codes(spark, embeddings, codebook)),
                      codebook.version, config.codebook.dedup_digit)
        store.overwrite("item_sids", rows)
        assigned = store.read("item_sids").count()
    result = AssignResult(codebook_version=codebook.version, items=store.read("item_sids").count(),
                          assigned_now=assigned, full_rebuild=not same_version)
    log.info("item_sids: %d items with codebook %s (%d assigned now, %s)", result.items, result.codebook_version,
             result.assigned_now, "full rebuild" if result.full_rebuild else "incremental")
    return result


def derive(spark: SparkSession, config: Config, *, scope: Scope) -> StageOutcome:
    """The stage (`jobs.runtime.stage_protocol`): SIDs from the codebook the run's train-codebook stage
    kept or trained (`scope.codebook_version`; the store's current one in the full run), for the items
    without them, or for every item when the codebook changed."""
    result = assign(spark, config, version=scope.codebook_version)
    return StageOutcome(result.items, result.assigned_now,
                        {"codebook_version": result.codebook_version, "full_rebuild": result.full_rebuild})


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", default=None, help="codebook version to use (default: the current one)")


def main(argv: Sequence[str] | None = None) -> int:
    return spark_job_main(argv, "assign-sids", "Assign semantic IDs with the current codebook.", run, _add_arguments)


if __name__ == "__main__":
    sys.exit(main())
