"""`r2led score --date YYYY-MM-DD`: the registered model under `registry.score_alias` (champion by
default) scores that day's samples from `training_examples` into `predictions`.

The alias is resolved once, to a version number N, and the model is loaded from `models:/NAME/N`:
every prediction row names the version that computed it, even if promote moves the alias while
this job runs. The weights travel to the executors as a broadcast bundle, so each Python worker
rebuilds the model once, holding today's item lookups (`item_index`: the rows it was trained with and
those of items indexed since). Scoring refuses examples built with another codebook or
collaborative-vector version than the model's, a different feature spec, or item lookups that differ
from the model's on the items it knows. A re-run replaces that date's partition.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from dataclasses import dataclass
from typing import Iterator, Sequence

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.runtime.dates import date_argument, parse_day
from jobs.runtime.entrypoint import spark_job_main
from jobs.runtime.spark_progress import stage_progress
from jobs.runtime.stage_protocol import Scope, StageOutcome
from jobs.runtime.tables import TableStore
from jobs.training.training_data import data_versions, feature_spec, item_lookup_arrays
from r2led_model.config import Config
from r2led_model.tracking.bundle import ModelBundle, frame_arrays, predict_arrays

log = logging.getLogger(__name__)

_WORKER_MODELS: dict[str, object] = {}  # one rebuilt model per Python worker and model version


class ScoreVersionError(RuntimeError):
    """The model was trained on other feature versions than the examples to score."""


@dataclass
class ScoreResult:
    score_date: str
    model_name: str
    model_version: str
    rows: int
    mean_score: float


def score_frame(spark: SparkSession, rows: DataFrame, bundle: ModelBundle, model_name: str,
                model_version: str, score_date: str, *, stamp_column: str = "score_date") -> DataFrame:
    """(sample_id, user_id, item_id, ts, features…) → predictions rows; `score_date` is written to
    `stamp_column` (the candidates scorer stamps its run id instead)."""

    payload = spark.sparkContext.broadcast(bundle.to_bytes())
    columns = bundle.narrow_columns
    key = f"{model_name}/{model_version}"

    def score_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import numpy as np

        if key not in _WORKER_MODELS:
            _WORKER_MODELS[key] = ModelBundle.from_bytes(payload.value).build()
        task = _WORKER_MODELS[key]
        for frame in batches:
            inputs = frame_arrays(frame, columns)
            yield pd.DataFrame({
                "sample_id": frame["sample_id"], "user_id": frame["user_id"], "item_id": frame["item_id"],
                "ts": frame["ts"], "score": predict_arrays(task, inputs) if len(frame) else np.empty(0),
                "model_name": model_name, "model_version": model_version, stamp_column: score_date})

    schema = ("sample_id BIGINT, user_id BIGINT, item_id BIGINT, ts BIGINT, score DOUBLE, model_name STRING, "
              f"model_version STRING, {stamp_column} STRING")
    return rows.select("sample_id", "user_id", "item_id", "ts", *columns).mapInPandas(score_batches, schema)


def latest_date(examples: DataFrame) -> str:
    found = examples.agg(F.max(F.to_date(F.from_unixtime("ts")))).first()[0]
    if found is None:
        raise LookupError("training_examples is empty: nothing to score")
    return found.isoformat()


def resolve_model(config: Config, model_uri: str | None = None) -> tuple[str, str]:
    """(registered name, version number) to score with: `registry.score_alias` of `registry.model_name`
    by default, or a `models:/NAME/N` / `models:/NAME@ALIAS` URI. An alias is read exactly once."""
    from r2led_model.tracking.mlflow_model import model_version

    if model_uri is None:
        name, alias, version = config.registry.model_name, config.registry.score_alias, None
    else:
        match = _MODEL_URI.fullmatch(model_uri.rstrip("/"))
        if match is None:
            raise ValueError(f"--model-uri {model_uri!r}: expected models:/NAME/VERSION or models:/NAME@ALIAS")
        name, version, alias = match["name"], match["version"], match["alias"]
    if version is not None:
        return name, version
    registered = model_version(config.mlflow, name, alias=alias)
    if registered is None:
        raise LookupError(f"{name!r} has no version with alias {alias!r}; run `r2led promote` first")
    return name, registered.version


_MODEL_URI = re.compile(r"models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))")


def scoring_bundle(store: TableStore, config: Config, model_uri: str | None) -> tuple[str, str, ModelBundle]:
    """(registered name, version, bundle) of the model to score with (`resolve_model`), holding today's item
    lookups: those it was trained with and the rows of items indexed since. ScoreVersionError when it cannot
    read the current tables (other feature versions or spec, lookups that differ)."""
    from r2led_model.tracking.mlflow_model import load_bundle

    name, version = resolve_model(config, model_uri)
    model_uri = f"models:/{name}/{version}"
    bundle = load_bundle(config.mlflow, model_uri)
    category, sid = item_lookup_arrays(store)
    problems = bundle.incompatibilities(feature_spec(store, config), data_versions(store), (category, sid))
    if problems:
        raise ScoreVersionError(f"refusing to score with {model_uri}: " + "; ".join(problems))
    return name, version, bundle.with_item_lookup(category, sid)


def score(spark: SparkSession, config: Config, date: str | None = None, model_uri: str | None = None) -> ScoreResult:
    """Score the samples of `date` (validated YYYY-MM-DD; default: the latest day) into `predictions`."""
    # The day ends up in the replaceWhere predicate: only a parsed date (or the table's own latest) may.
    date = parse_day(date) if date is not None else None
    store = TableStore(spark, config.tables)
    name, version, bundle = scoring_bundle(store, config, model_uri)
    examples = store.read("training_examples")
    day = date or latest_date(examples)
    rows = (examples.where(F.to_date(F.from_unixtime("ts")) == F.lit(day).cast("date"))
            .join(store.read("samples").select("sample_id", "item_id"), "sample_id"))
    with stage_progress(spark, "score"):
        store.overwrite_partitions("predictions", score_frame(spark, rows, bundle, name, version, day),
                                   where=f"score_date = '{day}'")
    written = store.read("predictions").where(F.col("score_date") == day)
    stats = written.agg(F.count("*").alias("rows"), F.avg("score").alias("mean")).first()
    result = ScoreResult(day, name, version, int(stats["rows"]), float(stats["mean"] or 0.0))
    log.info("predictions for %s: %d rows from %s version %s (mean score %.4f)", day, result.rows, name, version,
             result.mean_score)
    return result


def run(spark: SparkSession, config: Config, *, date: str | None = None, model_uri: str | None = None,
        candidates: str | None = None, candidates_format: str = "delta", candidate_columns: dict | None = None,
        run_id: str | None = None, as_of: int | None = None):
    if candidates is not None:
        from jobs.registry.score_candidates import CandidateSource, score_candidates

        columns = candidate_columns or {}
        catalog_name = not ("/" in candidates or ":" in candidates)
        source = CandidateSource(path=None if catalog_name else candidates, name=candidates if catalog_name else None,
                                 format=candidates_format, user_column=columns.get("user", "user_id"),
                                 item_column=columns.get("item", "item_id"), ts_column=columns.get("ts"))
        scored = score_candidates(spark, config, source, model_uri=model_uri, run_id=run_id, as_of=as_of)
        print(f"candidate_scores run {scored.run_id}: {scored.pairs:,} pairs, {scored.scored:,} scored with "
              f"{scored.model_name} version {scored.model_version}, {scored.rejected:,} rejected; scored without "
              f"history {scored.without_history:,}, unknown items {scored.unknown_items:,}, items without SIDs "
              f"{scored.items_without_sids:,}; duplicate rows {scored.duplicates:,}", flush=True)
        return scored
    result = score(spark, config, date=date, model_uri=model_uri)
    print(f"scored {result.rows:,} samples of {result.score_date} with {result.model_name} version "
          f"{result.model_version}: mean score {result.mean_score:.4f}", flush=True)
    return result


def derive(spark: SparkSession, config: Config, *, scope: Scope) -> StageOutcome:
    """The stage (`jobs.runtime.stage_protocol`): the champion scores the day's samples (the latest
    day's in the full run) into `predictions`."""
    result = run(spark, config) if scope.full_run else score(spark, config, date=scope.day)
    return StageOutcome(result.rows, result.rows, {"model_version": result.model_version,
                                                   "mean_score": round(result.mean_score, 6)})


_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
CANDIDATE_ROLES = ("user", "item", "ts")


def run_id_argument(text: str) -> str:
    if not _RUN_ID.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r}: a run id is letters, digits, '_', '.' and '-' (at most 128)")
    return text


def candidate_columns_argument(text: str) -> dict[str, str]:
    """`user=uid,item=sku,ts=event_time` → {role: column}."""
    columns: dict[str, str] = {}
    for part in filter(None, text.split(",")):
        role, _, column = part.partition("=")
        if role not in CANDIDATE_ROLES or not column:
            raise argparse.ArgumentTypeError(
                f"{part!r}: expected ROLE=COLUMN with ROLE one of {', '.join(CANDIDATE_ROLES)}")
        columns[role] = column
    return columns


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--date", type=date_argument, default=None,
                        help="the day whose samples to score, YYYY-MM-DD (default: latest)")
    parser.add_argument("--model-uri", default=None,
                        help="a models:/NAME/VERSION URI instead of the registry.score_alias version")
    parser.add_argument("--candidates", default=None, metavar="SOURCE",
                        help="score these (user, item[, ts]) pairs into candidate_scores instead of a day's samples: "
                             "a folder (read as --candidates-format) or a catalog table name")
    parser.add_argument("--candidates-format", default="delta", choices=["delta", "parquet", "csv", "json", "orc"],
                        help="how to read a --candidates folder (default: delta)")
    parser.add_argument("--candidate-columns", type=candidate_columns_argument, default=None,
                        metavar="user=COL,item=COL[,ts=COL]",
                        help="the candidates' columns (default user_id, item_id; no ts: every pair as of now)")
    parser.add_argument("--run-id", type=run_id_argument, default=None,
                        help="the candidate run's id (default: the model version and the source); a re-run replaces it")
    parser.add_argument("--as-of", type=int, default=None, metavar="EPOCH_SECONDS",
                        help="the time of candidates without a ts column (default: now)")


def conflicting_flags(parsed: argparse.Namespace) -> str | None:
    if parsed.candidates is None and any(getattr(parsed, k) is not None for k in
                                         ("candidate_columns", "run_id", "as_of")):
        return "--candidate-columns, --run-id and --as-of go with --candidates"
    if parsed.candidates is not None and parsed.date is not None:
        return "--date scores a day's logged samples, --candidates given pairs: pick one"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    return spark_job_main(argv, "score", "Score a day's samples, or any candidate pairs, with the champion.", run,
                          add_arguments, check=conflicting_flags)


if __name__ == "__main__":
    sys.exit(main())
