"""`r2led score --candidates SOURCE`: click probabilities for any (user, item[, ts]) pairs a candidate
generator proposes, not only the impressions already in the logs.

Each pair is scored against its user's stored lifelong sequence as of the pair's time: the behaviours
strictly before `ts` (default: the time the run starts, i.e. the whole stored sequence), through the
same retrieval kernel (`retrieve.build_route_candidates`), the same example assembly
(`build_training_set.build_examples`) and the same model, with today's item lookups
(`score.scoring_bundle`), as a logged sample of that user at that time. So a logged sample sent as a
candidate gets exactly the score `predictions` holds for it.

Every pair read gets one row in `candidate_scores` under the run id:
  * a pair whose user, item or time is missing or not an integer: `rejected` says which, no score;
  * a user without a stored sequence (or none before `ts`): scored from an empty history (`has_history`
    false): short and long windows and every route empty;
  * an item missing from `item_index` (never seen by the pipeline): scored as an unknown item
    (`known_item` false): no ID row, the unknown category, no SID codes, no route candidates;
  * an item without SIDs (no text): scored with its ID and category (`has_sids` false), no SID routes.
A pair listed twice (same user, item and time) is one pair. Re-running with the same run id replaces
that run's rows; the default run id names the source and the model version.
"""

from __future__ import annotations

import logging
import time
import zlib
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.ingest.sources.table import read_table
from jobs.retrieval import retrieve
from jobs.retrieval.table_shapes import candidate_routes
from jobs.runtime.spark_progress import stage_progress
from jobs.runtime.tables import TableStore
from jobs.training.build_training_set import build_examples
from jobs.registry.score import score_frame, scoring_bundle
from r2led_model.config import Config

log = logging.getLogger(__name__)

CANDIDATES_SPLIT = "candidates"  # the split column the shared sample kernels carry for candidate pairs


@dataclass(frozen=True)
class CandidateSource:
    """Where the pairs are (a folder in `format`, or a catalog table `name`) and which columns hold them."""

    path: str | None = None
    name: str | None = None
    format: str = "delta"
    user_column: str = "user_id"
    item_column: str = "item_id"
    ts_column: str | None = None  # epoch seconds; None: every pair is scored as of the run's start

    @property
    def identity(self) -> str:
        return self.name or self.path or ""


@dataclass
class CandidateScoreResult:
    run_id: str
    model_name: str
    model_version: str
    pairs: int
    scored: int
    rejected: int
    without_history: int
    unknown_items: int
    items_without_sids: int
    duplicates: int


def default_run_id(source: CandidateSource, model_name: str, model_version: str) -> str:
    """The same source scored by the same model version replaces its own earlier rows."""
    return f"{model_name}-v{model_version}-{zlib.crc32(source.identity.encode()):08x}"


def read_pairs(spark: SparkSession, source: CandidateSource, as_of: int) -> tuple[DataFrame, int]:
    """(pairs: pair_id, user_id, item_id, ts, rejected, copies; one row per distinct pair, persisted) and
    how many rows were duplicates. `rejected` is null for a pair that can be scored, else why it cannot.
    The source is read once: the distinct pairs and their counts come from one aggregation."""
    raw = read_table(spark, path=source.path, name=source.name, format=source.format, options={},
                     what="--candidates")
    wanted = {"user": source.user_column, "item": source.item_column,
              **({"ts": source.ts_column} if source.ts_column else {})}
    missing = {role: column for role, column in wanted.items() if column not in raw.columns}
    if missing:
        raise ValueError(f"--candidates {source.identity}: no column {', '.join(map(repr, missing.values()))} "
                         f"(its columns: {', '.join(raw.columns)}); name them with --candidate-columns")

    def integer(column: str) -> F.Column:
        # A fractional or textual id is refused, not rounded: cast the text to a decimal first, keep exact integers.
        value = F.col(column).cast(T.DecimalType(38, 6))
        return F.when(value == F.floor(value), value.cast("bigint"))

    ts = integer(source.ts_column) if source.ts_column else F.lit(as_of).cast("bigint")
    pairs = raw.select(integer(source.user_column).alias("user_id"), integer(source.item_column).alias("item_id"),
                       ts.alias("ts"))
    rejected = (F.when(F.col("user_id").isNull(), F.lit(f"{source.user_column} missing or not an integer"))
                .when(F.col("item_id").isNull(), F.lit(f"{source.item_column} missing or not an integer"))
                .when(F.col("ts").isNull(), F.lit(f"{source.ts_column} missing or not epoch seconds")))
    # Non-negative and stable: the same pair gets the same id in every run.
    pair_id = F.xxhash64("user_id", "item_id", "ts").bitwiseAND(F.lit(0x7FFFFFFFFFFFFFFF))
    # `rejected` follows from the key's nulls, so grouping by it too keeps one row per pair.
    distinct = (pairs.withColumn("pair_id", pair_id).withColumn("rejected", rejected)
                .groupBy("pair_id", "user_id", "item_id", "ts", "rejected").agg(F.count("*").alias("copies"))
                .persist())
    totals = distinct.agg(F.sum("copies").alias("read"), F.count("*").alias("distinct")).first()
    return distinct, int(totals["read"] or 0) - int(totals["distinct"])


def with_history_lengths(pairs: DataFrame, sequences: DataFrame) -> DataFrame:
    """The pairs as samples: hist_len counts the user's behaviours strictly before the pair's ts (the stored
    sequence's, plus those it dropped, which are the oldest), as `sequences` counts a logged sample's."""
    stored = sequences.select("user_id", F.col("ts").alias("history_ts"), "dropped")
    before = F.size(F.filter("history_ts", lambda t: t < F.col("ts")))
    return (pairs.join(stored, "user_id", "left")
            .withColumn("hist_len", F.when(F.col("history_ts").isNull(), F.lit(0))
                        .otherwise(F.coalesce("dropped", F.lit(0)) + before).cast("bigint"))
            .drop("history_ts", "dropped"))


def candidate_examples(spark: SparkSession, store: TableStore, config: Config, samples: DataFrame) -> DataFrame:
    """Narrow examples of `samples` (sample_id, user_id, item_id, ts, hist_len): route candidates by the
    retrieval kernel, then the example assembly, exactly as for logged samples."""
    sequences = store.read("user_sequences")
    inputs = retrieve.retrieval_inputs(store, config)
    # No label to learn from: 0 fills the examples' column.
    rows = samples.select("sample_id", "user_id", "item_id", "ts", "hist_len", F.lit(CANDIDATES_SPLIT).alias("split"),
                          F.lit(0).alias("label"))
    candidates = retrieve.stamped_candidates(spark, store, inputs, rows, sequences)
    routes = candidate_routes(candidates.columns)
    return build_examples(candidates.drop("codebook_version", "collab_version"), sequences, store.read("item_index"),
                          routes, config.training_set)


def score_candidates(spark: SparkSession, config: Config, source: CandidateSource, *, model_uri: str | None = None,
                     run_id: str | None = None, as_of: int | None = None) -> CandidateScoreResult:
    """Score every pair of `source` into `candidate_scores` under `run_id` (default: `default_run_id`)."""
    store = TableStore(spark, config.tables)
    name, version, bundle = scoring_bundle(store, config, model_uri)
    run_id = run_id or default_run_id(source, name, version)
    as_of = int(time.time()) if as_of is None else as_of
    pairs, duplicates = read_pairs(spark, source, as_of)
    valid = with_history_lengths(pairs.where(F.col("rejected").isNull()), store.read("user_sequences")).select(
        F.col("pair_id").alias("sample_id"), "user_id", "item_id", "ts", "hist_len")
    examples = candidate_examples(spark, store, config, valid).join(valid.select("sample_id", "item_id"), "sample_id")
    scored = score_frame(spark, examples, bundle, name, version, run_id, stamp_column="run_id").select(
        F.col("sample_id").alias("pair_id"), "score")
    index = store.read("item_index").select("item_id", F.exists("sid", lambda c: c > 0).alias("has_sids"))
    treated = (pairs.join(valid.select(F.col("sample_id").alias("pair_id"), "hist_len"), "pair_id", "left")
               .join(scored, "pair_id", "left").join(index, "item_id", "left"))
    out = treated.select(
        F.lit(run_id).alias("run_id"), "pair_id", "user_id", "item_id", "ts", "score",
        F.lit(name).alias("model_name"), F.lit(version).alias("model_version"),
        (F.coalesce("hist_len", F.lit(0)) > 0).alias("has_history"),
        F.col("has_sids").isNotNull().alias("known_item"),
        F.coalesce("has_sids", F.lit(False)).alias("has_sids"), "rejected")
    with stage_progress(spark, "score-candidates"):
        store.overwrite_partitions("candidate_scores", out, where=f"run_id = '{_quoted(run_id)}'")
    pairs.unpersist()
    written = store.read("candidate_scores").where(F.col("run_id") == run_id)
    counts = written.agg(
        F.count("*").alias("pairs"), F.count("score").alias("scored"), F.count("rejected").alias("rejected"),
        F.sum((~F.col("has_history") & F.col("rejected").isNull()).cast("int")).alias("without_history"),
        F.sum((~F.col("known_item") & F.col("rejected").isNull()).cast("int")).alias("unknown_items"),
        F.sum((F.col("known_item") & ~F.col("has_sids") & F.col("rejected").isNull()).cast("int"))
        .alias("without_sids")).first()
    result = CandidateScoreResult(run_id=run_id, model_name=name, model_version=version, pairs=int(counts["pairs"]),
                                  scored=int(counts["scored"]), rejected=int(counts["rejected"]),
                                  without_history=int(counts["without_history"] or 0),
                                  unknown_items=int(counts["unknown_items"] or 0),
                                  items_without_sids=int(counts["without_sids"] or 0), duplicates=duplicates)
    if result.scored + result.rejected != result.pairs:
        raise RuntimeError(f"candidate_scores run {run_id}: {result.pairs} pairs but {result.scored} scored and "
                           f"{result.rejected} rejected")
    log.info("candidate_scores run %s: %s", run_id, result)
    return result


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")
